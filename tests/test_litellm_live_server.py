"""The litellm backend against a real OpenAI-compatible server on loopback.

llama.cpp's own server (``python -m llama_cpp.server``) serves SmolLM2-135M-Instruct
on a free local port; the backend reaches it as ``openai/smollm2`` with an
``api_base``, exactly as it would reach vLLM or any other such server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from goa.inference.litellm_backend import LiteLLMBackend
from goa.inference.types import ChatRequest, Completion

pytest.importorskip("llama_cpp", reason="llama-cpp-python (the 'local' extra) is not installed")

pytestmark = [pytest.mark.allow_model_requests, pytest.mark.slow]

MODEL_NAME = "smollm2-135m"
ALIAS = "smollm2"
KEY_ENV = "GOA_TEST_LLAMACPP_KEY"
READY_ATTEMPTS = 240
READY_POLL_S = 0.5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _wait_until_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Poll ``/v1/models`` a bounded number of times; on failure, show the server log."""
    for _ in range(READY_ATTEMPTS):
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(READY_POLL_S)
    pytest.fail(f"llama.cpp server not ready after {READY_ATTEMPTS} polls:\n{_tail(log)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``api_base`` of a llama.cpp server serving SmolLM2, stopped after the module."""
    from goa.inference.local_models import ensure_model

    model = ensure_model(MODEL_NAME)
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(min(4, os.cpu_count() or 1)),
        "--verbose",
        "False",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(proc, base, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(autouse=True)
def _dummy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-local-server-needs-no-key")


def _backend(
    base: str, *, max_concurrency: int = 8, price_per_mtok: float | None = None
) -> LiteLLMBackend:
    return LiteLLMBackend(
        f"openai/{ALIAS}",
        api_base=base,
        api_key_env=KEY_ENV,
        timeout_s=120.0,
        max_concurrency=max_concurrency,
        input_price_per_mtok=price_per_mtok,
        output_price_per_mtok=price_per_mtok,
    )


def _run(backend: LiteLLMBackend, *requests: ChatRequest) -> list[Completion]:
    async def go() -> list[Completion]:
        try:
            return list(await asyncio.gather(*(backend.complete(r) for r in requests)))
        finally:
            await backend.aclose()

    return asyncio.run(go())


QUESTION = ChatRequest.of(
    "What is the capital of France? Answer in one word.", max_tokens=24, seed=0
)


def test_real_text_and_usage_come_back(server: str) -> None:
    (done,) = _run(_backend(server), QUESTION)

    assert done.text.strip()
    assert done.usage.prompt_tokens > 0
    assert done.usage.completion_tokens > 0
    assert done.finish_reason in ("stop", "length")
    assert done.latency_s > 0
    assert done.backend == "litellm"
    assert done.model == "openai/smollm2"
    assert done.cost_usd is None  # a local model litellm does not know, with no prices


def test_zero_card_prices_make_the_cost_zero(server: str) -> None:
    backend = _backend(server, price_per_mtok=0.0)

    (done,) = _run(backend, QUESTION)

    assert done.cost_usd == 0.0


def test_max_tokens_is_honoured(server: str) -> None:
    request = ChatRequest.of("Write a long story about a dragon.", max_tokens=5, seed=0)

    (done,) = _run(_backend(server), request)

    assert 0 < done.usage.completion_tokens <= 5
    assert done.finish_reason == "length"


def test_concurrent_requests_all_complete(server: str) -> None:
    requests = [ChatRequest.of(f"Say the number {i}.", max_tokens=8, seed=i) for i in range(3)]

    done = _run(_backend(server, max_concurrency=2), *requests)

    assert len(done) == 3
    assert all(c.usage.completion_tokens > 0 for c in done)
