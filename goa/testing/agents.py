"""Scripted GoA agents for tests and benchmarks: replies that depend on the stage.

An :class:`Agent` is a :class:`~goa.inference.scripted.ScriptedBackend` whose
reply is chosen by the request's stage tag (``select``, ``answer``, ``score``,
``forward``, ``reverse``, ``pool``...). :func:`make_goa` builds a
:class:`~goa.pipeline.GraphOfAgents` over such agents, with cards made by
:func:`scripted_card`. Nothing here makes a real model request.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from goa.cards import ModelCard
from goa.inference.scripted import Reply, ScriptedBackend
from goa.inference.types import ChatRequest, Completion
from goa.pipeline import GraphOfAgents
from goa.pools import Pool

StageReply = Reply | Callable[[ChatRequest], Reply] | list[Reply]


def scripted_card(
    card_id: str,
    *,
    size: float | None = 1.0,
    domains: Sequence[str] = ("general knowledge",),
    accuracy: Mapping[str, float] | None = None,
    prices: tuple[float, float] | None = None,
    backend: str = "scripted",
) -> ModelCard:
    """A card for a scripted agent (the factory cannot build it)."""
    data: dict[str, Any] = {
        "id": card_id,
        "backend": backend,
        "model": card_id,
        "description": f"The scripted test agent number {len(card_id)} for pipeline tests.",
        "domains": list(domains),
        "parameters_b": size,
        "context_window": 4096,
        "license": "MIT",
        "measured_accuracy": dict(accuracy or {}),
    }
    if prices is not None:
        data["prices"] = {"input_per_mtok": prices[0], "output_per_mtok": prices[1]}
    return ModelCard.model_validate(data)


def peer_answers(request: ChatRequest) -> list[str]:
    """The final answer letters of the answers a judge prompt lists, in order."""
    prompt = request.messages[-1].content
    blocks = re.split(r"^Answer \d+:\n", prompt, flags=re.MULTILINE)[1:]
    letters = []
    for block in blocks:
        found = re.findall(r"^Answer: (\S+)", block, re.MULTILINE)
        letters.append(found[0] if found else "?")
    return letters


def judge_by(weights: Mapping[str, float]) -> Callable[[ChatRequest], str]:
    """A judge that scores each answer by its final letter (then rescales to 1)."""

    def reply(request: ChatRequest) -> str:
        values = [weights.get(letter, 1.0) for letter in peer_answers(request)]
        total = sum(values)
        return json.dumps({"scores": [round(v / total, 6) for v in values]})

    return reply


even = judge_by({})


class Agent(ScriptedBackend):
    """A scripted agent whose reply depends on the request's stage.

    A stage's script is a string, an exception, a function of the request, or a
    list used one item per call (the last item repeats). Unscripted stages fail.
    """

    def __init__(self, name: str, **stages: StageReply) -> None:
        self.stages = stages
        self.calls: dict[str, int] = {}
        super().__init__(self._reply, model=name)

    def _reply(self, request: ChatRequest) -> Reply:
        stage = request.tags.stage or "?"
        index = self.calls.get(stage, 0)
        self.calls[stage] = index + 1
        script = self.stages.get(stage)
        if script is None:
            raise AssertionError(f"{self.model} was not scripted for stage {stage!r}")
        if isinstance(script, list):
            script = script[min(index, len(script) - 1)]
        if isinstance(script, str | Exception | Completion):
            return script
        return script(request)

    def n(self, stage: str) -> int:
        """How many calls of ``stage`` this agent received."""
        return sum(1 for r in self.requests if r.tags.stage == stage)


def agent(
    name: str,
    reply: StageReply,
    *,
    score: StageReply = even,
    forward: StageReply | None = None,
    reverse: StageReply | None = None,
    **more: StageReply,
) -> Agent:
    """An agent that answers ``reply``, judges evenly and keeps its answer when refining."""
    return Agent(
        name,
        answer=reply,
        score=score,
        forward=forward if forward is not None else reply,
        reverse=reverse if reverse is not None else reply,
        **more,
    )


class Hanging(ScriptedBackend):
    """A backend that never answers: it waits on an event nobody sets."""

    def __init__(self, name: str) -> None:
        super().__init__([], model=name)
        self.never = asyncio.Event()

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        await self.never.wait()
        raise AssertionError("unreachable")


def make_goa(
    backends: Mapping[str, ScriptedBackend],
    *,
    sizes: Mapping[str, float] | None = None,
    extra_cards: Sequence[ModelCard] = (),
    **options: Any,
) -> GraphOfAgents:
    """GoA over scripted agents (pool order = mapping order); meta = the largest card."""
    sizes = sizes or {}
    cards = [scripted_card(name, size=sizes.get(name, 1.0)) for name in backends]
    return GraphOfAgents(Pool("test", (*cards, *extra_cards)), backends=backends, **options)


def calls(backends: Mapping[str, ScriptedBackend]) -> int:
    return sum(len(b.requests) for b in backends.values())
