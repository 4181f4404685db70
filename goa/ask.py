"""``ask``: one question through the Graph-of-Agents pipeline, in one call.

``ask(question, pool=..., models=[...], **options)`` is
``GraphOfAgents(pool, **options).run(question)``, with ``models`` narrowing the
pool to the named cards (cards outside the pool may be named too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from goa.cards import get_card
from goa.errors import ConfigError, GoaError
from goa.pipeline import GraphOfAgents
from goa.pools import Pool, load_pool
from goa.result import Result


def pool_for(pool: str | Pool | None = None, models: Sequence[str] = ()) -> Pool:
    """The pool (default: the configured default), narrowed to ``models`` if given."""
    base = pool if isinstance(pool, Pool) else load_pool(pool)
    if not models:
        return base
    in_pool = {card.id: card for card in base.cards}
    chosen = []
    for model in dict.fromkeys(models):
        card = in_pool.get(model)
        if card is None:
            try:
                card = get_card(model)
            except GoaError:
                known = ", ".join(in_pool)
                raise ConfigError(
                    f"--model {model}", f"no such card (pool {base.name!r} has: {known})"
                ) from None
        chosen.append(card)
    return Pool(name=f"{base.name}[{','.join(c.id for c in chosen)}]", cards=tuple(chosen))


def ask(
    question: str, *, pool: str | Pool | None = None, models: Sequence[str] = (), **options: Any
) -> Result:
    """Answer ``question`` with Graph-of-Agents (options as for :class:`GraphOfAgents`)."""
    return GraphOfAgents(pool_for(pool, models), **options).run(question)


async def aask(
    question: str, *, pool: str | Pool | None = None, models: Sequence[str] = (), **options: Any
) -> Result:
    """The async form of :func:`ask`."""
    return await GraphOfAgents(pool_for(pool, models), **options).arun(question)
