"""Graph-of-Agents as a LangGraph node or subgraph.

``goa_node`` gives a node for a user's ``StateGraph``: it reads the question
from one state key and writes the answer (and, optionally, the whole result as
JSON) to others. It runs under both ``invoke`` and ``ainvoke``. ``goa_subgraph``
gives a compiled one-node graph to embed as a subgraph::

    from langgraph.graph import StateGraph, START, END
    builder = StateGraph(MyState)
    builder.add_node("ensemble", goa_node(GraphOfAgents(pool="local")))
    builder.add_edge(START, "ensemble")
    builder.add_edge("ensemble", END)

langgraph is imported only when these functions are called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

if TYPE_CHECKING:
    from goa.result import Result


class Runner(Protocol):
    """What the node needs of a GraphOfAgents: an async run from a question."""

    async def arun(self, question: str) -> Result: ...


class GoAState(TypedDict, total=False):
    """The state of :func:`goa_subgraph`: the question in, the answer and result out."""

    question: str
    answer: str | None
    goa_result: dict[str, Any]


def goa_node(
    goa: Runner,
    *,
    question_key: str = "question",
    answer_key: str = "answer",
    result_key: str | None = "goa_result",
) -> Any:
    """A LangGraph node (a runnable) that answers ``state[question_key]`` with ``goa``.

    It returns a partial state update: ``{answer_key: answer}`` (``None`` when no
    agent could answer) and, unless ``result_key`` is ``None``, the whole result
    as JSON under ``result_key``.
    """
    from langchain_core.runnables import RunnableLambda

    async def arun(state: Mapping[str, Any]) -> dict[str, Any]:
        question = state.get(question_key)
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"the state has no question under {question_key!r}")
        result = await goa.arun(question)
        update: dict[str, Any] = {answer_key: result.answer}
        if result_key is not None:
            update[result_key] = result.model_dump(mode="json")
        return update

    def run(state: Mapping[str, Any]) -> dict[str, Any]:
        return asyncio.run(arun(state))

    return RunnableLambda(run, afunc=arun, name="graph_of_agents")


def goa_subgraph(goa: Runner) -> Any:
    """A compiled LangGraph graph over :class:`GoAState` with one GoA node."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(GoAState)
    builder.add_node("graph_of_agents", goa_node(goa))
    builder.add_edge(START, "graph_of_agents")
    builder.add_edge("graph_of_agents", END)
    return builder.compile()
