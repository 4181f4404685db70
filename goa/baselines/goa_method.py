"""GoA as an evaluated :class:`~goa.eval.method.Method`, and its random-selection ablation."""

from __future__ import annotations

import copy
import random
from typing import Any

from goa.errors import GoaError
from goa.eval.method import MethodOutcome
from goa.pipeline import GraphOfAgents, question_id
from goa.pools import Pool, load_pool


class GoAMethod:
    """A :class:`~goa.pipeline.GraphOfAgents` behind the Method protocol.

    The question set's ``answer_format`` is used for the run: each call works
    on a shallow copy of the graph with that format, so the shared graph is
    never changed and concurrent questions cannot see each other's format
    (the copy shares the pool, cards and backends, which a run only reads).
    """

    def __init__(self, graph_of_agents: GraphOfAgents, name: str = "goa") -> None:
        self.goa = graph_of_agents
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        graph = copy.copy(self.goa)
        graph.answer_format = answer_format
        result = await graph.arun(question)
        return MethodOutcome.from_result(self.name, result)


class RandomGoA:
    """GoA whose agents are chosen at random (the selection ablation).

    The pipeline has no random selector, so for each question this narrows the
    pool to ``k`` cards drawn at random, seeded by ``seed`` and the question's
    id (the same question always gets the same agents, whatever the order or
    concurrency of the run), and runs GoA over that pool with selector
    ``all``. The meta model (mean pooling) is the largest drawn card unless
    ``meta`` is given among ``options``. ``options`` are passed to
    :class:`~goa.pipeline.GraphOfAgents` (``selector`` and ``k`` are set here).
    The drawn agents are in ``extra["selected"]``.
    """

    def __init__(
        self,
        pool: Pool | str | None,
        k: int,
        seed: int = 0,
        *,
        name: str = "goa-random",
        **options: Any,
    ) -> None:
        self.pool = pool if isinstance(pool, Pool) else load_pool(pool)
        if not 1 <= k <= len(self.pool.cards):
            raise GoaError(f"k must be between 1 and {len(self.pool.cards)}, not {k}")
        for fixed in ("selector", "k"):
            if fixed in options:
                raise GoaError(f"random GoA sets {fixed!r} itself")
        self.k = k
        self.seed = seed
        self.options = options
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def draw(self, question: str) -> Pool:
        """The ``k`` cards drawn for ``question``, in pool order."""
        rng = random.Random(f"{self.seed}:{question_id(question)}")
        chosen = set(rng.sample(range(len(self.pool.cards)), self.k))
        cards = tuple(card for i, card in enumerate(self.pool.cards) if i in chosen)
        return Pool(f"{self.pool.name}-random", cards)

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        graph = GraphOfAgents(
            self.draw(question),
            k=self.k,
            selector="all",
            **{**self.options, "answer_format": answer_format},
        )
        result = await graph.arun(question)
        return MethodOutcome.from_result(self.name, result)


def random_goa(pool: Pool | str | None, k: int, seed: int = 0, **options: Any) -> RandomGoA:
    """GoA with ``k`` randomly chosen agents per question (see :class:`RandomGoA`)."""
    return RandomGoA(pool, k, seed, **options)
