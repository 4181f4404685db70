"""Every LLM prompt of DAAN (root-cause attribution of multi-agent failures), in one place.

The edge linker (:class:`trust.cig.LLMEdgeLinker`) sees one step of a multi-agent log and the
earlier steps it could have read, numbered as in the log, and is asked which of them the step
uses: answers, quotes, takes a result from, or is conditioned on.  It answers with one JSON
object matching :data:`LINK_SCHEMA`::

    {"edges": [{"source": <an earlier step number>, "evidence": "<words of the step>"}]}

When the reply cannot be read, :func:`link_retry_prompt` names the problem and asks again in
the same conversation.  The texts are plain functions of the log, so the same step always gives
the same prompt (which keeps the response cache useful).  Long messages are cut to
:data:`MAX_STEP_CHARS` (earlier steps) and :data:`MAX_TARGET_CHARS` (the step judged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trust.interaction_log import InteractionLog, Step

__all__ = [
    "LINK_SCHEMA",
    "LINK_SYSTEM_PROMPT",
    "MAX_STEP_CHARS",
    "MAX_TARGET_CHARS",
    "link_prompt",
    "link_retry_prompt",
]

MAX_STEP_CHARS = 1500
"""An earlier step is shown up to this many characters (then cut, and marked as cut)."""
MAX_TARGET_CHARS = 4000
"""The step whose sources are asked for is shown up to this many characters."""

LINK_SYSTEM_PROMPT = (
    "You trace the flow of information in a conversation between several AI agents and tools. "
    "For one message you name the earlier messages it depends on: the ones it answers, "
    "quotes, takes a result, value or piece of code from, or is otherwise conditioned on. "
    "Name only real dependencies, never a message merely because it came before. "
    "Answer with one JSON object and nothing else."
)

LINK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "source": {"type": "integer", "minimum": 0},
                    "evidence": {"type": "string"},
                },
                "required": ["source", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["edges"],
    "additionalProperties": False,
}
"""The JSON schema of a linker reply (sent as ``ChatRequest.json_schema``)."""

_ANSWER_FORMAT = (
    'Reply with one JSON object: {"edges": [{"source": <number of an earlier message>, '
    '"evidence": "<the words of message {target} that show the dependency>"}]}. '
    'Use {"edges": []} if message {target} depends on none of the earlier messages shown.'
)


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f"\n[... cut: {len(text) - limit} more characters]"


def _header(step: Step) -> str:
    stage = f", stage {step.stage}" if step.stage else ""
    return f"### Message {step.index} ({step.agent}, {step.role}{stage})"


def link_prompt(log: InteractionLog, step: int, candidates: Sequence[int]) -> str:
    """The request naming the sources of ``log.steps[step]`` among ``candidates``."""
    target = log.steps[step]
    shown = "\n\n".join(
        f"{_header(log.steps[i])}\n{_cut(log.steps[i].content, MAX_STEP_CHARS)}"
        for i in sorted(candidates)
    )
    numbers = ", ".join(str(i) for i in sorted(candidates))
    return (
        f"# Task of the agents\n{_cut(log.question, MAX_STEP_CHARS)}\n\n"
        f"# Earlier messages\n{shown}\n\n"
        f"# The message to trace\n{_header(target)}\n{_cut(target.content, MAX_TARGET_CHARS)}\n\n"
        f"Which of the earlier messages ({numbers}) does message {step} depend on? "
        + _ANSWER_FORMAT.replace("{target}", str(step))
    )


def link_retry_prompt(problem: str, candidates: Sequence[int]) -> str:
    """The follow-up after an unusable reply: the problem, and the format again."""
    numbers = ", ".join(str(i) for i in sorted(candidates))
    return (
        f"Your reply could not be used: {problem}. Answer again with only the JSON object, "
        f'{{"edges": [{{"source": ..., "evidence": "..."}}]}}, each source one of: {numbers}.'
    )
