"""Pooling: from the agents' final answers to one answer.

- ``max``: the most relevant agent's final answer (no call).
- ``mean``: the meta model writes one answer from all final answers, shown most
  relevant first with their relevance. If that call fails or returns nothing
  usable, the pipeline falls back on ``max`` and records it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from goa import prompts
from goa.answer import Caller, Reply
from goa.inference.types import Message

Pooling = Literal["max", "mean"]


def max_pool(ranking: Sequence[str], answers: Mapping[str, str]) -> tuple[str, str]:
    """(agent, answer) of the most relevant agent."""
    top = ranking[0]
    return top, answers[top]


def mean_messages(
    caller: Caller,
    ranking: Sequence[str],
    answers: Mapping[str, str],
    relevance: Mapping[str, float],
) -> list[Message]:
    """The synthesis request for the meta model."""
    listed = "\n\n".join(
        prompts.fill(prompts.GOA_LABELLED_PEER, relevance=relevance.get(a, 0.0), text=answers[a])
        for a in ranking
    )
    prompt = prompts.fill(
        prompts.GOA_POOL_PROMPT,
        question=caller.question,
        answers=listed,
        answer_format=caller.answer_format,
    )
    return [
        Message(role="system", content=prompts.GOA_POOL_SYSTEM),
        Message(role="user", content=prompt),
    ]


async def mean_pool(
    caller: Caller,
    meta: str,
    ranking: Sequence[str],
    answers: Mapping[str, str],
    relevance: Mapping[str, float],
) -> Reply:
    """The meta model's synthesis of all final answers, weighted by relevance."""
    messages = mean_messages(caller, ranking, answers, relevance)
    return await caller.call(meta, "pool", messages, stream=True)
