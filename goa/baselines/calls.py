"""Calling agents and recording the calls, shared by every baseline method.

:class:`Agents` holds what does not change between questions (the cards, ready
backends, sampling options); :meth:`Agents.session` opens a :class:`Session`
for one question, which makes the calls, records each as a
:class:`~goa.result.CallRecord` (usage, cost, latency, error) and turns them
into a :class:`~goa.eval.method.MethodOutcome`.

Stages. Requests are tagged with the baseline's own stage (``answer``,
``refine``, ``aggregate``) in :class:`~goa.inference.types.Tags`, so scripted
agents and the response cache see it. :class:`~goa.result.CallRecord` and
:class:`~goa.result.Incident` only accept GoA's stage names, so the records use
the nearest GoA stage (:data:`RECORD_STAGE`: ``refine`` -> ``forward`` with
``round`` = the MoA layer, ``aggregate`` -> ``pool``); the outcome's
``extra["call_stages"]`` lists each record's baseline stage, in order.

Failure rules, as in :mod:`goa.pipeline`: a call that raises a
:class:`~goa.errors.GoaError`, runs past ``timeout_s`` or returns an unusable
reply (empty, no letters or digits) fails; it is recorded with its error and an
``error`` incident, and never makes up an answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from goa import prompts
from goa.agent_backends import AgentBackends
from goa.answer import Reply
from goa.cards import ModelCard, get_card
from goa.errors import GoaError
from goa.eval.method import MethodOutcome
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Message, Tags
from goa.pipeline import question_id
from goa.pools import Pool, load_pool
from goa.result import CallRecord, Incident, IncidentKind, Stage, Totals

BaselineStage = Literal["answer", "refine", "aggregate"]

RECORD_STAGE: Mapping[BaselineStage, Stage] = {
    "answer": "answer",
    "refine": "forward",
    "aggregate": "pool",
}
"""The GoA stage a baseline stage is recorded under (CallRecord accepts only those)."""


class Agents:
    """Where the baselines' agents come from, and how they are sampled.

    ``pool``: a :class:`~goa.pools.Pool` or pool name whose cards are looked up
    first; other agents are found among all cards (:func:`goa.cards.get_card`).
    ``backends`` maps card ids to ready backends (tests pass scripted ones);
    other agents get theirs from :func:`goa.inference.factory.backend_for_card`
    when first called in a question, and those are closed when it is done.
    ``temperature`` is the default sampling temperature; ``timeout_s`` bounds
    each call; ``cache`` puts built backends behind the response cache.
    """

    def __init__(
        self,
        *,
        pool: Pool | str | None = None,
        backends: Mapping[str, Backend] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        cache: bool = False,
    ) -> None:
        problems = []
        if max_tokens < 1:
            problems.append(f"max_tokens must be at least 1, not {max_tokens}")
        if not 0.0 <= temperature <= 2.0:
            problems.append(f"temperature must be in [0, 2], not {temperature}")
        if timeout_s is not None and timeout_s <= 0:
            problems.append(f"timeout_s must be positive, not {timeout_s}")
        if problems:
            raise GoaError("; ".join(problems))
        resolved = load_pool(pool) if isinstance(pool, str) else pool
        self.cards: dict[str, ModelCard] = (
            {card.id: card for card in resolved.cards} if resolved is not None else {}
        )
        self.backends: dict[str, Backend] = dict(backends or {})
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.cache = cache

    def card(self, agent: str) -> ModelCard | None:
        """The card of ``agent``, or None when there is none (e.g. a scripted agent)."""
        if agent in self.cards:
            return self.cards[agent]
        try:
            card = get_card(agent)
        except GoaError:
            return None
        self.cards[agent] = card
        return card

    def session(self, question: str) -> Session:
        """A new session for one question."""
        if not question.strip():
            raise GoaError("the question is empty")
        return Session(self, question)


class Session:
    """One question's calls: made, recorded, and summed into an outcome."""

    def __init__(self, agents: Agents, question: str) -> None:
        self.agents = agents
        self.question = question
        self.question_id = question_id(question)
        self.records: list[CallRecord] = []
        self.call_stages: list[BaselineStage] = []
        self.incidents: list[Incident] = []
        self.backends = AgentBackends(
            agents.card, agents.backends, cache=agents.cache, progress=False
        )
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    async def call(
        self,
        agent: str,
        stage: BaselineStage,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        round: int | None = None,
    ) -> Reply:
        """One call, recorded; a failure comes back as a :class:`Reply` with an error."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        started = self.elapsed()
        request = ChatRequest(
            messages=tuple(messages),
            temperature=self.agents.temperature if temperature is None else temperature,
            max_tokens=self.agents.max_tokens,
            seed=seed,
            tags=Tags(agent=agent, stage=stage, question=self.question_id),
        )
        outcome = await self.backends.call(
            agent, request, timeout_s=self.agents.timeout_s, is_answer=True
        )
        self.records.append(
            outcome.record(
                agent=agent,
                stage=RECORD_STAGE[stage],
                round=round,
                started_s=started,
                cost_usd=self.backends.cost(agent, outcome.completion),
            )
        )
        text, answer, error = outcome.text, outcome.answer, outcome.error
        self.call_stages.append(stage)
        if error is not None:
            self.note("error", stage, error, agent=agent, round=round)
            return Reply(agent=agent, text=text, answer=answer, error=error)
        return Reply(agent=agent, text=text, answer=answer)

    async def answer(
        self,
        agent: str,
        answer_format: str,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Reply:
        """``agent``'s own answer to the question (stage ``answer``)."""
        prompt = prompts.fill(
            prompts.BASELINE_ANSWER_PROMPT, question=self.question, answer_format=answer_format
        )
        return await self.call(
            agent,
            "answer",
            prompt,
            system=prompts.BASELINE_ANSWER_SYSTEM,
            temperature=temperature,
            seed=seed,
        )

    def note(
        self,
        kind: IncidentKind,
        stage: BaselineStage,
        message: str,
        *,
        agent: str | None = None,
        round: int | None = None,
    ) -> None:
        self.incidents.append(
            Incident(
                kind=kind, stage=RECORD_STAGE[stage], agent=agent, round=round, message=message
            )
        )

    def outcome(
        self,
        method: str,
        answer: str | None,
        reason: str,
        extra: Mapping[str, Any] | None = None,
    ) -> MethodOutcome:
        """The outcome: ``answer`` None means not answered, for ``reason``."""
        return MethodOutcome(
            method=method,
            answer=answer.strip() if answer is not None else None,
            answered=answer is not None,
            reason=reason,
            responses=list(self.records),
            totals=Totals.of(self.records),
            incidents=list(self.incidents),
            wall_s=self.elapsed(),
            extra={**(extra or {}), "call_stages": list(self.call_stages)},
        )

    async def aclose(self) -> None:
        """Close the backends this session built (never those passed in)."""
        await self.backends.aclose()


def responses_block(texts: Sequence[str]) -> str:
    """Responses numbered for a refine or aggregate prompt (authors never named)."""
    return "\n\n".join(
        prompts.fill(prompts.MOA_RESPONSE_ENTRY, number=i, text=text.strip())
        for i, text in enumerate(texts, start=1)
    )


def check_agents(kind: str, agents: Sequence[str]) -> list[str]:
    """``agents`` as a list, or a :class:`GoaError` when empty or repeated."""
    names = list(agents)
    if not names:
        raise GoaError(f"{kind} needs at least one agent")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GoaError(f"{kind} names an agent more than once: {', '.join(repeated)}")
    return names
