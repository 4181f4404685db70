"""What every evaluated method is: a question in, a :class:`MethodOutcome` out.

GoA, the single model, Mixture-of-Agents, Self-MoA and majority vote all answer
through this one protocol, so the runner logs, scores and costs them alike.
``answer_format`` is the instruction for the final answer line that the
question set needs (e.g. ``Answer: X`` with one letter); methods pass it on to
the models that write the final answer.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from goa.result import CallRecord, Incident, Result, Totals


class MethodOutcome(BaseModel):
    """One method's answer to one question, with every call it made.

    ``answered`` is False (and ``answer`` None) when the method could not answer;
    ``reason`` says why. ``graph`` is the GoA graph in node-link form (empty for
    methods without one). ``totals`` sum the calls; cost is ``None`` when any
    call's cost is unknown.
    """

    method: str
    answer: str | None
    answered: bool
    reason: str = ""
    responses: list[CallRecord] = Field(default_factory=list)
    graph: dict[str, Any] = Field(default_factory=dict)
    totals: Totals = Totals()
    incidents: list[Incident] = Field(default_factory=list)
    wall_s: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_result(cls, method: str, result: Result) -> MethodOutcome:
        """The outcome of a Graph-of-Agents run."""
        return cls(
            method=method,
            answer=result.answer,
            answered=result.answered,
            reason=result.reason,
            responses=result.responses,
            graph=result.graph,
            totals=result.totals,
            incidents=result.incidents,
            wall_s=result.wall_s,
            extra={
                "selected": [s.agent for s in result.selected],
                "ranking": result.ranking,
                "final_agent": result.final_agent,
                "early_exit": result.early_exit,
            },
        )


@runtime_checkable
class Method(Protocol):
    """A way of answering questions with models."""

    @property
    def name(self) -> str: ...

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome: ...
