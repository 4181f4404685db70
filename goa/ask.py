"""``ask``: one question to the pool, one answer back.

Until the Graph-of-Agents pipeline lands, ``ask`` puts the question to one agent
of the pool: the one named, or else the pool's largest model (by
``parameters_b``). The answer carries the agent, its usage, cost and latency.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from goa import prompts
from goa.cards import ModelCard
from goa.errors import ConfigError
from goa.inference.factory import backend_for_card
from goa.inference.types import ChatRequest, Completion, Tags
from goa.pools import Pool, load_pool


class Answer(BaseModel):
    """The answer to one question, with who gave it and what it cost."""

    question: str
    answer: str
    agent: str
    completion: Completion


def choose_agent(pool: Pool, agent: str | None = None) -> ModelCard:
    """The named agent of the pool, or its largest model."""
    if agent is not None:
        for card in pool.cards:
            if card.id == agent:
                return card
        known = ", ".join(card.id for card in pool.cards)
        raise ConfigError(f"pool {pool.name!r}", f"no agent {agent!r} (agents: {known})")
    return max(pool.cards, key=lambda card: card.parameters_b or 0.0)


async def aask(
    question: str,
    *,
    pool: str | Pool | None = None,
    agent: str | None = None,
    max_tokens: int = 512,
    temperature: float = 0.0,
    cache: bool = False,
    progress: bool = False,
) -> Answer:
    """Answer ``question`` with the pool (default: the configured default pool).

    ``progress`` shows a progress bar (on stderr) while a local model that is not
    there yet is downloaded and assembled.
    """
    chosen_pool = pool if isinstance(pool, Pool) else load_pool(pool)
    card = choose_agent(chosen_pool, agent)
    if card.backend == "llamacpp":
        from goa.inference.local_models import ensure_model

        await asyncio.to_thread(ensure_model, card.model, progress=progress)
    backend = backend_for_card(card, cache=cache)
    request = ChatRequest.of(
        question,
        system=prompts.ASK_SYSTEM,
        temperature=temperature,
        max_tokens=max_tokens,
        tags=Tags(agent=card.id, stage="answer"),
    )
    try:
        completion = await backend.complete(request)
    finally:
        await backend.aclose()
    return Answer(
        question=question, answer=completion.text.strip(), agent=card.id, completion=completion
    )


def ask(question: str, **options: object) -> Answer:
    """The synchronous form of :func:`aask` (same options)."""
    return asyncio.run(aask(question, **options))  # type: ignore[arg-type]
