"""Decomposition of a reasoning trace into an :class:`~trust.hdag.HDAG` by a language model.

The model only supplies *structure*; the steps are the trace's own.  A list trace gives one
step per non-blank item (stripped), free text is split by :func:`trust.decompose.split_steps`,
exactly as the rule-based :func:`trust.decompose.decompose` does, so both decomposers give the
same steps with the same ids and texts.  The model sees the steps numbered
(:func:`trust.audit_prompts.decomposition_prompt`) and answers with JSON matching
:data:`~trust.audit_prompts.DECOMPOSITION_SCHEMA`: the goal, strategies whose tactics group
step numbers, and per step the earlier steps it uses and the computations it performs
(``"3 * 4 = 12"``).  It never writes a step's text, so it cannot change what is audited.

Validation (:func:`parse_decomposition`)
    Every step number must exist; every step belongs to exactly one tactic; ``"steps"`` has
    exactly one entry per step; a step depends only on earlier steps; texts of the goal,
    strategies and tactics are non-empty strings.  Step numbers may also be written
    ``"3"`` or ``"step3"``; missing ``depends_on``/``operations`` count as empty, blank
    operations are dropped and repeated dependencies merged.  Every problem found is named, in
    words that are sent back to the model.

Node ids
    As the rule-based decomposer's where they overlap: ``goal``, ``step1`` ... ``stepN`` (the
    N-th step of the trace, whatever its tactic) and ``stepN.op1`` ...  Strategies and tactics
    are numbered in the order of the first step they cover: ``strategy1``, ``strategy2`` ...,
    ``tactic1``, ``tactic2`` ... (the rule-based decomposer, which makes one of each, calls
    them ``strategy`` and ``tactic``; nothing keys on those ids).  Nodes are listed in trace
    order: a strategy and a tactic come just before the first step they cover, and each step
    is followed by its operations.  The goal is the ``goal`` argument when given, else the
    model's.

Retries and failure
    An unusable reply (no JSON, a structure problem) is answered in the same conversation with
    :func:`~trust.audit_prompts.decomposition_retry_prompt` naming the problem, at most
    ``max_retries`` times.  A :class:`~goa.errors.ModelRequestError` (the backend has already
    retried what was worth retrying) ends the attempts at once.  Then, by default,
    :class:`DecompositionError` is raised; with ``fallback=True`` the rule-based
    :func:`~trust.decompose.decompose` gives the H-DAG instead, and
    :attr:`LLMDecomposer.fell_back` and :attr:`LLMDecomposer.problem` say that it did and why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goa.errors import GoaError, ModelRequestError
from goa.inference.backend import Backend
from goa.inference.factory import backend_for_card
from goa.inference.types import ChatRequest, Message, Tags
from goa.parsing import Parsed, find_json
from trust.audit_prompts import (
    DECOMPOSER_SYSTEM_PROMPT,
    DECOMPOSITION_SCHEMA,
    decomposition_prompt,
    decomposition_retry_prompt,
)
from trust.decompose import decompose, split_steps
from trust.hdag import HDAG, HDAGError, HNode, Level

if TYPE_CHECKING:
    from goa.cards import ModelCard

__all__ = [
    "DECOMPOSITION_SCHEMA",
    "DecompositionError",
    "LLMDecomposer",
    "llm_decompose",
    "parse_decomposition",
]

_STEP_REF = re.compile(r"(?:step\s*)?(\d+)", re.I)
_MAX_PROBLEMS = 5


class DecompositionError(GoaError):
    """The model gave no usable decomposition (and no fallback was asked for)."""


def _trace_steps(trace: str | Sequence[str]) -> tuple[str | None, list[str]]:
    """The preamble and steps, as :func:`trust.decompose.decompose` takes them."""
    if isinstance(trace, str):
        return split_steps(trace)
    return None, [step.strip() for step in trace if step.strip()]


def _steps_phrase(numbers: Sequence[int]) -> str:
    """``step 3 is`` or ``steps 3, 4 are``."""
    if len(numbers) == 1:
        return f"step {numbers[0]} is"
    return f"steps {', '.join(map(str, numbers))} are"


@dataclass
class _Tactic:
    strategy: int
    text: str
    steps: list[int]


@dataclass
class _Structure:
    goal: str | None = None
    strategies: list[str] = field(default_factory=list)
    tactics: list[_Tactic] = field(default_factory=list)
    depends: dict[int, tuple[int, ...]] = field(default_factory=dict)
    operations: dict[int, tuple[str, ...]] = field(default_factory=dict)


class _Reader:
    """Reads the model's JSON into a :class:`_Structure`, collecting every problem."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def text(self, value: object, what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.problem(f"{what} must be a non-empty string, not {value!r}")
        return None

    def items(self, value: object, what: str, *, required: bool = True) -> list[Any] | None:
        if value is None and not required:
            return []
        if isinstance(value, list) and (value or not required):
            return value
        self.problem(f"{what} must be a {'non-empty ' if required else ''}list, not {value!r}")
        return None

    def number(self, value: object, what: str) -> int | None:
        found: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            found = value
        elif isinstance(value, str) and (match := _STEP_REF.fullmatch(value.strip())):
            found = int(match.group(1))
        if found is None:
            self.problem(f"{what} must be a step number, not {value!r}")
            return None
        if not 1 <= found <= self.count:
            self.problem(
                f"{what} is {found}, but the steps are numbered 1 to {self.count}: "
                f"step {found} does not exist"
            )
            return None
        return found

    def read(self, data: dict[str, Any], *, need_goal: bool) -> _Structure:
        found = _Structure()
        if need_goal:
            found.goal = self.text(data.get("goal"), '"goal"')
        self._strategies(data.get("strategies"), found)
        self._steps(data.get("steps"), found)
        return found

    def _strategies(self, value: object, found: _Structure) -> None:
        strategies = self.items(value, '"strategies"')
        if strategies is None:
            return
        tactic_of: dict[int, int] = {}
        for s_index, strategy in enumerate(strategies, start=1):
            where = f"strategy {s_index}"
            if not isinstance(strategy, dict):
                self.problem(f"{where} must be an object, not {strategy!r}")
                continue
            found.strategies.append(self.text(strategy.get("text"), f'{where} "text"') or "")
            tactics = self.items(strategy.get("tactics"), f'{where} "tactics"') or []
            for t_index, tactic in enumerate(tactics, start=1):
                here = f"{where}, tactic {t_index}"
                if not isinstance(tactic, dict):
                    self.problem(f"{here} must be an object, not {tactic!r}")
                    continue
                text = self.text(tactic.get("text"), f'{here} "text"') or ""
                numbers: list[int] = []
                for value_ in self.items(tactic.get("steps"), f'{here} "steps"') or []:
                    number = self.number(value_, f'a step number in {here} "steps"')
                    if number is None:
                        continue
                    if number in tactic_of:
                        self.problem(
                            f"step {number} is in more than one tactic: each step belongs to "
                            "exactly one tactic"
                        )
                        continue
                    tactic_of[number] = len(found.tactics)
                    numbers.append(number)
                found.tactics.append(_Tactic(len(found.strategies) - 1, text, numbers))
        missing = [n for n in range(1, self.count + 1) if n not in tactic_of]
        if missing and strategies:
            self.problem(f"{_steps_phrase(missing)} in no tactic: every step belongs to one tactic")

    def _steps(self, value: object, found: _Structure) -> None:
        entries = self.items(value, '"steps"')
        if entries is None:
            return
        for index, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict):
                self.problem(f'entry {index} of "steps" must be an object, not {entry!r}')
                continue
            number = self.number(entry.get("step"), f'"step" of entry {index} of "steps"')
            if number is None:
                continue
            if number in found.depends:
                self.problem(f'"steps" has more than one entry for step {number}')
                continue
            depends: set[int] = set()
            raw = self.items(entry.get("depends_on"), f'step {number} "depends_on"', required=False)
            for dep_value in raw or []:
                dep = self.number(dep_value, f'a number in step {number} "depends_on"')
                if dep is not None and dep >= number:
                    self.problem(
                        f"step {number} depends on step {dep}, which does not come before "
                        "it: a step may only use earlier steps"
                    )
                elif dep is not None:
                    depends.add(dep)
            found.depends[number] = tuple(sorted(depends))
            operations: list[str] = []
            raw = self.items(entry.get("operations"), f'step {number} "operations"', required=False)
            for operation in raw or []:
                if not isinstance(operation, str):
                    self.problem(f"an operation of step {number} is not a string: {operation!r}")
                elif operation.strip():
                    operations.append(" ".join(operation.split()))
            found.operations[number] = tuple(operations)
        missing = [n for n in range(1, self.count + 1) if n not in found.depends]
        if missing:
            listed = _steps_phrase(missing).rsplit(" ", 1)[0]
            self.problem(f'"steps" has no entry for {listed}: give one entry per step')


def _build(found: _Structure, steps: Sequence[str], goal: str) -> HDAG:
    nodes = [HNode(id="goal", level=Level.GOAL, text=goal, parent=None)]
    tactic_of = {n: index for index, tactic in enumerate(found.tactics) for n in tactic.steps}
    strategy_ids: dict[int, str] = {}
    tactic_ids: dict[int, str] = {}
    for number, text in enumerate(steps, start=1):
        tactic = tactic_of[number]
        strategy = found.tactics[tactic].strategy
        if strategy not in strategy_ids:
            strategy_ids[strategy] = f"strategy{len(strategy_ids) + 1}"
            nodes.append(
                HNode(
                    id=strategy_ids[strategy],
                    level=Level.STRATEGY,
                    text=found.strategies[strategy],
                    parent="goal",
                )
            )
        if tactic not in tactic_ids:
            tactic_ids[tactic] = f"tactic{len(tactic_ids) + 1}"
            nodes.append(
                HNode(
                    id=tactic_ids[tactic],
                    level=Level.TACTIC,
                    text=found.tactics[tactic].text,
                    parent=strategy_ids[strategy],
                )
            )
        step_id = f"step{number}"
        nodes.append(
            HNode(
                id=step_id,
                level=Level.STEP,
                text=text,
                parent=tactic_ids[tactic],
                depends_on=tuple(f"step{dep}" for dep in found.depends[number]),
            )
        )
        for index, operation in enumerate(found.operations[number], start=1):
            nodes.append(
                HNode(
                    id=f"{step_id}.op{index}",
                    level=Level.OPERATION,
                    text=operation,
                    parent=step_id,
                )
            )
    return HDAG(nodes=tuple(nodes))


def parse_decomposition(
    text: str, steps: Sequence[str], *, goal: str | None = None
) -> Parsed[HDAG]:
    """The H-DAG described by the model reply ``text`` over the trace's ``steps``.

    ``goal``, when given, is the goal node's text and the reply's ``"goal"`` is not needed.
    The problem, when there is one, is worded so that it can be sent back to the model (see
    the module docstring for the rules).
    """
    if not steps:
        raise HDAGError("<trace>", "the trace has no steps")
    question = goal.strip() if goal is not None and goal.strip() else None
    data = find_json(text)
    if not isinstance(data, dict):
        return Parsed(problem="the reply contains no JSON object")
    reader = _Reader(len(steps))
    found = reader.read(data, need_goal=question is None)
    if reader.problems:
        shown = reader.problems[:_MAX_PROBLEMS]
        more = len(reader.problems) - len(shown)
        tail = f"; and {more} more problem(s)" if more > 0 else ""
        return Parsed(problem="; ".join(shown) + tail)
    try:
        return Parsed(value=_build(found, steps, question or found.goal or ""))
    except HDAGError as error:  # not expected after the checks above; reported all the same
        return Parsed(problem=str(error))


class LLMDecomposer:
    """Decomposes traces with a model through goa's inference adapter.

    ``calls`` counts the requests made over the decomposer's life.  After each
    :meth:`decompose`, ``fell_back`` says whether the rule-based decomposer gave the H-DAG
    (only with ``fallback=True``) and ``problem`` why the model's answer was not used
    (None when it was).  One decomposer is meant for one decomposition at a time.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_retries: int = 2,
        max_tokens: int = 2048,
        temperature: float = 0.0,
        seed: int | None = None,
        fallback: bool = False,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        self.backend = backend
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.fallback = fallback
        self.calls = 0
        self.fell_back = False
        self.problem: str | None = None

    @classmethod
    def from_card(cls, card: ModelCard, *, cache: bool = False, **options: Any) -> LLMDecomposer:
        """A decomposer on the model of a goa card (``goa.cards.ModelCard``)."""
        return cls(backend_for_card(card, cache=cache), **options)

    def _request(self, messages: Sequence[Message]) -> ChatRequest:
        return ChatRequest(
            messages=tuple(messages),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            json_schema=DECOMPOSITION_SCHEMA,
            tags=Tags(agent=f"decomposer:{self.backend.model}", stage="trust-decompose"),
        )

    async def decompose(self, trace: str | Sequence[str], *, goal: str | None = None) -> HDAG:
        """The H-DAG of ``trace`` (see the module docstring); ``goal`` is the question."""
        preamble, steps = _trace_steps(trace)
        if not steps:
            raise HDAGError("<trace>", "the trace has no steps")
        question = goal.strip() if goal is not None and goal.strip() else None
        self.fell_back = False
        self.problem = None
        messages = [
            Message(role="system", content=DECOMPOSER_SYSTEM_PROMPT),
            Message(
                role="user",
                content=decomposition_prompt(steps, goal=question, preamble=preamble),
            ),
        ]
        problem = "no reply"
        attempts = 0
        for _ in range(self.max_retries + 1):
            attempts += 1
            self.calls += 1
            try:
                completion = await self.backend.complete(self._request(messages))
            except ModelRequestError as error:
                problem = f"the model request failed: {error}"
                break
            parsed = parse_decomposition(completion.text, steps, goal=question)
            if parsed.ok and parsed.value is not None:
                return parsed.value
            problem = parsed.problem or "unusable reply"
            if completion.finish_reason == "length":
                problem += " (the reply was cut off at the token limit)"
            messages.append(Message(role="assistant", content=completion.text))
            messages.append(Message(role="user", content=decomposition_retry_prompt(problem)))
        self.problem = (
            f"no usable decomposition from model {self.backend.model!r} after {attempts} "
            f"attempt(s): {problem}"
        )
        if not self.fallback:
            raise DecompositionError(self.problem)
        self.fell_back = True
        return decompose(trace, goal=goal)


async def llm_decompose(
    trace: str | Sequence[str],
    backend: Backend,
    *,
    goal: str | None = None,
    max_retries: int = 2,
    max_tokens: int = 2048,
    temperature: float = 0.0,
    seed: int | None = None,
    fallback: bool = False,
) -> HDAG:
    """Decompose ``trace`` with the model behind ``backend`` (see the module docstring).

    :class:`DecompositionError` when no usable reply comes within ``max_retries`` retries or
    the request fails; with ``fallback=True`` the rule-based decomposer's H-DAG instead (use
    :class:`LLMDecomposer` to learn whether that happened).
    """
    decomposer = LLMDecomposer(
        backend,
        max_retries=max_retries,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        fallback=fallback,
    )
    return await decomposer.decompose(trace, goal=goal)
