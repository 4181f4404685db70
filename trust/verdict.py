"""What an auditor says about one piece of a trace, and the tiers auditors come in.

Every auditor of TRUST (a computational checker, an LLM evaluator, a human reviewer)
answers with a :class:`Verdict`: ``valid``, ``invalid`` or ``abstain``, a confidence in
[0, 1] and a short reason. ``abstain`` means "cannot judge this piece" (no arithmetic to
check, a reply that could not be parsed, a reviewer who skipped it); it never counts as a
vote either way. Verdicts are frozen pydantic models, so they hash into the ledger as
canonical JSON and read back unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Tier", "Verdict", "Vote"]


class Vote(StrEnum):
    """An auditor's decision on one piece."""

    VALID = "valid"
    INVALID = "invalid"
    ABSTAIN = "abstain"


class Tier(StrEnum):
    """The three kinds of auditor, in the order a piece escalates through them."""

    COMPUTATIONAL = "computational"
    LLM = "llm"
    HUMAN = "human"


class Verdict(BaseModel):
    """One auditor's verdict on one segment (a node of the H-DAG and its premises)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vote: Vote
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = ""

    @classmethod
    def abstain(cls, reason: str) -> Verdict:
        """No judgement: the auditor cannot decide this piece."""
        return cls(vote=Vote.ABSTAIN, confidence=0.0, reason=reason)
