"""The judge-free reference points of the attribution evaluation: ``graph_root`` is what
``cig`` answers when its judge calls nothing decisive, ``first_step`` the first step that is
not a tool's output; neither asks a model."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks import daan_whowhen
from goa.inference.scripted import ScriptedBackend
from tests.test_attribution_cig import TOY_STEPS, toy_log
from trust.attribution import Judge
from trust.attribution_cig import cig_attribution
from trust.attribution_references import (
    REFERENCE_METHODS,
    first_step_attribution,
    graph_root_attribution,
)
from trust.interaction_log import InteractionLog


def test_graph_root_is_cigs_answer_when_its_judge_calls_nothing_decisive() -> None:
    log = toy_log()
    never = json.dumps({"decisive": False, "reason": "fine"})
    cig = asyncio.run(
        cig_attribution(log, Judge(ScriptedBackend(lambda _: never)), with_ground_truth=True)
    )
    assert cig.fallback
    root = asyncio.run(graph_root_attribution(log, with_ground_truth=True))
    assert (root.method, root.agent, root.step) == ("graph_root", cig.agent, cig.step)
    assert (root.calls, root.total_tokens, root.fallback) == (0, 0, False)


def test_first_step_skips_tool_outputs_and_uses_no_judge() -> None:
    log = toy_log([("Computer_terminal", "tool", "exitcode: 1"), *TOY_STEPS])
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
