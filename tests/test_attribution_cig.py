"""DAAN's CIG attribution: only causal ancestors of the failure are asked about, earliest
first, each shown with its premises only; fewer tokens than step-by-step on the same log."""

from __future__ import annotations

import asyncio
import json

from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest
from trust.attribution import Judge, step_by_step_attribution
from trust.attribution_cig import candidates, cig_attribution, failure_anchor
from trust.attribution_prompts import describe_prompt
from trust.cig import build_cig
from trust.interaction_log import InteractionLog, Step

QUESTION = "How many apples are left if Ann has 1204 apples and gives away 306?"


TOY_STEPS = [
    ("Planner", "assistant", "Plan: subtract the apples given away from the apples Ann has."),
    ("Coder", "assistant", "print(1204 - 306)  # gives 998"),
    ("Computer_terminal", "tool", "exitcode: 0 (execution succeeded)\nCode output: 998"),
    ("Critic", "assistant", "By the way, apples are a fruit."),
    ("Reporter", "assistant", "Coder found the result 998, so the final answer is 998."),
    ("Reporter", "assistant", "TERMINATE"),
]
"""0 plans; 1 computes a wrong value (1204 - 306 = 998); 2 runs code; 3 is a side remark
nobody uses; 4 reports the value of step 1; 5 closes."""


def toy_log(steps: list[tuple[str, str, str]] = TOY_STEPS) -> InteractionLog:
    """A log of ``(agent, role, content)`` steps; a tool output refers to the step before it."""
    return InteractionLog(
        id="toy",
        source="test",
        question=QUESTION,
        steps=tuple(
            Step(index=i, agent=a, role=r, content=c, refs=(i - 1,) if r == "tool" else ())
            for i, (a, r, c) in enumerate(steps)
        ),
        ground_truth="898",
    )


def _verdict(decisive: bool) -> str:
    return json.dumps({"decisive": decisive, "reason": "because"})


def _asked(request: ChatRequest) -> int:
    prompt = next(m.content for m in request.messages if m.role == "user")
    task = describe_prompt(prompt)
    assert task is not None
    assert task.step is not None
    return task.step


def test_the_anchor_skips_closing_steps_and_candidates_are_its_ancestors() -> None:
    log = toy_log()
    graph = build_cig(log)
    assert failure_anchor(log) == 4
    found = candidates(log, graph)
    assert 1 in found  # the value 998 flows 1 -> 4 (through the tool output too)
    assert 2 not in found  # a tool output is the step before it, not a culprit
    assert found == sorted(found)
    assert found[-1] == 4


def test_the_first_step_judged_decisive_is_the_answer_and_only_premises_are_shown() -> None:
    log = toy_log()
    graph = build_cig(log)
    chain = candidates(log, graph)
    replies = {step: _verdict(step == 1) for step in chain}
    backend = ScriptedBackend(lambda request: replies[_asked(request)])
    result = asyncio.run(cig_attribution(log, Judge(backend), with_ground_truth=True))
    assert (result.method, result.agent, result.step) == ("cig", "Coder", 1)
    assert not result.fallback
    asked = [_asked(r) for r in backend.requests]
    assert asked == [s for s in chain if s <= 1]  # earliest first, stops at the first yes
    shown = next(m.content for m in backend.requests[-1].messages if m.role == "user")
    assert "[Step 1]" in shown
    assert "[Step 3]" not in shown  # not a premise of step 1
    assert "CORRECT FINAL ANSWER: 898" in shown


def test_with_no_step_judged_decisive_the_earliest_candidate_is_the_fallback() -> None:
    log = toy_log()
    chain = candidates(log, build_cig(log))
    backend = ScriptedBackend([_verdict(False)] * len(chain))
    result = asyncio.run(cig_attribution(log, Judge(backend), with_ground_truth=False))
    assert result.fallback
    assert result.step == chain[0]
    assert result.calls == len(chain)
    assert "CORRECT FINAL ANSWER" not in backend.requests[0].messages[1].content


def test_max_calls_bounds_the_questions() -> None:
    log = toy_log()
    backend = ScriptedBackend([_verdict(False)] * 10)
    result = asyncio.run(cig_attribution(log, Judge(backend), with_ground_truth=True, max_calls=1))
    assert result.calls == 1
    assert result.fallback
    assert any("stopped after 1 calls" in p for p in result.problems)


def test_it_spends_fewer_tokens_than_step_by_step_for_the_same_answers() -> None:
    log = toy_log()
    never = ScriptedBackend(lambda request: _verdict(False))
    ours = asyncio.run(cig_attribution(log, Judge(never), with_ground_truth=True))
    again = ScriptedBackend(lambda request: _verdict(False))
    theirs = asyncio.run(step_by_step_attribution(log, Judge(again), with_ground_truth=True))
    assert ours.calls < theirs.calls
    assert ours.prompt_tokens < theirs.prompt_tokens


def test_a_budget_leaves_out_cases_some_method_did_not_finish() -> None:
    from benchmarks.daan_whowhen import run_all
    from trust.attribution import Attribution
    from trust.interaction_log import Label

    stuck = asyncio.Event()  # never set: the method on case "b" never finishes

    async def method(log: InteractionLog, judge: Judge, /, **_: object) -> Attribution:
        if log.id == "b":
            await stuck.wait()
        return Attribution(method="m", agent="Coder", step=1)

    logs = [
        toy_log().model_copy(update={"id": case, "label": Label(agent="Coder", step=1)})
        for case in ("a", "b")
    ]
    judge = Judge(ScriptedBackend([]))
    results = asyncio.run(
        run_all(logs, judge, {"m": method, "n": method}, settings=(True,), budget_s=0.2)
    )
    assert sorted({r.case for r in results}) == ["a"]
    assert len(results) == 2  # both methods on case a
