"""Every LLM prompt of DAAN's baseline attribution methods (:mod:`trust.attribution`), in one
place.

The judge investigates a *failed* multi-agent interaction and looks for the **decisive error**:
the earliest step whose mistake, had it not been made, would have let the agents reach the
correct answer. Three kinds of question are asked, each answered with one JSON object:

``all-at-once`` (:func:`all_at_once_prompt`, :data:`CULPRIT_SCHEMA`)
    The whole log; ``{"agent": name, "step": number, "reason": text}``.
``step`` (:func:`step_prompt`, :data:`STEP_SCHEMA`)
    The log up to step ``i``; is step ``i`` the decisive error?
    ``{"decisive": true | false, "reason": text}``.
``binary`` (:func:`binary_prompt`, :data:`HALF_SCHEMA`)
    Steps ``lo`` to ``hi``, split into a first half ``lo..mid`` and a second half
    ``mid+1..hi`` with ``mid = (lo + hi) // 2``; which half holds the decisive error?
    ``{"half": "first" | "second", "reason": text}``.

When a reply cannot be used, :func:`retry_prompt` names the problem and repeats the answer
format, in the same conversation.

Long logs
---------
Each step's content is shown clipped to ``max_step_chars`` characters (:func:`clip`, default
:data:`DEFAULT_MAX_STEP_CHARS`; ``None`` shows it whole): the first two thirds of the budget
from the start of the content, the last third from its end, and between them a marker saying
how many characters were left out. The same clipping is applied by every method (it is a
setting of the :class:`~trust.attribution.Judge`), so methods see the same text of each step.

Prompts are plain functions of the log, so the same question always gives the same prompt (the
response cache stays useful). The header lines ``AGENTS:``, ``STEPS:``, ``CORRECT FINAL
ANSWER:`` and the question lines ``STEP IN QUESTION:``, ``FIRST HALF:``, ``SECOND HALF:`` have a
fixed form; :func:`describe_prompt` reads them back (the simulated judge,
:mod:`trust.simulated_judge`, uses it to know what it is asked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trust.interaction_log import InteractionLog, Step

__all__ = [
    "CULPRIT_FORMAT",
    "CULPRIT_SCHEMA",
    "DEFAULT_MAX_STEP_CHARS",
    "HALF_FORMAT",
    "HALF_SCHEMA",
    "STEP_FORMAT",
    "STEP_SCHEMA",
    "SYSTEM_PROMPT",
    "PromptKind",
    "PromptTask",
    "all_at_once_prompt",
    "binary_prompt",
    "clip",
    "describe_prompt",
    "premise_step_prompt",
    "render_header",
    "render_steps",
    "retry_prompt",
    "step_prompt",
]

DEFAULT_MAX_STEP_CHARS = 2000
"""Characters of one step's content shown to the judge (Who&When: median step 786 characters,
longest 46,339; a 10-step log then stays under about 6,000 tokens)."""

SYSTEM_PROMPT = (
    "You investigate why a team of AI agents failed at a task. You read the log of their "
    "work and look for the decisive error: the earliest step whose mistake, had it not been "
    "made, would have let the team reach the correct answer. Later steps that only repeat or "
    "build on that mistake are not the decisive error. Check the agents' claims, code and "
    "results yourself rather than trusting them. Answer with one JSON object and nothing else."
)

CULPRIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "agent": {"type": "string"},
        "step": {"type": "integer", "minimum": 0},
        "reason": {"type": "string"},
    },
    "required": ["agent", "step", "reason"],
    "additionalProperties": False,
}
"""The JSON schema of an all-at-once reply (sent as ``ChatRequest.json_schema``)."""

STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisive": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    "required": ["decisive", "reason"],
    "additionalProperties": False,
}
"""The JSON schema of a step-by-step reply."""

HALF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "half": {"type": "string", "enum": ["first", "second"]},
        "reason": {"type": "string"},
    },
    "required": ["half", "reason"],
    "additionalProperties": False,
}
"""The JSON schema of a binary-search reply."""

CULPRIT_FORMAT = (
    'Reply with one JSON object: {"agent": "the responsible agent\'s name, exactly as in '
    'AGENTS", "step": the number of the step with the decisive error, "reason": "one or two '
    'sentences"}.'
)
STEP_FORMAT = (
    'Reply with one JSON object: {"decisive": true or false, "reason": "one or two sentences"}.'
)
HALF_FORMAT = (
    'Reply with one JSON object: {"half": "first" or "second", "reason": "one or two sentences"}.'
)

_OMITTED = "\n[... {n} characters omitted ...]\n"


def clip(text: str, max_chars: int | None) -> str:
    """``text`` cut to about ``max_chars`` characters: the first two thirds of the budget from
    its start, the last third from its end, and a marker naming how much was left out between
    them. ``None`` (or a text that fits) leaves it whole."""
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    head = (2 * max_chars) // 3
    tail = max_chars - head
    omitted = len(text) - head - tail
    return text[:head] + _OMITTED.format(n=omitted) + (text[-tail:] if tail else "")


def render_header(log: InteractionLog, *, with_ground_truth: bool) -> str:
    """The task, the correct answer (only ``with_ground_truth``, and only where the log has
    one), the answer the agents gave where known, and the agents."""
    parts = [f"TASK (what the agents were asked):\n{log.question.strip()}"]
    if with_ground_truth and log.ground_truth is not None:
        parts.append(f"CORRECT FINAL ANSWER: {log.ground_truth.strip()}")
    if log.final_answer is not None:
        parts.append(f"THE AGENTS' FINAL ANSWER: {log.final_answer.strip()}")
    parts.append(f"AGENTS: {json.dumps(log.agent_names())}")
    return "\n\n".join(parts)


def _render_step(position: int, step: Step, max_step_chars: int | None) -> str:
    role = f", {step.role}" if step.role and step.role != step.agent else ""
    return f"[Step {position}] {step.agent}{role}:\n{clip(step.content, max_step_chars)}"


def render_steps(
    steps: Sequence[Step], *, start: int = 0, max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS
) -> str:
    """Steps numbered from ``start`` (their positions in the log), each clipped."""
    return "\n\n".join(
        _render_step(start + offset, step, max_step_chars) for offset, step in enumerate(steps)
    )


def all_at_once_prompt(
    log: InteractionLog,
    *,
    with_ground_truth: bool,
    max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS,
) -> str:
    """The whole log at once: name the responsible agent and the decisive step."""
    last = len(log.steps) - 1
    return (
        f"{render_header(log, with_ground_truth=with_ground_truth)}\n\n"
        f"STEPS: 0 to {last}\n\n"
        f"LOG:\n{render_steps(log.steps, max_step_chars=max_step_chars)}\n\n"
        "The team failed at this task. Find the decisive error in the log: name the agent "
        "responsible for the failure and the number of the step where that agent made the "
        f"decisive error (a number from 0 to {last}).\n{CULPRIT_FORMAT}"
    )


def step_prompt(
    log: InteractionLog,
    index: int,
    *,
    with_ground_truth: bool,
    max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS,
) -> str:
    """The log up to and including step ``index``: is that step the decisive error?"""
    if not 0 <= index < len(log.steps):
        raise ValueError(f"step {index} is not in a log of {len(log.steps)} steps")
    agent = log.steps[index].agent
    shown = render_steps(log.steps[: index + 1], max_step_chars=max_step_chars)
    return (
        f"{render_header(log, with_ground_truth=with_ground_truth)}\n\n"
        f"LOG SO FAR (steps 0 to {index}; later steps are not shown):\n{shown}\n\n"
        f"STEP IN QUESTION: {index}\n"
        "The team failed at this task, and no step before this one was found to be the "
        f"decisive error. Is step {index}, by {agent}, the decisive error: a mistake that, had "
        "it not been made, would have let the team reach the correct answer?\n"
        f"{STEP_FORMAT}"
    )


def premise_step_prompt(
    log: InteractionLog,
    index: int,
    premises: Sequence[int],
    *,
    with_ground_truth: bool,
    max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS,
) -> str:
    """Step ``index`` with only the earlier steps it draws on (``premises``, from the causal
    interaction graph): is that step the decisive error? (The CIG method's question: the
    same question as :func:`step_prompt`, shown far less of the log.)"""
    if not 0 <= index < len(log.steps):
        raise ValueError(f"step {index} is not in a log of {len(log.steps)} steps")
    if any(not 0 <= p < index for p in premises):
        raise ValueError(f"premises of step {index} must be earlier steps, not {list(premises)}")
    shown = "\n\n".join(
        _render_step(i, log.steps[i], max_step_chars) for i in [*sorted(set(premises)), index]
    )
    agent = log.steps[index].agent
    context = (
        f"the steps it draws on ({', '.join(str(p) for p in sorted(set(premises)))})"
        if premises
        else "no earlier step: it draws on none"
    )
    return (
        f"{render_header(log, with_ground_truth=with_ground_truth)}\n\n"
        f"LOG EXCERPT (step {index} and {context}; other steps are not shown):\n{shown}\n\n"
        f"STEP IN QUESTION: {index}\n"
        "The team failed at this task, and no earlier step it depends on was found to be the "
        f"decisive error. Is step {index}, by {agent}, the decisive error: a mistake of its own "
        "(not one it merely repeats from the steps shown) that, had it not been made, would "
        f"have let the team reach the correct answer?\n{STEP_FORMAT}"
    )


def binary_prompt(
    log: InteractionLog,
    lo: int,
    hi: int,
    *,
    with_ground_truth: bool,
    max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS,
) -> str:
    """Steps ``lo`` to ``hi`` (``lo < hi``): is the decisive error in the first half
    (``lo..mid``) or the second (``mid+1..hi``), ``mid = (lo + hi) // 2``?"""
    if not 0 <= lo < hi < len(log.steps):
        raise ValueError(f"bad range {lo}..{hi} for a log of {len(log.steps)} steps")
    mid = (lo + hi) // 2
    shown = render_steps(log.steps[lo : hi + 1], start=lo, max_step_chars=max_step_chars)
    return (
        f"{render_header(log, with_ground_truth=with_ground_truth)}\n\n"
        f"LOG EXCERPT (steps {lo} to {hi} of 0 to {len(log.steps) - 1}):\n{shown}\n\n"
        f"FIRST HALF: steps {lo} to {mid}\n"
        f"SECOND HALF: steps {mid + 1} to {hi}\n"
        f"The team failed at this task, and the decisive error lies in steps {lo} to {hi}. "
        f"Is it in the first half (steps {lo} to {mid}) or in the second half (steps "
        f"{mid + 1} to {hi})?\n{HALF_FORMAT}"
    )


def retry_prompt(problem: str, answer_format: str) -> str:
    """The follow-up after an unusable reply; ``problem`` says what was wrong with it."""
    return (
        f"Your reply could not be used: {problem}\n"
        f"{answer_format} Send only the JSON object, with no other text."
    )


# --- Reading a prompt back (for the simulated judge) ----------------------------------------

PromptKind = Literal["all-at-once", "step", "binary"]

_AGENTS = re.compile(r"^AGENTS: (\[.*\])$", re.MULTILINE)
_STEPS = re.compile(r"^STEPS: 0 to (\d+)$", re.MULTILINE)
_TRUTH = re.compile(r"^CORRECT FINAL ANSWER: ", re.MULTILINE)
_STEP_Q = re.compile(r"^STEP IN QUESTION: (\d+)$", re.MULTILINE)
_FIRST = re.compile(r"^FIRST HALF: steps (\d+) to (\d+)$", re.MULTILINE)
_SECOND = re.compile(r"^SECOND HALF: steps (\d+) to (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class PromptTask:
    """What a prompt of this module asks, read back from its text."""

    kind: PromptKind
    agents: tuple[str, ...]
    with_ground_truth: bool
    steps: int | None = None
    """All-at-once: how many steps the log has."""
    step: int | None = None
    """Step-by-step: the step in question."""
    first: tuple[int, int] | None = None
    """Binary search: the first half, both ends included."""
    second: tuple[int, int] | None = None
    """Binary search: the second half, both ends included."""


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def describe_prompt(text: str) -> PromptTask | None:
    """What a prompt made here asks (its header lines are read from the first occurrence, its
    question lines from the last, so that a log quoting them cannot mislead), or None."""
    agents_match = _AGENTS.search(text)
    if agents_match is None:
        return None
    try:
        agents = json.loads(agents_match.group(1))
    except ValueError:
        return None
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        return None
    truth_match = _TRUTH.search(text)
    with_truth = truth_match is not None and truth_match.start() < agents_match.start()
    names, truth = tuple(agents), with_truth
    first, second = _last(_FIRST, text), _last(_SECOND, text)
    if first is not None and second is not None:
        return PromptTask(
            kind="binary",
            agents=names,
            with_ground_truth=truth,
            first=(int(first.group(1)), int(first.group(2))),
            second=(int(second.group(1)), int(second.group(2))),
        )
    step = _last(_STEP_Q, text)
    if step is not None:
        return PromptTask(
            kind="step", agents=names, with_ground_truth=truth, step=int(step.group(1))
        )
    steps = _STEPS.search(text)
    if steps is not None:
        return PromptTask(
            kind="all-at-once",
            agents=names,
            with_ground_truth=truth,
            steps=int(steps.group(1)) + 1,
        )
    return None
