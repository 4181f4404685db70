"""The summary of the real-model evaluation: methods compared on the same questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.eval_real_local import method_specs, summarize
from goa.eval.runlog import LogRecord, RunLog


def _record(method: str, sample: str, correct: bool, calls: int) -> LogRecord:
    return LogRecord(
        run_id="r",
        method=method,
        dataset="mmlu",
        sample_id=sample,
        kind="multiple_choice",
        question="Q?",
        gold="A",
        extracted="A" if correct else "B",
        correct=correct,
        no_answer=False,
        calls=calls,
        prompt_tokens=10,
        completion_tokens=5,
    )


def test_methods_are_compared_on_the_questions_all_of_them_finished(tmp_path: Path) -> None:
    specs = [
        s
        for s in method_specs(["m1", "m2"], 64)
        if s.label in ("single-m1", "single-m2", "goa", "goa-majority-exit", "goa-early-exit")
    ]
    log = tmp_path / "log.jsonl"
    with RunLog(log) as writer:
        for i in range(4):  # q3 is missing for goa-early-exit: left out for everyone
            sample = f"q{i}"
            writer.append(_record("single-m1", sample, i < 2, 1))
            writer.append(_record("single-m2", sample, i < 3, 1))
            writer.append(_record("goa", sample, i < 3, 10))
            writer.append(_record("goa-majority-exit", sample, i < 3, 5))
            if i < 3:
                writer.append(_record("goa-early-exit", sample, True, 8))
        writer.append(_record("goa", "not-wanted", True, 10))
    summary = summarize(log, specs, {"q0", "q1", "q2", "q3", "not-wanted-either"})
    metrics = summary["metrics"]
    assert metrics["questions"] == 3
    assert metrics["acc_single_m1"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["acc_single_m2"] == 1.0
    assert metrics["best_single_acc"] == 1.0
    assert summary["best_single"] == "single-m2"
    assert metrics["calls_goa"] == 10
    assert metrics["calls_goa_majority_exit"] == 5
    # Both variants are at paper GoA's accuracy; the cheaper one sets P2.
    assert summary["p2_variant"] == "goa-majority-exit"
    assert metrics["call_reduction"] == 0.5
    assert len(summary["rows"]) == 3 * len(specs)


def test_no_call_reduction_when_the_cheap_variant_is_less_accurate(tmp_path: Path) -> None:
    specs = [s for s in method_specs(["m1"], 64) if s.label in ("goa", "goa-majority-exit")]
    log = tmp_path / "log.jsonl"
    with RunLog(log) as writer:
        for i in range(20):
            writer.append(_record("goa", f"q{i}", True, 10))
            writer.append(_record("goa-majority-exit", f"q{i}", i % 2 == 0, 5))
    summary = summarize(log, specs, {f"q{i}" for i in range(20)})
    assert summary["p2_variant"] is None
    assert "call_reduction" not in summary["metrics"]
