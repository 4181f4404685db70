"""The llama.cpp backend: the request switch, verification before loading, real text."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest

from goa.errors import ModelFileError, ModelRequestError, RealRequestsForbidden
from goa.inference import llamacpp_backend, local_models
from goa.inference.backend import Backend
from goa.inference.llamacpp_backend import LlamaCppBackend, LoadedModel
from goa.inference.transcript import plain_prompt
from goa.inference.types import ChatRequest, Completion, Message, Tags

requires_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


def ask(backend: LlamaCppBackend, prompt: str, **params: Any) -> Completion:
    return asyncio.run(backend.complete(ChatRequest.of(prompt, **params)))


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record (and stop) any attempt to load a model into llama.cpp."""
    opened: list[Path] = []

    def record(path: Path, n_ctx: int, n_threads: int | None) -> LoadedModel:
        opened.append(path)
        raise AssertionError(f"{path} was loaded")

    monkeypatch.setattr(llamacpp_backend, "_open", record)
    return opened


# --- without a model ---------------------------------------------------------------------


def test_it_is_a_backend() -> None:
    backend = LlamaCppBackend("smollm2-135m")
    assert isinstance(backend, Backend)
    assert backend.name == "llamacpp"
    assert backend.model == "smollm2-135m"


def test_real_requests_are_refused_without_the_marker(
    no_loading: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pull(name: str, **kwargs: object) -> Path:
        raise AssertionError("pulled")

    monkeypatch.setattr(local_models, "ensure_model", no_pull)
    with pytest.raises(RealRequestsForbidden, match="llamacpp:smollm2-135m"):
        ask(LlamaCppBackend("smollm2-135m"), "hello")
    assert no_loading == []


def test_an_unknown_model_needs_a_path(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"known: .*smollm2-135m"):
        LlamaCppBackend("my-model")
    assert LlamaCppBackend("my-model", path=tmp_path / "m.gguf").model == "my-model"


@pytest.mark.allow_model_requests
def test_a_missing_explicit_file_is_refused(tmp_path: Path, no_loading: list[Path]) -> None:
    with pytest.raises(ModelFileError, match="no such GGUF file"):
        ask(LlamaCppBackend("my-model", path=tmp_path / "m.gguf"), "hello")
    assert no_loading == []


def test_plain_prompt_format() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi "),
        Message(role="assistant", content="Hello."),
        Message(role="user", content="Sky colour?"),
    ]
    assert plain_prompt(messages) == (
        "Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Sky colour?\n\nAssistant:"
    )


def test_finish_reasons_are_normalised() -> None:
    assert llamacpp_backend._finish("stop") == "stop"
    assert llamacpp_backend._finish("length") == "length"
    assert llamacpp_backend._finish(None) == "unknown"


# --- the real SmolLM2 --------------------------------------------------------------------


@pytest.fixture
def smollm2() -> Path:
    return local_models.ensure_model("smollm2-135m")


@pytest.mark.slow
@pytest.mark.allow_model_requests
def test_a_tampered_model_is_never_loaded(
    smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_loading: list[Path]
) -> None:
    monkeypatch.setenv("GOA_MODELS_DIR", str(tmp_path))
    copy = tmp_path / smollm2.name
    shutil.copyfile(smollm2, copy)
    with copy.open("r+b") as handle:
        handle.seek(1_000_000)
        handle.write(b"\x00" if handle.read(1) != b"\x00" else b"\x01")
    for backend in (LlamaCppBackend("smollm2-135m"), LlamaCppBackend("smollm2-135m", path=copy)):
        with pytest.raises(ModelFileError, match="SHA-256 mismatch"):
            ask(backend, "hello")
    assert no_loading == []
    assert all(model.path != copy for model in llamacpp_backend.loaded_models())


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_greedy_generation_is_real_and_repeatable(smollm2: Path) -> None:
    backend = LlamaCppBackend("smollm2-135m")
    tags = Tags(agent="a1", stage="draft")
    request = ChatRequest.of("Name a fruit.", max_tokens=24, tags=tags)
    first = asyncio.run(backend.complete(request))
    second = asyncio.run(backend.complete(request))
    assert first.text.strip()
    assert first.text == second.text
    assert first.backend == "llamacpp"
    assert first.model == "smollm2-135m"
    assert first.cost_usd == 0.0
    assert first.tags == tags
    assert first.usage.prompt_tokens > 5
    assert 0 < first.usage.completion_tokens <= 24
    assert first.finish_reason in ("stop", "length")
    assert first.latency_s > 0


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_max_tokens_gives_length(smollm2: Path) -> None:
    reply = ask(
        LlamaCppBackend("smollm2-135m"), "Tell me a long story about a dragon.", max_tokens=5
    )
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 5


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_a_stop_string_cuts_the_text(smollm2: Path) -> None:
    backend = LlamaCppBackend("smollm2-135m")
    prompt = "Count from 1 to 10, one number per line."
    full = ask(backend, prompt, max_tokens=60)
    assert "5" in full.text
    stopped = ask(backend, prompt, max_tokens=60, stop=("5",))
    assert stopped.finish_reason == "stop"
    assert "5" not in stopped.text
    assert stopped.text == full.text[: full.text.index("5")]


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_a_seed_makes_sampling_repeatable(smollm2: Path) -> None:
    backend = LlamaCppBackend("smollm2-135m")
    params: dict[str, Any] = {"temperature": 1.0, "seed": 7, "max_tokens": 20}
    assert (
        ask(backend, "Say something.", **params).text
        == ask(backend, "Say something.", **params).text
    )


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_concurrent_requests_get_their_own_answers(smollm2: Path) -> None:
    backend = LlamaCppBackend("smollm2-135m")
    other = LlamaCppBackend("my-smollm", path=smollm2)  # same file: same loaded model
    prompts = ["What is 2 + 2?", "Name a colour.", "Say hello in French."]
    requests = [ChatRequest.of(p, max_tokens=16) for p in prompts]
    alone = [asyncio.run(backend.complete(r)).text for r in requests]

    async def together() -> list[Completion]:
        backends = [backend, other, backend]
        return await asyncio.gather(
            *(b.complete(r) for b, r in zip(backends, requests, strict=True))
        )

    assert [c.text for c in asyncio.run(together())] == alone
    assert sum(m.path.resolve() == smollm2.resolve() for m in llamacpp_backend.loaded_models()) == 1


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_models_without_a_chat_template_get_the_plain_format(
    smollm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LlamaCppBackend("smollm2-135m")
    monkeypatch.setattr(backend.load(), "has_chat_template", False)
    request = ChatRequest.of("What is the capital of France?", system="Answer in one line.")
    reply = asyncio.run(backend.complete(request.model_copy(update={"max_tokens": 40})))
    assert "User:" not in reply.text
    assert reply.finish_reason in ("stop", "length")


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_gemma_base_answers_in_the_plain_format() -> None:
    if not local_models.is_present("gemma3-270m"):
        pytest.skip("gemma3-270m is not pulled (goa models pull gemma3-270m)")
    backend = LlamaCppBackend("gemma3-270m")
    assert not backend.load().has_chat_template
    reply = ask(backend, "What is the capital of France?", max_tokens=20)
    assert "Paris" in reply.text


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_a_prompt_longer_than_the_context_is_an_error(smollm2: Path) -> None:
    backend = LlamaCppBackend("smollm2-135m", n_ctx=128)
    with pytest.raises(ModelRequestError, match="exceed context window"):
        ask(backend, "word " * 300)
