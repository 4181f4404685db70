"""One TRUST audit of a reasoning trace, end to end.

:func:`audit_trace` takes a trace (free text, a list of steps, or an H-DAG) and:

1. decomposes it into an H-DAG unless one is given: with the rule-based
   :func:`trust.decompose.decompose` by default, or with any :class:`Decomposer` (such as
   :class:`trust.llm_decompose.LLMDecomposer`, whose model gives the structure);
2. cuts one segment per *step* (the step, its operations, its direct premises and the goal:
   :func:`trust.segment.segment`) and gives each to ``replicas`` LLM evaluators so that no
   evaluator sees more than ``cap`` of the trace (:func:`trust.segment.assign`);
3. for each step: the computational auditor judges first, and its verdict decides when it is
   not ``abstain`` (arithmetic is checked, not voted on); otherwise the assigned evaluators
   judge it, their verdicts go through a commit-reveal round weighted by stake, and a round
   that misses quorum or margin escalates to the human auditors
   (:meth:`trust.consensus.ConsensusEngine.audit_async`: commit, reveal, tally, escalation,
   settlement; evaluators and humans are asked only when the escalation reaches their tier);
4. reports the verdict for the trace (``invalid`` when a step is invalid, ``valid`` when every
   step is valid, else ``undecided``), the first faulty step, the decision for every step,
   the exposure figure (:func:`trust.segment.exposure`: what the evaluators saw; the
   computational checker runs locally, and humans see only the steps escalated to them)
   and the ledger entries.

Every commit, reveal, tally, stake change and verdict goes to the ledger when one is given,
followed by one ``audit`` record that names the trace's SHA-256, its verdict and exposure.

Operation nodes are judged inside their step (a step's segment carries its operations), so
the first faulty *step* is what an audit locates, as BIG-Bench Mistake labels it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trust.auditors import Auditor
from trust.consensus import (
    Ballot,
    ConsensusEngine,
    ConsensusParams,
    Decision,
    Outcome,
    TierRules,
)
from trust.decompose import decompose
from trust.hdag import HDAG, Level
from trust.ledger import Ledger
from trust.segment import Assignment, ExposureReport, Segment, assign, exposure, segment
from trust.stakes import StakeBook
from trust.verdict import Tier, Verdict, Vote

if TYPE_CHECKING:
    from goa.pools import Pool

__all__ = [
    "AuditConfig",
    "AuditReport",
    "Decomposer",
    "StepVerdict",
    "audit_answer",
    "audit_trace",
]

REQUESTER = "requester"


class Decomposer(Protocol):
    """What turns a trace into an H-DAG for :func:`audit_trace`
    (:class:`trust.llm_decompose.LLMDecomposer` is one)."""

    async def decompose(self, trace: str | Sequence[str], *, goal: str | None = None) -> HDAG:
        """The H-DAG of ``trace``; ``goal`` is the question when known."""
        ...


def _default_params() -> ConsensusParams:
    return ConsensusParams(
        llm=TierRules(min_stake=1_000, quorum_stake=2_000, quorum_auditors=2, margin_bp=3_000),
        human=TierRules(min_stake=1_000, quorum_stake=1_000, quorum_auditors=1, margin_bp=0),
    )


@dataclass(frozen=True)
class AuditConfig:
    """How an audit runs.

    ``replicas`` evaluators judge each step; ``cap`` is the largest share of the trace one
    evaluator may see (1.0: no cap); ``coalition_size`` is the coalition the exposure figure
    is reported for; ``stake`` is what each vote locks; ``deposit`` is each auditor's opening
    balance when the stake book does not know it yet. The default committee rules suit three
    evaluators per step: two decisive votes and a 30% margin decide, else humans do.
    """

    replicas: int = 3
    cap: float = 1.0
    coalition_size: int = 2
    stake: int = 1_000
    deposit: int = 100_000
    seed: int = 0
    params: ConsensusParams = field(default_factory=_default_params)


@dataclass(frozen=True)
class StepVerdict:
    """The decision on one step: ``valid``, ``invalid`` or ``undecided``, the tier that
    decided, the reason (the computational check's, or the evaluators' majority) and the
    auditors who judged it."""

    step: str
    index: int
    decision: Decision
    tier: Tier
    reason: str
    auditors: tuple[str, ...]
    votes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "index": self.index,
            "decision": self.decision.value,
            "tier": self.tier.value,
            "reason": self.reason,
            "auditors": list(self.auditors),
            "votes": dict(self.votes),
        }


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit_trace` found; :meth:`to_dict` is the ``--json`` form."""

    trace_sha256: str
    verdict: Decision
    first_faulty_step: str | None
    first_faulty_index: int | None
    steps: tuple[StepVerdict, ...]
    exposure: ExposureReport
    ledger_entries: tuple[int, ...]
    """Every entry this audit appended: opening deposits, commits, reveals, stake changes,
    verdicts and the closing ``audit`` record."""
    hdag: HDAG

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_sha256": self.trace_sha256,
            "verdict": self.verdict.value,
            "first_faulty_step": self.first_faulty_step,
            "first_faulty_index": self.first_faulty_index,
            "steps": [s.to_dict() for s in self.steps],
            "exposure": {
                "single": self.exposure.single,
                "single_auditor": self.exposure.single_auditor,
                "coalition_size": self.exposure.coalition_size,
                "coalition": self.exposure.coalition,
                "coalition_upper": self.exposure.coalition_upper,
                "exact": self.exposure.exact,
            },
            "ledger_entries": list(self.ledger_entries),
        }


def _trace_hash(hdag: HDAG) -> str:
    return hashlib.sha256(hdag.to_json().encode("utf-8")).hexdigest()


def _open(book: StakeBook, account: str, deposit: int) -> None:
    if not book.has(account):
        book.open(account, deposit)


def _ballots(verdicts: dict[str, Verdict], stake: int) -> list[Ballot]:
    return [Ballot(auditor=a, vote=v.vote, stake=stake) for a, v in verdicts.items()]


def _majority_reason(verdicts: dict[str, Verdict], decision: Decision) -> str:
    if decision is Decision.UNDECIDED:
        return "no decision: the committees missed quorum or margin"
    reasons = [v.reason for v in verdicts.values() if v.vote.value == decision.value and v.reason]
    return reasons[0] if reasons else f"{decision.value} by stake-weighted vote"


async def _judge_all(auditors: Sequence[Auditor], seg: Segment) -> dict[str, Verdict]:
    verdicts = await asyncio.gather(*(a.judge(seg) for a in auditors))
    return {a.id: v for a, v in zip(auditors, verdicts, strict=True)}


async def audit_trace(
    trace: str | Sequence[str] | HDAG,
    *,
    computational: Auditor | None = None,
    evaluators: Sequence[Auditor] = (),
    humans: Sequence[Auditor] = (),
    config: AuditConfig | None = None,
    book: StakeBook | None = None,
    ledger: Ledger | None = None,
    goal: str | None = None,
    decomposer: Decomposer | None = None,
) -> AuditReport:
    """Audit ``trace`` (see the module docstring). A step no auditor can judge (the
    computational auditor abstains and there are no evaluators or humans) is
    ``undecided``.

    An H-DAG is audited as given. Text or a list of steps is decomposed first, with
    ``goal`` as its question: by ``decomposer`` when given, else by the rule-based
    :func:`trust.decompose.decompose`."""
    config = config or AuditConfig()
    if isinstance(trace, HDAG):
        if goal is not None or decomposer is not None:
            raise ValueError("an H-DAG is audited as given: no goal or decomposer applies")
        hdag = trace
    elif decomposer is not None:
        hdag = await decomposer.decompose(trace, goal=goal)
    else:
        hdag = decompose(trace, goal=goal)
    start = ledger.size if ledger is not None else 0
    book = book or StakeBook(ledger)
    engine = ConsensusEngine(book, config.params, ledger=ledger)
    segments = segment(hdag, levels=(Level.STEP,))
    # The requester pays the fee of every step that goes to a vote: it can afford them all.
    _open(book, REQUESTER, config.deposit + config.params.fee * len(segments))
    for auditor in (*evaluators, *humans):
        _open(book, auditor.id, config.deposit)
    by_id = {a.id: a for a in evaluators}
    plan: Assignment | None = None
    if evaluators:
        replicas = min(config.replicas, len(evaluators))
        plan = assign(segments, list(evaluators), config.cap, replicas, seed=config.seed)
    entries: list[int] = []
    steps: list[StepVerdict] = []
    for index, seg in enumerate(segments):
        outcome, judged, votes = await _audit_step(
            seg, computational, by_id, plan, humans, engine, config
        )
        if outcome is not None:
            entries.extend(outcome.entries)
        steps.append(
            StepVerdict(
                step=seg.id,
                index=index,
                decision=outcome.decision if outcome else Decision.UNDECIDED,
                tier=outcome.tier if outcome else Tier.COMPUTATIONAL,
                reason=judged,
                auditors=tuple(votes),
                votes={a: v.vote.value for a, v in votes.items()},
            )
        )
    faulty = next((s for s in steps if s.decision is Decision.INVALID), None)
    if faulty is not None:
        verdict = Decision.INVALID
    elif steps and all(s.decision is Decision.VALID for s in steps):
        verdict = Decision.VALID
    else:
        verdict = Decision.UNDECIDED
    if plan is None:  # nobody but the local checker saw the trace
        plan = Assignment(
            segments=segments, auditors=(), by_segment={}, per_auditor_cap=1.0, replicas=0, seed=0
        )
    seen = exposure(hdag, plan, config.coalition_size)
    trace_sha = _trace_hash(hdag)
    if ledger is not None:
        record = {
            "kind": "audit",
            "trace_sha256": trace_sha,
            "verdict": verdict.value,
            "first_faulty_step": faulty.step if faulty else None,
            "steps": {s.step: s.decision.value for s in steps},
            "exposure_single_ppm": round(seen.single * 1_000_000),
            "exposure_coalition_ppm": round(seen.coalition * 1_000_000),
        }
        ledger.append(record)
        entries = list(range(start, ledger.size))
    return AuditReport(
        trace_sha256=trace_sha,
        verdict=verdict,
        first_faulty_step=faulty.step if faulty else None,
        first_faulty_index=faulty.index if faulty else None,
        steps=tuple(steps),
        exposure=seen,
        ledger_entries=tuple(entries),
        hdag=hdag,
    )


async def _audit_step(
    seg: Segment,
    computational: Auditor | None,
    evaluators: dict[str, Auditor],
    plan: Assignment | None,
    humans: Sequence[Auditor],
    engine: ConsensusEngine,
    config: AuditConfig,
) -> tuple[Outcome | None, str, dict[str, Verdict]]:
    """The outcome of one step (None: nobody could judge it), the reason reported for it
    and the verdicts cast. The engine runs the escalation and asks the evaluators, then the
    humans, only when it reaches their tier."""
    checked = await computational.judge(seg) if computational is not None else None
    decisive = checked is not None and checked.vote is not Vote.ABSTAIN
    assigned = [evaluators[a] for a in plan.auditors_of(seg.id)] if plan else []
    if not decisive and not assigned and not humans:
        return None, "no auditor could judge it (no arithmetic to check, no evaluators)", {}
    verdicts: dict[str, Verdict] = {}

    async def llm_round() -> list[Ballot]:
        votes = await _judge_all(assigned, seg)
        verdicts.update(votes)
        return _ballots(votes, config.stake)

    async def human_round() -> list[Ballot]:
        votes = await _judge_all(humans, seg)
        verdicts.update(votes)
        return _ballots(votes, max(config.stake, config.params.human.min_stake))

    outcome = await engine.audit_async(
        seg.id,
        requester=REQUESTER,
        computational=checked,
        llm_round=llm_round,
        human_round=human_round if humans else None,
    )
    if checked is not None and computational is not None and outcome.tier is Tier.COMPUTATIONAL:
        return outcome, checked.reason, {computational.id: checked}
    return outcome, _majority_reason(verdicts, outcome.decision), verdicts


async def audit_answer(
    question: str,
    answer: str,
    *,
    pool: Pool | None = None,
    humans: Sequence[Auditor] = (),
    config: AuditConfig | None = None,
    ledger: Ledger | None = None,
) -> AuditReport:
    """Audit the reasoning of an answer to ``question`` (``goa ask --audit``): its text is
    the trace, the question its goal; arithmetic is checked, and every model of ``pool``
    (when given) is an LLM evaluator of the other steps."""
    from trust.auditors import ComputationalAuditor, llm_auditors_for_pool

    evaluators: list[Auditor] = list(llm_auditors_for_pool(pool)) if pool is not None else []
    return await audit_trace(
        decompose(answer, goal=question),
        computational=ComputationalAuditor(),
        evaluators=evaluators,
        humans=humans,
        config=config,
        ledger=ledger,
    )
