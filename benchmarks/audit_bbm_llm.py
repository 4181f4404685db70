"""TRUST audits of BIG-Bench Mistake with the REAL local models as LLM evaluators.

What is real, what is not
-------------------------
* The **LLM evaluators are real**: one :class:`trust.auditors.LLMAuditor` per card of the
  ``local`` pool (``goa.pools``: SmolLM2-135M, Gemma-3-270M, Qwen2.5-Coder-0.5B and -1.5B),
  on llama.cpp on the CPU by default or, with ``GOA_LOCAL_ENGINE=transformers``, the same
  cards through transformers (batched on a GPU). ``--models`` keeps some of them.
* The **computational auditor is real** and judges first, as in ``audit_bbm``: a step whose
  arithmetic it can check is decided by it and never goes to the evaluators.
* **Adversaries are rule-based** (they have no model): see "Stakes and adversaries".
* **Human experts are SIMULATED** (``audit_bbm.SimulatedAuditor``: they know the gold label
  and are right with probability 0.95); they only enter the ``*_sim_humans`` figures.

Traces: ``--limit`` traces per task (default 40), a seeded sample of each task's file (sorted
by index), ``--tasks`` to keep some tasks. Each trace is decomposed with its question as the
goal (``trust.decompose.decompose(steps, goal=input)``) and cut into one segment per step, as
:func:`trust.audit.audit_trace` does; scoring (first-mistake accuracy, trace F1) is
``audit_bbm``'s.

Votes, once
-----------
Every evaluator judges every step of every trace that the computational auditor leaves
undecided, ONCE: greedy decoding, ``--max-tokens`` (128), ``--max-retries`` (1) re-asks on
an unreadable reply (then the evaluator abstains). Steps after the gold first mistake are
judged as well (a real evaluator does not know the label; an ``invalid`` there makes the
trace ``invalid`` without locating the mistake). The verdicts go to a JSONL file (``--votes``,
default ``OUT/audit-bbm-llm.votes.jsonl``), one line per (trace, model), appended and fsynced
as soon as that model has judged every step of that trace. A later run with the same file
(and the same engine, ``--max-tokens`` and ``--max-retries``; other lines are ignored) reuses
those lines and asks only for the pairs that are missing, so a killed run resumes without
judging any (trace, model) pair twice; a torn last line is ignored. ``--budget-s`` stops
judging after that many seconds and scores the traces every model finished.
``--response-cache`` also puts the adapter's response cache (``goa.inference.cache``) in
front of the models. Judging runs concurrently: up to ``--concurrency`` requests in flight
(default 256), so a batched backend gets full batches.

Stakes and adversaries (replayed from the cached votes)
--------------------------------------------------------
Each real model holds the same stake, 2520 units. At an adversarial level of x% of the
committee's stake (0, 10, 20, 30, 40), rule-based adversaries are added holding
``2520 * n * x / (100 - x)`` units in all, split equally into ``n`` adversaries (``n`` = the
number of models; 2520 makes every share an integer), so adversaries hold exactly x% of the
stake and the honest models share the rest equally:

``flipper``
    One adversarial twin per real model, voting the opposite of that model's real vote on
    every step (abstaining when it abstains): x% of each model's weight turns against it.
``colluder``
    As in ``audit_bbm`` (it knows the gold label, the worst case): all vote ``valid`` on the
    gold mistake step, ``invalid`` on one innocent step before it (chosen by a seed per
    trace), the truth on other labelled steps, and abstain after the mistake.

The worse of the two kinds is the level's figure (``acc_advX``, ``f1_advX``).

The LLM tier decides a step when its decisive (valid + invalid) stake is at least half of the
committee's stake and the winner leads by ``--margin-bp`` (default 3000: 30% of the decisive
stake), else the step is undecided: 3 of 4 models agreeing decide, 2 against 2 does not.
Since flippers scale each model's net weight by ``1 - 2x``, they can never turn a decision
around below 50%; they can only push steps under the margin (a unanimous committee at 40%
flippers leads by 20%, under 30%). Colluders (holding x) beat the honest side only where the
honest models are split.

Configurations (the computational auditor first in each)
--------------------------------------------------------
``computational``
    The computational auditor alone (real).
``llm`` (the headline: real models, no simulated component but the rule-based adversaries)
    The LLM tier alone: an undecided step stays undecided.
``llm_sim_humans``
    The LLM tier, then 5 SIMULATED human experts on every step it leaves undecided
    (majority, quorum 3, margin 20%, as ``audit_bbm``); their figures carry ``_sim_humans``.

The replay is :class:`trust.consensus.ConsensusEngine` (commit-reveal, stake-weighted tally,
escalation, settlement) step by step, as :func:`trust.audit.audit_trace` runs it, but with the
stakes above (``audit_trace`` gives every ballot the same stake); every evaluator sees every
step (cap 1.0). With no adversaries it decides exactly as ``audit_trace`` with the four models
and equal stakes (a test checks this).

Usage::

    .venv/bin/python -m benchmarks.audit_bbm_llm --limit 1 --tasks multistep_arithmetic \\
        --models smollm2-135m --out /tmp/bbm-llm
    GOA_LOCAL_ENGINE=transformers python -m benchmarks.audit_bbm_llm --limit 40

writes ``audit-bbm-llm.json`` (project format; ``simulated`` is false: the headline metrics
involve no simulated component) and ``audit-bbm-llm.md`` into ``--out``
(default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from benchmarks.audit_bbm import (
    FRACTIONS_PCT,
    TASKS,
    BenchConfig,
    Gold,
    Role,
    Scores,
    Setting,
    SimulatedAuditor,
    Trace,
    TraceOutcome,
    colluder_vote,
    default_params,
    flip,
    load_traces,
    score,
    setting_label,
)
from benchmarks.results_file import (
    RESULTS_DIR,
    engine_label,
    gpu_name,
    transformers_batching,
    write_result,
)
from goa.eval.runlog import RunLog
from goa.inference.backend import Backend
from goa.inference.factory import backend_for_card
from goa.pools import load_pool
from trust.audit import REQUESTER
from trust.auditors import Auditor, ComputationalAuditor, LLMAuditor
from trust.consensus import Ballot, ConsensusEngine, ConsensusParams, Decision, TierRules
from trust.decompose import decompose
from trust.hdag import Level
from trust.segment import Segment, segment
from trust.stakes import StakeBook
from trust.verdict import Tier, Verdict, Vote

NAME = "audit-bbm-llm"
VOTES_FORMAT = "audit-bbm-llm-votes/1"
HONEST_STAKE = 2_520
"""Each real model's stake; 2520 * x / (100 - x) is an integer for x = 10, 20, 30, 40."""
HUMAN_STAKE = 1_000
DEPOSIT = 10**12
MARGIN_BP = 3_000
QUORUM_SHARE_BP = 5_000
HUMANS = 5
KINDS: tuple[Role, ...] = (Role.FLIPPER, Role.COLLUDER)
CONFIGS: dict[str, int] = {"llm": 0, "llm_sim_humans": HUMANS}
"""Configuration -> number of simulated human experts."""
SUFFIX = {"llm": "", "llm_sim_humans": "_sim_humans"}
REASON_CHARS = 200


# ---------------------------------------------------------------------- evaluators


class Status(StrEnum):
    """How an evaluator's verdict on a step came about."""

    VOTE = "vote"
    """A valid or invalid vote."""
    ABSTAIN = "abstain"
    """The model itself answered ``abstain``."""
    PARSE_FAILURE = "parse_failure"
    """No usable reply after every retry (the auditor abstains)."""
    REQUEST_FAILURE = "request_failure"
    """The model request failed (the auditor abstains)."""


def status_of(verdict: Verdict) -> Status:
    if verdict.vote is not Vote.ABSTAIN:
        return Status.VOTE
    if verdict.reason.startswith("no usable verdict"):
        return Status.PARSE_FAILURE
    if verdict.reason.startswith("model request failed"):
        return Status.REQUEST_FAILURE
    return Status.ABSTAIN


@dataclass(frozen=True)
class StepVote:
    """One evaluator's cached verdict on one step."""

    vote: Vote
    confidence: float
    status: Status
    calls: int
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "vote": self.vote.value,
            "confidence": self.confidence,
            "status": self.status.value,
            "calls": self.calls,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepVote:
        return cls(
            vote=Vote(data["vote"]),
            confidence=float(data["confidence"]),
            status=Status(data["status"]),
            calls=int(data["calls"]),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True)
class Evaluator:
    """A real model to ask: its card id, its backend and the engine that runs it."""

    model: str
    backend: Backend
    engine: str

    @property
    def id(self) -> str:
        return f"llm:{self.model}"


def pool_evaluators(
    pool_name: str = "local", models: Sequence[str] | None = None, *, cache: bool = False
) -> list[Evaluator]:
    """One evaluator per card of the pool (those of ``models`` only, in pool order), on the
    backend :meth:`trust.auditors.LLMAuditor.from_card` would use."""
    pool = load_pool(pool_name)
    if models:
        unknown = sorted(set(models) - set(pool.ids))
        if unknown:
            raise SystemExit(f"not in pool {pool_name!r}: {', '.join(unknown)} ({pool.ids})")
    cards = [c for c in pool.cards if not models or c.id in models]
    return [
        Evaluator(card.id, backend_for_card(card, cache=cache), engine_label(card.backend))
        for card in cards
    ]


@dataclass(frozen=True)
class JudgeSettings:
    """What a cached vote depends on besides the trace and the model."""

    max_tokens: int = 128
    max_retries: int = 1

    def key(self, engine: str) -> dict[str, Any]:
        return {"engine": engine, "max_tokens": self.max_tokens, "max_retries": self.max_retries}


# ---------------------------------------------------------------------- traces


def select_traces(traces: Sequence[Trace], limit: int | None, seed: int) -> list[Trace]:
    """``limit`` traces per task, a seeded sample sorted by index (all when None)."""
    out: list[Trace] = []
    for task in dict.fromkeys(t.task for t in traces):
        mine = [t for t in traces if t.task == task]
        if limit is not None and limit < len(mine):
            chosen = random.Random(f"{seed}|subset|{task}").sample(range(len(mine)), limit)
            mine = [mine[i] for i in sorted(chosen)]
        out.extend(mine)
    return out


@dataclass(frozen=True)
class Prepared:
    """A trace cut into step segments, with the computational auditor's verdict on each."""

    trace: Trace
    segments: tuple[Segment, ...]
    computational: tuple[Verdict, ...]

    @property
    def sha(self) -> str:
        """A short hash of the question and the steps (a cached vote names the trace it is
        for)."""
        blob = json.dumps([self.trace.goal, list(self.trace.steps)], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def needs_llm(self, index: int) -> bool:
        return self.computational[index].vote is Vote.ABSTAIN


async def prepare(trace: Trace, computational: Auditor) -> Prepared:
    hdag = decompose(list(trace.steps), goal=trace.goal)
    segments = segment(hdag, levels=(Level.STEP,))
    if len(segments) != len(trace.steps):
        raise AssertionError(f"{trace.key}: {len(segments)} segments, {len(trace.steps)} steps")
    checked = [await computational.judge(s) for s in segments]
    return Prepared(trace, segments, tuple(checked))


# ---------------------------------------------------------------------- the votes file


@dataclass(frozen=True)
class PairVotes:
    """One model's verdicts on every step of one trace (None: the computational auditor
    decided the step, nobody asked the model)."""

    trace: str
    model: str
    sha: str
    steps: tuple[StepVote | None, ...]
    wall_s: float = 0.0


class VoteStore:
    """The JSONL file of :class:`PairVotes`, one line each, with the judge settings."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, settings: JudgeSettings) -> tuple[dict[tuple[str, str, str], PairVotes], int]:
        """The usable lines, by (trace key, model, engine), and how many lines were skipped
        (torn, another format or other settings)."""
        found: dict[tuple[str, str, str], PairVotes] = {}
        skipped = 0
        if not self.path.is_file():
            return found, skipped
        if self.path.suffix == ".gz":  # a committed votes file, read as it is
            with gzip.open(self.path, "rt", encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = self.path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if data.get("format") != VOTES_FORMAT:
                    raise ValueError("another format")
                if data["settings"] != settings.key(data["settings"]["engine"]):
                    raise ValueError("other settings")
                pair = PairVotes(
                    trace=data["trace"],
                    model=data["model"],
                    sha=data["sha"],
                    steps=tuple(
                        None if s is None else StepVote.from_json(s) for s in data["steps"]
                    ),
                    wall_s=float(data.get("wall_s", 0.0)),
                )
                found[(pair.trace, pair.model, str(data["settings"]["engine"]))] = pair
            except (ValueError, KeyError, TypeError, AttributeError):
                skipped += 1
        return found, skipped

    def append(self, pair: PairVotes, settings: JudgeSettings, engine: str) -> None:
        """Append one line and fsync it; a torn line left by a killed run is closed first."""
        record = {
            "format": VOTES_FORMAT,
            "trace": pair.trace,
            "model": pair.model,
            "sha": pair.sha,
            "settings": settings.key(engine),
            "wall_s": round(pair.wall_s, 3),
            "steps": [None if s is None else s.to_json() for s in pair.steps],
        }
        with RunLog(self.path) as log:  # whole lines, fsynced, a torn last line ended first
            log.append_raw((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------- collecting votes


@dataclass
class Progress:
    """Plain progress lines on stderr, at most one every ``every_s`` seconds."""

    total: int
    reused: int = 0
    done: int = 0
    failed: int = 0
    calls: int = 0
    every_s: float = 10.0
    started: float = field(default_factory=time.perf_counter)
    last: float = 0.0
    quiet: bool = False
    shown: int = -1

    def tick(self, force: bool = False) -> None:
        now = time.perf_counter()
        finished = self.reused + self.done + self.failed
        due = now - self.last >= self.every_s or (force and finished != self.shown)
        if self.quiet or not due:
            return
        self.last, self.shown = now, finished
        elapsed = now - self.started
        left = self.total - finished
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = f", ~{left / rate:.0f} s left" if rate else ""
        print(
            f"[{NAME}] {finished}/{self.total} (trace, model) pairs "
            f"({self.reused} reused, {self.done} judged, {self.failed} failed), "
            f"{self.calls} calls, {elapsed:.0f} s{eta}",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class Collected:
    """The votes for this run, by trace key then model, and what collecting them cost."""

    votes: dict[str, dict[str, PairVotes]]
    judged_pairs: int = 0
    reused_pairs: int = 0
    failed_pairs: int = 0
    calls: int = 0
    skipped_lines: int = 0
    timed_out: bool = False
    wall_s: float = 0.0


class _StepError(Exception):
    """A step's judgement raised something other than a model request error."""


async def judge_step(
    evaluator: Evaluator, seg: Segment, settings: JudgeSettings, gate: asyncio.Semaphore
) -> StepVote:
    """One verdict through a fresh :class:`LLMAuditor` (so its ``calls`` are this step's)."""
    auditor = LLMAuditor(
        evaluator.backend,
        id=evaluator.id,
        max_retries=settings.max_retries,
        max_tokens=settings.max_tokens,
        temperature=0.0,
    )
    async with gate:
        try:
            verdict = await auditor.judge(seg)
        except Exception as error:  # not a ModelRequestError: keep the pair out of the file
            raise _StepError(
                f"{evaluator.model} {seg.id}: {type(error).__name__}: {error}"
            ) from error
    return StepVote(
        vote=verdict.vote,
        confidence=verdict.confidence,
        status=status_of(verdict),
        calls=auditor.calls,
        reason=verdict.reason[:REASON_CHARS],
    )


async def collect(
    prepared: Sequence[Prepared],
    evaluators: Sequence[Evaluator],
    store: VoteStore,
    settings: JudgeSettings,
    *,
    concurrency: int = 256,
    budget_s: float | None = None,
    quiet: bool = False,
    replay_only: bool = False,
) -> Collected:
    """Every evaluator's verdict on every step of every trace: from the store when it has
    them, else asked now (and appended to the store as each (trace, model) pair finishes);
    ``replay_only`` asks nothing (traces without every model's votes are left out)."""
    started = time.perf_counter()
    cached, skipped = store.load(settings)
    out = Collected(votes={p.trace.key: {} for p in prepared}, skipped_lines=skipped)
    todo: list[tuple[Prepared, Evaluator]] = []
    for p in prepared:
        for ev in evaluators:
            hit = cached.get((p.trace.key, ev.model, ev.engine))
            if hit is not None and hit.sha == p.sha and len(hit.steps) == len(p.segments):
                out.votes[p.trace.key][ev.model] = hit
                out.reused_pairs += 1
            elif not replay_only:
                todo.append((p, ev))
    progress = Progress(total=len(prepared) * len(evaluators), reused=out.reused_pairs, quiet=quiet)
    progress.tick(force=True)
    gate = asyncio.Semaphore(max(1, concurrency))
    errors: list[str] = []

    async def one_pair(p: Prepared, ev: Evaluator) -> None:
        began = time.perf_counter()
        wanted = [i for i in range(len(p.segments)) if p.needs_llm(i)]
        try:
            found = await asyncio.gather(
                *(judge_step(ev, p.segments[i], settings, gate) for i in wanted)
            )
        except _StepError as error:
            out.failed_pairs += 1
            progress.failed += 1
            if len(errors) < 5:
                errors.append(str(error))
                print(f"[{NAME}] not stored, asked again next run: {error}", file=sys.stderr)
            return
        by_index = dict(zip(wanted, found, strict=True))
        pair = PairVotes(
            trace=p.trace.key,
            model=ev.model,
            sha=p.sha,
            steps=tuple(by_index.get(i) for i in range(len(p.segments))),
            wall_s=time.perf_counter() - began,
        )
        store.append(pair, settings, ev.engine)
        out.votes[p.trace.key][ev.model] = pair
        calls = sum(s.calls for s in found)
        out.judged_pairs += 1
        out.calls += calls
        progress.done += 1
        progress.calls += calls
        progress.tick()

    try:
        async with asyncio.timeout(budget_s):
            async with asyncio.TaskGroup() as group:
                for p, ev in todo:
                    group.create_task(one_pair(p, ev))
    except TimeoutError:
        out.timed_out = True
        if not quiet:
            print(f"[{NAME}] budget of {budget_s} s spent: judging stopped", file=sys.stderr)
    progress.tick(force=True)
    out.wall_s = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------- replay


def adversary_stake(n_models: int, pct: int) -> int:
    """Each of the ``n_models`` adversaries' stake at ``pct``% adversarial stake (0 at 0%)."""
    total = HONEST_STAKE * n_models * pct
    if total % (100 - pct):
        raise ValueError(f"{pct}% does not give an integer adversarial stake")
    return total // (100 - pct) // n_models if n_models else 0


def committee_params(n_models: int, pct: int, *, margin_bp: int = MARGIN_BP) -> ConsensusParams:
    """LLM tier: half of the committee's stake decisive and a ``margin_bp`` lead; human tier:
    ``audit_bbm``'s majority of :data:`HUMANS`."""
    committee = n_models * (HONEST_STAKE + adversary_stake(n_models, pct))
    quorum = -(-committee * QUORUM_SHARE_BP // 10_000)
    return ConsensusParams(
        llm=TierRules(min_stake=1, quorum_stake=quorum, quorum_auditors=1, margin_bp=margin_bp),
        human=default_params(1, HUMANS).human,
    )


@dataclass(frozen=True)
class ReplayOutcome(TraceOutcome):
    """A trace's outcome in one setting, with every step's decision."""

    decisions: tuple[str, ...] = ()
    undecided_steps: int = 0
    """Steps that went to a stake vote and ended undecided."""


def llm_ballots(
    votes: Sequence[tuple[str, Vote]], setting: Setting, gold: Gold, index: int
) -> list[Ballot]:
    """The real models' ballots on step ``index`` and the adversaries' (see the module
    docstring)."""
    ballots = [Ballot(f"llm:{model}", vote, HONEST_STAKE) for model, vote in votes]
    stake = adversary_stake(len(votes), setting.fraction_pct) if setting.kind else 0
    if stake:
        for model, vote in votes:
            if setting.kind is Role.FLIPPER:
                ballots.append(Ballot(f"flipper:{model}", flip(vote), stake))
            else:
                ballots.append(Ballot(f"colluder:{model}", colluder_vote(gold, index), stake))
    return ballots


def replay(
    prepared: Prepared,
    votes: Mapping[str, PairVotes],
    setting: Setting,
    *,
    humans: int = 0,
    margin_bp: int = MARGIN_BP,
    seed: int = 0,
) -> ReplayOutcome:
    """Audit one trace again from the cached votes: computational auditor first, then the
    LLM tier (real votes plus adversaries), then ``humans`` simulated experts on escalation,
    through :class:`ConsensusEngine` as :func:`trust.audit.audit_trace` runs it."""
    trace = prepared.trace
    gold = Gold.of(trace, seed)
    models = list(votes)
    params = committee_params(len(models), setting.fraction_pct, margin_bp=margin_bp)
    book = StakeBook()
    engine = ConsensusEngine(book, params)
    book.open(REQUESTER, DEPOSIT)
    config = BenchConfig(seed=seed)
    experts = [
        SimulatedAuditor(
            f"human{i}", gold, accuracy=config.human_accuracy, tier=Tier.HUMAN, seed=seed
        )
        for i in range(humans)
    ]
    decisions: list[Decision] = []
    voted = escalated = undecided = 0
    for index, seg in enumerate(prepared.segments):
        checked = prepared.computational[index]
        if checked.vote is not Vote.ABSTAIN:
            decisions.append(
                engine.audit(seg.id, requester=REQUESTER, computational=checked).decision
            )
            continue
        if setting.computational_only or not models:
            decisions.append(Decision.UNDECIDED)
            continue
        step_votes = [(m, _vote(votes[m], index)) for m in models]
        ballots = llm_ballots(step_votes, setting, gold, index)
        human_ballots = [Ballot(h.id, h.vote(index), HUMAN_STAKE) for h in experts]
        for ballot in (*ballots, *human_ballots):
            if not book.has(ballot.auditor):
                book.open(ballot.auditor, DEPOSIT)
        audit_id = engine.new_audit_id(seg.id)
        fee = book.pay_in(REQUESTER, params.fee, audit_id)
        rounds = [engine.run_round(seg.id, Tier.LLM, ballots, audit_id=audit_id)]
        if rounds[0].decision is Decision.UNDECIDED and human_ballots:
            rounds.append(engine.run_round(seg.id, Tier.HUMAN, human_ballots, audit_id=audit_id))
        outcome = engine.settle(audit_id, seg.id, REQUESTER, rounds, fee_change=fee)
        decisions.append(outcome.decision)
        voted += 1
        escalated += len(rounds) > 1
        undecided += outcome.decision is Decision.UNDECIDED
    first = next((i for i, d in enumerate(decisions) if d is Decision.INVALID), None)
    if first is not None:
        verdict = Decision.INVALID
    elif decisions and all(d is Decision.VALID for d in decisions):
        verdict = Decision.VALID
    else:
        verdict = Decision.UNDECIDED
    return ReplayOutcome(
        task=trace.task,
        mistake_index=trace.mistake_index,
        verdict=verdict.value,
        first_faulty_index=first,
        exposure_single=0.0 if setting.computational_only else 1.0,
        voted_steps=voted,
        escalated_steps=escalated,
        cap=1.0,
        decisions=tuple(d.value for d in decisions),
        undecided_steps=undecided,
    )


def _vote(pair: PairVotes, index: int) -> Vote:
    step = pair.steps[index] if index < len(pair.steps) else None
    return Vote.ABSTAIN if step is None else step.vote


def levels() -> list[Setting]:
    """No adversaries, then each kind at each level."""
    out = [Setting("llm", None, 0)]
    for kind in KINDS:
        out.extend(Setting("llm", kind, pct) for pct in FRACTIONS_PCT if pct)
    return out


# ---------------------------------------------------------------------- results


@dataclass
class ModelStats:
    """What one model's verdicts on the scored traces were like."""

    steps: int = 0
    calls: int = 0
    valid: int = 0
    invalid: int = 0
    abstain: int = 0
    parse_failure: int = 0
    request_failure: int = 0
    labelled: int = 0
    """Steps with a gold label (up to and including the first mistake)."""
    correct: int = 0
    """Labelled steps voted as the gold label says."""
    mistakes: int = 0
    mistakes_found: int = 0
    wall_s: float = 0.0

    def rate(self, count: int) -> float:
        return count / self.steps if self.steps else 0.0


@dataclass
class Results:
    """Scores by configuration, setting label and task; per-model statistics."""

    models: list[str]
    engine: str
    n_traces: int
    scores: dict[str, dict[str, dict[str, Scores]]] = field(default_factory=dict)
    undecided: dict[str, dict[str, float]] = field(default_factory=dict)
    """Configuration -> label -> share of voted steps left undecided."""
    stats: dict[str, ModelStats] = field(default_factory=dict)
    collected: Collected | None = None
    margin_bp: int = MARGIN_BP
    seed: int = 0
    replay_s: float = 0.0
    wall_s: float = 0.0
    limit: int | None = None

    def get(self, config: str, label: str, task: str = "all") -> Scores:
        return self.scores[config][label][task]

    def worse(self, config: str, pct: int, task: str = "all") -> tuple[float, float]:
        """(accuracy, F1) at ``pct``: the worse of flipper and colluder."""
        if pct == 0:
            s = self.get(config, "adv0", task)
            return s.accuracy, s.f1
        kinds = [self.get(config, f"adv{pct}_{k.value}", task) for k in KINDS]
        return min(s.accuracy for s in kinds), min(s.f1 for s in kinds)

    @property
    def tasks(self) -> list[str]:
        return [t for t in self.scores["computational"]["computational"] if t != "all"]


def model_stats(
    prepared: Sequence[Prepared],
    votes: Mapping[str, Mapping[str, PairVotes]],
    models: Sequence[str],
    seed: int,
) -> dict[str, ModelStats]:
    stats = {m: ModelStats() for m in models}
    for p in prepared:
        gold = Gold.of(p.trace, seed)
        for m in models:
            pair = votes[p.trace.key][m]
            s = stats[m]
            s.wall_s += pair.wall_s
            for index, step in enumerate(pair.steps):
                if step is None:
                    continue
                s.steps += 1
                s.calls += step.calls
                if step.status is Status.VOTE:
                    s.valid += step.vote is Vote.VALID
                    s.invalid += step.vote is Vote.INVALID
                elif step.status is Status.ABSTAIN:
                    s.abstain += 1
                elif step.status is Status.PARSE_FAILURE:
                    s.parse_failure += 1
                else:
                    s.request_failure += 1
                truth = gold.truth(index)
                if truth is not None:
                    s.labelled += 1
                    s.correct += step.vote is truth
                if truth is Vote.INVALID:
                    s.mistakes += 1
                    s.mistakes_found += step.vote is Vote.INVALID
    return stats


def score_all(
    prepared: Sequence[Prepared],
    votes: Mapping[str, Mapping[str, PairVotes]],
    models: Sequence[str],
    *,
    margin_bp: int = MARGIN_BP,
    seed: int = 0,
    engine: str = "",
) -> Results:
    """Replay every setting over the traces every model finished, and score them."""
    started = time.perf_counter()
    done = [p for p in prepared if all(m in votes.get(p.trace.key, {}) for m in models)]
    results = Results(list(models), engine, len(done), margin_bp=margin_bp, seed=seed)
    tasks = list(dict.fromkeys(p.trace.task for p in done))

    def per_task(found: Sequence[ReplayOutcome]) -> dict[str, Scores]:
        scored = {"all": score(found)}
        for task in tasks:
            scored[task] = score([o for o in found if o.task == task])
        return scored

    comp = [replay(p, {}, Setting("computational"), seed=seed) for p in done]
    results.scores["computational"] = {"computational": per_task(comp)}
    for config, humans in CONFIGS.items():
        results.scores[config] = {}
        results.undecided[config] = {}
        for setting in levels():
            found = [
                replay(
                    p,
                    {m: votes[p.trace.key][m] for m in models},
                    setting,
                    humans=humans,
                    margin_bp=margin_bp,
                    seed=seed,
                )
                for p in done
            ]
            label = setting_label(setting)
            results.scores[config][label] = per_task(found)
            voted = sum(o.voted_steps for o in found)
            results.undecided[config][label] = (
                sum(o.undecided_steps for o in found) / voted if voted else 0.0
            )
    results.stats = model_stats(done, votes, models, seed)
    results.replay_s = time.perf_counter() - started
    return results


def metrics(results: Results) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for config, suffix in SUFFIX.items():
        for pct in FRACTIONS_PCT:
            acc, f1 = results.worse(config, pct)
            out[f"acc_adv{pct}{suffix}"] = round(acc, 4)
            out[f"f1_adv{pct}{suffix}"] = round(f1, 4)
            for kind in KINDS if pct else ():
                label = f"adv{pct}_{kind.value}"
                s = results.get(config, label)
                out[f"acc_{label}{suffix}"] = round(s.accuracy, 4)
                out[f"f1_{label}{suffix}"] = round(s.f1, 4)
                out[f"undecided_{label}{suffix}"] = round(results.undecided[config][label], 4)
                if suffix:
                    out[f"escalation_{label}{suffix}"] = round(s.escalation_rate, 4)
        out[f"undecided_adv0{suffix}"] = round(results.undecided[config]["adv0"], 4)
        if suffix:
            out[f"escalation_adv0{suffix}"] = round(results.get(config, "adv0").escalation_rate, 4)
    comp = results.get("computational", "computational")
    out["acc_computational"] = round(comp.accuracy, 4)
    out["f1_computational"] = round(comp.f1, 4)
    for task in results.tasks:
        c = results.get("computational", "computational", task)
        out[f"acc_computational_{task}"] = round(c.accuracy, 4)
        out[f"f1_computational_{task}"] = round(c.f1, 4)
        for config, suffix in SUFFIX.items():
            for pct in (0, 30):
                acc, f1 = results.worse(config, pct, task)
                out[f"acc_adv{pct}_{task}{suffix}"] = round(acc, 4)
                out[f"f1_adv{pct}_{task}{suffix}"] = round(f1, 4)
    for model, st in results.stats.items():
        out[f"calls_{model}"] = st.calls
        out[f"judged_steps_{model}"] = st.steps
        out[f"parse_failure_rate_{model}"] = round(st.rate(st.parse_failure), 4)
        out[f"request_failure_rate_{model}"] = round(st.rate(st.request_failure), 4)
        out[f"abstain_rate_{model}"] = round(st.rate(st.abstain), 4)
        out[f"no_vote_rate_{model}"] = round(
            st.rate(st.abstain + st.parse_failure + st.request_failure), 4
        )
        out[f"invalid_rate_{model}"] = round(st.rate(st.invalid), 4)
        out[f"step_acc_{model}"] = round(st.correct / st.labelled if st.labelled else 0.0, 4)
        out[f"mistake_step_recall_{model}"] = round(
            st.mistakes_found / st.mistakes if st.mistakes else 0.0, 4
        )
    adv0 = results.get("llm", "adv0")
    out["calls"] = sum(st.calls for st in results.stats.values())
    out["n_traces"] = results.n_traces
    out["traces_with_mistake"] = adv0.with_mistake
    out["n_models"] = len(results.models)
    out["llm_steps"] = max((st.steps for st in results.stats.values()), default=0)
    got = results.collected
    if got is not None:
        out["calls_this_run"] = got.calls
        out["pairs_judged_this_run"] = got.judged_pairs
        out["pairs_reused"] = got.reused_pairs
        out["pairs_failed"] = got.failed_pairs
        out["judge_wall_s"] = round(got.wall_s, 1)
        out["budget_hit"] = int(got.timed_out)
    out["replay_s"] = round(results.replay_s, 1)
    out["wall_s"] = round(results.wall_s, 1)
    return out


def goals(results: Results) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for config, suffix in SUFFIX.items():
        acc0, f10 = results.worse(config, 0)
        acc30, f130 = results.worse(config, 30)
        who = (
            "real local models, LLM tier alone"
            if not suffix
            else "real local models, then SIMULATED humans on escalation"
        )
        out[f"acc_adv30_within_2_points{suffix}"] = {
            "target": "first-mistake accuracy at 30% adversarial stake (worse of flipper and "
            f"colluder) within 0.02 of 0% ({who})",
            "met": acc0 - acc30 <= 0.02,
            "drop": round(acc0 - acc30, 4),
        }
        out[f"f1_adv30_within_2_points{suffix}"] = {
            "target": f"trace F1 at 30% adversarial stake (worse kind) within 0.02 of 0% ({who})",
            "met": f10 - f130 <= 0.02,
            "drop": round(f10 - f130, 4),
        }
    return out


def markdown(results: Results, m: Mapping[str, float | int]) -> str:
    c = results.collected
    lines = [
        "# audit-bbm-llm: TRUST audits of BIG-Bench Mistake with the real local models",
        "",
        f"**The LLM evaluators are REAL** ({', '.join(results.models)}; engine "
        f"`{results.engine}`), greedy decoding; the computational auditor is real and judges "
        "first. **Adversaries are rule-based** (flippers: an adversarial twin of each model "
        "votes against it; colluders: know the gold label, vote `valid` on the mistake and "
        "`invalid` on an innocent step). **Human experts are SIMULATED** (gold label, right "
        "95% of the time) and only enter the columns marked *sim. humans*.",
        "",
        f"Each model holds {HONEST_STAKE} units; at x% the adversaries hold x% of the "
        "committee's stake. The LLM tier decides a step when half the committee's stake is "
        f"decisive and the winner leads by {results.margin_bp / 100:.0f}%, else it is "
        "undecided (LLM tier alone) or goes to 5 simulated human experts (majority).",
        "",
        f"Traces: {results.n_traces} ({m['traces_with_mistake']} with a mistake)"
        + (f", {results.limit} per task (seed {results.seed})" if results.limit else "")
        + f". Model calls behind the votes: {m['calls']}"
        + (
            f" ({c.calls} in this run; {c.reused_pairs} (trace, model) pairs reused from the "
            f"votes file; judging took {c.wall_s:.0f} s"
            + (", stopped by the budget" if c.timed_out else "")
            + ")"
            if c is not None
            else ""
        )
        + f". Wall time {results.wall_s:.0f} s.",
        "",
        "## Models (steps they judged)",
        "",
        "| model | steps | calls | parse failure | request failure | abstain | invalid votes | "
        "step accuracy (labelled) | mistake steps flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, st in results.stats.items():
        lines.append(
            f"| {model} | {st.steps} | {st.calls} | {st.rate(st.parse_failure):.1%} | "
            f"{st.rate(st.request_failure):.1%} | {st.rate(st.abstain):.1%} | "
            f"{st.rate(st.invalid):.1%} | {m[f'step_acc_{model}']:.3f} | "
            f"{st.mistakes_found}/{st.mistakes} |"
        )
    lines += [
        "",
        "## Per task (no adversaries)",
        "",
        "| task | traces | with mistake | computational acc | computational F1 | "
        "LLM acc | LLM F1 | LLM adv30 acc (worse) | LLM adv30 F1 (worse) | "
        "+ sim. humans acc | + sim. humans F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task in [*results.tasks, "all"]:
        comp = results.get("computational", "computational", task)
        llm = results.get("llm", "adv0", task)
        acc30, f130 = results.worse("llm", 30, task)
        hum = results.get("llm_sim_humans", "adv0", task)
        lines.append(
            f"| {task} | {llm.traces} | {llm.with_mistake} | {comp.accuracy:.3f} | "
            f"{comp.f1:.3f} | {llm.accuracy:.3f} | {llm.f1:.3f} | {acc30:.3f} | {f130:.3f} | "
            f"{hum.accuracy:.3f} | {hum.f1:.3f} |"
        )
    lines += [
        "",
        "## By adversary level (all tasks)",
        "",
        "| adversarial stake | kind | LLM acc | LLM precision | LLM recall | LLM F1 | "
        "LLM steps undecided | + sim. humans acc | + sim. humans F1 | escalated to sim. humans |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in results.scores["llm"]:
        s = results.get("llm", label)
        h = results.get("llm_sim_humans", label)
        pct, _, kind = label.removeprefix("adv").partition("_")
        lines.append(
            f"| {pct}% | {kind or '-'} | {s.accuracy:.4f} | {s.precision:.4f} | "
            f"{s.recall:.4f} | {s.f1:.4f} | {results.undecided['llm'][label]:.1%} | "
            f"{h.accuracy:.4f} | {h.f1:.4f} | {h.escalation_rate:.1%} |"
        )
    lines += ["", "## Goals", ""]
    for name, goal in goals(results).items():
        lines.append(
            f"- {name}: {'met' if goal['met'] else 'NOT met'} (drop {goal['drop']:.4f}): "
            f"{goal['target']}"
        )
    return "\n".join(lines) + "\n"


def write_outputs(
    results: Results, out_dir: Path, argv: Sequence[str], votes_path: Path
) -> dict[str, Path]:
    """Write NAME.json (project format) and NAME.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = metrics(results)
    prefix = "".join(
        f"{name}={os.environ[name]} "
        for name in ("GOA_LOCAL_ENGINE", "GOA_JSON_GRAMMAR")
        if os.environ.get(name)
    )
    json_path = write_result(
        NAME,
        metrics=m,
        goals=goals(results),
        simulated=False,
        command=f"{prefix}python -m benchmarks.audit_bbm_llm " + " ".join(argv),
        directory=out_dir,
        extra={
            "note": "REAL local models as LLM evaluators (votes collected once, then the "
            "consensus replayed at each adversary level); rule-based adversaries; the "
            "headline metrics (no suffix) involve no simulated component. Metrics ending in "
            "_sim_humans add SIMULATED human experts (they know the gold label) on "
            "escalation.",
            "engine": results.engine,
            "gpu": gpu_name() if results.engine.startswith("transformers") else None,
            "batching": transformers_batching(),
            "models": results.models,
            "votes_file": str(votes_path),
            "config": {
                "limit_per_task": results.limit,
                "seed": results.seed,
                "honest_stake": HONEST_STAKE,
                "adversary_stake_per_model": {str(p): adversary_stake(1, p) for p in FRACTIONS_PCT},
                "llm_quorum_share_bp": QUORUM_SHARE_BP,
                "llm_margin_bp": results.margin_bp,
                "humans": HUMANS,
                "human_accuracy": BenchConfig().human_accuracy,
                "params_adv0": asdict(
                    committee_params(len(results.models), 0, margin_bp=results.margin_bp)
                ),
            },
            "per_model": {model: asdict(s) for model, s in results.stats.items()},
            "scores": {
                config: {
                    label: {task: asdict(s) for task, s in per.items()}
                    for label, per in by_label.items()
                }
                for config, by_label in results.scores.items()
            },
        },
    )
    md_path = out_dir / f"{NAME}.md"
    md_path.write_text(markdown(results, m), encoding="utf-8")
    return {"json": json_path, "md": md_path}


# ---------------------------------------------------------------------- main


async def _prepare_all(traces: Sequence[Trace]) -> list[Prepared]:
    computational = ComputationalAuditor()
    return [await prepare(t, computational) for t in traces]


def run(
    traces: Sequence[Trace],
    evaluators: Sequence[Evaluator],
    store: VoteStore,
    settings: JudgeSettings,
    *,
    concurrency: int = 256,
    budget_s: float | None = None,
    margin_bp: int = MARGIN_BP,
    seed: int = 0,
    quiet: bool = False,
    replay_only: bool = False,
) -> Results:
    """Collect the votes (or reuse them), then replay and score every setting."""
    started = time.perf_counter()
    prepared = asyncio.run(_prepare_all(traces))
    collected = asyncio.run(
        collect(
            prepared,
            evaluators,
            store,
            settings,
            concurrency=concurrency,
            budget_s=budget_s,
            quiet=quiet,
            replay_only=replay_only,
        )
    )
    engines = sorted({e.engine for e in evaluators})
    results = score_all(
        prepared,
        collected.votes,
        [e.model for e in evaluators],
        margin_bp=margin_bp,
        seed=seed,
        engine=",".join(engines),
    )
    results.collected = collected
    results.wall_s = time.perf_counter() - started
    return results


def main(
    argv: Sequence[str] | None = None,
    *,
    evaluators: Sequence[Evaluator] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """The command line; ``evaluators`` replaces the pool's (tests pass scripted ones)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--limit", type=int, default=40, help="traces per task (seeded sample; 0: all)"
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    parser.add_argument("--pool", default="local")
    parser.add_argument("--models", default="", help="comma-separated card ids of the pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=256, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=JudgeSettings.max_tokens)
    parser.add_argument("--max-retries", type=int, default=JudgeSettings.max_retries)
    parser.add_argument("--margin-bp", type=int, default=MARGIN_BP)
    parser.add_argument("--budget-s", type=float, default=None, help="stop judging after")
    parser.add_argument("--votes", type=Path, default=None, help="JSONL of cached votes")
    parser.add_argument("--response-cache", action="store_true")
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="score the votes file only, asking no model (set GOA_LOCAL_ENGINE, and "
        "GOA_JSON_GRAMMAR=0 for votes cast without a grammar, to the engine "
        "that cast the votes)",
    )
    parser.add_argument("--data", type=Path, default=None, help="BIG-Bench Mistake folder")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks: {', '.join(unknown)}")
    limit = args.limit if args.limit and args.limit > 0 else None
    traces = select_traces(load_traces(args.data, tasks=tasks), limit, args.seed)
    if evaluators is None:
        models = [m for m in args.models.split(",") if m]
        evaluators = pool_evaluators(args.pool, models, cache=args.response_cache)
    votes_path = args.votes or args.out / f"{NAME}.votes.jsonl"
    if votes_path.suffix == ".gz" and not args.replay_only:
        parser.error(
            f"--votes {votes_path}: a gzipped votes file is read only; "
            "give --replay-only, or gunzip it to add votes"
        )
    settings = JudgeSettings(max_tokens=args.max_tokens, max_retries=args.max_retries)
    results = run(
        traces,
        evaluators,
        VoteStore(votes_path),
        settings,
        concurrency=args.concurrency,
        budget_s=args.budget_s,
        margin_bp=args.margin_bp,
        seed=args.seed,
        quiet=quiet,
        replay_only=args.replay_only,
    )
    results.limit = limit
    paths = write_outputs(
        results, args.out, list(argv) if argv is not None else sys.argv[1:], votes_path
    )
    m = metrics(results)
    if not quiet:
        for pct in FRACTIONS_PCT:
            print(
                f"adv{pct:2d}%  LLM acc={m[f'acc_adv{pct}']:.4f} f1={m[f'f1_adv{pct}']:.4f}   "
                f"+sim humans acc={m[f'acc_adv{pct}_sim_humans']:.4f} "
                f"f1={m[f'f1_adv{pct}_sim_humans']:.4f}"
            )
        print(
            f"computational: acc={m['acc_computational']:.4f} f1={m['f1_computational']:.4f}; "
            f"{results.n_traces} traces, {m['calls']} calls, {results.wall_s:.1f} s; "
            f"wrote {paths['json']}"
        )
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
