"""End-to-end audits: decomposition, segmentation, auditors, consensus and the ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from goa.testing import ScriptedBackend
from trust.audit import AuditConfig, audit_trace
from trust.auditors import AuditorBase, ComputationalAuditor
from trust.consensus import Decision
from trust.decompose import decompose
from trust.ledger import Ledger
from trust.llm_decompose import LLMDecomposer
from trust.segment import Segment
from trust.verdict import Tier, Verdict, Vote


class FixedAuditor(AuditorBase):
    """An evaluator that votes ``invalid`` on the steps named in ``against``, else ``valid``."""

    def __init__(self, auditor_id: str, against: set[str], tier: Tier = Tier.LLM) -> None:
        super().__init__(auditor_id, tier)
        self.against = against
        self.seen: list[str] = []

    async def judge(self, segment: Segment) -> Verdict:
        self.seen.append(segment.id)
        if segment.id in self.against:
            return Verdict(vote=Vote.INVALID, confidence=0.9, reason=f"{self._id}: wrong")
        return Verdict(vote=Vote.VALID, confidence=0.9, reason=f"{self._id}: fine")


class RefusingAuditor(AuditorBase):
    """An auditor that must never be asked: its tier is not reached."""

    def __init__(self, auditor_id: str, tier: Tier = Tier.LLM) -> None:
        super().__init__(auditor_id, tier)

    async def judge(self, segment: Segment) -> Verdict:
        raise AssertionError(f"{self._id} was asked about {segment.id}")


def _bbm(shared_data: Path, index: int) -> dict[str, object]:
    path = shared_data / "trust" / "big-bench-mistake" / "multistep_arithmetic.jsonl"
    line = path.read_text(encoding="utf-8").splitlines()[index]
    record: dict[str, object] = json.loads(line)
    return record


def test_arithmetic_trace_first_mistake_found_and_recorded(
    shared_data: Path, tmp_path: Path
) -> None:
    record = _bbm(shared_data, 0)
    steps, mistake = record["steps"], record["mistake_index"]
    assert isinstance(steps, list)
    assert isinstance(mistake, int)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        report = asyncio.run(
            audit_trace(steps, computational=ComputationalAuditor(), ledger=ledger)
        )
        assert report.verdict is Decision.INVALID
        assert report.first_faulty_index == mistake
        assert report.first_faulty_step == f"step{mistake + 1}"
        assert ledger.verify().ok
        last = ledger.entry(report.ledger_entries[-1]).record
        assert last["kind"] == "audit"
        assert last["verdict"] == "invalid"
        assert last["trace_sha256"] == report.trace_sha256
        assert ledger.size == len(report.ledger_entries)


def test_llm_committee_decides_steps_without_arithmetic() -> None:
    steps = ["We need the capital of France.", "The capital of France is Paris.", "So Paris."]
    evaluators = [FixedAuditor(f"e{i}", against={"step2"}) for i in range(3)]
    report = asyncio.run(audit_trace(steps, evaluators=evaluators))
    assert [s.decision for s in report.steps] == [
        Decision.VALID,
        Decision.INVALID,
        Decision.VALID,
    ]
    assert report.first_faulty_step == "step2"
    assert all(s.tier is Tier.LLM for s in report.steps)


def test_split_committee_escalates_to_the_human_who_decides() -> None:
    steps = ["Assume the premise holds.", "Therefore the claim follows."]
    evaluators = [
        FixedAuditor("e0", against={"step2"}),
        FixedAuditor("e1", against=set()),
    ]
    human = FixedAuditor("reviewer", against={"step2"}, tier=Tier.HUMAN)
    config = AuditConfig(replicas=2)
    report = asyncio.run(audit_trace(steps, evaluators=evaluators, humans=[human], config=config))
    assert report.steps[1].tier is Tier.HUMAN
    assert report.steps[1].decision is Decision.INVALID
    assert human.seen == ["step2"]  # only the undecided step reached the human
    assert report.verdict is Decision.INVALID


def test_a_step_nobody_can_judge_is_undecided() -> None:
    report = asyncio.run(
        audit_trace(["Paris is the capital of France."], computational=ComputationalAuditor())
    )
    assert report.steps[0].decision is Decision.UNDECIDED
    assert report.verdict is Decision.UNDECIDED
    assert report.ledger_entries == ()


def test_cap_limits_what_each_evaluator_sees() -> None:
    steps = [f"Step {i}: the {i}th fact is stated plainly here." for i in range(1, 9)]
    evaluators = [FixedAuditor(f"e{i}", against=set()) for i in range(9)]
    config = AuditConfig(replicas=3, cap=0.5)
    report = asyncio.run(audit_trace(steps, evaluators=evaluators, config=config))
    assert report.verdict is Decision.VALID
    assert report.exposure.single <= 0.5
    assert max(len(e.seen) for e in evaluators) < len(steps)


def test_tiers_that_escalation_does_not_reach_are_never_asked() -> None:
    arithmetic = ["First, 3 + 4 = 7.", "Then 7 * 2 = 15."]  # the checker decides both
    report = asyncio.run(
        audit_trace(
            arithmetic,
            computational=ComputationalAuditor(),
            evaluators=[RefusingAuditor("e0"), RefusingAuditor("e1")],
            humans=[RefusingAuditor("reviewer", Tier.HUMAN)],
        )
    )
    assert [(s.decision, s.tier) for s in report.steps] == [
        (Decision.VALID, Tier.COMPUTATIONAL),
        (Decision.INVALID, Tier.COMPUTATIONAL),
    ]
    evaluators = [FixedAuditor(f"e{i}", against=set()) for i in range(3)]
    report = asyncio.run(
        audit_trace(
            ["We need the capital of France.", "The capital of France is Paris."],
            computational=ComputationalAuditor(),
            evaluators=evaluators,
            humans=[RefusingAuditor("reviewer", Tier.HUMAN)],
        )
    )
    assert [(s.decision, s.tier) for s in report.steps] == [(Decision.VALID, Tier.LLM)] * 2


LLM_STEPS = ["We need (3 + 4) * 2.", "First, 3 + 4 = 7.", "Then 7 * 2 = 15."]
LLM_REPLY = {
    "goal": "ignored: the goal is given",
    "strategies": [
        {
            "text": "Evaluate inside out.",
            "tactics": [
                {"text": "Restate the task", "steps": [1]},
                {"text": "Brackets first", "steps": [2, 3]},
            ],
        }
    ],
    "steps": [
        {"step": 1, "depends_on": [], "operations": []},
        {"step": 2, "depends_on": [], "operations": ["3 + 4 = 7"]},
        {"step": 3, "depends_on": [2], "operations": ["7 * 2 = 15"]},
    ],
}


def test_a_decomposer_gives_the_hdag_that_is_audited() -> None:
    backend = ScriptedBackend([json.dumps(LLM_REPLY)])
    report = asyncio.run(
        audit_trace(
            LLM_STEPS,
            goal="What is (3 + 4) * 2?",
            decomposer=LLMDecomposer(backend),
            computational=ComputationalAuditor(),
        )
    )
    assert len(backend.requests) == 1
    assert report.hdag.goal.text == "What is (3 + 4) * 2?"
    assert report.hdag.node("tactic2").text == "Brackets first"
    assert report.first_faulty_step == "step3"
    # the same audit over the same H-DAG given ready-made
    again = asyncio.run(audit_trace(report.hdag, computational=ComputationalAuditor()))
    assert again.to_dict() == report.to_dict()


def test_without_a_decomposer_the_rules_decompose_with_the_goal() -> None:
    report = asyncio.run(audit_trace(LLM_STEPS, goal="What is (3 + 4) * 2?"))
    assert report.hdag == decompose(LLM_STEPS, goal="What is (3 + 4) * 2?")
    with pytest.raises(ValueError, match="audited as given"):
        asyncio.run(audit_trace(report.hdag, decomposer=LLMDecomposer(ScriptedBackend([]))))
