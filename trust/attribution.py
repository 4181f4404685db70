"""Failure attribution baselines: which agent, at which step, caused a multi-agent failure.

These are the four baselines of the Who&When benchmark (Zhang et al. 2025, "Which Agent Causes
Task Failures and When?"), implemented with our own prompts
(:mod:`trust.attribution_prompts`). Each reads an :class:`~trust.interaction_log.InteractionLog`
of a failed interaction and returns an :class:`Attribution`: the responsible agent, the
decisive step (0-based position in ``log.steps``), a reason, and what it cost (tokens, calls).

``random`` (:func:`random_attribution`)
    An agent drawn uniformly from ``log.agent_names()`` and, independently, a step drawn
    uniformly from the log's steps. No model; zero tokens.
``all_at_once`` (:func:`all_at_once_attribution`)
    The judge reads the whole log once and names the agent and the step. A reply whose agent
    is not one of the log's agents or whose step is out of range is sent back (retry). When no
    usable reply comes, it falls back to the last step and its agent (``fallback=True``).
``step_by_step`` (:func:`step_by_step_attribution`)
    For ``i = 0, 1, ...`` the judge sees steps ``0..i`` and is asked whether step ``i`` is the
    decisive error; the first "yes" ends the search (agent: that step's agent). With no "yes"
    it falls back to the last step (``fallback=True``). A reply that stays unusable counts as
    "no". Calls: the position of the first "yes" plus one (more with retries).
``binary_search`` (:func:`binary_search_attribution`)
    Start with the range ``0..n-1``; while it holds more than one step, show the judge the
    steps of the range and ask whether the decisive error lies in its first half
    (``lo..mid``, ``mid = (lo + hi) // 2``) or its second (``mid+1..hi``), and keep that half.
    The one step left is the answer, and its agent the agent. At most ``ceil(log2 n)`` calls
    (exactly that when ``n`` is a power of two), not counting retries. A reply that stays
    unusable keeps the first half (``fallback=True``).

Every method takes ``with_ground_truth``: when true (and the log has one), the correct final
answer is shown to the judge. The judge's settings (:class:`Judge`) are shared by all methods,
so every method sees each step's content clipped the same way (``max_step_chars``, see
:mod:`trust.attribution_prompts`).

Tokens come from the backend's reported usage; when a completion reports none (both counts
0), they are estimated at about four characters a token (:func:`estimate_tokens`) and the
attribution says so (``tokens_estimated``).

:data:`METHODS` maps each method's name to its function, all with the signature of
:class:`AttributionMethod`; a new method is one more entry.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from goa.errors import ModelRequestError
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Completion, Message, Tags
from goa.parsing import Parsed, find_json
from trust.attribution_prompts import (
    CULPRIT_FORMAT,
    CULPRIT_SCHEMA,
    DEFAULT_MAX_STEP_CHARS,
    HALF_FORMAT,
    HALF_SCHEMA,
    STEP_FORMAT,
    STEP_SCHEMA,
    SYSTEM_PROMPT,
    all_at_once_prompt,
    binary_prompt,
    retry_prompt,
    step_prompt,
)
from trust.interaction_log import InteractionLog

__all__ = [
    "METHODS",
    "Attribution",
    "AttributionMethod",
    "Judge",
    "Spend",
    "all_at_once_attribution",
    "ask_decisive",
    "binary_search_attribution",
    "check_attributable",
    "estimate_tokens",
    "match_agent",
    "parse_culprit",
    "parse_half",
    "parse_step_verdict",
    "random_attribution",
    "step_by_step_attribution",
]

T = TypeVar("T")


class Attribution(BaseModel):
    """The answer of one attribution method on one log, and what it cost."""

    model_config = ConfigDict(frozen=True)

    method: str
    agent: str
    step: int = Field(ge=0)
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    """Requests made to the judge, retries included."""
    problems: tuple[str, ...] = ()
    """Unusable replies and failed requests met on the way, in words."""
    fallback: bool = False
    """The answer is (partly) a default, not the judge's: see each method."""
    tokens_estimated: bool = False
    """Some completion reported no usage; its tokens were estimated from characters."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(text: str) -> int:
    """About four characters a token (0 for an empty text)."""
    return math.ceil(len(text) / 4)


@dataclass
class Spend:
    """What one attribution has spent so far (one per attribution: a judge is shared)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    problems: list[str] = field(default_factory=list)
    estimated: bool = False

    def add(self, request: ChatRequest, completion: Completion) -> None:
        usage = completion.usage
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            self.estimated = True
            self.prompt_tokens += sum(estimate_tokens(m.content) for m in request.messages)
            self.completion_tokens += estimate_tokens(completion.text)
        else:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens

    def attribution(
        self, method: str, agent: str, step: int, reason: str, *, fallback: bool = False
    ) -> Attribution:
        return Attribution(
            method=method,
            agent=agent,
            step=step,
            reason=reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            calls=self.calls,
            problems=tuple(self.problems),
            fallback=fallback,
            tokens_estimated=self.estimated,
        )


class Judge:
    """A language model asked attribution questions through goa's inference adapter.

    :meth:`ask` sends the system prompt and one question (with its JSON schema, which backends
    that can enforce it do), reads the reply with the given parser and, while the reply is
    unusable, asks again in the same conversation with
    :func:`~trust.attribution_prompts.retry_prompt`, at most ``max_retries`` times. It returns
    None when no usable reply comes or the request fails for good
    (:class:`~goa.errors.ModelRequestError`); the problems go to the :class:`Spend`.

    ``max_step_chars`` is how many characters of each step's content the judge is shown
    (:func:`~trust.attribution_prompts.clip`; None: all), the same for every method.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        id: str | None = None,
        max_retries: int = 2,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        max_step_chars: int | None = DEFAULT_MAX_STEP_CHARS,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        if max_step_chars is not None and max_step_chars < 1:
            raise ValueError("max_step_chars must be at least 1 (or None)")
        self.backend = backend
        self.id = id or f"judge:{backend.model}"
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_step_chars = max_step_chars

    async def ask(
        self,
        prompt: str,
        *,
        schema: dict[str, Any],
        answer_format: str,
        parse: Callable[[Any], Parsed[T]],
        spend: Spend,
        case_id: str,
        stage: str,
    ) -> T | None:
        """The parsed answer to ``prompt``, or None (see the class)."""
        messages = [
            Message(role="system", content=SYSTEM_PROMPT),
            Message(role="user", content=prompt),
        ]
        for attempt in range(self.max_retries + 1):
            request = ChatRequest(
                messages=tuple(messages),
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                json_schema=schema,
                tags=Tags(agent=self.id, stage=stage, question=case_id),
            )
            spend.calls += 1
            try:
                completion = await self.backend.complete(request)
            except ModelRequestError as error:
                spend.problems.append(f"{stage}: model request failed: {error}")
                return None
            spend.add(request, completion)
            parsed = parse(find_json(completion.text))
            if parsed.ok and parsed.value is not None:
                return parsed.value
            problem = parsed.problem or "unusable reply"
            spend.problems.append(f"{stage} (attempt {attempt + 1}): {problem}")
            messages.append(Message(role="assistant", content=completion.text))
            messages.append(Message(role="user", content=retry_prompt(problem, answer_format)))
        return None


# --- Reading replies -----------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def _normal(name: str) -> str:
    return _NON_ALNUM.sub("", name.casefold())


def match_agent(name: str, agents: list[str]) -> str | None:
    """The agent of ``agents`` that ``name`` names: exactly, else ignoring case, spaces and
    punctuation (when that leaves exactly one), else None."""
    if name in agents:
        return name
    hits = [a for a in agents if _normal(a) == _normal(name)]
    return hits[0] if len(hits) == 1 else None


def _as_step(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("step").strip()
        if text.isdigit():
            return int(text)
    return None


def _reason(data: dict[str, Any]) -> str:
    reason = data.get("reason", "")
    return reason if isinstance(reason, str) else str(reason)


def parse_culprit(data: Any, log: InteractionLog) -> Parsed[tuple[str, int, str]]:
    """An all-at-once reply: ``(agent, step, reason)``; the agent must be one of the log's
    (:func:`match_agent`) and the step a position in the log."""
    if not isinstance(data, dict):
        return Parsed(problem="the reply contains no JSON object")
    agents = log.agent_names()
    name = data.get("agent")
    if not isinstance(name, str):
        return Parsed(problem=f'"agent" must be a string, not {name!r}')
    agent = match_agent(name.strip(), agents)
    if agent is None:
        return Parsed(problem=f'"agent" must be one of {agents}, not {name!r}')
    step = _as_step(data.get("step"))
    last = len(log.steps) - 1
    if step is None or not 0 <= step <= last:
        return Parsed(
            problem=f'"step" must be a step number from 0 to {last}, not {data.get("step")!r}'
        )
    return Parsed(value=(agent, step, _reason(data)))


_YES = {"yes", "true", "y"}
_NO = {"no", "false", "n"}


def parse_step_verdict(data: Any) -> Parsed[tuple[bool, str]]:
    """A step-by-step reply: ``(decisive, reason)``; ``decisive`` a boolean (or yes/no)."""
    if not isinstance(data, dict):
        return Parsed(problem="the reply contains no JSON object")
    value = data.get("decisive")
    if isinstance(value, str) and value.strip().lower() in _YES | _NO:
        value = value.strip().lower() in _YES
    if not isinstance(value, bool):
        return Parsed(problem=f'"decisive" must be true or false, not {value!r}')
    return Parsed(value=(value, _reason(data)))


def parse_half(data: Any) -> Parsed[tuple[str, str]]:
    """A binary-search reply: ``("first" | "second", reason)``."""
    if not isinstance(data, dict):
        return Parsed(problem="the reply contains no JSON object")
    value = data.get("half")
    half = value.strip().lower() if isinstance(value, str) else None
    if half not in {"first", "second"}:
        return Parsed(problem=f'"half" must be "first" or "second", not {value!r}')
    assert half is not None
    return Parsed(value=(half, _reason(data)))


# --- The methods ---------------------------------------------------------------------------


class AttributionMethod(Protocol):
    """The signature every method shares (so :data:`METHODS` can hold them all)."""

    def __call__(
        self,
        log: InteractionLog,
        judge: Judge,
        /,
        *,
        with_ground_truth: bool,
        seed: int | random.Random | None = None,
    ) -> Awaitable[Attribution]: ...


async def ask_decisive(
    judge: Judge, prompt: str, spend: Spend, case_id: str, stage: str
) -> tuple[bool, str] | None:
    """The judge's answer to a "is this step the decisive error?" prompt: (decisive, reason),
    or None when no usable reply came."""
    return await judge.ask(
        prompt,
        schema=STEP_SCHEMA,
        answer_format=STEP_FORMAT,
        parse=parse_step_verdict,
        spend=spend,
        case_id=case_id,
        stage=stage,
    )


def check_attributable(log: InteractionLog) -> None:
    """A :class:`ValueError` for a log with no steps (nothing to attribute)."""
    if not log.steps:
        raise ValueError(f"log {log.id!r} has no steps to attribute")


async def random_attribution(
    log: InteractionLog,
    judge: Judge | None = None,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
) -> Attribution:
    """A uniform agent of ``log.agent_names()`` and, independently, a uniform step. The judge
    and ``with_ground_truth`` are not used; ``seed`` (an int or a ``random.Random``) makes it
    reproducible."""
    check_attributable(log)
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    agent = rng.choice(log.agent_names())
    step = rng.randrange(len(log.steps))
    return Attribution(method="random", agent=agent, step=step, reason="chosen at random")


async def all_at_once_attribution(
    log: InteractionLog,
    judge: Judge,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
) -> Attribution:
    """The judge reads the whole log once and names the agent and the step."""
    check_attributable(log)
    spend = Spend()
    prompt = all_at_once_prompt(
        log, with_ground_truth=with_ground_truth, max_step_chars=judge.max_step_chars
    )
    answer = await judge.ask(
        prompt,
        schema=CULPRIT_SCHEMA,
        answer_format=CULPRIT_FORMAT,
        parse=lambda data: parse_culprit(data, log),
        spend=spend,
        case_id=log.id,
        stage="attribution-all-at-once",
    )
    if answer is None:
        last = len(log.steps) - 1
        reason = "no usable answer; the last step by default"
        return spend.attribution("all_at_once", log.steps[last].agent, last, reason, fallback=True)
    agent, step, reason = answer
    return spend.attribution("all_at_once", agent, step, reason)


async def step_by_step_attribution(
    log: InteractionLog,
    judge: Judge,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
) -> Attribution:
    """Step by step from the first; the first step the judge calls decisive is the answer."""
    check_attributable(log)
    spend = Spend()
    for index, step in enumerate(log.steps):
        prompt = step_prompt(
            log, index, with_ground_truth=with_ground_truth, max_step_chars=judge.max_step_chars
        )
        answer = await ask_decisive(judge, prompt, spend, log.id, "attribution-step")
        if answer is not None and answer[0]:
            return spend.attribution("step_by_step", step.agent, index, answer[1])
    last = len(log.steps) - 1
    reason = "no step was judged decisive; the last step by default"
    return spend.attribution("step_by_step", log.steps[last].agent, last, reason, fallback=True)


async def binary_search_attribution(
    log: InteractionLog,
    judge: Judge,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
) -> Attribution:
    """Halve the range of steps, keeping the half the judge points to, down to one step."""
    check_attributable(log)
    spend = Spend()
    lo, hi = 0, len(log.steps) - 1
    reason = "the log has one step"
    fallback = False
    while lo < hi:
        mid = (lo + hi) // 2
        prompt = binary_prompt(
            log,
            lo,
            hi,
            with_ground_truth=with_ground_truth,
            max_step_chars=judge.max_step_chars,
        )
        answer = await judge.ask(
            prompt,
            schema=HALF_SCHEMA,
            answer_format=HALF_FORMAT,
            parse=parse_half,
            spend=spend,
            case_id=log.id,
            stage="attribution-binary",
        )
        if answer is None:
            fallback = True
            half, reason = "first", "no usable answer; the first half by default"
        else:
            half, reason = answer
        lo, hi = (lo, mid) if half == "first" else (mid + 1, hi)
    return spend.attribution("binary_search", log.steps[lo].agent, lo, reason, fallback=fallback)


METHODS: dict[str, AttributionMethod] = {
    "random": random_attribution,
    "all_at_once": all_at_once_attribution,
    "step_by_step": step_by_step_attribution,
    "binary_search": binary_search_attribution,
}
"""Every attribution method by name (the benchmark runs them in this order)."""
