"""Graph-of-Agents inside a real LangGraph StateGraph, as a node and as a subgraph."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from goa.integrations.langgraph import goa_node, goa_subgraph
from goa.testing.agents import agent, judge_by, make_goa


class PipelineState(TypedDict, total=False):
    raw: str
    question: str
    answer: str | None
    goa_result: dict[str, Any]
    report: str


def scripted_goa() -> Any:
    judge = judge_by({"B": 6, "A": 3, "C": 1})
    backends = {
        "a": agent("a", "A seems right.\nAnswer: A", score=judge),
        "b": agent("b", "B is right.\nAnswer: B", score=judge),
        "c": agent("c", "C, I think.\nAnswer: C", score=judge),
    }
    return make_goa(backends, sizes={"c": 3.0})


def build(goa: Any) -> Any:
    """A user's pipeline: clean the input, ask GoA, write a report."""
    builder = StateGraph(PipelineState)
    builder.add_node("prepare", lambda state: {"question": state["raw"].strip() + "?"})
    builder.add_node("ensemble", goa_node(goa))
    builder.add_node("report", lambda state: {"report": f"GoA says: {state['answer']}"})
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ensemble")
    builder.add_edge("ensemble", "report")
    builder.add_edge("report", END)
    return builder.compile()


def test_goa_node_in_a_state_graph_with_ainvoke() -> None:
    state = asyncio.run(build(scripted_goa()).ainvoke({"raw": "  Which letter  "}))
    assert state["question"] == "Which letter?"
    assert state["answer"] == "B is right.\nAnswer: B"
    assert state["report"] == "GoA says: B is right.\nAnswer: B"
    assert state["goa_result"]["ranking"][0] == "b"
    assert state["goa_result"]["graph"]["directed"] is True


def test_goa_node_runs_under_sync_invoke() -> None:
    state = build(scripted_goa()).invoke({"raw": "Which letter"})
    assert state["answer"] == "B is right.\nAnswer: B"


def test_goa_as_a_subgraph() -> None:
    sub = goa_subgraph(scripted_goa())
    builder = StateGraph(PipelineState)
    builder.add_node("goa", sub)
    builder.add_edge(START, "goa")
    builder.add_edge("goa", END)
    state = asyncio.run(builder.compile().ainvoke({"question": "Which letter?"}))
    assert state["answer"] == "B is right.\nAnswer: B"


def test_missing_question_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no question under 'question'"):
        asyncio.run(goa_subgraph(scripted_goa()).ainvoke({"question": "   "}))
