"""A transformers model served from a child process answers as the same model in this
process does, reports its batches, and fails its callers cleanly when the child dies."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from goa.errors import GoaError, ModelFileError, ModelRequestError
from goa.inference import ChatRequest, Message
from goa.inference.hf_model import HFModel
from goa.inference.hf_process import ModelProcess, ProcessSpec
from goa.inference.transformers_backend import (
    ModelSource,
    TransformersBackend,
    load_model,
    use_processes,
)
from goa.testing.tiny_models import tiny_hf_model

pytestmark = pytest.mark.allow_model_requests


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat model saved in the Hugging Face layout."""
    folder = tmp_path_factory.mktemp("tiny-saved")
    model = tiny_hf_model("tiny-saved")
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    model.close()
    return folder


@pytest.fixture(scope="module")
def served(saved: Path) -> Iterator[ModelProcess]:
    spec = ProcessSpec(str(saved), None, "tiny-saved", "cpu", "float32", 64)
    process = ModelProcess(spec)
    yield process
    process.close()


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.of("question " + "y" * (5 * i), max_tokens=6) for i in range(n)]


def _texts(backend: TransformersBackend, requests: list[ChatRequest]) -> list[str]:
    async def go() -> list[str]:
        replies = await asyncio.gather(*(backend.complete(r) for r in requests))
        return [reply.text for reply in replies]

    return asyncio.run(go())


def test_a_child_process_answers_as_the_same_model_here(saved: Path, served: ModelProcess) -> None:
    here = load_model(
        ModelSource.of(saved), name="tiny-here", device="cpu", dtype="float32", processes=False
    )
    assert isinstance(here, HFModel)
    requests = _requests(12)
    away = _texts(TransformersBackend("tiny-saved", loaded=served), requests)
    assert away == _texts(TransformersBackend("tiny-here", loaded=here), requests)
    assert served.pid is not None
    assert served.pid != os.getpid()
    stats = served.stats
    assert stats.requests >= 12
    assert stats.batches >= 1
    assert stats.largest >= 1


def test_log_probabilities_come_back_from_the_child(saved: Path, served: ModelProcess) -> None:
    here = load_model(
        ModelSource.of(saved), name="tiny-here", device="cpu", dtype="float32", processes=False
    )
    messages = [Message(role="user", content="2 + 2 =")]
    away = asyncio.run(TransformersBackend("tiny-saved", loaded=served).logprob(messages, " 4"))
    local = asyncio.run(TransformersBackend("tiny-here", loaded=here).logprob(messages, " 4"))
    assert away.tokens == local.tokens >= 1
    assert away.total == pytest.approx(local.total, abs=1e-4)


def test_a_child_that_dies_fails_its_callers_instead_of_hanging(saved: Path) -> None:
    process = ModelProcess(ProcessSpec(str(saved), None, "tiny-doomed", "cpu", "float32", 8))
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    backend = TransformersBackend("tiny-doomed", loaded=process)

    async def ask() -> Any:
        return await asyncio.wait_for(backend.complete(_requests(1)[0]), timeout=60)

    with pytest.raises(ModelRequestError, match="tiny-doomed"):
        asyncio.run(ask())


def test_a_model_that_cannot_load_raises_the_childs_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="could not load"):
        ModelProcess(ProcessSpec(str(tmp_path), None, "nothing", "cpu", "float32", 8))


def test_processes_are_the_default_on_a_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOA_MODEL_PROCESSES", raising=False)
    assert use_processes("cuda")
    assert use_processes("cuda:1")
    assert not use_processes("cpu")
    monkeypatch.setenv("GOA_MODEL_PROCESSES", "1")
    assert use_processes("cpu")
    monkeypatch.setenv("GOA_MODEL_PROCESSES", "off")
    assert not use_processes("cuda")
    monkeypatch.setenv("GOA_MODEL_PROCESSES", "maybe")
    with pytest.raises(GoaError, match="GOA_MODEL_PROCESSES"):
        use_processes("cpu")


def test_grammar_counters_come_back_from_the_child(served: ModelProcess) -> None:
    pytest.importorskip("xgrammar")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    request = ChatRequest.of("Is it fine?", max_tokens=12, json_schema=schema)
    (text,) = _texts(TransformersBackend("tiny-saved", loaded=served), [request])
    assert text.startswith('{"ok":')
    assert served.stats.grammar_batches >= 1
    assert served.stats.grammar_failures == 0
