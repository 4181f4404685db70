"""A deterministic, rule-based decomposer: a reasoning trace into an :class:`~trust.hdag.HDAG`.

It needs no language model and always gives the same H-DAG for the same input, which makes it
a baseline and a test fixture for the LLM decomposer that comes later.  The rules:

Steps
    A list (any sequence of strings) is used as given: one step per item, blank items dropped.
    Free text is split, in this order of preference,

    1. on numbered lines (``1.``, ``2)``, ``Step 3:``, ``Step 4.``): each marker starts a step and
       is removed from its text; text before the first marker is a *preamble*, not a step;
    2. else on blank lines, when that gives at least two parts;
    3. else on line breaks and sentence ends (``.``, ``!`` or ``?`` followed by white space, so
       decimals such as ``0.75`` are not split).

Goal
    The ``goal`` argument when given; else the preamble of a numbered trace; else the first
    sentence of the first step (which stays a step too: the trace itself is not shortened).

Strategy and tactic
    One ``strategy`` node whose text is the first step's text (a cheap summary: traces usually
    open with their plan), and one ``tactic`` node under it that groups all steps (its text names
    the step range).  Finer grouping into several tactics is left to the LLM decomposer.

Operations
    Inside a step, every maximal run of arithmetic characters (digits, ``.``, ``+ - * / ^``, the
    multiplication and division signs, parentheses, white space and ``=``) is split on ``=`` into
    a chain of expressions; pieces without a digit break the chain (so ``A = (3 * 4)`` is a
    definition, not an operation). Each adjacent pair ``lhs = rhs`` whose ``lhs`` contains an
    operator and differs from ``rhs`` becomes an ``operation`` child of the step, with the text
    ``"lhs = rhs"``. So ``(2 * 3) + 1 = 6 + 1 = 7`` gives two operations,
    ``(2 * 3) + 1 = 6 + 1`` and ``6 + 1 = 7``. An operation *produces* its ``rhs`` when that is a
    plain number such as ``48``, ``-14``, ``(-21)`` or ``0.75``.

Dependencies
    A step *uses* the numbers on the left-hand sides of its operations and the numbers in its
    text outside any arithmetic chain.  A step depends on an earlier step when it uses a number
    that the earlier step produced; numbers are compared by absolute value (so ``- 14`` and
    ``-14`` match, since a minus sign may be either an operator or a sign), and when several
    earlier steps produced the number the latest one is taken.  Only steps get dependency edges.

Node ids are ``goal``, ``strategy``, ``tactic``, ``step1`` ... ``stepN`` and ``step1.op1`` ...;
nodes are listed in that order, each step followed by its operations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from trust.hdag import HDAG, HDAGError, HNode, Level

__all__ = ["Operation", "decompose", "extract_operations", "split_steps"]

_NUMBERED = re.compile(r"^[ \t]*(?:step[ \t]*\d+[ \t]*[.:)]?|\d+[.):])(?=\s|$)", re.I | re.M)
_BLANK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ARITH_RUN = re.compile(r"[-+*/\u00d7\u00f7^().\d\s=]+")
_PLAIN_NUMBER = re.compile(r"^\(*\s*[-+]?\s*\d+(?:\.\d+)?\s*\)*$")
_HAS_OPERATOR = re.compile(r"[\d)]\s*[-+*/\u00d7\u00f7^]\s*[-+(\d]")
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


class Operation:
    """One ``lhs = rhs`` computation found in a step; ``result`` is rhs when it is a number."""

    __slots__ = ("lhs", "result", "rhs")

    def __init__(self, lhs: str, rhs: str) -> None:
        self.lhs = lhs
        self.rhs = rhs
        self.result: Decimal | None = _number_value(rhs) if _PLAIN_NUMBER.match(rhs) else None

    @property
    def text(self) -> str:
        return f"{self.lhs} = {self.rhs}"

    def __repr__(self) -> str:
        return f"Operation({self.text!r})"


def _number_value(text: str) -> Decimal | None:
    cleaned = text.replace("(", "").replace(")", "").replace(" ", "")
    try:
        return abs(Decimal(cleaned)).normalize()
    except InvalidOperation:
        return None


def _numbers(text: str) -> set[Decimal]:
    values = (_number_value(match) for match in _NUMBER.findall(text))
    return {value for value in values if value is not None}


def _sentences(text: str) -> list[str]:
    parts: list[str] = []
    for line in text.splitlines():
        parts.extend(part.strip() for part in _SENTENCE_END.split(line))
    return [part for part in parts if part]


def split_steps(trace: str) -> tuple[str | None, list[str]]:
    """Split free text into steps: returns ``(preamble, steps)`` (see the module docstring)."""
    markers = list(_NUMBERED.finditer(trace))
    if markers:
        preamble = trace[: markers[0].start()].strip() or None
        bounds = [*(m.start() for m in markers), len(trace)]
        steps = [trace[marker.end() : bounds[i + 1]].strip() for i, marker in enumerate(markers)]
        return preamble, [step for step in steps if step]
    blocks = [block.strip() for block in _BLANK.split(trace)]
    blocks = [block for block in blocks if block]
    if len(blocks) >= 2:
        return None, blocks
    return None, _sentences(trace)


def _chains(text: str) -> tuple[list[list[str]], str]:
    """The ``=``-chains of arithmetic in ``text``, and the text with the chains cut out."""
    chains: list[list[str]] = []
    rest: list[str] = []
    last = 0
    for run in _ARITH_RUN.finditer(text):
        pieces = [piece.strip().rstrip(".").strip() for piece in run.group().split("=")]
        current: list[str] = []
        found = False
        for piece in [*pieces, ""]:
            if any(char.isdigit() for char in piece):
                current.append(piece)
                continue
            if len(current) >= 2:
                chains.append(current)
                found = True
            current = []
        if found:
            rest.append(text[last : run.start()])
            last = run.end()
    rest.append(text[last:])
    return chains, " ".join(rest)


def extract_operations(step: str) -> tuple[list[Operation], set[Decimal]]:
    """The operations of a step, and the numbers it uses (see the module docstring)."""
    operations: list[Operation] = []
    chains, rest = _chains(step)
    used = _numbers(rest)
    for chain in chains:
        for lhs, rhs in pairwise(chain):
            if _PLAIN_NUMBER.match(lhs) or not _HAS_OPERATOR.search(lhs):
                continue
            if lhs.replace(" ", "") == rhs.replace(" ", ""):
                continue
            operations.append(Operation(lhs, rhs))
            used |= _numbers(lhs)
    return operations, used


def decompose(trace: str | Sequence[str], *, goal: str | None = None) -> HDAG:
    """Turn a reasoning trace into an H-DAG with the rules of the module docstring."""
    preamble: str | None = None
    if isinstance(trace, str):
        preamble, steps = split_steps(trace)
    else:
        steps = [step.strip() for step in trace if step.strip()]
    if not steps:
        raise HDAGError("<trace>", "the trace has no steps")
    if goal is None or not goal.strip():
        goal = preamble or _sentences(steps[0])[0]

    nodes = [
        HNode(id="goal", level=Level.GOAL, text=goal.strip(), parent=None),
        HNode(id="strategy", level=Level.STRATEGY, text=steps[0], parent="goal"),
        HNode(
            id="tactic",
            level=Level.TACTIC,
            text=f"steps 1-{len(steps)}" if len(steps) > 1 else "step 1",
            parent="strategy",
        ),
    ]
    producer: dict[Decimal, str] = {}
    for number, step in enumerate(steps, start=1):
        step_id = f"step{number}"
        operations, used = extract_operations(step)
        depends = sorted(
            {producer[value] for value in used if value in producer},
            key=lambda dep: int(dep.removeprefix("step")),
        )
        nodes.append(
            HNode(
                id=step_id,
                level=Level.STEP,
                text=step,
                parent="tactic",
                depends_on=tuple(depends),
            )
        )
        for index, operation in enumerate(operations, start=1):
            nodes.append(
                HNode(
                    id=f"{step_id}.op{index}",
                    level=Level.OPERATION,
                    text=operation.text,
                    parent=step_id,
                )
            )
        for operation in operations:
            if operation.result is not None:
                producer[operation.result] = step_id
    return HDAG(nodes=tuple(nodes))
