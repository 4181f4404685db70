"""GraphOfAgents end to end with scripted agents: call counts, faults, pooling, results.

The scripted agents whose replies depend on the stage live in goa.testing.agents;
QUESTION and answer() here are shared with the other GoA test modules.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from goa.cards import ModelCard
from goa.errors import GoaError, ModelRequestError
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest, Completion
from goa.pipeline import GraphOfAgents, Run, question_id
from goa.pools import Pool
from goa.result import Event, Result
from goa.testing.agents import (
    Agent,
    Hanging,
    StageReply,
    agent,
    calls,
    judge_by,
    make_goa,
)
from goa.testing.agents import scripted_card as card

# --- Shared with the other GoA test modules ---------------------------------------

QUESTION = "Which option is right? A, B or C?"


def answer(letter: str) -> str:
    return f"Option {letter} fits best.\nAnswer: {letter}"


def panel(
    *, meta_select: StageReply = '{"selected": [1, 2, 3]}', **meta_more: StageReply
) -> dict[str, Agent]:
    """Agents a (A), b (B), c (C) and a larger meta model m (which also answers D).

    Judges favour B, then A, then C, so the ranking is b, a, c.
    """
    judge = judge_by({"B": 6, "A": 3, "C": 1, "D": 1})
    return {
        "a": agent(
            "a",
            answer("A"),
            score=judge,
            forward="refined by a\nAnswer: A",
            reverse="reverse by a\nAnswer: A",
        ),
        "b": agent("b", answer("B"), score=judge, reverse="reverse by b\nAnswer: B"),
        "c": agent("c", answer("C"), score=judge, forward="refined by c\nAnswer: B"),
        "m": agent("m", answer("D"), score=judge, select=meta_select, **meta_more),
    }


def paper_goa(backends: Mapping[str, ScriptedBackend], **options: Any) -> GraphOfAgents:
    return make_goa(backends, sizes={"m": 7.0}, **options)


# --- Paper GoA: call counts and order --------------------------------------------


def test_paper_goa_with_max_pooling_makes_ten_calls() -> None:
    backends = panel()
    result = paper_goa(backends).run(QUESTION)

    assert result.answered
    assert result.ranking == ["b", "a", "c"]
    assert result.final_agent == "b"
    assert result.answer == "reverse by b\nAnswer: B"
    assert result.final_answer == "B"
    assert calls(backends) == 10  # 1 select + 3 answers + 3 judges + 2 forward + 1 reverse
    assert [backends[x].n("reverse") for x in "bac"] == [1, 0, 0]
    assert [backends[x].n("forward") for x in "bac"] == [0, 1, 1]
    assert backends["m"].n("select") == 1
    assert backends["m"].n("pool") == 0
    assert result.stages["reverse"].totals.calls == 1


def test_paper_goa_with_mean_pooling_makes_twelve_calls() -> None:
    backends = panel(pool="synthesis\nAnswer: B")
    result = paper_goa(backends, pooling="mean").run(QUESTION)

    assert calls(backends) == 12  # ... + 2 reverse + 1 synthesis
    assert [backends[x].n("reverse") for x in "bac"] == [1, 1, 0]
    assert result.final_agent == "m"
    assert result.answer == "synthesis\nAnswer: B"
    synthesis = backends["m"].requests[-1].messages[-1].content
    # Most relevant first, each with its relevance.
    assert synthesis.index("reverse by b") < synthesis.index("reverse by a")
    assert synthesis.index("reverse by a") < synthesis.index("refined by c")
    assert f"relevance {result.relevance['b']:.2f}" in synthesis


def test_selection_reasons_and_scores_are_recorded() -> None:
    backends = panel(meta_select='{"selected": [2, 1, 3], "reasons": ["x", "y", "z"]}')
    result = paper_goa(backends).run(QUESTION)

    assert [(s.agent, s.reason) for s in result.selected] == [
        ("b", "meta model: x"),
        ("a", "meta model: y"),
        ("c", "meta model: z"),
    ]
    assert set(result.scores) == {"a", "b", "c"}
    for row in result.scores.values():
        assert sum(row.values()) == pytest.approx(1.0)
    assert sum(result.relevance.values()) == pytest.approx(1.0)
    assert result.relevance["b"] > result.relevance["a"] > result.relevance["c"]


def test_every_request_is_tagged() -> None:
    backends = panel()
    paper_goa(backends).run(QUESTION)
    for name, backend in backends.items():
        for request in backend.requests:
            assert request.tags.agent == name
            assert request.tags.question == question_id(QUESTION)
            assert request.tags.stage in {"select", "answer", "score", "forward", "reverse"}


def test_forward_and_reverse_see_the_right_peers() -> None:
    backends = panel()
    paper_goa(backends).run(QUESTION)
    forward_a = backends["a"].requests[-1].messages[-1].content
    forward_c = backends["c"].requests[-1].messages[-1].content
    reverse_b = backends["b"].requests[-1].messages[-1].content
    assert "Answer: B" in forward_a
    assert "Answer: C" not in forward_a
    assert "Option B fits" in forward_c
    assert "Option A fits" in forward_c
    # The reverse pass reads the forward-pass answers of the less relevant agents.
    assert "refined by a" in reverse_b
    assert "refined by c" in reverse_b


def test_graph_edges_run_from_more_to_less_relevant() -> None:
    result = paper_goa(panel()).run(QUESTION)
    edges = {(e["source"], e["target"]): e["weight"] for e in result.graph["edges"]}
    assert set(edges) == {("b", "a"), ("b", "c"), ("a", "c")}
    assert edges[("b", "a")] == pytest.approx(result.relevance["b"])
    assert edges[("a", "c")] == pytest.approx(result.relevance["a"])
    assert result.graph["directed"] is True
    nodes = {n["id"]: n for n in result.graph["nodes"]}
    assert nodes["b"]["rank"] == 1
    assert nodes["b"]["final"] is True


def test_result_dumps_to_json_with_answer_and_graph() -> None:
    result = paper_goa(panel()).run(QUESTION)
    data = result.model_dump(mode="json")
    assert {"answer", "graph"} <= set(data)
    text = json.dumps(data)
    assert Result.model_validate_json(text).answer == result.answer


def test_mermaid_draws_the_graph() -> None:
    result = paper_goa(panel()).run(QUESTION)
    chart = result.mermaid()
    assert chart.startswith("flowchart LR\n")
    assert 'n0["b<br/>relevance' in chart
    assert "n0 -- " in chart
    assert "--> n1" in chart
    assert "style n0 stroke-width:3px" in chart


def test_totals_per_agent_and_stage() -> None:
    backends = panel()
    result = paper_goa(backends).run(QUESTION)
    assert result.totals.calls == 10
    assert result.totals.cost_usd == 0.0  # scripted calls report an explicit 0
    assert result.agents["m"].calls == 1  # the meta model only selected
    assert sum(t.calls for t in result.agents.values()) == 10
    assert sum(s.totals.calls for s in result.stages.values()) == 10
    assert result.totals.prompt_tokens > 0
    assert result.wall_s >= 0


# --- Options ---------------------------------------------------------------------


def test_early_exit_when_all_agree() -> None:
    backends = {name: agent(name, answer("A")) for name in "abc"}
    backends["c"].stages["select"] = '{"selected": [1, 2, 3]}'
    result = make_goa(backends, sizes={"c": 3.0}, early_exit=True).run(QUESTION)
    assert result.early_exit
    assert calls(backends) == 3  # k = pool size: no selection call, then 3 answers
    assert result.final_agent == "c"  # the first in profile order (the largest)
    assert result.final_answer == "A"
    assert "early exit" in result.reason
    assert result.graph["edges"] == []


def test_no_early_exit_when_answers_differ() -> None:
    backends = panel()
    result = paper_goa(backends, early_exit=True).run(QUESTION)
    assert not result.early_exit
    assert calls(backends) == 10


def test_majority_early_exit_takes_the_most_relevant_agent_of_the_majority() -> None:
    backends = {"a": agent("a", answer("B")), "b": agent("b", answer("A"))}
    backends["c"] = agent("c", answer("A"))
    backends["c"].stages["select"] = '{"selected": [1, 2, 3]}'
    goa = make_goa(backends, sizes={"c": 3.0}, early_exit="majority")
    result = goa.run(QUESTION)
    assert result.early_exit
    assert calls(backends) == 3  # no judges, no message passing
    assert result.final_answer == "A"
    assert result.final_agent in ("b", "c")
    order = [s.agent for s in result.selected]
    assert result.final_agent == next(a for a in order if a in ("b", "c"))
    assert "2 of 3 agents" in result.reason


def test_majority_early_exit_needs_more_than_half() -> None:
    backends = panel()  # three different answers
    result = paper_goa(backends, early_exit="majority").run(QUESTION)
    assert not result.early_exit
    assert calls(backends) == 10


def test_unknown_early_exit_rule_is_refused() -> None:
    with pytest.raises(GoaError, match="early_exit must be"):
        make_goa(panel(), early_exit="most")


def test_two_rounds_repeat_forward_and_reverse() -> None:
    backends = panel()
    result = paper_goa(backends, rounds=2).run(QUESTION)
    # Round 1: full reverse (2 calls); round 2 (the last): only the top agent.
    assert sum(b.n("forward") for b in backends.values()) == 4
    assert sum(b.n("reverse") for b in backends.values()) == 3
    assert calls(backends) == 1 + 3 + 3 + 4 + 3
    rounds = {r.round for r in result.responses if r.stage == "forward"}
    assert rounds == {1, 2}


def test_zero_rounds_pools_the_initial_answers() -> None:
    backends = panel()
    result = paper_goa(backends, rounds=0).run(QUESTION)
    assert calls(backends) == 7
    assert result.answer == answer("B")


def test_sequential_mode_makes_the_same_calls_and_result() -> None:
    first, second = panel(pool="synthesis\nAnswer: B"), panel(pool="synthesis\nAnswer: B")
    concurrent = paper_goa(first, pooling="mean").run(QUESTION)
    sequential = paper_goa(second, pooling="mean", sequential=True).run(QUESTION)

    assert sequential.answer == concurrent.answer
    assert sequential.ranking == concurrent.ranking
    assert sequential.scores == concurrent.scores
    for name in first:
        assert [r.messages for r in first[name].requests] == [
            r.messages for r in second[name].requests
        ]


def test_sequential_mode_calls_one_at_a_time() -> None:
    active = 0
    peak = 0

    class Counting(Agent):
        async def complete(self, request: ChatRequest) -> Completion:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0)
            try:
                return await super().complete(request)
            finally:
                active -= 1

    def build() -> dict[str, Agent]:
        judge = judge_by({"B": 6, "A": 3, "C": 1})
        return {
            "a": Counting("a", answer=answer("A"), score=judge, forward=answer("A")),
            "b": Counting("b", answer=answer("B"), score=judge, reverse=answer("B")),
            "c": Counting(
                "c",
                answer=answer("C"),
                score=judge,
                forward=answer("C"),
                select='{"selected": [1, 2, 3]}',
            ),
        }

    make_goa(build(), sizes={"c": 3.0}, sequential=True).run(QUESTION)
    assert peak == 1
    peak = 0
    make_goa(build(), sizes={"c": 3.0}).run(QUESTION)
    assert peak == 3


def test_answer_format_reaches_every_answer_prompt() -> None:
    backends = panel()
    paper_goa(backends, answer_format="End with 'Answer: X', X one of A, B, C.").run(QUESTION)
    for stage in ("answer", "forward", "reverse"):
        prompts = [r for b in backends.values() for r in b.requests if r.tags.stage == stage]
        assert prompts
        assert all("X one of A, B, C" in r.messages[-1].content for r in prompts)


def test_invalid_options_are_refused() -> None:
    pool = Pool("test", (card("a"),))
    with pytest.raises(GoaError, match="k must be at least 1"):
        GraphOfAgents(pool, k=0)
    with pytest.raises(GoaError, match="threshold"):
        GraphOfAgents(pool, threshold=1.5)
    with pytest.raises(GoaError, match="selector"):
        GraphOfAgents(pool, selector="nope")  # type: ignore[arg-type]
    with pytest.raises(GoaError, match="empty"):
        GraphOfAgents(pool, backends={"a": agent("a", "x")}).run("  ")


def test_structured_outputs_send_schemas_to_the_json_stages() -> None:
    backends = panel(difficulty='{"difficulty": 3}')
    paper_goa(backends, structured=True, adaptive_k=True).run(QUESTION)
    requests = [r for b in backends.values() for r in b.requests]
    for request in requests:
        if request.tags.stage in {"select", "score", "difficulty"}:
            assert request.json_schema is not None
        else:
            assert request.json_schema is None
    select = next(r for r in requests if r.tags.stage == "select")
    assert select.json_schema is not None
    assert select.json_schema["properties"]["selected"]["maxItems"] == 3

    plain = panel()
    paper_goa(plain).run(QUESTION)
    assert all(r.json_schema is None for b in plain.values() for r in b.requests)


@pytest.mark.parametrize(
    ("pooling", "expected"), [("max", "reverse by b\nAnswer: B"), ("mean", "synthesis\nAnswer: B")]
)
def test_the_final_answer_streams_as_it_is_generated(pooling: str, expected: str) -> None:
    pieces: list[str] = []
    backends = panel(pool="synthesis\nAnswer: B")
    result = paper_goa(backends, pooling=pooling).run(QUESTION, on_delta=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == expected == result.answer


# --- Faults ----------------------------------------------------------------------


def test_an_agent_that_errors_is_dropped_and_the_run_goes_on() -> None:
    backends = panel()
    backends["c"].stages["answer"] = ModelRequestError("HTTP 500 from the server", status=500)
    result = paper_goa(backends).run(QUESTION)

    assert result.answered
    assert [r.agent for r in result.removed] == ["c"]
    assert "HTTP 500" in result.removed[0].reason
    assert result.removed[0].stage == "answer"
    # Two agents: each judge has one peer, so no judging calls are made.
    assert sum(b.n("score") for b in backends.values()) == 0
    assert result.stages["answer"].errors == 1
    assert result.stages["answer"].dropped == 1
    assert result.totals.cost_usd is None  # the failed call's cost is unknown


def test_an_agent_that_times_out_is_dropped() -> None:
    backends: dict[str, ScriptedBackend] = dict(panel())
    backends["c"] = Hanging("c")
    result = paper_goa(backends, timeout_s=0.01).run(QUESTION)

    assert result.answered
    removal = next(r for r in result.removed if r.agent == "c")
    assert "timed out" in removal.reason


def test_garbage_answers_are_dropped() -> None:
    backends = panel()
    backends["a"].stages["answer"] = "   \n "
    backends["c"].stages["answer"] = "?!..."
    result = paper_goa(backends).run(QUESTION)

    assert result.answered
    assert result.final_agent == "b"
    assert "only one agent answered" in result.reason
    assert {r.agent for r in result.removed} == {"a", "c"}
    assert all("unusable reply" in r.reason for r in result.removed)
    assert calls(backends) == 4


def test_an_agent_that_is_down_is_dropped() -> None:
    """A selected card with no backend and none the factory can build."""
    backends = panel(meta_select='{"selected": [1, 2, 4]}')
    del backends["c"]
    goa = make_goa(backends, sizes={"m": 7.0}, extra_cards=[card("c")])
    result = goa.run(QUESTION)
    assert result.answered
    removal = next(r for r in result.removed if r.agent == "c")
    assert "cannot be built" in removal.reason


def test_an_agent_failing_the_forward_pass_is_dropped() -> None:
    backends = panel()
    backends["c"].stages["forward"] = ModelRequestError("connection reset")
    result = paper_goa(backends).run(QUESTION)
    assert result.answered
    assert result.final_agent == "b"
    removal = next(r for r in result.removed if r.agent == "c")
    assert removal.stage == "forward"
    reverse_b = backends["b"].requests[-1].messages[-1].content
    assert "refined by c" not in reverse_b
    nodes = {n["id"]: n for n in result.graph["nodes"]}
    assert nodes["c"]["dropped"] is True


def test_top_agent_failing_the_reverse_pass_hands_over_to_the_next() -> None:
    backends = panel()
    backends["b"].stages["reverse"] = ModelRequestError("server gone")
    result = paper_goa(backends).run(QUESTION)
    assert result.answered
    assert result.final_agent == "a"
    assert result.answer == "refined by a\nAnswer: A"


def test_one_survivor_answers_alone() -> None:
    backends = panel()
    for name in "ac":
        backends[name].stages["answer"] = ModelRequestError("down")
    result = paper_goa(backends).run(QUESTION)
    assert result.answered
    assert result.final_agent == "b"
    assert result.answer == answer("B")
    assert [n["id"] for n in result.graph["nodes"]] == ["b"]


def test_no_survivor_means_no_answer() -> None:
    backends = panel()
    for name in "abc":
        backends[name].stages["answer"] = ModelRequestError(f"{name} is down")
    result = paper_goa(backends).run(QUESTION)
    assert not result.answered
    assert result.answer is None
    assert result.final_agent is None
    assert result.final_answer is None
    assert "no agent could answer" in result.reason
    assert "a is down" in result.reason
    data = result.model_dump(mode="json")
    assert data["answer"] is None
    assert data["graph"]["nodes"] == []


def test_mean_pooling_that_fails_falls_back_on_max() -> None:
    backends = panel(pool=ModelRequestError("meta down"))
    result = paper_goa(backends, pooling="mean").run(QUESTION)
    assert result.answered
    assert result.final_agent == "b"
    assert "used max pooling" in result.reason
    assert result.stages["pool"].fallbacks == 1


def test_threshold_removes_agents_the_judges_reject() -> None:
    backends = panel()
    zero_c = judge_by({"B": 6, "A": 3, "C": 0})
    for backend in backends.values():
        backend.stages["score"] = zero_c
    result = paper_goa(backends).run(QUESTION)
    assert result.ranking == ["b", "a"]
    removal = next(r for r in result.removed if r.agent == "c")
    assert removal.stage == "score"
    assert "threshold" in removal.reason
    assert backends["c"].n("forward") == 0
    assert calls(backends) == 1 + 3 + 3 + 1 + 1
    assert "removed at score" in result.mermaid()


# --- Events and laziness ------------------------------------------------------------


def test_events_reach_the_callback_and_the_stream() -> None:
    seen: list[Event] = []
    paper_goa(panel()).run(QUESTION, on_event=seen.append)
    kinds = [e.kind for e in seen]
    assert kinds[0] == "stage_started"
    assert kinds[-1] == "final"
    assert kinds.count("agent_answered") == 3 + 2 + 1
    assert seen[-1].result is not None
    assert seen[-1].result.answered

    async def collect() -> list[Event]:
        return [event async for event in paper_goa(panel()).stream(QUESTION)]

    streamed = asyncio.run(collect())
    assert [e.kind for e in streamed] == kinds
    stages = [e.stage for e in streamed if e.kind == "stage_started"]
    assert stages == ["select", "answer", "score", "forward", "reverse"]


def test_retries_and_fallbacks_show_as_events() -> None:
    backends = panel(meta_select=["not json", '{"selected": [1, 2, 3]}'])
    seen: list[Event] = []
    result = paper_goa(backends).run(QUESTION, on_event=seen.append)
    assert [e.kind for e in seen].count("retry") == 1
    assert result.stages["select"].retries == 1
    assert result.retries[0].stage == "select"


def test_backends_are_built_only_for_selected_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def fake_factory(card: ModelCard, *, cache: object = False) -> Agent:
        built.append(card.id)
        return agent(card.id, answer("C"))

    monkeypatch.setattr("goa.inference.factory.backend_for_card", fake_factory)
    given = panel(meta_select='{"selected": [1, 2, 4]}')
    del given["c"]
    cards = (card("a"), card("b"), card("m", size=7.0), card("c"), card("unused"))
    result = GraphOfAgents(Pool("test", cards), backends=given).run(QUESTION)
    assert built == ["c"]
    assert result.answered
    assert [s.agent for s in result.selected] == ["a", "b", "c"]


def test_run_is_the_caller_stages_use() -> None:
    from goa.answer import answer_messages

    backends = panel()
    run = Run(paper_goa(backends), QUESTION, None)
    reply = asyncio.run(run.call("a", "answer", answer_messages(QUESTION, "Answer: X")))
    assert reply.ok
    assert reply.answer == "A"
    assert run.records[0].agent == "a"
    assert run.records[0].stage == "answer"


def test_a_named_meta_model_from_the_pool() -> None:
    backends = panel()
    backends["a"].stages["select"] = '{"selected": [2, 3, 4]}'
    result = paper_goa(backends, meta="a").run(QUESTION)
    assert [s.agent for s in result.selected] == ["b", "c", "m"]
    assert backends["m"].n("select") == 0
    with pytest.raises(GoaError, match="no-such-card"):
        paper_goa(panel(), meta="no-such-card")


def test_difficulty_stage_reports_the_time_of_its_call() -> None:
    """The rating runs inside the select stage; its summary still shows its own time."""
    backends = panel(difficulty='{"difficulty": 3}')
    result = paper_goa(backends, adaptive_k=True).run(QUESTION)
    difficulty = result.stages["difficulty"]
    call = result.stage_responses("difficulty")[0]
    assert difficulty.totals.calls == 1
    assert difficulty.wall_s == call.latency_s > 0.0
