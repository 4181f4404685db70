"""The auditors (trust.auditors) and their prompts (trust.audit_prompts)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from goa.errors import ModelRequestError
from goa.testing import ScriptedBackend
from trust.audit_prompts import VERDICT_SCHEMA, evaluator_prompt, retry_prompt
from trust.auditors import (
    Auditor,
    ComputationalAuditor,
    FileQueueAuditor,
    HumanAuditor,
    LLMAuditor,
    check_equation,
    parse_verdict,
)
from trust.decompose import decompose
from trust.hdag import HDAG, HNode, Level
from trust.segment import Segment, segment
from trust.verdict import Tier, Verdict, Vote


def _judge(auditor: Auditor, seg: Segment) -> Verdict:
    return asyncio.run(auditor.judge(seg))


def _segments(trace: list[str], goal: str = "What is the result?") -> dict[str, Segment]:
    return {seg.id: seg for seg in segment(decompose(trace, goal=goal))}


def _small() -> dict[str, Segment]:
    return _segments(["First, 3 + 4 = 7.", "Then 7 * 2 = 14.", "So 14 - 5 = 9."])


def _big_bench(shared_data: Path, index: int) -> tuple[dict[str, Any], dict[str, Segment]]:
    path = shared_data / "trust" / "big-bench-mistake" / "multistep_arithmetic.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[index])
    return record, _segments(record["steps"], goal=record["input"])


# --- equations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("equation", "outcome"),
    [
        ("3 + 4 = 7", "holds"),
        ("3 + 4 = 8", "fails"),
        ("(7 - -7 * 4) = (7 - 28)", "fails"),
        ("(60 * (-21)) = -1260", "holds"),
        ("2 \u00d7 3 \u00f7 4 = 1.5", "holds"),
        ("2 ^ 10 = 1024", "holds"),
        ("8 ** (1/3) = 2", "holds"),
        ("0.1 + 0.2 = 0.3", "holds"),  # exact, not floating point
        ("10 / 3 = 3.33", "holds"),  # rounded to its own two decimals
        ("10 / 3 = 3.3", "holds"),
        ("10 / 3 = 3.34", "fails"),
        ("10 / 3 = 3", "fails"),  # integers are never rounded
        ("(4 + 6 + 1 + 2) = (13", "holds"),  # an unmatched bracket left by the cut
        ("1 + 1 = 2 = 3", "fails"),
        ("5 / 0 = 0", "fails"),
        ("__import__('os') = 1", "unchecked"),
        ("9 ** 9999 = 1", "unchecked"),
        ("2 ** 200 ** 2 = 1", "unchecked"),
        ("no equation here", "unchecked"),
        (" + ".join(["1"] * 5000) + " = 5000", "unchecked"),  # too deep to walk
    ],
)
def test_check_equation(equation: str, outcome: str) -> None:
    assert check_equation(equation).outcome == outcome


def test_check_equation_explains_a_failure() -> None:
    check = check_equation("(7 - -7 * 4) = (7 - 28)")
    assert "35" in check.detail
    assert "-21" in check.detail


# --- the computational auditor -------------------------------------------------------------


def test_computational_true_false_and_no_arithmetic() -> None:
    auditor = ComputationalAuditor(run_code=False)
    seg = _small()
    assert _judge(auditor, seg["step1"]).vote is Vote.VALID
    wrong = _segments(["First, 3 + 4 = 7.", "Then 7 * 2 = 15."])
    verdict = _judge(auditor, wrong["step2"])
    assert verdict.vote is Vote.INVALID
    assert verdict.confidence == 1.0
    assert "7 * 2 is 14, not 15" in verdict.reason
    words = _segments(["We add the numbers.", "That gives the answer."])
    assert _judge(auditor, words["step1"]).vote is Vote.ABSTAIN
    assert "no arithmetic" in _judge(auditor, words["step1"]).reason


def test_computational_ignores_wrong_premises() -> None:
    # step3 uses step2's wrong 15, but its own arithmetic is right: premises are judged apart.
    seg = _segments(["3 + 4 = 7.", "7 * 2 = 15.", "15 - 5 = 10."])
    assert _judge(ComputationalAuditor(run_code=False), seg["step3"]).vote is Vote.VALID


def test_computational_on_a_big_bench_mistake_trace(shared_data: Path) -> None:
    record, seg = _big_bench(shared_data, 0)
    assert record["mistake_index"] == 3  # step4: (7 - -7 * 4) = (7 - 28)
    auditor = ComputationalAuditor(run_code=False)
    assert _judge(auditor, seg["step1"]).vote is Vote.ABSTAIN  # only definitions, no equation
    assert _judge(auditor, seg["step2"]).vote is Vote.VALID
    assert _judge(auditor, seg["step3"]).vote is Vote.VALID
    verdict = _judge(auditor, seg["step4"])
    assert verdict.vote is Vote.INVALID
    assert "is 2100, not -1260" in verdict.reason
    assert _judge(auditor, seg["step4.op1"]).vote is Vote.INVALID
    assert _judge(auditor, seg["step4.op4"]).vote is Vote.VALID  # 60 * (-21) = -1260 holds


def test_computational_on_a_second_big_bench_trace(shared_data: Path) -> None:
    record, seg = _big_bench(shared_data, 3)
    assert record["mistake_index"] == 1  # step2: (-9 + 1 + -1) = (-9 + -1)
    auditor = ComputationalAuditor(run_code=False)
    verdict = _judge(auditor, seg["step2"])
    assert verdict.vote is Vote.INVALID
    assert "(-9 + 1 + -1) is -9, not -10" in verdict.reason
    assert _judge(auditor, seg["step3"]).vote is Vote.VALID


def _code_step(code: str) -> Segment:
    step = f"We check it in Python:\n```python\n{code}\n```\nSo it holds."
    return _segments([step])["step1"]


def test_computational_runs_asserted_code() -> None:
    auditor = ComputationalAuditor(code_timeout_s=10)
    assert _judge(auditor, _code_step("assert sum([1, 2, 3]) == 6")).vote is Vote.VALID
    verdict = _judge(auditor, _code_step("assert sum([1, 2, 3]) == 7, 'sum is 6'"))
    assert verdict.vote is Vote.INVALID
    assert "sum is 6" in verdict.reason
    broken = _judge(auditor, _code_step("assert undefined_name == 1"))
    assert broken.vote is Vote.ABSTAIN
    assert "NameError" in broken.reason
    # Code without an assertion is not a claim; code is not run when switched off.
    assert _judge(auditor, _code_step("print(1)")).vote is Vote.ABSTAIN
    off = ComputationalAuditor(run_code=False)
    assert _judge(off, _code_step("assert 1 == 2")).vote is Vote.ABSTAIN


# --- the LLM auditor ---------------------------------------------------------------------

_VALID = '{"vote": "valid", "confidence": 0.9, "reason": "7 * 2 is 14"}'


def test_prompt_shows_the_segment_and_only_its_premises() -> None:
    seg = _small()["step3"]
    prompt = evaluator_prompt(seg)
    assert "What is the result?" in prompt
    assert "Then 7 * 2 = 14." in prompt  # the premise
    assert "First, 3 + 4 = 7." not in prompt  # not a premise of step3
    assert "So 14 - 5 = 9." in prompt
    assert '"vote"' in prompt


def test_llm_valid_json() -> None:
    backend = ScriptedBackend([_VALID])
    auditor = LLMAuditor(backend)
    verdict = _judge(auditor, _small()["step2"])
    assert verdict == Verdict(vote=Vote.VALID, confidence=0.9, reason="7 * 2 is 14")
    assert auditor.id == "llm:scripted"
    assert auditor.tier is Tier.LLM
    request = backend.requests[0]
    assert request.json_schema == VERDICT_SCHEMA
    assert request.messages[0].role == "system"
    assert "Then 7 * 2 = 14." in request.messages[1].content


def test_llm_fenced_json() -> None:
    reply = 'Here is my verdict:\n```json\n{"vote": "INVALID", "confidence": 1, "reason": "x"}\n```'
    verdict = _judge(LLMAuditor(ScriptedBackend([reply])), _small()["step2"])
    assert verdict.vote is Vote.INVALID
    assert verdict.confidence == 1.0


def test_llm_retries_after_an_invalid_reply() -> None:
    backend = ScriptedBackend(['{"vote": "maybe", "confidence": 0.5}', _VALID])
    auditor = LLMAuditor(backend)
    verdict = _judge(auditor, _small()["step2"])
    assert verdict.vote is Vote.VALID
    assert auditor.calls == 2
    retry = backend.requests[1].messages
    assert [m.role for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2].content == '{"vote": "maybe", "confidence": 0.5}'
    assert "'maybe'" in retry[3].content


def test_llm_abstains_after_all_retries() -> None:
    replies = ["I think it is fine.", '{"vote": "valid", "confidence": 7}', "still no JSON"]
    auditor = LLMAuditor(ScriptedBackend(replies), max_retries=2)
    verdict = _judge(auditor, _small()["step2"])
    assert verdict.vote is Vote.ABSTAIN
    assert "after 3 attempts" in verdict.reason
    assert "no JSON object" in verdict.reason
    assert auditor.calls == 3


def test_llm_abstains_when_the_model_fails() -> None:
    backend = ScriptedBackend([ModelRequestError("rate limited for good")])
    verdict = _judge(LLMAuditor(backend, id="llm:x"), _small()["step2"])
    assert verdict.vote is Vote.ABSTAIN
    assert "rate limited" in verdict.reason


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"vote": "valid", "confidence": "high"}', "confidence"),
        ('{"vote": "valid", "confidence": true}', "confidence"),
        ('{"vote": "valid", "confidence": -0.1}', "between 0 and 1"),
        ('{"vote": "valid", "confidence": 1, "reason": 3}', "reason"),
        ("[1, 2]", "no JSON object"),
        # A Python-like literal with a list as a key (Qwen2.5-Coder-0.5B wrote one on the GPU
        # run): a problem to send back, not a TypeError that loses the verdict.
        ("{[1, 2]: 'valid'}", "no JSON object"),
    ],
)
def test_parse_verdict_problems(text: str, problem: str) -> None:
    parsed = parse_verdict(text)
    assert parsed.value is None
    assert parsed.problem is not None
    assert problem in parsed.problem


def test_retry_prompt_names_the_problem() -> None:
    assert "the reply contains no JSON object" in retry_prompt("the reply contains no JSON object")


# --- humans ------------------------------------------------------------------------------


def _human(answers: str) -> tuple[HumanAuditor, io.StringIO]:
    output = io.StringIO()
    return HumanAuditor("alice", input=io.StringIO(answers), output=output), output


def test_human_terminal_review() -> None:
    auditor, output = _human("i\n0.8\nthe product is 14\n")
    verdict = _judge(auditor, _small()["step2"])
    assert verdict == Verdict(vote=Vote.INVALID, confidence=0.8, reason="the product is 14")
    shown = output.getvalue()
    assert "Then 7 * 2 = 14." in shown
    assert "First, 3 + 4 = 7." in shown
    assert auditor.tier is Tier.HUMAN


def test_human_defaults_and_reprompts() -> None:
    auditor, _ = _human("v\n\n\n")
    assert _judge(auditor, _small()["step1"]) == Verdict(vote=Vote.VALID, confidence=1.0)
    auditor, output = _human("maybe\nvalid\n2\n0.5\nfine\n")
    verdict = _judge(auditor, _small()["step1"])
    assert verdict == Verdict(vote=Vote.VALID, confidence=0.5, reason="fine")
    assert "from 0 to 1" in output.getvalue()


def test_human_abstains_and_end_of_input() -> None:
    auditor, _ = _human("a\nnot my field\n")
    assert _judge(auditor, _small()["step1"]) == Verdict.abstain("not my field")
    auditor, _ = _human("i\n")
    verdict = _judge(auditor, _small()["step1"])
    assert verdict.vote is Vote.ABSTAIN
    assert "end of input" in verdict.reason


def test_file_queue_round_trip(tmp_path: Path) -> None:
    auditor = FileQueueAuditor(tmp_path / "queue", id="reviewers")
    seg = _small()["step2"]
    item = auditor.item_id(seg)
    assert _judge(auditor, seg) == Verdict.abstain("awaiting review")
    assert auditor.pending() == [item]
    record = json.loads((auditor.pending_dir / f"{item}.json").read_text(encoding="utf-8"))
    assert record["format"] == "trust-review-item/1"
    assert Segment.model_validate(record["segment"]) == seg
    assert "Then 7 * 2 = 14." in record["prompt"]
    assert record["answer_to"] == str(auditor.answer_path(seg))
    assert _judge(auditor, seg).reason == "awaiting review"  # still pending, not rewritten

    answer = {"item": item, "vote": "invalid", "confidence": 0.7, "reason": "no", "reviewer": "b"}
    auditor.answer_path(seg).write_text(json.dumps(answer), encoding="utf-8")
    verdict = _judge(auditor, seg)
    assert verdict == Verdict(vote=Vote.INVALID, confidence=0.7, reason="no (reviewer: b)")
    assert auditor.pending() == []
    assert _judge(auditor, seg) == verdict  # the answer stays readable


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("not json", "not readable JSON"),
        ('["valid"]', "not a JSON object"),
        ('{"vote": "yes", "confidence": 1}', "malformed"),
        ('{"item": "other", "vote": "valid", "confidence": 1}', "for item 'other'"),
    ],
)
def test_file_queue_malformed_answers(tmp_path: Path, answer: str, words: str) -> None:
    auditor = FileQueueAuditor(tmp_path)
    seg = _small()["step1"]
    _judge(auditor, seg)
    path = auditor.answer_path(seg)
    path.write_text(answer, encoding="utf-8")
    verdict = _judge(auditor, seg)
    assert verdict.vote is Vote.ABSTAIN
    assert words in verdict.reason
    assert path.name in verdict.reason
    assert auditor.pending() == [auditor.item_id(seg)]  # stays pending until fixed


def test_every_auditor_fits_the_protocol(tmp_path: Path) -> None:
    auditors: list[object] = [
        ComputationalAuditor(),
        LLMAuditor(ScriptedBackend([])),
        HumanAuditor(input=io.StringIO(), output=io.StringIO()),
        FileQueueAuditor(tmp_path),
    ]
    assert all(isinstance(auditor, Auditor) for auditor in auditors)
    tiers = [auditor.tier for auditor in auditors if isinstance(auditor, Auditor)]
    assert tiers == [Tier.COMPUTATIONAL, Tier.LLM, Tier.HUMAN, Tier.HUMAN]


def test_operation_segments_are_judged_alone() -> None:
    dag = HDAG(
        nodes=(
            HNode(id="g", level=Level.GOAL, text="q", parent=None),
            HNode(id="s", level=Level.STEP, text="2 + 2 = 5", parent="g"),
            HNode(id="o", level=Level.OPERATION, text="2 + 2 = 4", parent="s"),
        )
    )
    seg = {one.id: one for one in segment(dag)}
    auditor = ComputationalAuditor(run_code=False)
    assert _judge(auditor, seg["o"]).vote is Vote.VALID
    # The step is judged on its own text and its operation nodes: 2 + 2 = 5 is false.
    assert _judge(auditor, seg["s"]).vote is Vote.INVALID
