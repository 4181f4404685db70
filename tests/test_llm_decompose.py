"""The LLM decomposer (trust.llm_decompose) with a scripted model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import networkx as nx
import pytest

from goa.errors import ModelRequestError
from goa.testing import ScriptedBackend
from trust.audit import audit_trace
from trust.audit_prompts import DECOMPOSITION_SCHEMA
from trust.auditors import ComputationalAuditor
from trust.decompose import decompose, split_steps
from trust.hdag import HDAG, HDAGError, Level
from trust.llm_decompose import (
    DecompositionError,
    LLMDecomposer,
    llm_decompose,
    parse_decomposition,
)
from trust.segment import segment

STEPS = [
    "We need (3 + 4) * 2 - 5.",
    "First, 3 + 4 = 7.",
    "Then 7 * 2 = 14.",
    "Finally 14 - 5 = 9, so the answer is 9.",
]


def _reply(**changes: Any) -> str:
    """A valid decomposition of STEPS, with some fields replaced."""
    data: dict[str, Any] = {
        "goal": "Compute (3 + 4) * 2 - 5.",
        "strategies": [
            {
                "text": "Evaluate the expression inside out.",
                "tactics": [
                    {"text": "Restate the task", "steps": [1]},
                    {"text": "Compute the brackets, then the rest", "steps": [2, 3, 4]},
                ],
            }
        ],
        "steps": [
            {"step": 1, "depends_on": [], "operations": []},
            {"step": 2, "depends_on": [], "operations": ["3 + 4 = 7"]},
            {"step": 3, "depends_on": [2], "operations": ["7 * 2 = 14"]},
            {"step": 4, "depends_on": [3], "operations": ["14 - 5 = 9"]},
        ],
    }
    data.update(changes)
    return json.dumps(data)


def _run(decomposer: LLMDecomposer, trace: str | Sequence[str], goal: str | None = None) -> HDAG:
    return asyncio.run(decomposer.decompose(trace, goal=goal))


def _step_texts(hdag: HDAG) -> list[tuple[str, str]]:
    return [(node.id, node.text) for node in hdag.nodes if node.level is Level.STEP]


def _acyclic(hdag: HDAG) -> bool:
    return bool(nx.is_directed_acyclic_graph(hdag.to_networkx()))


def test_a_valid_reply_gives_the_hdag_with_the_traces_own_steps() -> None:
    backend = ScriptedBackend([_reply()])
    decomposer = LLMDecomposer(backend)
    hdag = _run(decomposer, STEPS)
    assert decomposer.calls == 1
    assert not decomposer.fell_back
    assert decomposer.problem is None
    assert [node.id for node in hdag.nodes] == [
        "goal",
        "strategy1",
        "tactic1",
        "step1",
        "tactic2",
        "step2",
        "step2.op1",
        "step3",
        "step3.op1",
        "step4",
        "step4.op1",
    ]
    assert hdag.goal.text == "Compute (3 + 4) * 2 - 5."
    # Steps verbatim, with the ids and texts of the rule-based decomposer.
    assert _step_texts(hdag) == [(f"step{n}", text) for n, text in enumerate(STEPS, start=1)]
    assert _step_texts(hdag) == _step_texts(decompose(STEPS))
    assert hdag.node("step1").parent == "tactic1"
    assert hdag.node("step3").parent == "tactic2"
    assert hdag.node("tactic2").parent == "strategy1"
    assert hdag.node("step4").depends_on == ("step3",)
    assert hdag.node("step3.op1").text == "7 * 2 = 14"
    assert _acyclic(hdag)
    assert HDAG.from_json(hdag.to_json()) == hdag
    (request,) = backend.requests
    assert request.json_schema == DECOMPOSITION_SCHEMA
    prompt = request.messages[-1].content
    assert "1. We need (3 + 4) * 2 - 5." in prompt
    assert "4. Finally 14 - 5 = 9, so the answer is 9." in prompt


def test_the_function_form_and_the_given_goal() -> None:
    backend = ScriptedBackend([_reply(goal="")])  # the model's goal is not needed here
    hdag = asyncio.run(llm_decompose(STEPS, backend, goal="What is (3 + 4) * 2 - 5?"))
    assert hdag.goal.text == "What is (3 + 4) * 2 - 5?"
    assert "QUESTION:\nWhat is (3 + 4) * 2 - 5?" in backend.requests[0].messages[-1].content


def test_free_text_is_split_like_the_rule_based_decomposer() -> None:
    text = "Compute (3 + 4) * 2 - 5.\n" + "\n".join(
        f"{n}. {step}" for n, step in enumerate(STEPS, start=1)
    )
    preamble, steps = split_steps(text)
    assert steps == STEPS
    backend = ScriptedBackend([_reply()])
    hdag = _run(LLMDecomposer(backend), text)
    assert _step_texts(hdag) == _step_texts(decompose(text))
    assert _acyclic(hdag)
    prompt = backend.requests[0].messages[-1].content
    assert f"TEXT BEFORE THE STEPS (context, not a step):\n{preamble}" in prompt


def test_list_items_are_stripped_and_blank_ones_dropped() -> None:
    trace = ["  We need (3 + 4) * 2 - 5. ", "", *STEPS[1:], "   "]
    hdag = _run(LLMDecomposer(ScriptedBackend([_reply()])), trace)
    assert [text for _, text in _step_texts(hdag)] == STEPS


def test_invalid_json_is_asked_again_in_the_same_conversation() -> None:
    backend = ScriptedBackend(["Sure! Here is the structure: step 1 is the plan.", _reply()])
    decomposer = LLMDecomposer(backend)
    hdag = _run(decomposer, STEPS)
    assert decomposer.calls == 2
    assert len(hdag.nodes) == 11
    first, second = backend.requests
    assert second.messages[: len(first.messages)] == first.messages
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2].content.startswith("Sure!")
    assert "no JSON object" in second.messages[3].content


@pytest.mark.parametrize(
    ("reply", "named"),
    [
        (
            _reply(
                strategies=[
                    {"text": "plan", "tactics": [{"text": "all", "steps": [1, 2, 3, 4, 5]}]}
                ]
            ),
            "step 5 does not exist",
        ),
        (
            _reply(
                steps=[
                    {"step": 1, "depends_on": [], "operations": []},
                    {"step": 2, "depends_on": [3], "operations": []},
                    {"step": 3, "depends_on": [2], "operations": []},
                    {"step": 4, "depends_on": [4], "operations": []},
                ]
            ),
            "step 2 depends on step 3, which does not come before it",
        ),
    ],
    ids=["out-of-range step", "forward dependency"],
)
def test_a_structure_problem_is_named_and_asked_again(reply: str, named: str) -> None:
    backend = ScriptedBackend([reply, _reply()])
    decomposer = LLMDecomposer(backend)
    hdag = _run(decomposer, STEPS)
    assert decomposer.calls == 2
    assert hdag.node("step4").depends_on == ("step3",)
    retry = backend.requests[1].messages[-1].content
    assert named in retry
    if "depends" in named:
        assert "step 4 depends on step 4" in retry


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {
                "strategies": [
                    {
                        "text": "plan",
                        "tactics": [
                            {"text": "a", "steps": [1, 2]},
                            {"text": "b", "steps": [2, 3, 4]},
                        ],
                    }
                ]
            },
            "step 2 is in more than one tactic",
        ),
        (
            {"strategies": [{"text": "plan", "tactics": [{"text": "a", "steps": [1, 2]}]}]},
            "steps 3, 4 are in no tactic",
        ),
        (
            {"steps": [{"step": 1, "depends_on": [], "operations": []}]},
            '"steps" has no entry for steps 2, 3, 4',
        ),
        (
            {"steps": [{"step": n, "depends_on": [], "operations": []} for n in (1, 2, 2, 3, 4)]},
            '"steps" has more than one entry for step 2',
        ),
        ({"strategies": []}, '"strategies" must be a non-empty list'),
        ({"goal": "  "}, '"goal" must be a non-empty string'),
        (
            {"strategies": [{"text": "plan", "tactics": [{"text": "", "steps": [1, 2, 3, 4]}]}]},
            'strategy 1, tactic 1 "text" must be a non-empty string',
        ),
        (
            {"strategies": [{"text": "plan", "tactics": [{"text": "a", "steps": [1, True]}]}]},
            "must be a step number, not True",
        ),
    ],
)
def test_parse_decomposition_names_each_problem(changes: dict[str, Any], named: str) -> None:
    parsed = parse_decomposition(_reply(**changes), STEPS)
    assert parsed.value is None
    assert parsed.problem is not None
    assert named in parsed.problem


def test_step_references_may_be_strings_and_repeats_are_merged() -> None:
    reply = _reply(
        strategies=[{"text": "plan", "tactics": [{"text": "all", "steps": ["1", "step2", 3, 4]}]}],
        steps=[
            {"step": "step1"},
            {"step": 2, "depends_on": [1, "step1"], "operations": ["  3 +  4 = 7 ", ""]},
            {"step": 3, "depends_on": [2, 1], "operations": []},
            {"step": 4, "depends_on": [3]},
        ],
    )
    parsed = parse_decomposition(reply, STEPS)
    assert parsed.ok
    hdag = parsed.value
    assert hdag is not None
    assert [node.id for node in hdag.nodes][:4] == ["goal", "strategy1", "tactic1", "step1"]
    assert hdag.node("step2").depends_on == ("step1",)
    assert hdag.node("step3").depends_on == ("step1", "step2")
    assert hdag.node("step2.op1").text == "3 + 4 = 7"
    assert hdag.children("step2") == (hdag.node("step2.op1"),)


def test_several_strategies_are_numbered_in_trace_order() -> None:
    reply = _reply(
        strategies=[
            {"text": "check", "tactics": [{"text": "verify", "steps": [4]}]},
            {"text": "solve", "tactics": [{"text": "restate", "steps": [1]}]},
            {"text": "compute", "tactics": [{"text": "arithmetic", "steps": [3, 2]}]},
        ]
    )
    hdag = parse_decomposition(reply, STEPS).value
    assert hdag is not None
    assert [(n.id, n.text) for n in hdag.nodes if n.level is Level.STRATEGY] == [
        ("strategy1", "solve"),
        ("strategy2", "compute"),
        ("strategy3", "check"),
    ]
    assert hdag.node("step4").parent == "tactic3"
    assert hdag.node("tactic3").parent == "strategy3"
    assert _acyclic(hdag)


def test_exhausted_retries_raise_by_default() -> None:
    backend = ScriptedBackend(["no json", "still none", _reply(goal=""), _reply()])
    decomposer = LLMDecomposer(backend, max_retries=2)
    with pytest.raises(DecompositionError, match="after 3 attempt") as raised:
        _run(decomposer, STEPS)
    assert '"goal" must be a non-empty string' in str(raised.value)
    assert decomposer.calls == 3
    assert len(backend.requests[-1].messages) == 6  # one conversation, two retries
    assert not decomposer.fell_back


def test_exhausted_retries_fall_back_to_the_rules_when_asked() -> None:
    backend = ScriptedBackend(["no json"] * 2)
    decomposer = LLMDecomposer(backend, max_retries=1, fallback=True)
    hdag = _run(decomposer, STEPS, goal="What is (3 + 4) * 2 - 5?")
    assert hdag == decompose(STEPS, goal="What is (3 + 4) * 2 - 5?")
    assert decomposer.fell_back
    assert decomposer.problem is not None
    assert "after 2 attempt(s): the reply contains no JSON object" in decomposer.problem
    # The flags describe the last decomposition only.
    backend_ok = LLMDecomposer(ScriptedBackend([_reply()]), fallback=True)
    _run(backend_ok, STEPS)
    assert not backend_ok.fell_back


def test_a_failed_request_ends_the_attempts() -> None:
    backend = ScriptedBackend([ModelRequestError("rate limited for good"), _reply()])
    decomposer = LLMDecomposer(backend, max_retries=2)
    with pytest.raises(DecompositionError, match="rate limited for good"):
        _run(decomposer, STEPS)
    assert decomposer.calls == 1
    fallback = LLMDecomposer(ScriptedBackend([ModelRequestError("down")]), fallback=True)
    assert _run(fallback, STEPS) == decompose(STEPS)
    assert fallback.fell_back


def test_max_retries_zero_asks_once() -> None:
    backend = ScriptedBackend(["no json", _reply()])
    with pytest.raises(DecompositionError):
        _run(LLMDecomposer(backend, max_retries=0), STEPS)
    assert len(backend.requests) == 1
    with pytest.raises(ValueError, match="max_retries"):
        LLMDecomposer(backend, max_retries=-1)


def test_an_empty_trace_is_refused_before_any_call() -> None:
    backend = ScriptedBackend([])
    with pytest.raises(HDAGError, match="no steps"):
        _run(LLMDecomposer(backend), ["", "  "])
    assert backend.requests == []


def test_a_cut_off_reply_says_so() -> None:
    backend = ScriptedBackend([_reply(), _reply()])
    decomposer = LLMDecomposer(backend, max_tokens=5, max_retries=1)
    with pytest.raises(DecompositionError, match="cut off at the token limit"):
        _run(decomposer, STEPS)


def test_the_audit_runs_on_an_llm_decomposition() -> None:
    wrong = [*STEPS[:2], "Then 7 * 2 = 15.", "Finally 15 - 5 = 10, so the answer is 10."]
    reply = _reply(
        steps=[
            {"step": 1, "depends_on": [], "operations": []},
            {"step": 2, "depends_on": [], "operations": ["3 + 4 = 7"]},
            {"step": 3, "depends_on": [2], "operations": ["7 * 2 = 15"]},
            {"step": 4, "depends_on": [3], "operations": ["15 - 5 = 10"]},
        ]
    )
    hdag = _run(LLMDecomposer(ScriptedBackend([reply])), wrong)
    assert [seg.id for seg in segment(hdag, levels=(Level.STEP,))] == [
        "step1",
        "step2",
        "step3",
        "step4",
    ]
    report = asyncio.run(audit_trace(hdag, computational=ComputationalAuditor()))
    assert report.first_faulty_step == "step3"


def test_the_package_exports_the_decomposer_and_the_tree() -> None:
    import trust
    from trust.hdag_view import hdag_tree

    assert trust.LLMDecomposer is LLMDecomposer
    assert trust.DecompositionError is DecompositionError
    assert trust.parse_decomposition is parse_decomposition
    assert trust.hdag_tree is hdag_tree
    assert set(trust.__all__) == {
        "DecompositionError",
        "LLMDecomposer",
        "hdag_tree",
        "parse_decomposition",
    }
    with pytest.raises(AttributeError):
        trust.no_such_name  # noqa: B018
