"""The causal interaction graph: each rule on hand-made logs with a known causal structure,
the LLM linker with a scripted model, JSON round trips, and every real Who&When case."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import pytest

from goa.errors import GoaError, ModelRequestError
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest
from goa.testing.agents import agent, judge_by, make_goa
from trust.cig import (
    CIG,
    EDGE_KINDS,
    LLMEdgeLinker,
    ProposedEdge,
    abuild_cig,
    build_cig,
    distinctive_values,
    main,
)
from trust.interaction_log import InteractionLog, Step
from trust.log_readers import LogFormatError, read_goa_result, read_who_and_when_dir

WHO_AND_WHEN = Path(__file__).resolve().parents[1].parent / (
    "shared/data/trust/who-and-when/algorithm-generated"
)
needs_data = pytest.mark.skipif(not WHO_AND_WHEN.is_dir(), reason="Who&When data not present")


def make_log(
    turns: Sequence[tuple[str, str] | tuple[str, str, dict[str, object]]],
    *,
    question: str = "What is half the population of Springfield?",
) -> InteractionLog:
    steps = []
    for i, turn in enumerate(turns):
        extra = turn[2] if len(turn) == 3 else {}
        steps.append(
            Step.model_validate({"index": i, "agent": turn[0], "content": turn[1], **extra})
        )
    return InteractionLog(id="t", source="test", question=question, steps=tuple(steps))


TOOL: dict[str, object] = {"role": "tool", "refs": (2,)}

CHAT = make_log(
    [
        ("Planner_Expert", "We need the head count. Data_Expert, please look it up."),  # 0
        ("Data_Expert", "The population of Springfield is 167,882 according to the census table."),
        ("Coder_Expert", "```python\nhalf_count = 167882 // 2\nprint(167882, half_count)\n```"),
        ("Computer_terminal", "exitcode: 0\nCode output: 167882 83941", TOOL),  # 3
        ("Checker_Expert", "So Springfield has 167,882 people, as Data_Expert said."),  # 4
        (
            "Writer_Expert",
            "Recall: the population of Springfield is 167,882 according to the census.",
        ),
        ("Writer_Expert", "TERMINATE"),  # 6
    ]
)
"""Known structure: 1 states the value, 2 codes with it, 3 runs 2, 4 checks it naming the data
expert, 5 quotes 1, 6 only ends the chat."""


# --- The deterministic rules --------------------------------------------------------------


def test_each_rule_fires_where_expected_and_nowhere_else() -> None:
    cig = build_cig(CHAT)

    assert cig.edges_of_kind("stated") == [(2, 3)]
    assert cig.edges_of_kind("reply") == [(0, 1), (1, 2), (3, 4), (4, 5)]
    assert cig.edges_of_kind("value") == [(1, 2), (1, 4), (1, 5)]
    assert cig.edges_of_kind("quote") == [(1, 5)]
    assert cig.edges_of_kind("mention") == [(1, 4)]
    assert cig.edges_of_kind("llm") == []
    assert sorted(cig.graph.edges) == [(0, 1), (1, 2), (1, 4), (1, 5), (2, 3), (3, 4), (4, 5)]


def test_a_value_links_to_its_first_step_not_the_latest() -> None:
    cig = build_cig(CHAT)

    # 167,882 appears in 1, 2 and 3; step 4 uses it: the edge comes from 1.
    assert cig.graph.edges[1, 4]["kinds"] == ["value", "mention"]
    assert "167,882" in cig.graph.edges[1, 4]["evidences"]["value"]
    assert cig.graph.edges[3, 4]["kinds"] == ["reply"]
    assert not cig.graph.has_edge(2, 4)


def test_tool_output_links_to_its_call_only() -> None:
    cig = build_cig(CHAT)

    assert cig.parents(3) == [2]
    edge = cig.graph.edges[2, 3]
    assert (edge["kind"], edge["kinds"]) == ("stated", ["stated"])


def test_mention_needs_an_earlier_step_of_the_named_agent() -> None:
    cig = build_cig(CHAT)

    # Step 0 names Data_Expert before it has spoken: no edge; step 4 names it after step 1.
    assert cig.parents(0) == []
    assert "Data_Expert" in cig.graph.edges[1, 4]["evidences"]["mention"]


def test_same_agent_continuation_is_not_a_reply() -> None:
    cig = build_cig(CHAT)

    assert cig.parents(6) == []


def test_quote_keeps_the_verbatim_span_and_edge_attributes() -> None:
    cig = build_cig(CHAT)
    edge = cig.graph.edges[1, 5]

    assert edge["kind"] == "quote"
    assert edge["kinds"] == ["quote", "value"]
    assert edge["evidence"] == "the population of Springfield is 167,882 according to the census"
    node = cig.graph.nodes[5]
    assert (node["agent"], node["role"], node["stage"]) == ("Writer_Expert", "assistant", None)
    assert node["text"].startswith("Recall: the population")


def test_values_and_spans_of_the_task_are_not_information_flow() -> None:
    question = "Is 4,096 the answer to 'magic number' in the puzzle about the big red box lid?"
    log = make_log(
        [
            ("A", "I think 4096 is the magic number of the puzzle about the big red box lid."),
            ("A", "Also 'magic number' is 4,096: the puzzle about the big red box lid."),
        ],
        question=question,
    )
    assert build_cig(log).graph.number_of_edges() == 0


def test_short_numbers_and_plain_words_are_not_values() -> None:
    values = distinctive_values("We have 2 cats and 10 dogs, 35.00% of 0.05 pets, said Bob.")
    assert values == {}
    found = distinctive_values(
        "See https://example.org/a, data.xlsx, 'Street Address', file_path, camelCase, "
        "737,015, 1,2,3 and 2019-10-02.",
        exclude_names=["Data_Expert"],
    )
    assert set(found) == {
        "url:https://example.org/a",
        "file:example.org",
        "file:data.xlsx",
        "str:street address",
        "id:file_path",
        "id:camelCase",
        "num:737015",
        "date:2019-10-02",
    }
    assert distinctive_values("Data_Expert said so", exclude_names=["Data_Expert"]) == {}


def test_staged_steps_only_link_to_what_they_could_read() -> None:
    shared = "the answer is 4217 because the long shared reasoning sentence says so clearly"
    log = make_log(
        [
            ("a", f"First: {shared}.", {"stage": "answer"}),  # 0
            ("b", f"Second: {shared}.", {"stage": "answer"}),  # 1
            ("c", "Third: 9999 apples.", {"stage": "answer"}),  # 2
            ("c", f"Refined: {shared}; I drop 9999.", {"stage": "forward", "refs": (1, 2)}),  # 3
        ],
        question="q?",
    )
    cig = build_cig(log)

    # Concurrent answers share a value and a long span, but did not read each other.
    assert cig.parents(1) == []
    assert cig.parents(2) == []
    assert cig.edges_of_kind("reply") == []
    # The refinement read 1 and 2: the shared span and 4217 come from 1 (0 was not read).
    assert sorted(cig.graph.in_edges(3)) == [(1, 3), (2, 3)]
    assert cig.graph.edges[1, 3]["kinds"] == ["stated", "quote", "value"]
    assert cig.graph.edges[2, 3]["kinds"] == ["stated", "value"]


def test_goa_result_refs_become_stated_edges() -> None:
    judge = judge_by({"B": 6, "A": 3, "C": 1, "D": 1})
    backends = {
        "a": agent("a", "Option A.\nAnswer: A", score=judge),
        "b": agent("b", "Option B.\nAnswer: B", score=judge),
        "c": agent("c", "Option C.\nAnswer: C", score=judge),
        "m": agent("m", "D\nAnswer: D", score=judge, select='{"selected": [1, 2, 3]}'),
    }
    log = read_goa_result(make_goa(backends, sizes={"m": 7.0}).run("Which option? A, B or C?"))
    cig = build_cig(log)

    stated = sorted((ref, s.index) for s in log.steps for ref in s.refs)
    assert stated
    assert cig.edges_of_kind("stated") == stated
    assert cig.edges_of_kind("reply") == []
    assert set(cig.graph.edges) == set(stated)
    top_reverse = next(s.index for s in log.steps if s.stage == "reverse")
    answers = {s.index for s in log.steps if s.stage == "answer"}
    assert answers <= set(cig.ancestors(top_reverse))


def test_refs_that_do_not_point_back_are_refused() -> None:
    log = make_log([("A", "one"), ("B", "two")])
    bad = log.model_copy(
        update={"steps": (log.steps[0], log.steps[1].model_copy(update={"refs": (1,)}))}
    )
    with pytest.raises(GoaError, match="refs step 1, which is not earlier"):
        build_cig(bad)


# --- Graph queries and JSON ---------------------------------------------------------------


def test_ancestors_nearest_first_then_most_recent() -> None:
    cig = build_cig(CHAT)

    assert cig.ancestors(5) == [4, 1, 3, 0, 2]
    assert cig.ancestors(0) == []
    with pytest.raises(ValueError, match="step 99"):
        cig.ancestors(99)


def test_json_round_trip() -> None:
    cig = build_cig(CHAT)
    data = json.loads(json.dumps(cig.to_json()))
    back = CIG.from_json(data)

    assert back.log_id == "t"
    assert back.to_json() == cig.to_json()
    assert list(back.graph.nodes(data=True)) == list(cig.graph.nodes(data=True))
    assert data["edges"][0] == {
        "source": 0,
        "target": 1,
        "kind": "reply",
        "evidence": "Data_Expert speaks right after Planner_Expert",
        "kinds": ["reply"],
        "evidences": {"reply": "Data_Expert speaks right after Planner_Expert"},
    }


def test_from_json_refuses_backward_edges_and_unknown_kinds() -> None:
    data = build_cig(CHAT).to_json()
    data["edges"][0] = {**data["edges"][0], "source": 1, "target": 0}
    with pytest.raises(LogFormatError, match=r"edges\[0\]: 1 -> 0 goes back in time"):
        CIG.from_json(data)
    data = build_cig(CHAT).to_json()
    data["edges"][0] = {**data["edges"][0], "kind": "telepathy", "kinds": ["telepathy"]}
    with pytest.raises(LogFormatError, match="unknown kind"):
        CIG.from_json(data)
    with pytest.raises(LogFormatError, match="not a CIG"):
        CIG.from_json({"nodes": []})


# --- The LLM linker -----------------------------------------------------------------------

SMALL = make_log([("A", "Hello there."), ("B", "Fine."), ("B", "Bye.")], question="Greet.")
"""Step 1 has only a reply edge, step 2 none: the linker is asked about both."""


def _asked_step(request: ChatRequest) -> int:
    assert request.tags.question is not None
    return int(request.tags.question.rsplit("#", 1)[1])


def test_linker_edges_to_later_steps_are_rejected() -> None:
    replies = {
        1: '{"edges": [{"source": 2, "evidence": "from the future"}]}',
        2: '{"edges": [{"source": 0, "evidence": "Hello"}, {"source": 2, "evidence": "self"}]}',
    }
    backend = ScriptedBackend(lambda request: replies[_asked_step(request)])
    linker = LLMEdgeLinker(backend)
    cig = build_cig(SMALL, linker=linker)

    assert cig.edges_of_kind("llm") == [(0, 2)]
    assert cig.graph.edges[0, 2]["evidence"] == "Hello"
    assert not cig.graph.has_edge(2, 1)
    assert linker.rejected == [("t", 1, 2), ("t", 2, 2)]
    assert linker.calls == 2
    assert nx.is_directed_acyclic_graph(cig.graph)


def test_linker_is_asked_only_for_steps_without_specific_edges() -> None:
    backend = ScriptedBackend(lambda request: '{"edges": []}')
    linker = LLMEdgeLinker(backend)
    build_cig(CHAT, linker=linker)

    # 1 has a reply edge only and 6 no edge; 2, 4 and 5 have specific edges, 3 is a tool
    # output, 0 has nothing to read.
    assert sorted(_asked_step(r) for r in backend.requests) == [1, 6]
    prompt = backend.requests[-1].messages[-1].content
    assert "### Message 5 (Writer_Expert, assistant)" in prompt
    assert "Which of the earlier messages (0, 1, 2, 3, 4, 5) does message 6 depend on?" in prompt


def test_linker_retries_a_bad_reply_in_the_same_conversation() -> None:
    backend = ScriptedBackend(
        ["sorry, no JSON here", '{"edges": [{"source": 0, "evidence": "Hello"}]}']
    )
    linker = LLMEdgeLinker(backend, max_retries=1)
    edges = asyncio.run(linker.propose(SMALL, 2, [0, 1]))

    assert edges == [ProposedEdge(0, "Hello")]
    assert linker.calls == 2
    retry = backend.requests[1].messages
    assert [m.role for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2].content == "sorry, no JSON here"
    assert "no JSON object found" in retry[3].content
    assert backend.requests[0].json_schema is not None


def test_linker_gives_up_after_its_retries_and_on_failed_requests() -> None:
    linker = LLMEdgeLinker(ScriptedBackend(['{"edges": "none"}', '{"links": []}']), max_retries=1)
    assert asyncio.run(linker.propose(SMALL, 2, [0, 1])) == []
    assert linker.calls == 2
    assert linker.failures == [("t", 2, 'no usable reply: the JSON object has no "edges" list')]

    failing = LLMEdgeLinker(ScriptedBackend([ModelRequestError("down for good")]))
    assert asyncio.run(failing.propose(SMALL, 2, [0, 1])) == []
    assert "model request failed" in failing.failures[0][2]
    with pytest.raises(ValueError, match="max_retries"):
        LLMEdgeLinker(ScriptedBackend([]), max_retries=-1)


class _Wild:
    """A linker that proposes nonsense: the builder must refuse it too."""

    async def propose(
        self, log: InteractionLog, step: int, candidates: Sequence[int]
    ) -> list[ProposedEdge]:
        return [ProposedEdge(step + 1), ProposedEdge(step), ProposedEdge(-1)]


def test_builder_accepts_only_earlier_steps_from_any_linker() -> None:
    cig = build_cig(SMALL, linker=_Wild())
    assert cig.edges_of_kind("llm") == []


def test_async_build_and_no_sync_build_inside_a_loop() -> None:
    async def inside() -> CIG:
        with pytest.raises(GoaError, match="await abuild_cig"):
            build_cig(SMALL, linker=_Wild())
        return await abuild_cig(SMALL, linker=_Wild())

    assert asyncio.run(inside()).graph.number_of_nodes() == 3


# --- Command line -------------------------------------------------------------------------


def test_main_exit_code_2_on_a_malformed_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "8.json"
    bad.write_text('{"question": "q", "history": [{"role": "user", "content": 3}]}')
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert str(bad) in err
    assert "history[0].content" in err

    good = tmp_path / "9.json"
    good.write_text(json.dumps({"question": "q", "history": [{"role": "user", "content": "hi"}]}))
    assert main([str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "daan-cig/1"


# --- Every real Who&When case -------------------------------------------------------------


@needs_data
def test_every_real_case_builds_an_acyclic_graph() -> None:
    logs = read_who_and_when_dir(WHO_AND_WHEN)
    kinds_seen: set[str] = set()
    for log in logs:
        cig = build_cig(log)
        assert cig.graph.number_of_nodes() == len(log.steps)
        assert nx.is_directed_acyclic_graph(cig.graph)
        assert all(i < j for i, j in cig.graph.edges)
        for step in log.steps:
            for ref in step.refs:
                assert cig.graph.edges[ref, step.index]["kind"] == "stated"
        kinds_seen |= {
            k for kind in EDGE_KINDS for k in ([kind] if cig.edges_of_kind(kind) else [])
        }
        assert CIG.from_json(json.loads(json.dumps(cig.to_json()))).to_json() == cig.to_json()
    assert kinds_seen == set(EDGE_KINDS) - {"llm"}
