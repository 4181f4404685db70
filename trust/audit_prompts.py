"""Every LLM prompt of the TRUST audit, in one place.

An LLM evaluator sees one :class:`~trust.segment.Segment`: the goal, the premises the judged
node depends on and the node itself (a step with its computations, or one computation).  It is
told to take the premises as given and judge only the node, so that an error is charged to the
step that makes it and not to every step after it; and to answer with one JSON object::

    {"vote": "valid" | "invalid" | "abstain", "confidence": 0..1, "reason": "..."}

When the reply cannot be read, :func:`retry_prompt` names the problem and asks again.  The
texts are plain functions of the segment, so the same segment always gives the same prompt
(which keeps the response cache useful).
"""

from __future__ import annotations

from typing import Any

from trust.hdag import Level
from trust.segment import Segment

__all__ = [
    "SYSTEM_PROMPT",
    "VERDICT_SCHEMA",
    "evaluator_prompt",
    "render_segment",
    "retry_prompt",
]

SYSTEM_PROMPT = (
    "You audit one piece of another model's reasoning. You see only that piece and the "
    "earlier results it relies on. Be strict and concrete: check every calculation and every "
    "inference yourself. Answer with one JSON object and nothing else."
)

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vote": {"type": "string", "enum": ["valid", "invalid", "abstain"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["vote", "confidence", "reason"],
    "additionalProperties": False,
}
"""The JSON schema of a verdict reply (sent as ``ChatRequest.json_schema``)."""

_ANSWER_FORMAT = (
    'Reply with one JSON object: {"vote": "valid" | "invalid" | "abstain", '
    '"confidence": a number from 0 to 1, "reason": "one or two sentences"}.'
)


def render_segment(segment: Segment) -> str:
    """The segment as text: goal, premises (id and text), then what is to be judged."""
    parts: list[str] = []
    if segment.goal is not None:
        parts.append(f"GOAL (the question being answered):\n{segment.goal.text}")
    if segment.premises:
        lines = "\n".join(f"[{node.id}] {node.text}" for node in segment.premises)
        parts.append(f"PREMISES (earlier results; take them as given):\n{lines}")
    else:
        parts.append("PREMISES: none.")
    target = segment.target
    kind = "STEP" if target.level is Level.STEP else "COMPUTATION"
    parts.append(f"{kind} TO JUDGE:\n[{target.id}] {target.text}")
    computations = segment.nodes[1:]
    if computations:
        lines = "\n".join(f"[{node.id}] {node.text}" for node in computations)
        parts.append(f"COMPUTATIONS IN THIS STEP:\n{lines}")
    return "\n\n".join(parts)


def evaluator_prompt(segment: Segment) -> str:
    """The user prompt asking for a verdict on ``segment``."""
    if segment.level is Level.STEP:
        task = (
            "Judge the step. It is valid when every calculation in it is correct, it follows "
            "from the premises and the goal, and it uses the premises' results correctly. "
            "It is invalid when it contains an error of its own. Do not mark it invalid "
            "because a premise might be wrong: premises are judged separately."
        )
    else:
        task = (
            "Judge the computation: valid when the left-hand side equals the right-hand side "
            "(allowing only for rounding to the decimals shown), invalid otherwise."
        )
    ending = (
        "Use abstain only when the piece cannot be judged from what is shown. "
        "Confidence is how sure you are of your vote."
    )
    return f"{render_segment(segment)}\n\n{task}\n{ending}\n{_ANSWER_FORMAT}"


def retry_prompt(problem: str) -> str:
    """The follow-up after an unreadable reply; ``problem`` says what was wrong with it."""
    return (
        f"Your reply could not be used: {problem}\n"
        f"{_ANSWER_FORMAT} Send only the JSON object, with no other text."
    )
