"""Streaming completions and JSON-schema-constrained replies, across backends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from goa.inference import CachedBackend, ChatRequest, ResponseCache, ScriptedBackend
from goa.inference.cache import cache_key
from goa.inference.streaming import complete_streaming
from goa.testing import OpenAIStubServer

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["A", "B", "C", "D"]}},
    "required": ["answer"],
}


def stream(backend: Any, request: ChatRequest) -> tuple[str, list[str]]:
    pieces: list[str] = []
    completion = asyncio.run(complete_streaming(backend, request, pieces.append))
    return completion.text, pieces


def test_scripted_backend_streams_word_by_word() -> None:
    text, pieces = stream(ScriptedBackend(["The answer is B."]), ChatRequest.of("q"))
    assert pieces == ["The ", "answer ", "is ", "B."]
    assert "".join(pieces) == text


def test_a_backend_without_streaming_hands_over_the_whole_text() -> None:
    class Plain:
        name = "plain"
        model = "m"

        async def complete(self, request: ChatRequest) -> Any:
            return await ScriptedBackend(["all at once"]).complete(request)

        async def aclose(self) -> None:
            return None

    assert stream(Plain(), ChatRequest.of("q")) == ("all at once", ["all at once"])


def test_cache_hit_streams_as_one_piece(tmp_path: Path) -> None:
    inner = ScriptedBackend(["one two three"])
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"))
    first = stream(backend, ChatRequest.of("q"))
    assert first[1] == ["one ", "two ", "three"]
    assert stream(backend, ChatRequest.of("q")) == ("one two three", ["one two three"])
    assert len(inner.requests) == 1


def test_schema_is_part_of_the_cache_key() -> None:
    plain = ChatRequest.of("q")
    constrained = ChatRequest.of("q", json_schema=SCHEMA)
    assert cache_key("b", "m", plain) != cache_key("b", "m", constrained)


@pytest.mark.allow_model_requests
def test_litellm_streams_from_a_server_and_reads_its_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from goa.inference.litellm_backend import LiteLLMBackend

    monkeypatch.setenv("GOA_TEST_STUB_KEY", "stub")
    with OpenAIStubServer("The answer is four.") as server:
        backend = LiteLLMBackend(
            "openai/stub",
            api_base=server.base_url,
            api_key_env="GOA_TEST_STUB_KEY",
            input_price_per_mtok=1.0,
            output_price_per_mtok=2.0,
        )
        pieces: list[str] = []

        async def go() -> Any:
            try:
                return await complete_streaming(backend, ChatRequest.of("a b c"), pieces.append)
            finally:
                await backend.aclose()

        completion = asyncio.run(go())
        assert server.requests[0]["stream"] is True
    assert pieces == ["The ", "answer ", "is ", "four."]
    assert completion.text == "The answer is four."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert completion.cost_usd == pytest.approx((3 * 1.0 + 4 * 2.0) / 1e6)
    assert completion.finish_reason == "stop"


@pytest.mark.allow_model_requests
def test_litellm_sends_the_schema_as_response_format(monkeypatch: pytest.MonkeyPatch) -> None:
    from goa.inference.litellm_backend import LiteLLMBackend

    monkeypatch.setenv("GOA_TEST_STUB_KEY", "stub")
    with OpenAIStubServer('{"answer": "B"}') as server:
        backend = LiteLLMBackend(
            "openai/stub", api_base=server.base_url, api_key_env="GOA_TEST_STUB_KEY"
        )
        completion = asyncio.run(backend.complete(ChatRequest.of("q", json_schema=SCHEMA)))
        sent = server.requests[0]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == SCHEMA
    assert json.loads(completion.text) == {"answer": "B"}


@pytest.mark.slow
@pytest.mark.allow_model_requests
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_llamacpp_streams_and_obeys_a_schema(model: str) -> None:
    pytest.importorskip("llama_cpp")
    from goa.inference.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(model)
    text, pieces = stream(backend, ChatRequest.of("Count from 1 to 5.", max_tokens=12))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == text.strip()
    question = "Which letter comes first in the alphabet: A, B, C or D? Reply in JSON."
    reply = asyncio.run(
        backend.complete(ChatRequest.of(question, max_tokens=60, json_schema=SCHEMA))
    )
    assert json.loads(reply.text)["answer"] in {"A", "B", "C", "D"}
