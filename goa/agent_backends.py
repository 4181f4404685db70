"""The backends of a run's agents: given ones first, the rest built on first use.

Shared by the GoA pipeline and the baselines. A backend the caller passed in is
used as it is and never closed; any other is built from the agent's card the
first time the agent is called (a local model is fetched then, and only then)
and closed with :meth:`AgentBackends.aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass

from goa.cards import ModelCard
from goa.errors import GoaError
from goa.inference.backend import Backend
from goa.inference.streaming import complete_streaming
from goa.inference.types import ChatRequest, Completion, OnDelta
from goa.parsing import extract_answer, unusable
from goa.result import CallRecord, Stage


@dataclass(frozen=True)
class CallOutcome:
    """What one agent call gave: the completion or the error, the latency, and for
    answers the extracted final answer (an unusable answer counts as an error)."""

    completion: Completion | None
    error: str | None
    latency_s: float
    answer: str | None = None

    @property
    def text(self) -> str | None:
        return self.completion.text if self.completion is not None else None

    def record(
        self,
        *,
        agent: str,
        stage: Stage,
        round: int | None,
        started_s: float,
        cost_usd: float | None,
        attempt: int = 0,
    ) -> CallRecord:
        completion = self.completion
        return CallRecord(
            agent=agent,
            stage=stage,
            round=round,
            attempt=attempt,
            text=self.text,
            answer=self.answer,
            usage=completion.usage if completion is not None else None,
            cost_usd=cost_usd,
            latency_s=self.latency_s,
            started_s=started_s,
            finish_reason=completion.finish_reason if completion is not None else None,
            cached=completion.cached if completion is not None else False,
            error=self.error,
        )


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

    async def call(
        self,
        agent: str,
        request: ChatRequest,
        *,
        timeout_s: float | None,
        is_answer: bool,
        on_delta: OnDelta | None = None,
    ) -> CallOutcome:
        """Send ``request`` to ``agent`` within ``timeout_s``; never raises for a failed
        call. ``is_answer``: check the reply is usable and extract its final answer."""
        completion: Completion | None = None
        error: str | None = None
        clock = time.perf_counter()
        try:
            backend = await self.get(agent)
            clock = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                if on_delta is not None:
                    completion = await complete_streaming(backend, request, on_delta)
                else:
                    completion = await backend.complete(request)
        except TimeoutError:
            error = f"timed out after {timeout_s:g} s"
        except GoaError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - clock
        answer = None
        if completion is not None and is_answer:
            problem = unusable(completion.text)
            error = f"unusable reply: {problem}" if problem else None
            answer = extract_answer(completion.text)
        return CallOutcome(completion, error, latency, answer)

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
