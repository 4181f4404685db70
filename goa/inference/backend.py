"""The Backend protocol: the only door to models, for goa and trust alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from goa.inference.types import ChatRequest, Completion


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a :class:`ChatRequest` into a :class:`Completion`.

    ``name`` is the backend kind (``litellm``, ``llamacpp``, ``scripted``...) and
    ``model`` the model string; together with the request they key the cache.
    Implementations are safe to call concurrently from one event loop.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...
