"""DAAN's attribution baselines (trust.attribution), their prompts, the simulated judge and the
Who&When benchmark harness."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from benchmarks import daan_whowhen
from benchmarks.daan_whowhen import CaseResult, run_all, score
from goa.errors import ModelRequestError
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest, Completion, Usage
from trust.attribution import (
    METHODS,
    Attribution,
    Judge,
    all_at_once_attribution,
    binary_search_attribution,
    estimate_tokens,
    match_agent,
    random_attribution,
    step_by_step_attribution,
)
from trust.attribution_prompts import (
    all_at_once_prompt,
    binary_prompt,
    clip,
    describe_prompt,
    step_prompt,
)
from trust.interaction_log import InteractionLog, Label, Step
from trust.simulated_judge import NoiseModel, SimulatedJudgeBackend

AGENTS = ("Planner", "Coder", "Verifier")


def make_log(
    n: int = 6, *, decisive: int = 2, id: str = "case-1", content: str = ""
) -> InteractionLog:
    steps = tuple(
        Step(index=i, agent=AGENTS[i % 3], content=content or f"message {i} of {AGENTS[i % 3]}")
        for i in range(n)
    )
    return InteractionLog(
        id=id,
        source="test",
        question="What is 6 times 7?",
        steps=steps,
        agents={a: f"the {a.lower()}" for a in AGENTS},
        ground_truth="42",
        label=Label(agent=steps[decisive].agent, step=decisive, reason="wrong product"),
    )


def user_prompt(request: ChatRequest) -> str:
    return next(m.content for m in request.messages if m.role == "user")


def yes(reason: str = "r") -> str:
    return json.dumps({"decisive": True, "reason": reason})


def no() -> str:
    return json.dumps({"decisive": False, "reason": "fine"})


def word_tokens(backend: ScriptedBackend, replies: list[str]) -> int:
    prompt = sum(len(m.content.split()) for r in backend.requests for m in r.messages)
    return prompt + sum(len(text.split()) for text in replies)


# --- step by step --------------------------------------------------------------------------


def test_step_by_step_stops_at_the_first_yes_and_counts_calls_and_tokens() -> None:
    log = make_log(6)
    replies = [no(), no(), yes("it multiplies wrongly"), yes()]
    backend = ScriptedBackend(replies)
    result = asyncio.run(step_by_step_attribution(log, Judge(backend), with_ground_truth=True))
    assert (result.method, result.step, result.agent) == ("step_by_step", 2, log.steps[2].agent)
    assert result.reason == "it multiplies wrongly"
    assert result.calls == 3
    assert len(backend.requests) == 3
    assert not result.fallback
    assert not result.tokens_estimated
    assert result.total_tokens == word_tokens(backend, replies[:3])
    # each call shows the log up to the step in question, no further
    assert [describe_prompt(user_prompt(r)).step for r in backend.requests] == [0, 1, 2]  # type: ignore[union-attr]
    assert "[Step 2]" in user_prompt(backend.requests[2])
    assert "[Step 3]" not in user_prompt(backend.requests[2])


def test_step_by_step_falls_back_to_the_last_step() -> None:
    log = make_log(4)
    result = asyncio.run(
        step_by_step_attribution(log, Judge(ScriptedBackend([no()] * 4)), with_ground_truth=True)
    )
    assert (result.step, result.agent, result.calls, result.fallback) == (3, "Planner", 4, True)


def test_step_by_step_retries_in_the_same_conversation_then_counts_no() -> None:
    log = make_log(3)
    replies = ["I think so", '{"decisive": "maybe"}', yes()]
    backend = ScriptedBackend(replies)
    judge = Judge(backend, max_retries=1)
    result = asyncio.run(step_by_step_attribution(log, judge, with_ground_truth=False))
    # step 0: two unusable replies (counted as no); step 1: yes
    assert (result.step, result.calls) == (1, 3)
    assert len(result.problems) == 2
    retry = backend.requests[1]
    assert [m.role for m in retry.messages] == ["system", "user", "assistant", "user"]
    assert "could not be used" in retry.messages[-1].content


# --- binary search -------------------------------------------------------------------------


def always_right_halves(target: int) -> ScriptedBackend:
    def respond(request: ChatRequest) -> str:
        task = describe_prompt(user_prompt(request))
        assert task is not None
        assert task.kind == "binary"
        assert task.first is not None
        half = "first" if task.first[0] <= target <= task.first[1] else "second"
        return json.dumps({"half": half, "reason": f"it is in the {half} half"})

    return ScriptedBackend(respond)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10, 13])
def test_binary_search_converges_in_ceil_log2_calls_when_always_right(n: int) -> None:
    for target in range(n):
        log = make_log(n, decisive=target)
        backend = always_right_halves(target)
        result = asyncio.run(binary_search_attribution(log, Judge(backend), with_ground_truth=True))
        assert result.step == target
        assert result.agent == log.steps[target].agent
        assert result.calls == len(backend.requests) <= math.ceil(math.log2(n))
        if n == 8:
            assert result.calls == 3


def test_binary_search_shows_only_the_range() -> None:
    log = make_log(8, decisive=6)
    backend = always_right_halves(6)
    asyncio.run(binary_search_attribution(log, Judge(backend), with_ground_truth=True))
    second = user_prompt(backend.requests[1])
    assert "FIRST HALF: steps 4 to 5" in second
    assert "SECOND HALF: steps 6 to 7" in second
    assert "[Step 3]" not in second
    assert "[Step 4]" in second


def test_binary_search_keeps_the_first_half_on_unusable_replies() -> None:
    log = make_log(4)
    result = asyncio.run(
        binary_search_attribution(
            log, Judge(ScriptedBackend(["?"] * 10), max_retries=0), with_ground_truth=True
        )
    )
    assert (result.step, result.calls, result.fallback) == (0, 2, True)


# --- all at once ---------------------------------------------------------------------------


def test_all_at_once_parses_agent_and_step() -> None:
    log = make_log(6)
    reply = 'Here:\n```json\n{"agent": "coder", "step": "4", "reason": "bad code"}\n```'
    result = asyncio.run(
        all_at_once_attribution(log, Judge(ScriptedBackend([reply])), with_ground_truth=True)
    )
    assert (result.agent, result.step, result.reason, result.calls) == ("Coder", 4, "bad code", 1)


def test_all_at_once_rejects_a_step_out_of_range_and_retries() -> None:
    log = make_log(6)
    replies = [
        json.dumps({"agent": "Coder", "step": 6, "reason": "x"}),
        json.dumps({"agent": "Nobody", "step": 1, "reason": "x"}),
        json.dumps({"agent": "Coder", "step": 1, "reason": "y"}),
    ]
    backend = ScriptedBackend(replies)
    result = asyncio.run(all_at_once_attribution(log, Judge(backend), with_ground_truth=True))
    assert (result.agent, result.step, result.calls, result.fallback) == ("Coder", 1, 3, False)
    assert "from 0 to 5" in result.problems[0]
    assert "Nobody" in result.problems[1]
    assert len(backend.requests[2].messages) == 6  # one conversation
    assert result.total_tokens == word_tokens(backend, replies)


def test_all_at_once_falls_back_when_no_reply_is_usable() -> None:
    log = make_log(5)
    judge = Judge(ScriptedBackend(["no idea"] * 3), max_retries=2)
    result = asyncio.run(all_at_once_attribution(log, judge, with_ground_truth=True))
    assert (result.step, result.agent, result.calls, result.fallback) == (4, "Coder", 3, True)
    assert len(result.problems) == 3


def test_a_failed_request_ends_the_attempts() -> None:
    log = make_log(3)
    judge = Judge(ScriptedBackend([ModelRequestError("down")]))
    result = asyncio.run(all_at_once_attribution(log, judge, with_ground_truth=True))
    assert result.fallback
    assert result.calls == 1
    assert "down" in result.problems[0]


def test_tokens_come_from_usage_or_are_estimated() -> None:
    log = make_log(3)
    text = json.dumps({"agent": "Planner", "step": 0, "reason": "r"})
    reported = Completion(
        text=text, usage=Usage(prompt_tokens=100, completion_tokens=7), backend="x", model="m"
    )
    backend = ScriptedBackend([reported])
    result = asyncio.run(all_at_once_attribution(log, Judge(backend), with_ground_truth=True))
    assert (result.prompt_tokens, result.completion_tokens, result.tokens_estimated) == (
        100,
        7,
        False,
    )
    bare = Completion(text=text, backend="x", model="m")
    backend = ScriptedBackend([bare])
    result = asyncio.run(all_at_once_attribution(log, Judge(backend), with_ground_truth=True))
    expected = sum(estimate_tokens(m.content) for m in backend.requests[0].messages)
    assert result.tokens_estimated
    assert (result.prompt_tokens, result.completion_tokens) == (expected, estimate_tokens(text))


def test_match_agent() -> None:
    names = ["Python_Expert", "Computer_terminal"]
    assert match_agent("python expert", names) == "Python_Expert"
    assert match_agent("Computer_terminal", names) == "Computer_terminal"
    assert match_agent("Expert", names) is None


# --- random --------------------------------------------------------------------------------


def test_random_is_seeded_and_uniform_over_agents_and_steps() -> None:
    log = make_log(7)

    def draw(seed: int) -> Attribution:
        return asyncio.run(random_attribution(log, with_ground_truth=True, seed=seed))

    assert draw(3) == draw(3)
    draws = [draw(seed) for seed in range(300)]
    assert {d.agent for d in draws} == set(AGENTS)
    assert {d.step for d in draws} == set(range(7))
    assert all(d.total_tokens == 0 and d.calls == 0 for d in draws)


# --- prompts -------------------------------------------------------------------------------


def test_ground_truth_is_shown_only_when_asked() -> None:
    log = make_log(4)
    with_truth = all_at_once_prompt(log, with_ground_truth=True)
    without = all_at_once_prompt(log, with_ground_truth=False)
    assert "CORRECT FINAL ANSWER: 42" in with_truth
    assert "42" not in without
    assert describe_prompt(with_truth).with_ground_truth  # type: ignore[union-attr]
    assert not describe_prompt(without).with_ground_truth  # type: ignore[union-attr]


def test_long_steps_are_clipped_alike_in_every_prompt() -> None:
    long = "A" * 3000 + "B" * 3000
    log = make_log(4, content=long)
    clipped = clip(long, 300)
    assert len(clipped) < 400
    assert clipped.startswith("A" * 200)
    assert clipped.endswith("B" * 100)
    assert "5700 characters omitted" in clipped
    prompts = [
        all_at_once_prompt(log, with_ground_truth=True, max_step_chars=300),
        step_prompt(log, 0, with_ground_truth=True, max_step_chars=300),
        binary_prompt(log, 0, 3, with_ground_truth=True, max_step_chars=300),
    ]
    assert all(clipped in p and long not in p for p in prompts)
    assert clip("short", 300) == "short"
    assert clip(long, None) == long


def test_describe_prompt_reads_back_what_is_asked() -> None:
    log = make_log(6)
    task = describe_prompt(binary_prompt(log, 2, 5, with_ground_truth=False))
    assert task is not None
    assert (task.kind, task.first, task.second) == ("binary", (2, 3), (4, 5))
    assert task.agents == AGENTS
    step = describe_prompt(step_prompt(log, 4, with_ground_truth=True))
    assert step is not None
    assert (step.kind, step.step) == ("step", 4)
    whole = describe_prompt(all_at_once_prompt(log, with_ground_truth=True))
    assert whole is not None
    assert (whole.kind, whole.steps) == ("all-at-once", 6)
    assert describe_prompt("hello") is None


# --- simulated judge -----------------------------------------------------------------------


def logs_for_simulation(count: int = 12) -> list[InteractionLog]:
    return [
        make_log(3 + i % 9, decisive=(i * 5) % (3 + i % 9), id=f"sim-{i}") for i in range(count)
    ]


def test_simulated_judge_at_p1_is_always_right() -> None:
    logs = logs_for_simulation()
    backend = SimulatedJudgeBackend.for_logs(logs, noise=NoiseModel.always(True))
    results = asyncio.run(run_all(logs, Judge(backend), METHODS, seed=1))
    metrics = score(results)
    for method in ("all_at_once", "step_by_step", "binary_search"):
        for suffix in ("", "_no_gt"):
            assert metrics[f"agent_acc_{method}{suffix}"] == 1.0
            assert metrics[f"step_acc_{method}{suffix}"] == 1.0


def test_simulated_judge_at_p0_never_names_the_right_agent_all_at_once() -> None:
    logs = logs_for_simulation()
    backend = SimulatedJudgeBackend.for_logs(logs, noise=NoiseModel.always(False))
    results = asyncio.run(run_all(logs, Judge(backend), {"all_at_once": all_at_once_attribution}))
    metrics = score(results)
    assert metrics["agent_acc_all_at_once"] == 0.0
    assert metrics["step_acc_all_at_once"] == 0.0
    assert metrics["agent_acc_all_at_once_no_gt"] == 0.0


def test_simulated_judge_is_reproducible_and_reports_usage() -> None:
    logs = logs_for_simulation()

    def run(seed: int) -> list[Attribution]:
        backend = SimulatedJudgeBackend.for_logs(logs, seed=seed)
        results = asyncio.run(run_all(logs, Judge(backend), METHODS, concurrency=5))
        return [r.attribution for r in results]

    first = run(0)
    assert first == run(0)
    assert first != run(1)
    judged = [a for a in first if a.method != "random"]
    assert all(a.total_tokens > 0 and not a.tokens_estimated for a in judged)


def test_simulated_judge_refuses_unknown_cases() -> None:
    backend = SimulatedJudgeBackend({})
    with pytest.raises(ModelRequestError):
        asyncio.run(backend.complete(ChatRequest.of("hi")))


# --- the benchmark -------------------------------------------------------------------------


def _result(method: str, truth: bool, agent: str, step: int, tokens: int) -> CaseResult:
    attribution = Attribution(
        method=method, agent=agent, step=step, prompt_tokens=tokens, completion_tokens=0, calls=2
    )
    return CaseResult("c", method, truth, "A", 4, attribution)


def test_benchmark_metrics_on_a_tiny_set() -> None:
    results = [
        _result("m", True, "A", 4, 100),  # all right
        _result("m", True, "A", 5, 200),  # step off by 1
        _result("m", True, "B", 9, 300),  # step off by 5
        _result("m", True, "B", 10, 400),  # off by 6
        _result("m", False, "B", 4, 50),
    ]
    metrics = score(results)
    assert metrics["agent_acc_m"] == 0.5
    assert metrics["step_acc_m"] == 0.25
    assert metrics["step_acc_pm1_m"] == 0.5
    assert metrics["step_acc_pm5_m"] == 0.75
    assert metrics["tokens_m"] == 250.0
    assert metrics["calls_m"] == 2.0
    assert metrics["fallback_m"] == 0.0
    assert (metrics["agent_acc_m_no_gt"], metrics["step_acc_m_no_gt"]) == (0.0, 1.0)
    assert metrics["tokens_m_no_gt"] == 50.0


def test_a_new_method_is_one_registry_entry() -> None:
    async def last_step(
        log: InteractionLog, judge: Judge, /, *, with_ground_truth: bool, seed: object = None
    ) -> Attribution:
        step = len(log.steps) - 1
        return Attribution(method="last", agent=log.steps[step].agent, step=step)

    logs = logs_for_simulation(3)
    methods = {**METHODS, "last": last_step}
    results = asyncio.run(
        run_all(logs, Judge(SimulatedJudgeBackend.for_logs(logs)), methods, settings=(True,))
    )
    assert {r.method for r in results} == {*METHODS, "last"}
    assert "agent_acc_last" in score(results)


def test_benchmark_main_writes_a_simulated_result(tmp_path: Path) -> None:
    data = tmp_path / "cases"
    data.mkdir()
    for i in range(3):
        history = [
            {"role": "assistant", "name": "Planner", "content": "plan"},
            {"role": "assistant", "name": "Coder", "content": "print(6 * 8)"},
            {"role": "user", "name": "Computer_terminal", "content": "exitcode: 0\n48"},
            {"role": "assistant", "name": "Planner", "content": "The answer is 48."},
        ]
        case = {
            "question": "What is 6 times 7?",
            "ground_truth": "42",
            "history": history,
            "mistake_agent": "Coder",
            "mistake_step": "1",
            "mistake_reason": "wrong factor",
            "system_prompt": {"Planner": "plans", "Coder": "codes"},
        }
        (data / f"{i + 1}.json").write_text(json.dumps(case), encoding="utf-8")
    out = tmp_path / "out"
    assert daan_whowhen.main(["--data", str(data), "--out", str(out), "--concurrency", "2"]) == 0
    record = json.loads((out / "daan-whowhen-simulated.json").read_text(encoding="utf-8"))
    assert record["benchmark"] == "daan-whowhen-simulated"
    assert not (out / "daan-whowhen.json").exists()  # kept for a real judge's run
    assert record["simulated"] is True
    assert record["cases"] == 3
    assert record["goals"]["all_cases"]["met"]
    for method in daan_whowhen.METHODS:  # ours (cig) and the baselines
        for key in ("agent_acc", "step_acc", "tokens"):
            assert f"{key}_{method}" in record["metrics"]
            assert f"{key}_{method}_no_gt" in record["metrics"]
    lines = (out / "daan-whowhen-simulated.cases.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 * len(daan_whowhen.METHODS) * 2
