"""The adapter's own pieces: request validation, the scripted backend, the real-request switch."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from goa.errors import ModelRequestError, RealRequestsForbidden
from goa.inference import ChatRequest, Completion, ScriptedBackend, Tags, guard
from goa.inference.backend import Backend


def test_request_of_builds_system_and_user_messages() -> None:
    request = ChatRequest.of("2+2?", system="Be brief.", temperature=0.5, max_tokens=8)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.temperature == 0.5
    assert request.max_tokens == 8


@pytest.mark.parametrize(
    "params",
    [{"temperature": -0.1}, {"temperature": 3.0}, {"max_tokens": 0}, {"messages": []}],
)
def test_request_rejects_bad_parameters(params: dict[str, object]) -> None:
    base: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({**base, **params})


def test_scripted_backend_replies_in_order_and_records_requests() -> None:
    backend = ScriptedBackend(["first", "second"], model="m")
    assert isinstance(backend, Backend)
    tags = Tags(agent="a1", stage="answer", question="q1")

    async def go() -> list[Completion]:
        return [
            await backend.complete(ChatRequest.of("one", tags=tags)),
            await backend.complete(ChatRequest.of("two")),
        ]

    first, second = asyncio.run(go())
    assert (first.text, second.text) == ("first", "second")
    assert first.tags == tags
    assert first.cost_usd == 0.0
    assert [r.messages[-1].content for r in backend.requests] == ["one", "two"]
    with pytest.raises(ModelRequestError, match="no reply left"):
        asyncio.run(backend.complete(ChatRequest.of("three")))


def test_scripted_backend_computes_replies_and_raises_given_errors() -> None:
    def reply(request: ChatRequest) -> str | Exception:
        text = request.messages[-1].content
        return ModelRequestError("boom") if text == "fail" else text.upper()

    backend = ScriptedBackend(reply)
    assert asyncio.run(backend.complete(ChatRequest.of("abc"))).text == "ABC"
    with pytest.raises(ModelRequestError, match="boom"):
        asyncio.run(backend.complete(ChatRequest.of("fail")))


def test_scripted_backend_honours_stop_and_max_tokens() -> None:
    backend = ScriptedBackend(lambda r: "one two three END four five")
    stopped = asyncio.run(backend.complete(ChatRequest.of("x", stop=("END",))))
    assert (stopped.text, stopped.finish_reason) == ("one two three ", "stop")
    cut = asyncio.run(backend.complete(ChatRequest.of("x", max_tokens=2)))
    assert (cut.text, cut.finish_reason) == ("one two", "length")


def test_switch_refuses_real_requests_in_tests_by_default() -> None:
    assert guard.model_requests_forbidden()
    with pytest.raises(RealRequestsForbidden, match="allow_model_requests"):
        guard.check_model_request("litellm", "openai/gpt-4o")


def test_switch_can_be_lifted_for_one_block() -> None:
    with guard.allow_model_requests():
        guard.check_model_request("litellm", "openai/gpt-4o")
    with pytest.raises(RealRequestsForbidden):
        guard.check_model_request("litellm", "openai/gpt-4o")


@pytest.mark.allow_model_requests
def test_marker_allows_real_requests() -> None:
    assert not guard.model_requests_forbidden()
    guard.check_model_request("llamacpp", "smollm2-135m")
