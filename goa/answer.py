"""Asking agents: the calling interface every stage uses, and the initial answers.

A stage never touches a backend. It asks through a :class:`Caller` (the
pipeline's run), which applies the timeout, tags the request, records the call
and turns failures into a :class:`Reply` with an error instead of an exception.
:func:`ask_until_valid` adds bounded retries with feedback for structured
replies; :func:`run_all` runs independent calls concurrently, or one at a time
in sequential mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from goa import prompts
from goa.inference.types import Message
from goa.parsing import Parsed
from goa.result import IncidentKind, Stage

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """The outcome of one call: the text, or why there is none."""

    agent: str
    text: str | None = None
    answer: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Caller(Protocol):
    """What a stage needs from the run that hosts it."""

    @property
    def question(self) -> str: ...

    @property
    def answer_format(self) -> str: ...

    @property
    def max_retries(self) -> int: ...

    @property
    def sequential(self) -> bool: ...

    async def call(
        self,
        agent: str,
        stage: Stage,
        messages: Sequence[Message],
        *,
        round: int | None = None,
        attempt: int = 0,
        json_schema: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> Reply:
        """One request; in answer stages an unusable reply comes back as an error.

        ``json_schema`` describes the JSON reply expected (enforced where the
        run uses structured outputs and the backend can); ``stream`` marks the
        call whose text is the final answer, to be streamed to the user.
        """
        ...

    def note(
        self, kind: IncidentKind, stage: Stage, message: str, *, agent: str | None = None
    ) -> None:
        """Record an incident (``retry``, ``fallback``, ``error`` or ``dropped``)."""
        ...


async def run_all(
    jobs: Sequence[Callable[[], Awaitable[T]]], *, sequential: bool = False
) -> list[T]:
    """The results of ``jobs`` in order: all at once, or one after the other."""
    if sequential:
        return [await job() for job in jobs]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_await(job)) for job in jobs]
    return [task.result() for task in tasks]


async def _await(job: Callable[[], Awaitable[T]]) -> T:
    return await job()


@dataclass
class Validated(Generic[T]):
    """Every parse of a validated exchange, and the call error that ended it, if any."""

    parses: list[Parsed[T]] = field(default_factory=list)
    error: str | None = None

    @property
    def value(self) -> T | None:
        """The value of the last parse if it was fully valid."""
        last = self.parses[-1] if self.parses else None
        return last.value if last is not None and last.ok else None


async def ask_until_valid(
    caller: Caller,
    agent: str,
    stage: Stage,
    messages: Sequence[Message],
    parse: Callable[[str], Parsed[T]],
    json_schema: dict[str, Any] | None = None,
) -> Validated[T]:
    """Ask until ``parse`` accepts the reply, at most ``1 + caller.max_retries`` times.

    After an unusable reply the model sees its own reply and the problem, and
    tries again. A failed call (error, timeout) ends the exchange at once: the
    backend has already retried what was worth retrying.
    """
    history = list(messages)
    outcome: Validated[T] = Validated()
    for attempt in range(caller.max_retries + 1):
        reply = await caller.call(agent, stage, history, attempt=attempt, json_schema=json_schema)
        if not reply.ok or reply.text is None:
            outcome.error = reply.error or "no reply"
            return outcome
        parsed = parse(reply.text)
        outcome.parses.append(parsed)
        if parsed.ok:
            return outcome
        if attempt < caller.max_retries:
            caller.note("retry", stage, parsed.problem or "unusable reply", agent=agent)
            history += [
                Message(role="assistant", content=reply.text),
                Message(
                    role="user", content=prompts.fill(prompts.GOA_RETRY, problem=parsed.problem)
                ),
            ]
    return outcome


def answer_messages(question: str, answer_format: str) -> list[Message]:
    """The request for an initial answer."""
    prompt = prompts.fill(prompts.GOA_ANSWER_PROMPT, question=question, answer_format=answer_format)
    return [
        Message(role="system", content=prompts.GOA_ANSWER_SYSTEM),
        Message(role="user", content=prompt),
    ]


async def initial_answers(caller: Caller, agents: Sequence[str]) -> list[Reply]:
    """Every agent answers the question on its own; failures come back as errors."""
    messages = answer_messages(caller.question, caller.answer_format)

    def job(agent: str) -> Callable[[], Awaitable[Reply]]:
        return lambda: caller.call(agent, "answer", messages)

    return await run_all([job(agent) for agent in agents], sequential=caller.sequential)
