"""Edge construction: peer scores, validation and retries, relevance, threshold, graph."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from goa.edges import (
    DEFAULT_THRESHOLD,
    LIKELIHOOD_MAX_CHARS,
    Edges,
    JudgeMode,
    build_edges,
    build_graph,
    likelihood_candidate,
    rank,
)
from goa.errors import ModelRequestError
from goa.inference.likelihood import softmax
from goa.parsing import parse_scores
from goa.pipeline import Run
from goa.testing.agents import Agent, StageReply, agent, make_goa
from tests.test_likelihood import LikelyAgent
from tests.test_pipeline import QUESTION, answer

ANSWERS = {"a": answer("A"), "b": answer("B"), "c": answer("C")}


def judged(
    scripts: Mapping[str, StageReply], *, threshold: float = DEFAULT_THRESHOLD, max_retries: int = 2
) -> tuple[Edges, Run, dict[str, Agent]]:
    backends = {name: agent(name, ANSWERS[name], score=scripts[name]) for name in ANSWERS}
    run = Run(make_goa(backends, max_retries=max_retries), QUESTION, None)
    edges = asyncio.run(build_edges(run, ANSWERS, threshold))
    return edges, run, backends


# --- Parsing scores ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"scores": [0.7, 0.3]}',
        '```json\n{"scores": [0.7, 0.3]}\n```',
        'My judgement: {"scores": [0.7, 0.3]} because the first is right.',
        '{"scores": {"1": 0.7, "2": 0.3}}',
        '{"Answer 1": 0.7, "Answer 2": 0.3}',
        "[0.7, 0.3]",
        '{"scores": ["70%", "30%"]}',
        '{"scores": [0.7, 0.32]}',  # within the tolerance: rescaled
    ],
)
def test_usable_scores(text: str) -> None:
    parsed = parse_scores(text, count=2)
    assert parsed.ok
    assert parsed.value is not None
    assert sum(parsed.value.values) == pytest.approx(1.0)
    assert parsed.value.values[0] > parsed.value.values[1]


@pytest.mark.parametrize(
    ("text", "problem", "rescalable"),
    [
        ("the first one is better", "no JSON object", False),
        ('{"scores": [0.5]}', "exactly 2 scores", False),
        ('{"scores": [0.5, 0.5, 0.5]}', "exactly 2 scores", False),
        ('{"scores": [0.9, -0.1]}', "negative", False),
        ('{"scores": [0, 0]}', "all zero", False),
        ('{"scores": ["high", "low"]}', "must be a number", False),
        ('{"scores": [0.9, 0.9]}', "add up to 1.8", True),
        ('{"scores": [8, 2]}', "add up to 10", True),
    ],
)
def test_unusable_scores(text: str, problem: str, rescalable: bool) -> None:
    parsed = parse_scores(text, count=2)
    assert not parsed.ok
    assert parsed.problem is not None
    assert problem in parsed.problem
    assert (parsed.value is not None) is rescalable


# --- Judging ----------------------------------------------------------------------


def test_each_agent_judges_the_others_only() -> None:
    edges, run, backends = judged({name: '{"scores": [0.5, 0.5]}' for name in ANSWERS})
    prompt = backends["a"].requests[-1].messages[-1].content
    assert "Option B" in prompt
    assert "Option C" in prompt
    assert "Option A" not in prompt
    assert backends["a"].requests[-1].tags.stage == "score"
    assert set(edges.scores["a"]) == {"b", "c"}
    assert not run.incidents


def test_scores_that_do_not_add_up_are_retried_then_rescaled() -> None:
    edges, run, backends = judged(
        {
            "a": ['{"scores": [3, 1]}', '{"scores": [0.75, 0.25]}'],
            "b": '{"scores": [0.9, 0.9]}',
            "c": '{"scores": [0.5, 0.5]}',
        }
    )
    assert edges.scores["a"] == {"b": 0.75, "c": 0.25}
    assert backends["a"].n("score") == 2
    assert "add up to 4" in backends["a"].requests[-1].messages[-1].content
    assert backends["b"].n("score") == 3  # 1 + max_retries, then rescaled
    assert edges.scores["b"] == {"a": pytest.approx(0.5), "c": pytest.approx(0.5)}
    fallbacks = [i for i in run.incidents if i.kind == "fallback"]
    assert len(fallbacks) == 1
    assert fallbacks[0].agent == "b"
    assert "rescaled" in fallbacks[0].message


def test_a_judge_with_garbage_or_errors_is_dropped_as_a_judge() -> None:
    edges, run, backends = judged(
        {
            "a": "no idea",
            "b": ModelRequestError("judge down"),
            "c": '{"scores": [0.2, 0.8]}',
        },
        max_retries=1,
    )
    assert set(edges.scores) == {"c"}
    assert backends["a"].n("score") == 2
    assert backends["b"].n("score") == 1
    dropped = [i.agent for i in run.incidents if "dropped as a judge" in i.message]
    assert sorted(a for a in dropped if a) == ["a", "b"]
    # Only c judged: a 0.2, b 0.8; c, unscored, gets the neutral mean 0.5.
    assert edges.relevance["b"] == pytest.approx(0.8 / 1.5)
    assert edges.relevance["c"] == pytest.approx(0.5 / 1.5)
    assert edges.ranking == ["b", "c", "a"]


def test_no_usable_judge_leaves_the_selection_order() -> None:
    edges, run, _ = judged({name: "garbage" for name in ANSWERS}, max_retries=0)
    assert edges.uniform
    assert edges.ranking == ["a", "b", "c"]
    assert edges.relevance == {name: pytest.approx(1 / 3) for name in ANSWERS}
    assert not edges.removed
    assert run.incidents[-1].message.startswith("no judge gave usable scores")


def test_two_agents_need_no_judging_calls() -> None:
    backends = {"a": agent("a", answer("A")), "b": agent("b", answer("B"))}
    run = Run(make_goa(backends), QUESTION, None)
    edges = asyncio.run(build_edges(run, {"a": answer("A"), "b": answer("B")}))
    assert not run.records
    assert edges.scores == {"a": {"b": 1.0}, "b": {"a": 1.0}}
    assert edges.ranking == ["a", "b"]  # a tie keeps the selection order


# --- Ranking and graph -----------------------------------------------------------


def test_relevance_is_the_normalised_mean_received_score() -> None:
    scores = {
        "a": {"b": 0.8, "c": 0.2},
        "b": {"a": 0.6, "c": 0.4},
        "c": {"a": 0.3, "b": 0.7},
    }
    edges = rank(scores, ["a", "b", "c"])
    means = {"a": 0.45, "b": 0.75, "c": 0.3}
    assert edges.relevance == {k: pytest.approx(v / 1.5) for k, v in means.items()}
    assert edges.ranking == ["b", "a", "c"]
    assert not edges.removed


def test_agents_at_or_below_the_threshold_are_removed_but_never_the_top() -> None:
    scores = {"a": {"b": 1.0, "c": 0.0}, "b": {"a": 1.0, "c": 0.0}, "c": {"a": 0.5, "b": 0.5}}
    edges = rank(scores, ["a", "b", "c"], threshold=0.05)
    assert edges.ranking == ["a", "b"]
    assert [agent for agent, _ in edges.removed] == ["c"]
    assert "at or below the threshold 0.05" in edges.removed[0][1]
    # Even a threshold above everyone's relevance keeps the most relevant agent.
    assert rank(scores, ["a", "b", "c"], threshold=0.9).ranking == ["a"]


def test_graph_edges_point_from_more_to_less_relevant() -> None:
    graph = build_graph(["b", "a", "c"], {"b": 0.5, "a": 0.3, "c": 0.2})
    assert list(graph.nodes) == ["b", "a", "c"]
    assert set(graph.edges) == {("b", "a"), ("b", "c"), ("a", "c")}
    assert graph.edges["b", "c"]["weight"] == 0.5
    assert graph.edges["a", "c"]["weight"] == 0.3
    assert graph.nodes["c"]["rank"] == 3
    assert graph.in_degree("b") == 0
    assert graph.out_degree("c") == 0


# --- Judging by likelihood -----------------------------------------------------------


def judged_by_likelihood(
    backends: Mapping[str, Agent], mode: JudgeMode = "likelihood", **options: Any
) -> tuple[Edges, Run]:
    run = Run(make_goa(backends, **options), QUESTION, None)
    edges = asyncio.run(build_edges(run, ANSWERS, DEFAULT_THRESHOLD, mode))
    return edges, run


def likely_judges(likelihoods: Mapping[str, float] | Exception) -> dict[str, Agent]:
    return {name: LikelyAgent(name, likelihoods, score="unused") for name in ANSWERS}


def test_the_ranking_follows_the_likelihoods() -> None:
    backends = likely_judges({"B": -0.1, "A": -0.8, "C": -2.0})
    edges, run = judged_by_likelihood(backends)
    assert edges.ranking == ["b", "a", "c"]
    assert edges.judges == {"a": "likelihood", "b": "likelihood", "c": "likelihood"}
    assert edges.scores["a"] == pytest.approx(dict(zip("bc", softmax([-0.1, -2.0]), strict=True)))
    assert edges.scores["c"] == pytest.approx(dict(zip("ab", softmax([-0.8, -0.1]), strict=True)))
    for row in edges.scores.values():
        assert sum(row.values()) == pytest.approx(1.0)
    assert all(backend.n("score") == 0 for backend in backends.values())
    assert not run.incidents
    records = [r for r in run.records if r.stage == "score"]
    assert len(records) == 6
    assert all(r.ok and r.usage is not None and r.usage.prompt_tokens == 12 for r in records)


def test_the_likelihood_judge_scores_final_answers_given_the_question_only() -> None:
    backends = likely_judges({})
    judged_by_likelihood(backends)
    judge_a = backends["a"]
    assert isinstance(judge_a, LikelyAgent)
    assert [continuation for _, continuation in judge_a.scored] == [" B", " C"]
    messages = judge_a.scored[0][0]
    assert [m.role for m in messages] == ["system", "user", "assistant"]
    assert QUESTION in messages[1].content
    assert "Option" not in messages[1].content  # no peer answer is shown
    assert "Answer:" in messages[1].content  # the answer format
    assert messages[2].content == "Answer:"


def test_peers_with_the_same_final_answer_share_one_call_and_one_score() -> None:
    answers = {"a": answer("A"), "b": answer("B"), "c": "I agree with B.\nAnswer: B"}
    backends = {name: LikelyAgent(name, {"A": -1.0, "B": -0.5}) for name in answers}
    run = Run(make_goa(backends), QUESTION, None)
    edges = asyncio.run(build_edges(run, answers, judge_mode="likelihood"))
    assert len(backends["a"].scored) == 1
    assert edges.scores["a"] == {"b": 0.5, "c": 0.5}
    assert edges.ranking[0] in ("b", "c")


def test_likelihood_candidates() -> None:
    assert likelihood_candidate("Reasoning.\nAnswer: **B**\n") == "B"
    assert likelihood_candidate("First line.\n\nIt must be B, I think.\n\n") == (
        "It must be B, I think."
    )
    assert len(likelihood_candidate("Answer: " + "x" * 500)) == LIKELIHOOD_MAX_CHARS


def test_a_judge_without_log_probabilities_falls_back_to_the_prompt() -> None:
    backends: dict[str, Agent] = {
        "a": LikelyAgent("a", {"B": -0.1, "C": -2.0}),
        "b": LikelyAgent("b", {"A": -0.1, "C": -2.0}),
        "c": agent("c", answer("C"), score='{"scores": [0.3, 0.7]}'),
    }
    edges, run = judged_by_likelihood(backends)
    assert edges.judges == {"a": "likelihood", "b": "likelihood", "c": "prompt"}
    assert edges.scores["c"] == {"a": 0.3, "b": 0.7}
    assert backends["c"].n("score") == 1
    fallbacks = [i for i in run.incidents if i.kind == "fallback"]
    assert [(i.agent, i.stage) for i in fallbacks] == [("c", "score")]
    assert "no log-probabilities" in fallbacks[0].message
    # "auto": the same judges, without the fallback note.
    edges, run = judged_by_likelihood(backends, mode="auto")
    assert edges.judges == {"a": "likelihood", "b": "likelihood", "c": "prompt"}
    assert not run.incidents


def test_a_failed_likelihood_call_falls_back_to_the_prompt() -> None:
    backends = likely_judges({"A": -1.0})
    backends["b"] = LikelyAgent(
        "b", ModelRequestError("context full"), score='{"scores": [0.6, 0.4]}'
    )
    edges, run = judged_by_likelihood(backends, mode="auto")
    assert edges.judges["b"] == "prompt"
    assert edges.scores["b"] == {"a": 0.6, "c": 0.4}
    kinds = [(i.kind, i.agent) for i in run.incidents]
    assert kinds == [("error", "b"), ("fallback", "b")]
    assert "context full" in run.incidents[0].message
    failed = [r for r in run.records if r.agent == "b" and not r.ok]
    assert len(failed) == 1


def test_a_hanging_likelihood_call_times_out_and_falls_back() -> None:
    backends = likely_judges({})
    hanging = backends["a"]
    assert isinstance(hanging, LikelyAgent)
    hanging.never = asyncio.Event()
    hanging.stages["score"] = '{"scores": [0.5, 0.5]}'
    edges, run = judged_by_likelihood(backends, timeout_s=0.05)
    assert edges.judges["a"] == "prompt"
    assert [i.kind for i in run.incidents if i.agent == "a"] == ["error", "fallback"]
    assert "timed out" in run.incidents[0].message


def test_two_agents_need_no_likelihood_calls() -> None:
    backends = {name: LikelyAgent(name, {}) for name in ("a", "b")}
    run = Run(make_goa(backends), QUESTION, None)
    edges = asyncio.run(build_edges(run, {"a": answer("A"), "b": answer("B")}, judge_mode="auto"))
    assert not run.records
    assert edges.judges == {}
    assert edges.scores == {"a": {"b": 1.0}, "b": {"a": 1.0}}
