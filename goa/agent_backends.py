"""The backends of a run's agents: given ones first, the rest built on first use.

Shared by the GoA pipeline and the baselines. A backend the caller passed in is
used as it is and never closed; any other is built from the agent's card the
first time the agent is called (a local model is fetched then, and only then)
and closed with :meth:`AgentBackends.aclose`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import suppress

from goa.cards import ModelCard
from goa.errors import GoaError
from goa.inference.backend import Backend
from goa.inference.types import Completion


class AgentBackends:
    """One question's (or session's) backends, keyed by agent id."""

    def __init__(
        self,
        card: Callable[[str], ModelCard | None],
        given: Mapping[str, Backend],
        *,
        cache: bool,
        progress: bool = False,
    ) -> None:
        self._card = card
        self._given = given
        self._cache = cache
        self._progress = progress
        self._built: dict[str, Backend] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, agent: str) -> Backend:
        """The agent's backend (built once, even under concurrent first calls)."""
        given = self._given.get(agent)
        if given is not None:
            return given
        async with self._locks.setdefault(agent, asyncio.Lock()):
            if agent not in self._built:
                self._built[agent] = await self._build(agent)
        return self._built[agent]

    def cost(self, agent: str, completion: Completion | None) -> float | None:
        """A call's cost; a failed call costs 0 on a local model, else it is unknown."""
        if completion is not None:
            return completion.cost_usd
        card = self._card(agent)
        return 0.0 if card is not None and card.is_local else None

    async def aclose(self) -> None:
        """Close the backends built here (never those passed in)."""
        for backend in self._built.values():
            with suppress(GoaError, OSError):
                await backend.aclose()

    async def _build(self, agent: str) -> Backend:
        card = self._card(agent)
        if card is None:
            raise GoaError(f"no card for agent {agent!r}")
        if card.backend == "llamacpp":
            from goa.inference.local_models import ensure_model

            await asyncio.to_thread(ensure_model, card.model, progress=self._progress)
        from goa.inference.factory import backend_for_card

        return backend_for_card(card, cache=self._cache)
