"""A scripted backend: canned or computed replies, for tests and examples.

It makes no real request, so the real-request switch never stops it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from itertools import count

from goa.errors import ModelRequestError
from goa.inference.types import ChatRequest, Completion, FinishReason, OnDelta, Usage

Reply = str | Completion | Exception
Responder = Callable[[ChatRequest], Reply]


def _count_tokens(text: str) -> int:
    """A rough, deterministic token count: whitespace-separated words."""
    return len(text.split())


class ScriptedBackend:
    """Replies from a list (in order) or from a function of the request.

    A reply may be a string, a full :class:`Completion`, or an exception to raise.
    Every request is kept in :attr:`requests` so tests can check what was asked.
    ``cost_per_call`` makes the scripted model report a cost (default: free, 0.0).
    """

    def __init__(
        self,
        replies: Iterable[Reply] | Responder,
        *,
        model: str = "scripted",
        latency_s: float = 0.0,
        cost_per_call: float | None = 0.0,
    ) -> None:
        if callable(replies):
            self._responder: Responder | None = replies
            self._queue: list[Reply] = []
        else:
            self._responder = None
            self._queue = list(replies)
        self._model = model
        self._latency_s = latency_s
        self._cost = cost_per_call
        self._counter = count()
        self.requests: list[ChatRequest] = []

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ChatRequest) -> Completion:
        index = next(self._counter)
        self.requests.append(request)
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self._responder is not None:
            reply = self._responder(request)
        elif index < len(self._queue):
            reply = self._queue[index]
        else:
            raise ModelRequestError(
                f"scripted model {self._model!r} has no reply left for call {index + 1}"
            )
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text, finish = _apply_limits(reply, request)
        prompt = sum(_count_tokens(m.content) for m in request.messages)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=prompt, completion_tokens=_count_tokens(text)),
            cost_usd=self._cost,
            latency_s=self._latency_s,
            finish_reason=finish,
            backend=self.name,
            model=self._model,
            tags=request.tags,
        )

    async def complete_stream(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        """Like :meth:`complete`, handing the text to ``on_delta`` word by word."""
        completion = await self.complete(request)
        for piece in re.findall(r"\S+\s*|\s+", completion.text):
            on_delta(piece)
        return completion

    async def aclose(self) -> None:
        return None


def _apply_limits(text: str, request: ChatRequest) -> tuple[str, FinishReason]:
    """Honour stop strings and max_tokens (counted in words) like a real model."""
    cut = min((i for s in request.stop if (i := text.find(s)) >= 0), default=-1)
    if cut >= 0:
        return text[:cut], "stop"
    words = text.split()
    if len(words) > request.max_tokens:
        return " ".join(words[: request.max_tokens]), "length"
    return text, "stop"
