"""TRUST audits of every BIG-Bench Mistake trace: first-mistake accuracy and trace-level F1.

Every trace of the five BIG-Bench Mistake tasks (``$GOA_SHARED_DATA/trust/big-bench-mistake``,
else ``../shared/data/...``) goes through :func:`trust.audit.audit_trace` and is scored:

* **first-mistake accuracy**: over traces *with* a mistake, the share where the audit's
  ``first_faulty_index`` equals the gold ``mistake_index``;
* **trace F1** for "has a mistake": positive when ``mistake_index`` is not null, predicted
  positive when the audit's verdict is ``invalid``.

Configurations
--------------
``computational``
    :class:`trust.auditors.ComputationalAuditor` alone. REAL and deterministic: the arithmetic
    is checked, nothing is simulated (it only decides steps with arithmetic in them, so it
    matters on ``multistep_arithmetic``; elsewhere most steps stay undecided).
``simulated``
    The computational auditor, then a committee of SIMULATED LLM evaluators, then SIMULATED
    human experts on escalation. A simulated auditor knows the trace's gold label (its
    ``mistake_index``, looked up from the segment's target id ``stepN``, 1-based) and is right
    with probability ``p`` (0.8 for evaluators, 0.95 for humans), drawn from a RNG seeded by
    (seed, trace, auditor, step), so every run is reproducible and every adversary level sees
    the same honest opinions. "Right" is ``invalid`` on the mistake step and ``valid`` on the
    steps before it (on every step of a trace without a mistake). Steps *after* the first
    mistake carry no label in BIG-Bench Mistake, so every simulated auditor **abstains** on
    them: they end ``undecided`` and give no credit, so a missed mistake step cannot be
    rescued by a chance ``invalid`` later in the trace.
Adversaries
    0/10/20/30/40% of the evaluators (equal stakes, so that share of the evaluator stake; a
    fixed seeded order, so the sets are nested) are adversarial, of one kind per run:
    ``flipper`` votes the opposite of its honest opinion; ``colluder`` (all colluders alike)
    votes ``valid`` on the true mistake step and ``invalid`` on one innocent step before it
    (chosen by a seed shared per trace; on a trace without a mistake any step), the truth on
    other labelled steps and abstains after the mistake. Humans are always honest.

The committee (chosen once, for every level): 30 evaluators, 9 replicas per step, each
evaluator sees at most half of a trace (cap 0.5; a trace where no assignment fits under the cap
is re-run with cap 0.75, then 1.0, and counted), the LLM tier decides only when all 9
replicas vote the same way (quorum 9 auditors, margin 100%), else 5 human experts decide by
majority (quorum 3, margin 20%).

Usage: ``.venv/bin/python -m benchmarks.audit_bbm [--limit N] [--seed S] [--workers W]``;
writes ``benchmarks/results/audit-bbm.{json,md,png}`` (``--out DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from benchmarks.results_file import RESULTS_DIR, write_result
from goa.eval.datasets import shared_data_dir
from trust.audit import AuditConfig, AuditReport, audit_trace
from trust.auditors import Auditor, AuditorBase, ComputationalAuditor
from trust.consensus import ConsensusParams, Decision, TierRules
from trust.decompose import decompose
from trust.segment import AssignmentError, Segment
from trust.verdict import Tier, Verdict, Vote

NAME = "audit-bbm"
TASKS: tuple[str, ...] = (
    "dyck_languages",
    "logical_deduction",
    "multistep_arithmetic",
    "tracking_shuffled_objects",
    "word_sorting",
)
FRACTIONS_PCT: tuple[int, ...] = (0, 10, 20, 30, 40)
CAP_LADDER: tuple[float, ...] = (0.75, 1.0)
"""Caps tried, in order, after the configured one when no assignment fits under it."""
BLANK_STEP = "(empty step)"
_STEP_ID = re.compile(r"^step(\d+)$")


class Role(StrEnum):
    """How a simulated auditor votes."""

    HONEST = "honest"
    FLIPPER = "flipper"
    COLLUDER = "colluder"


# ---------------------------------------------------------------------- data


@dataclass(frozen=True)
class Trace:
    """One BIG-Bench Mistake trace. Blank steps are kept as :data:`BLANK_STEP` so that step
    ``i`` of the audit is step ``i`` of the data (the decomposer drops blank items)."""

    task: str
    index: int
    steps: tuple[str, ...]
    mistake_index: int | None
    goal: str | None = field(default=None, compare=False, repr=False)
    """The task's input (the question), when the data has one; the audits of this module do
    not use it (the simulated auditors know the gold label), real evaluators do."""

    @property
    def key(self) -> str:
        return f"{self.task}:{self.index}"


def data_dir() -> Path:
    """The BIG-Bench Mistake folder of the shared data (``$GOA_SHARED_DATA`` honoured)."""
    return shared_data_dir() / "trust" / "big-bench-mistake"


def load_traces(
    directory: Path | None = None, *, limit: int | None = None, tasks: Sequence[str] = TASKS
) -> list[Trace]:
    """Every trace of ``tasks`` (the first ``limit`` per task when given), in file order."""
    folder = directory or data_dir()
    traces: list[Trace] = []
    for task in tasks:
        lines = (folder / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        for index, row in enumerate(rows[:limit] if limit is not None else rows):
            steps = tuple(s if s.strip() else BLANK_STEP for s in row["steps"])
            mistake = row["mistake_index"]
            traces.append(
                Trace(
                    task,
                    index,
                    steps,
                    None if mistake is None else int(mistake),
                    goal=row.get("input"),
                )
            )
    return traces


# ---------------------------------------------------------------------- simulated auditors


@dataclass(frozen=True)
class Gold:
    """What a simulated auditor knows about the trace it audits."""

    key: str
    mistake_index: int | None
    n_steps: int
    innocent: int | None
    """The innocent step colluders call ``invalid`` (0-based), None when there is none."""

    @classmethod
    def of(cls, trace: Trace, seed: int) -> Gold:
        rng = random.Random(f"{seed}|collude|{trace.key}")
        before = trace.mistake_index if trace.mistake_index is not None else len(trace.steps)
        innocent = rng.randrange(before) if before > 0 else None
        return cls(trace.key, trace.mistake_index, len(trace.steps), innocent)

    def truth(self, index: int) -> Vote | None:
        """The correct vote on step ``index`` (0-based); None after the first mistake."""
        if self.mistake_index is None or index < self.mistake_index:
            return Vote.VALID
        if index == self.mistake_index:
            return Vote.INVALID
        return None


def step_index(segment_id: str) -> int:
    """``"stepN"`` (1-based) -> N - 1."""
    match = _STEP_ID.match(segment_id)
    if match is None:
        raise ValueError(f"not a step segment id: {segment_id!r}")
    return int(match.group(1)) - 1


def flip(vote: Vote) -> Vote:
    """``valid`` <-> ``invalid``; ``abstain`` stays."""
    if vote is Vote.VALID:
        return Vote.INVALID
    if vote is Vote.INVALID:
        return Vote.VALID
    return vote


def honest_vote(gold: Gold, index: int, accuracy: float, rng: random.Random) -> Vote:
    """The correct vote with probability ``accuracy``, else its opposite; abstain after the
    first mistake."""
    truth = gold.truth(index)
    if truth is None:
        return Vote.ABSTAIN
    return truth if rng.random() < accuracy else flip(truth)


def colluder_vote(gold: Gold, index: int) -> Vote:
    """The coordinated wrong vote: ``valid`` on the mistake, ``invalid`` on the innocent step,
    the truth elsewhere (abstain after the mistake)."""
    if index == gold.mistake_index:
        return Vote.VALID
    if index == gold.innocent:
        return Vote.INVALID
    truth = gold.truth(index)
    return Vote.ABSTAIN if truth is None else truth


class SimulatedAuditor(AuditorBase):
    """A SIMULATED evaluator or human expert that knows the trace's gold label."""

    def __init__(
        self,
        auditor_id: str,
        gold: Gold,
        *,
        accuracy: float,
        role: Role = Role.HONEST,
        tier: Tier = Tier.LLM,
        seed: int = 0,
    ) -> None:
        super().__init__(auditor_id, tier)
        self.gold = gold
        self.accuracy = accuracy
        self.role = role
        self.seed = seed

    def vote(self, index: int) -> Vote:
        """This auditor's vote on step ``index`` (0-based); the same on every call."""
        if self.role is Role.COLLUDER:
            return colluder_vote(self.gold, index)
        rng = random.Random(f"{self.seed}|{self.gold.key}|{self._id}|{index}")
        honest = honest_vote(self.gold, index, self.accuracy, rng)
        return flip(honest) if self.role is Role.FLIPPER else honest

    async def judge(self, segment: Segment) -> Verdict:
        vote = self.vote(step_index(segment.id))
        if vote is Vote.ABSTAIN:
            return Verdict.abstain(f"{self._id}: no label after the first mistake")
        return Verdict(vote=vote, confidence=self.accuracy, reason=f"{self._id} (simulated)")


# ---------------------------------------------------------------------- configuration


def default_params(replicas: int, humans: int) -> ConsensusParams:
    """LLM tier: all ``replicas`` must vote and agree; human tier: a plain majority."""
    need = humans // 2 + 1
    return ConsensusParams(
        llm=TierRules(
            min_stake=1_000,
            quorum_stake=1_000 * replicas,
            quorum_auditors=replicas,
            margin_bp=10_000,
        ),
        human=TierRules(
            min_stake=1_000,
            quorum_stake=1_000 * need,
            quorum_auditors=need,
            margin_bp=10_000 // humans if humans else 0,
        ),
    )


@dataclass(frozen=True)
class BenchConfig:
    """The committee, chosen once for every adversary level."""

    evaluators: int = 30
    replicas: int = 9
    cap: float = 0.5
    humans: int = 5
    evaluator_accuracy: float = 0.8
    human_accuracy: float = 0.95
    seed: int = 0

    @property
    def params(self) -> ConsensusParams:
        return default_params(self.replicas, self.humans)


@dataclass(frozen=True)
class Setting:
    """One run: ``computational`` alone, or the simulated committee with ``fraction_pct`` of
    it adversarial of ``kind``."""

    name: str
    kind: Role | None = None
    fraction_pct: int = 0

    @property
    def computational_only(self) -> bool:
        return self.name == "computational"


def settings() -> list[Setting]:
    """The computational run, the simulated run without adversaries, then kind x level."""
    out = [Setting("computational"), Setting("simulated", None, 0)]
    for kind in (Role.FLIPPER, Role.COLLUDER):
        out.extend(Setting("simulated", kind, pct) for pct in FRACTIONS_PCT if pct)
    return out


def committee(
    trace: Trace, setting: Setting, config: BenchConfig
) -> tuple[list[Auditor], list[Auditor]]:
    """The evaluators and humans for ``trace`` (adversaries first in a fixed seeded order)."""
    gold = Gold.of(trace, config.seed)
    ids = [f"llm{i:02d}" for i in range(config.evaluators)]
    order = list(ids)
    random.Random(f"{config.seed}|adversaries").shuffle(order)
    bad = set(order[: round(config.evaluators * setting.fraction_pct / 100)])
    evaluators: list[Auditor] = [
        SimulatedAuditor(
            a,
            gold,
            accuracy=config.evaluator_accuracy,
            role=setting.kind if (a in bad and setting.kind) else Role.HONEST,
            seed=config.seed,
        )
        for a in ids
    ]
    humans: list[Auditor] = [
        SimulatedAuditor(
            f"human{i}",
            gold,
            accuracy=config.human_accuracy,
            tier=Tier.HUMAN,
            seed=config.seed,
        )
        for i in range(config.humans)
    ]
    return evaluators, humans


# ---------------------------------------------------------------------- running


@dataclass(frozen=True)
class TraceOutcome:
    """What the audit of one trace found, next to the gold label."""

    task: str
    mistake_index: int | None
    verdict: str
    first_faulty_index: int | None
    exposure_single: float = 0.0
    voted_steps: int = 0
    """Steps that went to the stake vote (the computational auditor abstained)."""
    escalated_steps: int = 0
    cap: float = 1.0


def outcome_of(trace: Trace, report: AuditReport, cap: float) -> TraceOutcome:
    voted = [s for s in report.steps if s.tier in (Tier.LLM, Tier.HUMAN)]
    return TraceOutcome(
        task=trace.task,
        mistake_index=trace.mistake_index,
        verdict=report.verdict.value,
        first_faulty_index=report.first_faulty_index,
        exposure_single=report.exposure.single,
        voted_steps=len(voted),
        escalated_steps=sum(s.tier is Tier.HUMAN for s in voted),
        cap=cap,
    )


async def audit_one(
    trace: Trace, setting: Setting, config: BenchConfig, computational: Auditor
) -> TraceOutcome:
    """Audit ``trace`` in ``setting``; the cap is relaxed along :data:`CAP_LADDER` only when
    no assignment fits."""
    # Every auditor (the requester included) opens with ``deposit``; the requester pays the
    # fee for every voted step, so the default deposit would run out on long dyck traces.
    seed = zlib.crc32(f"{config.seed}|{trace.key}".encode())
    hdag = decompose(list(trace.steps))
    if setting.computational_only:
        report = await audit_trace(hdag, computational=computational, config=AuditConfig(seed=seed))
        return outcome_of(trace, report, 1.0)
    evaluators, humans = committee(trace, setting, config)
    caps = (config.cap, *(c for c in CAP_LADDER if c > config.cap))
    for cap in caps:
        audit_config = AuditConfig(
            replicas=config.replicas,
            cap=cap,
            deposit=10**12,
            seed=seed,
            params=config.params,
        )
        try:
            report = await audit_trace(
                hdag,
                computational=computational,
                evaluators=evaluators,
                humans=humans,
                config=audit_config,
            )
        except AssignmentError:
            if cap >= 1.0:
                raise
            continue
        return outcome_of(trace, report, cap)
    raise AssertionError("unreachable: cap 1.0 always has an assignment")


async def _run_async(
    traces: Sequence[Trace], setting: Setting, config: BenchConfig
) -> list[TraceOutcome]:
    computational = ComputationalAuditor()
    return [await audit_one(t, setting, config, computational) for t in traces]


def run_setting(job: tuple[Sequence[Trace], Setting, BenchConfig]) -> list[TraceOutcome]:
    """Audit every trace in one setting (a process-pool job)."""
    traces, setting, config = job
    return asyncio.run(_run_async(traces, setting, config))


# ---------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scores:
    traces: int
    with_mistake: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    escalation_rate: float
    mean_exposure_single: float
    cap_relaxed: int


def first_mistake_accuracy(outcomes: Sequence[TraceOutcome]) -> float:
    """Over traces with a mistake, the share whose first faulty step is the gold one."""
    marked = [o for o in outcomes if o.mistake_index is not None]
    if not marked:
        return 0.0
    return sum(o.first_faulty_index == o.mistake_index for o in marked) / len(marked)


def trace_prf(outcomes: Sequence[TraceOutcome]) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``verdict == invalid`` for "the trace has a mistake"."""
    tp = sum(o.mistake_index is not None and o.verdict == Decision.INVALID for o in outcomes)
    fp = sum(o.mistake_index is None and o.verdict == Decision.INVALID for o in outcomes)
    fn = sum(o.mistake_index is not None and o.verdict != Decision.INVALID for o in outcomes)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(outcomes: Sequence[TraceOutcome], cap: float = 1.0) -> Scores:
    precision, recall, f1 = trace_prf(outcomes)
    voted = sum(o.voted_steps for o in outcomes)
    return Scores(
        traces=len(outcomes),
        with_mistake=sum(o.mistake_index is not None for o in outcomes),
        accuracy=first_mistake_accuracy(outcomes),
        precision=precision,
        recall=recall,
        f1=f1,
        escalation_rate=sum(o.escalated_steps for o in outcomes) / voted if voted else 0.0,
        mean_exposure_single=(
            sum(o.exposure_single for o in outcomes) / len(outcomes) if outcomes else 0.0
        ),
        cap_relaxed=sum(o.cap > cap for o in outcomes),
    )


def setting_label(setting: Setting) -> str:
    if setting.computational_only:
        return "computational"
    if setting.kind is None:
        return "adv0"
    return f"adv{setting.fraction_pct}_{setting.kind.value}"


@dataclass
class Results:
    """Scores per setting label, overall (task ``all``) and per task."""

    config: BenchConfig
    scores: dict[str, dict[str, Scores]] = field(default_factory=dict)
    wall_s: float = 0.0

    def get(self, label: str, task: str = "all") -> Scores:
        return self.scores[label][task]

    def worse(self, pct: int, task: str = "all") -> tuple[float, float]:
        """(accuracy, F1) at ``pct``: the worse of flipper and colluder."""
        if pct == 0:
            s = self.get("adv0", task)
            return s.accuracy, s.f1
        kinds = [self.get(f"adv{pct}_{k.value}", task) for k in (Role.FLIPPER, Role.COLLUDER)]
        return min(s.accuracy for s in kinds), min(s.f1 for s in kinds)


def run_all(
    traces: Sequence[Trace], config: BenchConfig, *, workers: int = 2, slices: int = 4
) -> Results:
    """Every setting over ``traces``; each setting's traces are cut into ``slices``
    interleaved jobs so that ``workers`` processes share the load evenly."""
    cuts = max(1, slices if workers > 1 else 1)
    jobs = [(traces[i::cuts], s, config) for s in settings() for i in range(cuts)]
    started = time.perf_counter()
    if workers <= 1:
        parts = [run_setting(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run_setting, jobs))
    results = Results(config, wall_s=time.perf_counter() - started)
    tasks = sorted({t.task for t in traces})
    for n, setting in enumerate(settings()):
        found = [o for part in parts[n * cuts : (n + 1) * cuts] for o in part]
        cap = 1.0 if setting.computational_only else config.cap
        per: dict[str, Scores] = {"all": score(found, cap)}
        for task in tasks:
            per[task] = score([o for o in found if o.task == task], cap)
        results.scores[setting_label(setting)] = per
    return results


# ---------------------------------------------------------------------- outputs


def metrics(results: Results) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    tasks = [t for t in results.scores["adv0"] if t != "all"]
    for pct in FRACTIONS_PCT:
        acc, f1 = results.worse(pct)
        out[f"acc_adv{pct}"] = round(acc, 4)
        out[f"f1_adv{pct}"] = round(f1, 4)
        if pct:
            for kind in (Role.FLIPPER, Role.COLLUDER):
                s = results.get(f"adv{pct}_{kind.value}")
                out[f"acc_adv{pct}_{kind.value}"] = round(s.accuracy, 4)
                out[f"f1_adv{pct}_{kind.value}"] = round(s.f1, 4)
                out[f"escalation_adv{pct}_{kind.value}"] = round(s.escalation_rate, 4)
    out["escalation_adv0"] = round(results.get("adv0").escalation_rate, 4)
    comp = results.get("computational")
    out["acc_computational"] = round(comp.accuracy, 4)
    out["f1_computational"] = round(comp.f1, 4)
    for task in tasks:
        c = results.get("computational", task)
        out[f"acc_computational_{task}"] = round(c.accuracy, 4)
        out[f"f1_computational_{task}"] = round(c.f1, 4)
        for pct in (0, 30):
            acc, f1 = results.worse(pct, task)
            out[f"acc_adv{pct}_{task}"] = round(acc, 4)
            out[f"f1_adv{pct}_{task}"] = round(f1, 4)
    adv0 = results.get("adv0")
    out["mean_exposure_single"] = round(adv0.mean_exposure_single, 4)
    out["cap_relaxed_traces"] = adv0.cap_relaxed
    out["traces"] = adv0.traces
    out["traces_with_mistake"] = adv0.with_mistake
    out["wall_s"] = round(results.wall_s, 1)
    return out


def goals(results: Results) -> dict[str, dict[str, Any]]:
    acc0, f10 = results.worse(0)
    acc30, f130 = results.worse(30)
    return {
        "acc_adv30_within_2_points": {
            "target": "first-mistake accuracy at 30% adversarial evaluator stake (worse of "
            "flipper and colluder) within 0.02 of 0% (simulated evaluators)",
            "met": acc0 - acc30 <= 0.02,
            "drop": round(acc0 - acc30, 4),
        },
        "f1_adv30_within_2_points": {
            "target": "trace F1 at 30% adversarial evaluator stake (worse kind) within 0.02 "
            "of 0% (simulated evaluators)",
            "met": f10 - f130 <= 0.02,
            "drop": round(f10 - f130, 4),
        },
    }


def markdown(results: Results, m: dict[str, float | int]) -> str:
    c = results.config
    tasks = [t for t in results.scores["adv0"] if t != "all"]
    lines = [
        "# audit-bbm: TRUST audits of BIG-Bench Mistake",
        "",
        "**The LLM evaluators and human experts are SIMULATED** (they know the gold label and "
        f"are right with probability {c.evaluator_accuracy} / {c.human_accuracy}); the "
        "`computational` figures are real arithmetic checks. Consensus, stakes, segmentation "
        "and the cap are the real `trust` code.",
        "",
        f"Committee, fixed for every adversary level: {c.evaluators} evaluators, "
        f"{c.replicas} replicas per step, cap {c.cap}, {c.humans} human experts. The LLM tier "
        f"decides a step only when all {c.replicas} replicas agree (quorum {c.replicas}, margin "
        "100%); any dissent goes to the humans, who decide by majority. Reasoning: with "
        f"evaluators right {c.evaluator_accuracy:.0%} of the time a single dissent is already "
        "a signal, and a wrong unanimous committee needs all nine replicas wrong "
        "(0.2^9 without adversaries, about 0.38^9 at 30% flippers), so adversaries can mostly "
        "only push steps to the humans, not decide them; the price is human workload "
        "(escalation rate below). 9 of 30 replicas fit under a cap of 0.5 on most traces.",
        "",
        "Steps after the first mistake have no gold label: every simulated auditor abstains on "
        "them (they end undecided), so a missed mistake step gets no credit from a chance "
        "`invalid` later.",
        "",
        f"Traces: {m['traces']} ({m['traces_with_mistake']} with a mistake); the cap was "
        f"relaxed (0.75, then 1.0) on {m['cap_relaxed_traces']} traces where no assignment "
        f"fits under {c.cap}. Mean single-auditor exposure: {m['mean_exposure_single']:.3f}. "
        f"Wall time: {results.wall_s:.0f} s.",
        "",
        "## Per task",
        "",
        "| task | traces | with mistake | computational acc | computational F1 | "
        "adv0 acc | adv0 F1 | adv30 acc (worse) | adv30 F1 (worse) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task in [*tasks, "all"]:
        comp = results.get("computational", task)
        a0 = results.get("adv0", task)
        acc30, f130 = results.worse(30, task)
        lines.append(
            f"| {task} | {a0.traces} | {a0.with_mistake} | {comp.accuracy:.3f} | "
            f"{comp.f1:.3f} | {a0.accuracy:.3f} | {a0.f1:.3f} | {acc30:.3f} | {f130:.3f} |"
        )
    lines += [
        "",
        "## By adversary level (all tasks)",
        "",
        "| adversarial stake | kind | first-mistake acc | precision | recall | F1 | "
        "escalated to humans |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for label, per in results.scores.items():
        if label == "computational":
            continue
        s = per["all"]
        pct, _, kind = label.removeprefix("adv").partition("_")
        lines.append(
            f"| {pct}% | {kind or '-'} | {s.accuracy:.4f} | {s.precision:.4f} | "
            f"{s.recall:.4f} | {s.f1:.4f} | {s.escalation_rate:.1%} |"
        )
    lines += ["", "## Goals", ""]
    for name, goal in goals(results).items():
        lines.append(f"- {name}: {'met' if goal['met'] else 'NOT met'} (drop {goal['drop']:.4f})")
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind in (Role.FLIPPER, Role.COLLUDER):
        labels = ["adv0", *(f"adv{p}_{kind.value}" for p in FRACTIONS_PCT if p)]
        rows = [results.get(label) for label in labels]
        ax.plot(FRACTIONS_PCT, [r.accuracy for r in rows], marker="o", label=f"acc, {kind}")
        ax.plot(FRACTIONS_PCT, [r.f1 for r in rows], marker="x", ls="--", label=f"F1, {kind.value}")
    comp = results.get("computational")
    ax.axhline(comp.accuracy, color="grey", lw=0.8, ls=":", label="acc, computational alone")
    ax.set(
        xlabel="adversarial evaluator stake (%)",
        ylabel="score",
        title="BIG-Bench Mistake audits (SIMULATED evaluators)",
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results: Results, out_dir: Path, argv: Sequence[str]) -> dict[str, Path]:
    """Write NAME.json (project format), NAME.md and NAME.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = metrics(results)
    json_path = write_result(
        NAME,
        metrics=m,
        goals=goals(results),
        simulated=True,
        command="python -m benchmarks.audit_bbm " + " ".join(argv),
        directory=out_dir,
        extra={
            "note": "SIMULATED LLM evaluators and human experts (they know the gold label "
            "and are right with a set probability) driving the real trust.audit, "
            "trust.consensus and trust.segment code; the computational figures are real "
            "arithmetic checks. No model or person was asked.",
            "config": {
                **asdict(results.config),
                "params": asdict(results.config.params),
                "cap_ladder": list(CAP_LADDER),
                "after_mistake": "abstain",
            },
            "scores": {
                label: {task: asdict(s) for task, s in per.items()}
                for label, per in results.scores.items()
            },
        },
    )
    md_path = out_dir / f"{NAME}.md"
    md_path.write_text(markdown(results, m), encoding="utf-8")
    png_path = out_dir / f"{NAME}.png"
    plot(results, png_path)
    return {"json": json_path, "md": md_path, "png": png_path}


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="traces per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="BIG-Bench Mistake folder")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    config = BenchConfig(seed=args.seed)
    traces = load_traces(args.data, limit=args.limit)
    results = run_all(traces, config, workers=args.workers)
    paths = write_outputs(results, args.out, list(argv) if argv is not None else [])
    m = metrics(results)
    for pct in FRACTIONS_PCT:
        print(f"adv{pct:2d}%  acc={m[f'acc_adv{pct}']:.4f}  f1={m[f'f1_adv{pct}']:.4f}")
    print(
        f"computational: acc={m['acc_computational']:.4f} f1={m['f1_computational']:.4f}; "
        f"{results.wall_s:.1f} s; wrote {paths['json']}"
    )
    return paths


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
