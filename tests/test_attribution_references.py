"""The judge-free reference points of the attribution evaluation: ``graph_root`` is what
``cig`` answers when its judge calls nothing decisive, ``first_step`` the first step that is
not a tool's output; neither asks a model."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks import daan_whowhen
from goa.inference.scripted import ScriptedBackend
from trust.attribution import Judge
from trust.attribution_cig import cig_attribution
from trust.attribution_references import (
    REFERENCE_METHODS,
    first_step_attribution,
    graph_root_attribution,
)
from trust.interaction_log import InteractionLog, Step


def _log(steps: list[tuple[str, str, str]]) -> InteractionLog:
    return InteractionLog(
        id="toy",
        source="test",
        question="How many apples are left if Ann has 1204 apples and gives away 306?",
        steps=tuple(
            Step(index=i, agent=a, role=r, content=c, refs=(i - 1,) if r == "tool" else ())
            for i, (a, r, c) in enumerate(steps)
        ),
        ground_truth="898",
    )


STEPS = [
    ("Planner", "assistant", "Plan: subtract the apples given away from the apples Ann has."),
    ("Coder", "assistant", "print(1204 - 306)  # gives 998"),
    ("Computer_terminal", "tool", "exitcode: 0 (execution succeeded)\nCode output: 998"),
    ("Critic", "assistant", "By the way, apples are a fruit."),
    ("Reporter", "assistant", "Coder found the result 998, so the final answer is 998."),
    ("Reporter", "assistant", "TERMINATE"),
]


def test_graph_root_is_cigs_answer_when_its_judge_calls_nothing_decisive() -> None:
    log = _log(STEPS)
    never = json.dumps({"decisive": False, "reason": "fine"})
    cig = asyncio.run(
        cig_attribution(log, Judge(ScriptedBackend(lambda _: never)), with_ground_truth=True)
    )
    assert cig.fallback
    root = asyncio.run(graph_root_attribution(log, with_ground_truth=True))
    assert (root.method, root.agent, root.step) == ("graph_root", cig.agent, cig.step)
    assert (root.calls, root.total_tokens, root.fallback) == (0, 0, False)


def test_first_step_skips_tool_outputs_and_uses_no_judge() -> None:
    log = _log([("Computer_terminal", "tool", "exitcode: 1"), *STEPS])
    result = asyncio.run(first_step_attribution(log, None, with_ground_truth=False))
    assert (result.method, result.agent, result.step) == ("first_step", "Planner", 1)
    assert (result.calls, result.total_tokens) == (0, 0)


@pytest.mark.parametrize("method", sorted(REFERENCE_METHODS))
def test_an_empty_log_is_refused(method: str) -> None:
    log = InteractionLog(id="empty", source="test", question="q", steps=())
    with pytest.raises(ValueError, match="no steps"):
        asyncio.run(REFERENCE_METHODS[method](log, None, with_ground_truth=True))  # type: ignore[arg-type]


def test_the_goal_compares_cig_with_the_who_and_when_baselines_only() -> None:
    methods = list(daan_whowhen.METHODS)
    assert set(REFERENCE_METHODS) <= set(methods)  # run by default, beside the baselines
    metrics = {f"agent_acc_{m}": 0.3 for m in methods}
    metrics |= {"agent_acc_cig": 0.4, "agent_acc_graph_root": 0.5, "agent_acc_first_step": 0.5}
    metrics |= {"tokens_cig": 100.0, "tokens_step_by_step": 200.0}
    goals = daan_whowhen._goals(metrics, methods, (True, False), 126, True)
    assert goals["cig_beats_every_baseline"]["met"]
    metrics["agent_acc_binary_search"] = 0.4  # a tie is not a win
    goals = daan_whowhen._goals(metrics, methods, (True, False), 126, True)
    assert not goals["cig_beats_every_baseline"]["met"]
