"""The OpenAI chat-completions wire format: the request goa reads, the objects it sends.

The request model names the parameters a GoA run can honour and those it must
refuse when set (``n > 1``, tools, logprobs, ``response_format`` other than
text...); :func:`unsupported` lists the refusals. Keys the model does not name
are ignored, as many OpenAI-compatible servers do, so newer clients keep
working. Response objects are plain dicts built here, in OpenAI's field order.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from goa.result import Totals


class TextPart(BaseModel):
    """One part of a message's content given as a list (only text is understood)."""

    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: what goa reads from the request body."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[WireMessage]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = None
    seed: int | None = None
    user: str | None = None
    stop: str | list[str] | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


def unsupported(request: ChatCompletionRequest) -> tuple[str, str] | None:
    """The first parameter set to a value a GoA run cannot honour: ``(param, why)``."""
    checks: list[tuple[str, bool, str]] = [
        ("n", request.n not in (None, 1), "only n=1 is supported (one GoA answer per request)"),
        ("tools", bool(request.tools), "tools are not supported by a GoA pool"),
        ("functions", bool(request.functions), "functions are not supported by a GoA pool"),
        (
            "tool_choice",
            request.tool_choice not in (None, "none", "auto"),
            "tool_choice is not supported by a GoA pool",
        ),
        (
            "function_call",
            request.function_call not in (None, "none", "auto"),
            "function_call is not supported by a GoA pool",
        ),
        ("logprobs", bool(request.logprobs), "logprobs are not supported by a GoA pool"),
        ("top_logprobs", request.top_logprobs is not None, "top_logprobs is not supported"),
        ("logit_bias", bool(request.logit_bias), "logit_bias is not supported by a GoA pool"),
        ("stop", bool(request.stop), "stop sequences are not supported by a GoA pool"),
        ("top_p", request.top_p not in (None, 1, 1.0), "only top_p=1 is supported"),
        (
            "presence_penalty",
            request.presence_penalty not in (None, 0, 0.0),
            "only presence_penalty=0 is supported",
        ),
        (
            "frequency_penalty",
            request.frequency_penalty not in (None, 0, 0.0),
            "only frequency_penalty=0 is supported",
        ),
        (
            "response_format",
            request.response_format is not None and request.response_format.get("type") != "text",
            "only response_format {'type': 'text'} is supported",
        ),
    ]
    for param, refused, why in checks:
        if refused:
            return param, why
    return None


def usage_of(totals: Totals) -> dict[str, int]:
    """OpenAI ``usage`` from a run's totals: every agent call of the run, summed."""
    return {
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
    }


def completion_object(
    *,
    id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, int],
    goa: dict[str, Any],
) -> dict[str, Any]:
    """A ``chat.completion`` object; ``goa`` is the extension field."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "goa": goa,
    }


def chunk_object(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    goa: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }
    if goa is not None:
        chunk["goa"] = goa
    return chunk


def model_object(model_id: str, created: int, goa: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "goa", "goa": goa}
