"""What a Graph-of-Agents run returns: the answer and everything that led to it.

:class:`Result` is a pydantic model; ``result.model_dump(mode="json")`` is the
whole record (top-level keys include ``answer`` and ``graph``) and
:meth:`Result.mermaid` draws the graph. Costs follow the adapter's rule: a cost
that is not known is ``None``, never ``0``; a total is ``None`` as soon as one of
its calls has an unknown cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from goa.inference.types import FinishReason, Usage

Stage = Literal["difficulty", "select", "answer", "score", "forward", "reverse", "pool"]
STAGES: tuple[Stage, ...] = (
    "difficulty",
    "select",
    "answer",
    "score",
    "forward",
    "reverse",
    "pool",
)
ANSWER_STAGES: frozenset[str] = frozenset({"answer", "forward", "reverse", "pool"})
"""Stages whose replies are answers to the question (and have a final answer line)."""

IncidentKind = Literal["retry", "fallback", "error", "dropped"]
EventKind = Literal[
    "stage_started",
    "stage_finished",
    "agent_answered",
    "retry",
    "fallback",
    "error",
    "dropped",
    "final",
]


class CallRecord(BaseModel):
    """One model call: who, which stage, what came back (or what went wrong)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    stage: Stage
    round: int | None = None
    attempt: int = 0
    text: str | None = None
    answer: str | None = None
    """The final answer extracted from ``text`` (answer stages only), if one was found."""
    usage: Usage | None = None
    cost_usd: float | None = None
    latency_s: float = 0.0
    started_s: float = 0.0
    """When the call started, in seconds from the start of the run."""
    finish_reason: FinishReason | None = None
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Selected(BaseModel):
    """An agent chosen by node sampling, and why."""

    model_config = ConfigDict(frozen=True)

    agent: str
    reason: str


class Removal(BaseModel):
    """An agent that left the run (failed, over budget, or below the threshold)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    stage: Stage
    reason: str


class Incident(BaseModel):
    """A retry, a fallback, an error or a dropped agent, in the order they happened."""

    model_config = ConfigDict(frozen=True)

    kind: IncidentKind
    stage: Stage
    agent: str | None = None
    round: int | None = None
    message: str


class Totals(BaseModel):
    """Calls, tokens, cost and summed call latency of a group of calls."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def of(cls, records: Iterable[CallRecord]) -> Totals:
        """The totals of ``records``; the cost is ``None`` if any cost is unknown."""
        calls = failed = prompt = completion = 0
        cost: float | None = 0.0
        latency = 0.0
        for record in records:
            calls += 1
            failed += 0 if record.ok else 1
            if record.usage is not None:
                prompt += record.usage.prompt_tokens
                completion += record.usage.completion_tokens
            cost = None if cost is None or record.cost_usd is None else cost + record.cost_usd
            latency += record.latency_s
        return cls(
            calls=calls,
            failed_calls=failed,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_s=latency,
        )


class StageSummary(BaseModel):
    """One stage: its totals, wall time (summed over rounds) and incident counts."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    wall_s: float = 0.0
    totals: Totals = Totals()
    retries: int = 0
    fallbacks: int = 0
    errors: int = 0
    dropped: int = 0


class Result(BaseModel):
    """The outcome of one question through the graph.

    ``answered`` is False when no agent could answer; ``answer`` is then ``None``
    and ``reason`` says why. ``answer`` is the full final reply (reasoning and
    final answer line); ``final_answer`` is the answer extracted from its last
    ``Answer:`` line, when there is one.
    """

    question: str
    question_id: str
    answer: str | None
    final_answer: str | None = None
    answered: bool
    reason: str
    final_agent: str | None = None
    pooling: Literal["max", "mean"]
    selector: str
    k: int
    """The number of agents node sampling aimed for (after adaptive k)."""
    difficulty: int | None = None
    selected: list[Selected] = Field(default_factory=list)
    responses: list[CallRecord] = Field(default_factory=list)
    scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    """The score matrix: judge -> judged agent -> score (each judge's row sums to 1)."""
    judges: dict[str, Literal["prompt", "likelihood"]] = Field(default_factory=dict)
    """How each judge that was asked scored: by ``prompt`` or by ``likelihood``."""
    relevance: dict[str, float] = Field(default_factory=dict)
    """Each scored agent's normalised mean received score (they sum to 1)."""
    ranking: list[str] = Field(default_factory=list)
    """The agents that passed the threshold, most relevant first."""
    removed: list[Removal] = Field(default_factory=list)
    graph: dict[str, Any] = Field(default_factory=dict)
    """The agent graph in networkx node-link form (nodes, edges from more to less relevant)."""
    incidents: list[Incident] = Field(default_factory=list)
    stages: dict[str, StageSummary] = Field(default_factory=dict)
    agents: dict[str, Totals] = Field(default_factory=dict)
    totals: Totals = Totals()
    early_exit: bool = False
    rounds: int = 1
    wall_s: float = 0.0

    def stage_responses(self, stage: Stage) -> list[CallRecord]:
        """The calls of one stage, in the order they were made."""
        return [record for record in self.responses if record.stage == stage]

    @property
    def retries(self) -> list[Incident]:
        return [i for i in self.incidents if i.kind == "retry"]

    @property
    def fallbacks(self) -> list[Incident]:
        return [i for i in self.incidents if i.kind == "fallback"]

    @property
    def errors(self) -> list[Incident]:
        return [i for i in self.incidents if i.kind == "error"]

    def mermaid(self) -> str:
        """The graph as a Mermaid flowchart (edges from more to less relevant agents)."""
        return _mermaid(self)


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")


def _mermaid(result: Result) -> str:
    nodes: list[dict[str, Any]] = list(result.graph.get("nodes", []))
    edges: list[dict[str, Any]] = list(result.graph.get("edges", []))
    ids = {str(node["id"]): f"n{i}" for i, node in enumerate(nodes)}
    lines = ["flowchart LR"]
    for node in nodes:
        agent = str(node["id"])
        relevance = node.get("relevance")
        label = agent if relevance is None else f"{agent}<br/>relevance {relevance:.2f}"
        if node.get("dropped"):
            label += "<br/>dropped"
        lines.append(f'  {ids[agent]}["{_quote(label)}"]')
    for edge in edges:
        source, target = ids[str(edge["source"])], ids[str(edge["target"])]
        lines.append(f'  {source} -- "{edge.get("weight", 0.0):.2f}" --> {target}')
    removed = [r for r in result.removed if r.agent not in ids]
    for i, removal in enumerate(removed):
        label = f"{removal.agent}<br/>removed at {removal.stage}"
        lines.append(f'  r{i}["{_quote(label)}"]:::removed')
    if removed:
        lines.append("  classDef removed stroke-dasharray: 5 5,color:#888")
    if result.final_agent in ids:
        lines.append(f"  style {ids[result.final_agent]} stroke-width:3px")
    return "\n".join(lines) + "\n"


class Event(BaseModel):
    """A progress event of a run, for progress bars and servers.

    ``final`` is always the last event and carries the :class:`Result`.
    """

    kind: EventKind
    stage: Stage | None = None
    agent: str | None = None
    round: int | None = None
    message: str = ""
    elapsed_s: float = 0.0
    result: Result | None = None
