"""The data that crosses the inference adapter: requests in, completions out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "error", "unknown"]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class Tags(BaseModel):
    """Who asked and why, for accounting: the agent, the pipeline stage, the question."""

    model_config = ConfigDict(frozen=True)

    agent: str | None = None
    stage: str | None = None
    question: str | None = None


class ChatRequest(BaseModel):
    """A chat request. Tags are for accounting only and never change the answer.

    ``json_schema`` asks for a reply that is one JSON value matching the schema.
    Backends that can enforce it do (llama.cpp by a grammar, API models by
    ``response_format`` where the provider supports it); others ignore it, so
    callers still validate what comes back.
    """

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...] = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    tags: Tags = Tags()

    @classmethod
    def of(cls, prompt: str, *, system: str | None = None, **params: object) -> ChatRequest:
        """A request from one user prompt (and an optional system prompt)."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        return cls.model_validate({"messages": messages, **params})


class Usage(BaseModel):
    """Token counts of one call."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    """What a backend returns.

    ``cost_usd`` is ``None`` when the cost is unknown: unknown is never reported as 0.
    Local models, which cost nothing per token, report ``0.0`` explicitly.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    usage: Usage = Usage()
    cost_usd: float | None = None
    latency_s: float = 0.0
    finish_reason: FinishReason = "unknown"
    backend: str
    model: str
    cached: bool = False
    tags: Tags = Tags()


OnDelta = Callable[[str], None]
"""Called with each new piece of text while a completion streams."""
