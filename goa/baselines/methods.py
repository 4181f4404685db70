"""The baselines GoA is compared with: single model, MoA, Self-MoA, majority vote.

Each implements :class:`~goa.eval.method.Method`. Calls within a step run
concurrently. Every call is recorded (see :mod:`goa.baselines.calls`); a failed
agent is dropped with an incident and the method goes on with the others; when
nothing usable is left the outcome is ``answered=False`` with the reason, and
no answer is ever made up.

Calls per question when every call succeeds:

- :class:`SingleModel`: 1.
- :class:`MixtureOfAgents` with ``p`` proposers and ``L`` layers: ``p * L + 1``
  (3 proposers, 2 layers: 3 + 3 + 1 = 7).
- :class:`SelfMoA` with ``n`` samples: ``n + 1``.
- :class:`MajorityVote` with ``n`` agents: ``n``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from goa import prompts
from goa.answer import Reply
from goa.baselines.calls import Agents, BaselineStage, Session, check_agents, responses_block
from goa.cards import ModelCard
from goa.errors import GoaError
from goa.eval.method import MethodOutcome
from goa.inference.backend import Backend
from goa.parsing import normalise_answer
from goa.pools import Pool


def _failures(replies: Sequence[Reply]) -> str:
    return "; ".join(f"{r.agent}: {r.error}" for r in replies if not r.ok)


def _keep(
    session: Session,
    replies: Sequence[Reply],
    stage: BaselineStage,
    *,
    round: int | None = None,
    what: str = "answer",
) -> dict[str, str]:
    """The usable replies by agent; the others are dropped with an incident."""
    kept: dict[str, str] = {}
    for reply in replies:
        if reply.ok and reply.text is not None:
            kept[reply.agent] = reply.text
        else:
            session.note(
                "dropped", stage, f"no {what}: {reply.error}", agent=reply.agent, round=round
            )
    return kept


async def _aggregate(
    session: Session,
    aggregator: str,
    texts: Sequence[str],
    answer_format: str,
    *,
    temperature: float | None = None,
) -> Reply:
    prompt = prompts.fill(
        prompts.MOA_AGGREGATE_PROMPT,
        question=session.question,
        responses=responses_block(texts),
        answer_format=answer_format,
    )
    return await session.call(
        aggregator,
        "aggregate",
        prompt,
        system=prompts.MOA_AGGREGATE_SYSTEM,
        temperature=temperature,
    )


class _Base:
    """The options every baseline shares (see :class:`~goa.baselines.calls.Agents`)."""

    def __init__(
        self,
        name: str,
        *,
        pool: Pool | str | None,
        backends: Mapping[str, Backend] | None,
        max_tokens: int,
        temperature: float,
        timeout_s: float | None,
        cache: bool,
    ) -> None:
        self._name = name
        self.agents = Agents(
            pool=pool,
            backends=backends,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
            cache=cache,
        )

    @property
    def name(self) -> str:
        return self._name

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        session = self.agents.session(question)
        try:
            return await self._solve(session, answer_format)
        finally:
            await session.aclose()

    async def _solve(self, session: Session, answer_format: str) -> MethodOutcome:
        raise NotImplementedError


class SingleModel(_Base):
    """One agent answers alone (one call, stage ``answer``)."""

    def __init__(
        self,
        card_or_id: ModelCard | str,
        *,
        name: str | None = None,
        pool: Pool | str | None = None,
        backends: Mapping[str, Backend] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        cache: bool = False,
    ) -> None:
        agent = card_or_id.id if isinstance(card_or_id, ModelCard) else card_or_id
        super().__init__(
            name or f"single:{agent}",
            pool=pool,
            backends=backends,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
            cache=cache,
        )
        if isinstance(card_or_id, ModelCard):
            self.agents.cards[agent] = card_or_id
        self.agent = agent

    async def _solve(self, session: Session, answer_format: str) -> MethodOutcome:
        reply = await session.answer(self.agent, answer_format)
        if not reply.ok or reply.text is None:
            return session.outcome(self.name, None, f"{self.agent} could not answer: {reply.error}")
        return session.outcome(
            self.name, reply.text, f"{self.agent}'s answer", {"final_agent": self.agent}
        )


class MixtureOfAgents(_Base):
    """Mixture-of-Agents (Wang et al., 2024): layers of proposers, then an aggregator.

    Layer 1: each proposer answers on its own (stage ``answer``). Each later
    layer: each proposer still in the run reads every usable answer of the
    previous layer (the "auxiliary responses", authors not named) and writes
    a refined answer (stage ``refine``, recorded as ``forward`` with ``round``
    = the layer). Then the aggregator synthesises the last layer's answers
    (stage ``aggregate``, recorded as ``pool``); its reply is the answer.

    A proposer whose call fails is dropped for the rest of the run (incident
    ``dropped``). A layer with no usable answer ends the run unanswered. If the
    aggregator fails, the first remaining proposer's last answer (proposer
    order) is used instead, recorded as a ``fallback`` incident, as GoA does when
    mean pooling fails.
    """

    def __init__(
        self,
        proposers: Sequence[str],
        aggregator: str,
        *,
        layers: int = 2,
        name: str = "moa",
        pool: Pool | str | None = None,
        backends: Mapping[str, Backend] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        cache: bool = False,
    ) -> None:
        if layers < 1:
            raise GoaError(f"layers must be at least 1, not {layers}")
        super().__init__(
            name,
            pool=pool,
            backends=backends,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
            cache=cache,
        )
        self.proposers = check_agents("Mixture-of-Agents", proposers)
        self.aggregator = aggregator
        self.layers = layers

    async def _solve(self, session: Session, answer_format: str) -> MethodOutcome:
        replies = await asyncio.gather(*(session.answer(a, answer_format) for a in self.proposers))
        current = _keep(session, replies, "answer")
        if not current:
            return session.outcome(
                self.name, None, f"no proposer could answer ({_failures(replies)})"
            )
        for layer in range(2, self.layers + 1):
            prompt = prompts.fill(
                prompts.MOA_REFINE_PROMPT,
                question=session.question,
                responses=responses_block(list(current.values())),
                answer_format=answer_format,
            )
            replies = await asyncio.gather(
                *(
                    session.call(a, "refine", prompt, system=prompts.MOA_REFINE_SYSTEM, round=layer)
                    for a in current
                )
            )
            current = _keep(session, replies, "refine", round=layer, what="refined answer")
            if not current:
                return session.outcome(
                    self.name,
                    None,
                    f"every proposer failed in layer {layer} ({_failures(replies)})",
                )
        extra = {"layers": self.layers, "last_layer": list(current), "aggregator": self.aggregator}
        final = await _aggregate(session, self.aggregator, list(current.values()), answer_format)
        if final.ok and final.text is not None:
            return session.outcome(
                self.name,
                final.text,
                f"the aggregator's synthesis of {len(current)} answers",
                {**extra, "final_agent": self.aggregator},
            )
        top = next(iter(current))
        message = f"aggregation failed ({final.error}); used {top}'s last answer instead"
        session.note("fallback", "aggregate", message, agent=self.aggregator)
        return session.outcome(self.name, current[top], message, {**extra, "final_agent": top})


class SelfMoA(_Base):
    """Self-MoA (Li et al., 2025): one model sampled ``samples`` times, then aggregated.

    Sample ``i`` is drawn at ``temperature`` with seed ``i`` (0 to ``samples``
    - 1), so the response cache keeps the samples apart. The aggregator (the
    same model unless ``aggregator`` is given) synthesises the usable samples
    at ``aggregate_temperature``. Failed samples are dropped with an incident;
    if the aggregator fails, the first usable sample is used (a ``fallback``
    incident).
    """

    def __init__(
        self,
        model: str,
        *,
        samples: int = 4,
        temperature: float = 0.7,
        aggregator: str | None = None,
        aggregate_temperature: float = 0.0,
        name: str = "self-moa",
        pool: Pool | str | None = None,
        backends: Mapping[str, Backend] | None = None,
        max_tokens: int = 512,
        timeout_s: float | None = None,
        cache: bool = False,
    ) -> None:
        if samples < 1:
            raise GoaError(f"samples must be at least 1, not {samples}")
        super().__init__(
            name,
            pool=pool,
            backends=backends,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
            cache=cache,
        )
        self.model = model
        self.samples = samples
        self.aggregator = aggregator or model
        self.aggregate_temperature = aggregate_temperature

    async def _solve(self, session: Session, answer_format: str) -> MethodOutcome:
        replies = await asyncio.gather(
            *(session.answer(self.model, answer_format, seed=i) for i in range(self.samples))
        )
        texts: list[str] = []
        seeds: list[int] = []
        for seed, reply in enumerate(replies):
            if reply.ok and reply.text is not None:
                texts.append(reply.text)
                seeds.append(seed)
            else:
                message = f"sample with seed {seed} failed: {reply.error}"
                session.note("dropped", "answer", message, agent=self.model)
        if not texts:
            return session.outcome(self.name, None, f"no sample was usable ({_failures(replies)})")
        extra = {"samples": self.samples, "usable_seeds": seeds, "aggregator": self.aggregator}
        final = await _aggregate(
            session,
            self.aggregator,
            texts,
            answer_format,
            temperature=self.aggregate_temperature,
        )
        if final.ok and final.text is not None:
            return session.outcome(
                self.name,
                final.text,
                f"the aggregator's synthesis of {len(texts)} samples",
                {**extra, "final_agent": self.aggregator},
            )
        message = f"aggregation failed ({final.error}); used the sample with seed {seeds[0]}"
        session.note("fallback", "aggregate", message, agent=self.aggregator)
        return session.outcome(self.name, texts[0], message, {**extra, "final_agent": self.model})


class MajorityVote(_Base):
    """Each agent answers once; the most frequent final answer wins.

    Final answers are extracted (:func:`goa.parsing.extract_answer`) and
    normalised (:func:`goa.parsing.normalise_answer`) before counting. Ties are
    broken by the order of ``agents``: among the answers with the most votes,
    the one given by the earliest agent wins. The answer is that earliest
    agent's full reply. Agents whose call fails are dropped with an incident;
    a usable reply with no final answer line abstains. No vote at all:
    ``answered=False``. ``extra`` holds ``votes`` (normalised answer -> count,
    in first-vote order), ``ballots`` (agent -> extracted answer or None) and
    the winning ``final_agent``.
    """

    def __init__(
        self,
        agents: Sequence[str],
        *,
        name: str = "vote",
        pool: Pool | str | None = None,
        backends: Mapping[str, Backend] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        cache: bool = False,
    ) -> None:
        super().__init__(
            name,
            pool=pool,
            backends=backends,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
            cache=cache,
        )
        self.voters = check_agents("majority vote", agents)

    async def _solve(self, session: Session, answer_format: str) -> MethodOutcome:
        replies = await asyncio.gather(*(session.answer(a, answer_format) for a in self.voters))
        texts = _keep(session, replies, "answer")
        ballots: dict[str, str | None] = {}
        votes: dict[str, int] = {}
        first: dict[str, str] = {}
        for reply in replies:
            if reply.agent not in texts:
                continue
            ballots[reply.agent] = reply.answer
            if reply.answer is None:
                continue
            key = normalise_answer(reply.answer)
            votes[key] = votes.get(key, 0) + 1
            first.setdefault(key, reply.agent)
        extra = {"votes": votes, "ballots": ballots}
        if not votes:
            why = (
                f"no agent could answer ({_failures(replies)})"
                if not texts
                else "no agent gave an extractable final answer"
            )
            return session.outcome(self.name, None, why, extra)
        # dicts keep insertion order, which is agent order: max() keeps the first of a tie.
        winner = max(votes, key=lambda key: votes[key])
        agent = first[winner]
        total = sum(votes.values())
        return session.outcome(
            self.name,
            texts[agent],
            f"majority vote: {winner!r} with {votes[winner]} of {total} votes",
            {**extra, "winner": winner, "final_agent": agent},
        )
