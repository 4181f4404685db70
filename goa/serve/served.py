"""What the server serves: pools of agents, each behind one model id ``goa/<name>``.

A :class:`ServedPool` is a pool, the GoA settings it runs with, and optionally
ready backends for some of its agents (tests pass scripted ones). The other
agents' backends are built once, from their cards, when the app is made (a
local model file is still fetched only on its first call) and closed when the
app shuts down; the shared response cache, when given, sits in front of every
agent. Each request runs a fresh :class:`~goa.pipeline.GraphOfAgents` over these
backends, with the request's ``temperature`` and ``max_tokens`` applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from goa.inference.backend import Backend
from goa.inference.cache import CachedBackend, ResponseCache
from goa.pipeline import GraphOfAgents
from goa.pools import Pool

MODEL_PREFIX = "goa/"


@dataclass(frozen=True)
class ServedPool:
    """A pool served as one model; ``options`` are :class:`GraphOfAgents` keyword options."""

    pool: Pool
    options: Mapping[str, Any] = field(default_factory=dict)
    backends: Mapping[str, Backend] = field(default_factory=dict)


def model_id(name: str) -> str:
    """The model id clients use for the pool served under ``name``."""
    return f"{MODEL_PREFIX}{name}"


@dataclass
class Model:
    """A served pool, ready: its backends (given, cached or built) and base settings."""

    id: str
    served: ServedPool
    backends: dict[str, Backend]
    built: list[Backend]
    """The backends made here, closed at shutdown (never the given ones)."""

    @property
    def pool(self) -> Pool:
        return self.served.pool

    def goa(self, *, temperature: float | None, max_tokens: int | None) -> GraphOfAgents:
        """A GraphOfAgents for one request (the request's sampling settings applied)."""
        options = dict(self.served.options)
        options.pop("backends", None)
        options.pop("cache", None)
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        return GraphOfAgents(self.served.pool, backends=self.backends, **options)

    def describe(self) -> dict[str, Any]:
        """The ``goa`` field of this model's ``/v1/models`` entry."""
        return {
            "pool": self.served.pool.name,
            "description": self.served.pool.description,
            "agents": list(self.served.pool.ids),
            "options": {k: v for k, v in self.served.options.items() if _plain(v)},
        }


def _plain(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def prepare(
    name: str,
    served: ServedPool | Pool,
    *,
    cache: ResponseCache | None,
    built: dict[str, Backend],
) -> Model:
    """The ready model for a pool; ``built`` holds backends made from cards so far,
    shared between pools (one backend per card id)."""
    from goa.inference.factory import backend_for_card

    if isinstance(served, Pool):
        served = ServedPool(served)
    backends: dict[str, Backend] = {}
    own: list[Backend] = []
    for card in served.pool.cards:
        given = served.backends.get(card.id)
        if given is not None:
            if cache is not None and not isinstance(given, CachedBackend):
                given = CachedBackend(given, cache)
            backends[card.id] = given
            continue
        if card.id not in built:
            built[card.id] = backend_for_card(card, cache=False if cache is None else cache)
            own.append(built[card.id])
        backends[card.id] = built[card.id]
    for agent, given in served.backends.items():  # e.g. a meta model outside the pool
        backends.setdefault(agent, given)
    meta = served.options.get("meta")
    if isinstance(meta, str) and meta not in backends:
        from goa.cards import get_card

        if meta not in built:
            built[meta] = backend_for_card(get_card(meta), cache=False if cache is None else cache)
            own.append(built[meta])
        backends[meta] = built[meta]
    return Model(id=model_id(name), served=served, backends=backends, built=own)
