"""Streaming a completion: the text arrives in pieces, the full Completion at the end.

A backend streams if it has ``complete_stream(request, on_delta)``; the scripted,
llama.cpp and litellm backends do, and the cache passes it through. For any
other backend :func:`complete_streaming` falls back to one ``complete`` call and
hands the whole text to ``on_delta`` at once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Completion, OnDelta


@runtime_checkable
class StreamingBackend(Protocol):
    """A backend that can also deliver its text piece by piece."""

    async def complete_stream(self, request: ChatRequest, on_delta: OnDelta) -> Completion: ...


async def complete_streaming(
    backend: Backend, request: ChatRequest, on_delta: OnDelta
) -> Completion:
    """Complete ``request``, calling ``on_delta`` with the text as it is generated."""
    if isinstance(backend, StreamingBackend):
        return await backend.complete_stream(request, on_delta)
    completion = await backend.complete(request)
    if completion.text:
        on_delta(completion.text)
    return completion
