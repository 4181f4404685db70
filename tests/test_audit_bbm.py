"""The BIG-Bench Mistake audit benchmark's pieces: simulated auditors, scoring, a tiny run."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from benchmarks import audit_bbm
from benchmarks.audit_bbm import (
    BenchConfig,
    Gold,
    Role,
    Setting,
    SimulatedAuditor,
    Trace,
    TraceOutcome,
    audit_one,
    colluder_vote,
    first_mistake_accuracy,
    honest_vote,
    load_traces,
    step_index,
    trace_prf,
)
from benchmarks.results_file import RESULTS_DIR
from trust.auditors import ComputationalAuditor
from trust.decompose import decompose
from trust.segment import segment
from trust.verdict import Vote

TRACE = Trace("toy", 0, ("a", "b", "c", "d", "e"), 2)


def test_step_index_is_zero_based_from_one_based_ids() -> None:
    assert step_index("step1") == 0
    assert step_index("step12") == 11
    with pytest.raises(ValueError, match="not a step"):
        step_index("step1.op1")


def test_gold_truth_before_at_and_after_the_mistake() -> None:
    gold = Gold.of(TRACE, seed=0)
    assert [gold.truth(i) for i in range(5)] == [Vote.VALID, Vote.VALID, Vote.INVALID, None, None]
    assert gold.innocent is not None
    assert 0 <= gold.innocent < 2
    clean = Gold.of(Trace("toy", 1, ("a", "b"), None), seed=0)
    assert [clean.truth(i) for i in range(2)] == [Vote.VALID, Vote.VALID]
    assert Gold.of(Trace("toy", 2, ("a", "b"), 0), seed=0).innocent is None


def test_perfect_honest_auditor_votes_the_gold_label_on_a_real_trace(shared_data: Path) -> None:
    folder = shared_data / "trust" / "big-bench-mistake"
    trace = next(t for t in load_traces(folder, limit=5) if t.mistake_index)
    gold = Gold.of(trace, seed=0)
    auditor = SimulatedAuditor("e0", gold, accuracy=1.0)
    segments = segment(decompose(list(trace.steps)))
    steps = [s for s in segments if s.id.count(".") == 0 and s.id.startswith("step")]
    assert len(steps) == len(trace.steps)
    votes = [asyncio.run(auditor.judge(s)).vote for s in steps]
    m = trace.mistake_index
    assert m is not None
    assert votes[:m] == [Vote.VALID] * m
    assert votes[m] is Vote.INVALID
    assert all(v is Vote.ABSTAIN for v in votes[m + 1 :])


def test_simulated_votes_are_seeded_and_flipper_is_the_opposite() -> None:
    gold = Gold.of(TRACE, seed=3)
    honest = SimulatedAuditor("e1", gold, accuracy=0.8, seed=3)
    flipper = SimulatedAuditor("e1", gold, accuracy=0.8, seed=3, role=Role.FLIPPER)
    for i in range(3):
        assert honest.vote(i) == honest.vote(i)
        assert flipper.vote(i) is (Vote.INVALID if honest.vote(i) is Vote.VALID else Vote.VALID)
    assert flipper.vote(4) is Vote.ABSTAIN
    hits = sum(honest_vote(gold, 2, 0.8, random.Random(n)) is Vote.INVALID for n in range(2_000))
    assert 0.75 < hits / 2_000 < 0.85


def test_colluders_agree_on_the_coordinated_wrong_votes() -> None:
    gold = Gold.of(TRACE, seed=0)
    votes = [colluder_vote(gold, i) for i in range(5)]
    assert votes[2] is Vote.VALID
    assert gold.innocent is not None
    assert votes[gold.innocent] is Vote.INVALID
    assert votes[3:] == [Vote.ABSTAIN, Vote.ABSTAIN]
    a = SimulatedAuditor("c1", gold, accuracy=0.8, role=Role.COLLUDER)
    b = SimulatedAuditor("c2", gold, accuracy=0.8, role=Role.COLLUDER, seed=9)
    assert [a.vote(i) for i in range(5)] == [b.vote(i) for i in range(5)] == votes


def _o(mistake: int | None, verdict: str, first: int | None) -> TraceOutcome:
    return TraceOutcome("t", mistake, verdict, first)


def test_first_mistake_accuracy_and_f1_on_hand_made_outcomes() -> None:
    outcomes = [
        _o(2, "invalid", 2),  # TP, located
        _o(1, "invalid", 0),  # TP, wrong step
        _o(3, "undecided", None),  # FN
        _o(None, "invalid", 1),  # FP
        _o(None, "valid", None),  # TN
        _o(None, "undecided", None),  # TN
    ]
    assert first_mistake_accuracy(outcomes) == pytest.approx(1 / 3)
    precision, recall, f1 = trace_prf(outcomes)
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 3)
    assert f1 == pytest.approx(2 / 3)
    assert trace_prf([_o(None, "valid", None)]) == (0.0, 0.0, 0.0)
    assert first_mistake_accuracy([]) == 0.0


def test_unanimous_honest_committee_locates_the_mistake() -> None:
    trace = Trace("toy", 7, ("We begin.", "Then this.", "Wrong here.", "After."), 2)
    config = BenchConfig(evaluators=10, replicas=3, cap=1.0, humans=3, evaluator_accuracy=1.0)
    outcome = asyncio.run(
        audit_one(trace, Setting("simulated"), config, ComputationalAuditor(run_code=False))
    )
    assert outcome.verdict == "invalid"
    assert outcome.first_faulty_index == 2
    assert outcome.escalated_steps == 1  # the unlabelled last step goes to the humans


def test_limit_3_run_writes_only_into_the_given_folder(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = sorted(RESULTS_DIR.iterdir()) if RESULTS_DIR.is_dir() else []
    stamps = {p: p.stat().st_mtime_ns for p in before}
    paths = audit_bbm.main(
        [
            "--limit",
            "3",
            "--workers",
            "1",
            "--data",
            str(shared_data / "trust" / "big-bench-mistake"),
            "--out",
            str(out),
        ]
    )
    assert {p.name for p in out.iterdir()} == {"audit-bbm.json", "audit-bbm.md", "audit-bbm.png"}
    assert all(p.parent == out for p in paths.values())
    after = sorted(RESULTS_DIR.iterdir())
    assert after == before
    assert all(p.stat().st_mtime_ns == stamps[p] for p in after)
    record = json.loads((out / "audit-bbm.json").read_text(encoding="utf-8"))
    assert set(record) >= {"benchmark", "command", "date", "machine", "simulated", "metrics"}
    assert record["simulated"] is True
    metrics = record["metrics"]
    assert metrics["traces"] == 15
    for pct in (0, 10, 20, 30, 40):
        assert 0.0 <= metrics[f"acc_adv{pct}"] <= 1.0
        assert 0.0 <= metrics[f"f1_adv{pct}"] <= 1.0
    assert "acc_adv30_colluder" in metrics
    assert "acc_computational_multistep_arithmetic" in metrics
    assert "acc_adv30_dyck_languages" in metrics
    assert set(record["goals"]) == {"acc_adv30_within_2_points", "f1_adv30_within_2_points"}
