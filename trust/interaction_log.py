"""A multi-agent interaction, as DAAN reads it: who said what, in which order, and what is known
of the outcome.

Every source (a Who&When case, the result of a GoA run) is read into an
:class:`InteractionLog`; the causal interaction graph (:mod:`trust.cig`) and the attribution
methods (:mod:`trust.attribution`) work on this one shape only.

``Step.index`` is the 0-based position in ``InteractionLog.steps`` (Who&When's
``mistake_step`` indexes ``history`` the same way). ``Step.refs`` holds what the *log itself*
says about information flow (a GoA refinement names the answers it read; a tool result
answers the call before it); the CIG adds edges it infers. ``Label`` is the ground truth of a
benchmark case, absent for a log to be attributed for real.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Step(BaseModel):
    """One message or action of one agent."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    agent: str
    role: str = "assistant"
    content: str
    stage: str | None = None
    """The phase it belongs to where the log says (a GoA stage: ``answer``, ``judge``, ...)."""
    refs: tuple[int, ...] = ()
    """Earlier steps this one uses, as the log states it (indices smaller than ``index``)."""


class Label(BaseModel):
    """The known culprit of a failed interaction (benchmark ground truth)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    step: int = Field(ge=0)
    reason: str = ""


class InteractionLog(BaseModel):
    """A multi-agent interaction: the task, the steps in order, and what is known of the outcome.

    ``ground_truth`` is the correct final answer where known (Who&When gives it; attribution
    runs "with and without" it); ``final_answer`` what the agents concluded; ``label`` the
    culprit where known; ``agents`` every agent with its system prompt or description.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    """Where it came from: ``who-and-when``, ``goa``, ..."""
    question: str
    steps: tuple[Step, ...]
    agents: dict[str, str] = Field(default_factory=dict)
    ground_truth: str | None = None
    final_answer: str | None = None
    label: Label | None = None

    def agent_names(self) -> list[str]:
        """Every agent that speaks, in order of first appearance, then silent known agents."""
        seen: list[str] = []
        for step in self.steps:
            if step.agent not in seen:
                seen.append(step.agent)
        return seen + [a for a in self.agents if a not in seen]


__all__ = ["InteractionLog", "Label", "Step"]
