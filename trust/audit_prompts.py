"""Every LLM prompt of the TRUST audit, in one place.

An LLM evaluator sees one :class:`~trust.segment.Segment`: the goal, the premises the judged
node depends on and the node itself (a step with its computations, or one computation).  It is
told to take the premises as given and judge only the node, so that an error is charged to the
step that makes it and not to every step after it; and to answer with one JSON object::

    {"vote": "valid" | "invalid" | "abstain", "confidence": 0..1, "reason": "..."}

When the reply cannot be read, :func:`retry_prompt` names the problem and asks again.  The
texts are plain functions of the segment, so the same segment always gives the same prompt
(which keeps the response cache useful).

The decomposer model (:mod:`trust.llm_decompose`) gets :func:`decomposition_prompt`: the trace's
steps, numbered, and asks for their structure only (goal, strategies, tactics grouping step
numbers, dependencies and operations per step) as JSON matching :data:`DECOMPOSITION_SCHEMA`;
:func:`decomposition_retry_prompt` names the problem with an unusable reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trust.hdag import Level
from trust.segment import Segment

__all__ = [
    "DECOMPOSER_SYSTEM_PROMPT",
    "DECOMPOSITION_SCHEMA",
    "SYSTEM_PROMPT",
    "VERDICT_SCHEMA",
    "decomposition_prompt",
    "decomposition_retry_prompt",
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


# --- Decomposition (trust.llm_decompose) ----------------------------------------------------
#
# The decomposer model sees the trace's steps, numbered, and answers with the structure only:
# the goal, strategies whose tactics group step numbers, and per step the earlier steps it uses
# and the computations it performs.  It never writes a step's text: the steps of the H-DAG are
# the trace's own, so the model cannot change what is audited.

DECOMPOSER_SYSTEM_PROMPT = (
    "You break another model's chain of thought into a hierarchy so that each step can be "
    "audited on its own. You never rewrite the steps: you refer to them by their numbers. "
    "Answer with one JSON object and nothing else."
)

DECOMPOSITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "goal": {"type": "string"},
        "strategies": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "tactics": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "steps": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "integer", "minimum": 1},
                                },
                            },
                            "required": ["text", "steps"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["text", "tactics"],
                "additionalProperties": False,
            },
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "step": {"type": "integer", "minimum": 1},
                    "depends_on": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                    "operations": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["step", "depends_on", "operations"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["goal", "strategies", "steps"],
    "additionalProperties": False,
}
"""The JSON schema of a decomposition reply (sent as ``ChatRequest.json_schema``)."""

_DECOMPOSITION_FORMAT = (
    'Reply with one JSON object: "goal" (the question the reasoning answers, in one '
    'sentence), "strategies" (each with a "text" naming the plan in your words and "tactics", '
    'each with a "text" naming its purpose in your words and the "steps" it groups) and '
    '"steps" (one entry per step). An example for a different trace of three steps:\n'
    '{"goal": "How many apples are left?",\n'
    ' "strategies": [{"text": "Count the apples bought, then take away those eaten",\n'
    '   "tactics": [{"text": "Count the apples bought", "steps": [1, 2]},\n'
    '               {"text": "Take away the apples eaten", "steps": [3]}]}],\n'
    ' "steps": [{"step": 1, "depends_on": [], "operations": ["3 * 4 = 12"]},\n'
    '           {"step": 2, "depends_on": [1], "operations": ["12 + 5 = 17"]},\n'
    '           {"step": 3, "depends_on": [2], "operations": ["17 - 6 = 11"]}]}'
)

_DECOMPOSITION_RULES = (
    "Rules:\n"
    "- Every step number belongs to exactly one tactic; a tactic groups steps that serve one "
    "purpose. One strategy is usual; use more only for clearly separate plans.\n"
    '- "steps" has exactly one entry per step number, in order.\n'
    '- "depends_on" lists the earlier steps (smaller numbers only) whose results the step '
    "uses; [] when it uses none.\n"
    '- "operations" lists each calculation the step itself performs, as written in it, in the '
    'form "expression = result"; [] when there is none.\n'
    "- Refer to steps only by number; do not copy or rewrite their text."
)


def decomposition_prompt(
    steps: Sequence[str], *, goal: str | None = None, preamble: str | None = None
) -> str:
    """The user prompt asking for the structure of a trace whose steps are ``steps``."""
    parts: list[str] = []
    if goal is not None:
        parts.append(f"QUESTION:\n{goal}")
    if preamble is not None:
        parts.append(f"TEXT BEFORE THE STEPS (context, not a step):\n{preamble}")
    numbered = "\n".join(f"{number}. {text}" for number, text in enumerate(steps, start=1))
    parts.append(f"STEPS (1 to {len(steps)}):\n{numbered}")
    parts.append(_DECOMPOSITION_FORMAT)
    parts.append(_DECOMPOSITION_RULES)
    return "\n\n".join(parts)


def decomposition_retry_prompt(problem: str) -> str:
    """The follow-up after an unusable decomposition; ``problem`` says what was wrong."""
    return (
        f"Your reply could not be used: {problem}\n"
        "Send the corrected JSON object only, following the same format and rules."
    )
