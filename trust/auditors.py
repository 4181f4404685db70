"""The auditors of TRUST: a computational checker, LLM evaluators and human reviewers.

Every auditor has an ``id``, a :class:`~trust.verdict.Tier` and ``async judge(segment)``, which
returns a :class:`~trust.verdict.Verdict` and never raises for a segment it cannot judge: it
abstains with a reason instead.

:class:`ComputationalAuditor`
    Checks the arithmetic of the judged node exactly (and, optionally, runs fenced Python code
    with ``assert`` claims in goa's sandbox).  See :func:`check_equation` for the rules.
:class:`LLMAuditor`
    Asks a model through goa's inference adapter (any :class:`~goa.inference.Backend`: an API
    model, a local llama.cpp or transformers model, or a scripted one in tests).
:class:`HumanAuditor`
    Asks a person at a terminal; the input and output streams can be replaced (tests drive it
    with ``io.StringIO``).
:class:`FileQueueAuditor`
    Asks people asynchronously through a directory: segments are written to ``pending/``,
    reviewers drop answers into ``answered/`` (format in the class docstring).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, runtime_checkable

import sympy  # type: ignore[import-untyped]  # sympy ships no type information
from rich.console import Console
from rich.panel import Panel
from rich.prompt import FloatPrompt, Prompt

from goa.errors import ModelRequestError
from goa.eval.sandbox import run_program
from goa.inference.backend import Backend
from goa.inference.factory import backend_for_card
from goa.inference.types import ChatRequest, Message, Tags
from goa.parsing import Parsed, find_json
from trust.audit_prompts import (
    SYSTEM_PROMPT,
    VERDICT_SCHEMA,
    evaluator_prompt,
    render_segment,
    retry_prompt,
)
from trust.decompose import extract_operations
from trust.hdag import Level
from trust.segment import Segment
from trust.verdict import Tier, Verdict, Vote

if TYPE_CHECKING:
    from goa.cards import ModelCard
    from goa.pools import Pool

__all__ = [
    "Auditor",
    "AuditorBase",
    "ClaimCheck",
    "ComputationalAuditor",
    "FileQueueAuditor",
    "HumanAuditor",
    "LLMAuditor",
    "check_equation",
    "llm_auditors_for_pool",
    "parse_verdict",
]


@runtime_checkable
class Auditor(Protocol):
    """Anything that judges segments: an ``id`` unique among auditors, a tier, ``judge``."""

    @property
    def id(self) -> str: ...

    @property
    def tier(self) -> Tier: ...

    async def judge(self, segment: Segment) -> Verdict: ...


class AuditorBase:
    """The ``id`` and ``tier`` of an :class:`Auditor`; a subclass adds ``judge``."""

    def __init__(self, id: str, tier: Tier) -> None:
        self._id = id
        self._tier = tier

    @property
    def id(self) -> str:
        return self._id

    @property
    def tier(self) -> Tier:
        return self._tier


# --- Computational: arithmetic ----------------------------------------------------------

Outcome = Literal["holds", "fails", "unchecked"]


@dataclass(frozen=True)
class ClaimCheck:
    """One checked claim: an equation or a code block, and what the check found."""

    claim: str
    outcome: Outcome
    detail: str


_SYMBOLS = str.maketrans({"\u00d7": "*", "\u00f7": "/", "^": "**", "\u2212": "-"})
_ALLOWED = re.compile(r"^[\d.+\-*/()\s]+$")
_PLAIN = re.compile(r"^\(*\s*[-+]?\s*\d+(?:\.(\d+))?\s*\)*$")
_MAX_EXPONENT = 256
_MAX_BITS = 4096


class _Unparsable(ValueError):
    pass


def _literal(node: ast.expr, source: str) -> sympy.Expr:
    text = ast.get_source_segment(source, node)
    if text is None or not re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text.strip()):
        raise _Unparsable(f"not a plain number: {text!r}")
    return sympy.Rational(text.strip())


def _too_big(value: sympy.Expr) -> bool:
    if isinstance(value, sympy.Rational):
        return max(abs(int(value.p)).bit_length(), int(value.q).bit_length()) > _MAX_BITS
    return False


def _evaluate(node: ast.expr, source: str) -> sympy.Expr:
    """Exact value of an arithmetic AST; only numbers, + - * / ** and signs are allowed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return _literal(node, source)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _evaluate(node.operand, source)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, source)
        right = _evaluate(node.right, source)
        if isinstance(node.op, ast.Add):
            result = left + right
        elif isinstance(node.op, ast.Sub):
            result = left - right
        elif isinstance(node.op, ast.Mult):
            result = left * right
        elif isinstance(node.op, ast.Div):
            if right == 0:
                raise ZeroDivisionError("division by zero")
            result = left / right
        elif isinstance(node.op, ast.Pow):
            if not (isinstance(right, sympy.Rational) and abs(right) <= _MAX_EXPONENT):
                raise _Unparsable("exponent too large or not a number")
            if left == 0 and right < 0:
                raise ZeroDivisionError("zero to a negative power")
            result = sympy.Pow(left, right)
        else:
            raise _Unparsable(f"operator {type(node.op).__name__} is not supported")
        if _too_big(result):
            raise _Unparsable("number too large to check")
        return result
    raise _Unparsable(f"{type(node).__name__} is not arithmetic")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _balance(text: str) -> str:
    """Drop unmatched outer brackets that the cut of a longer expression left behind."""
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].lstrip()
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].rstrip()
    return text


def _value(expression: str) -> sympy.Expr:
    text = _balance(expression.translate(_SYMBOLS).strip().rstrip(".").strip())
    if not text or not _ALLOWED.match(text):
        raise _Unparsable(f"not plain arithmetic: {_short(expression)!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError) as error:
        raise _Unparsable(f"cannot parse {_short(expression)!r}") from error
    return _evaluate(tree.body, text)


def _show(value: sympy.Expr) -> str:
    if isinstance(value, sympy.Integer):
        return str(value)
    if isinstance(value, sympy.Rational):
        return f"{value} (= {sympy.N(value, 12)})"
    return f"{value} (~ {sympy.N(value, 12)})"


def _equal(left: sympy.Expr, right: sympy.Expr) -> bool:
    difference = sympy.simplify(left - right)
    return bool(difference == 0)


def check_equation(text: str) -> ClaimCheck:
    """Check ``lhs = rhs`` (or a chain ``a = b = c``, pair by pair) exactly.

    Both sides are parsed by a whitelist of Python's AST (numbers, ``+ - * / ^ **``, the signs
    ``\u00d7 \u00f7 \u2212``, parentheses; never ``eval``) and computed exactly with sympy:
    rationals, and powers with rational exponents up to 256 (so ``8 ** (1/3) = 2`` holds).
    Unmatched brackets at the ends of a side (left over when a side was cut out of a longer
    expression, as in ``((4 + 6) = (10``) are dropped.

    Equality is exact, with one tolerance for rounding: when the right-hand side is a plain
    number written with d >= 1 decimals, the equation holds when the exact left-hand side
    rounds to it, i.e. ``|lhs - rhs| <= 0.5 * 10**-d``.  Integers are never rounded.
    Division by zero makes the equation fail; anything that is not plain arithmetic, or whose
    numbers grow beyond 4096 bits, leaves it unchecked.
    """
    sides = [side.strip() for side in text.split("=")]
    if len(sides) < 2 or any(not side for side in sides):
        return ClaimCheck(text, "unchecked", "not an equation")
    for lhs, rhs in pairwise(sides):
        try:
            left, right = _value(lhs), _value(rhs)
        except ZeroDivisionError as error:
            return ClaimCheck(text, "fails", f"{lhs!r}: {error}")
        except _Unparsable as error:
            return ClaimCheck(text, "unchecked", str(error))
        except RecursionError:
            return ClaimCheck(text, "unchecked", "expression nested too deeply")
        if _equal(left, right):
            continue
        plain = _PLAIN.match(rhs.rstrip(".").strip())
        decimals = len(plain.group(1)) if plain and plain.group(1) else 0
        if decimals:
            half_unit = sympy.Rational(1, 2 * 10**decimals)
            if abs(sympy.N(left - right, 50)) <= half_unit:
                continue
        return ClaimCheck(text, "fails", f"{lhs} is {_show(left)}, not {_show(right)}")
    return ClaimCheck(text, "holds", "exact" if len(sides) == 2 else "exact, every link")


# --- Computational: code ----------------------------------------------------------------

_CODE_BLOCK = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def _code_blocks(text: str) -> list[str]:
    """Fenced Python (or untagged) blocks that contain an ``assert`` statement."""
    blocks: list[str] = []
    for match in _CODE_BLOCK.finditer(text):
        code = match.group(2)
        if re.search(r"^\s*assert\b", code, re.MULTILINE):
            blocks.append(code)
    return blocks


def _without_code(text: str) -> str:
    return _CODE_BLOCK.sub(" ", text)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


class ComputationalAuditor(AuditorBase):
    """Checks what can be checked mechanically: arithmetic, and asserted Python code.

    The equations are those of the judged node: an operation's own text, or for a step the
    ``lhs = rhs`` computations found in its text (by the decomposer's rules, outside code
    blocks) together with its operation nodes.  Premises are not checked: they have segments
    of their own.  With ``run_code`` (the default), every fenced Python block of the judged
    node that contains an ``assert`` is run in goa's sandbox (``goa.eval.sandbox``: own
    process, time and memory limits, no network); the claim holds when the program exits
    cleanly and fails on an ``AssertionError``.

    The verdict: ``invalid`` (confidence 1) when any claim fails; else ``abstain`` when some
    claim could not be checked or there is none; else ``valid`` with ``valid_confidence``
    (default 1: the arithmetic is certainly right, although a step can still be wrong in ways
    arithmetic does not show).
    """

    def __init__(
        self,
        id: str = "computational",
        *,
        run_code: bool = True,
        code_timeout_s: float = 5.0,
        code_memory_mb: int = 256,
        valid_confidence: float = 1.0,
    ) -> None:
        super().__init__(id, Tier.COMPUTATIONAL)
        self.run_code = run_code
        self.code_timeout_s = code_timeout_s
        self.code_memory_mb = code_memory_mb
        self.valid_confidence = valid_confidence

    def equations(self, segment: Segment) -> list[str]:
        """The equations of the judged node, without repeats."""
        found: list[str] = []
        for node in segment.nodes:
            if node.level is Level.OPERATION:
                code = "".join(_squash(block) for block in _code_blocks(segment.target.text))
                if _squash(node.text) not in code:
                    found.append(node.text)
            elif node.level is Level.STEP:
                operations, _ = extract_operations(_without_code(node.text))
                found.extend(operation.text for operation in operations)
        unique: dict[str, str] = {}
        for equation in found:
            unique.setdefault(_squash(equation), equation)
        return list(unique.values())

    async def _check_code(self, code: str) -> ClaimCheck:
        result = await asyncio.to_thread(
            run_program, code, timeout_s=self.code_timeout_s, memory_mb=self.code_memory_mb
        )
        claim = "python block: " + " ".join(code.split())[:80]
        if result.passed:
            return ClaimCheck(claim, "holds", "the assertions pass")
        last = result.detail.strip().splitlines()[-1:] or [result.status]
        if result.status == "failed":
            return ClaimCheck(claim, "fails", last[0])
        return ClaimCheck(claim, "unchecked", f"{result.status}: {last[0]}")

    async def checks(self, segment: Segment) -> list[ClaimCheck]:
        """Every claim of the judged node, checked."""
        results = [check_equation(equation) for equation in self.equations(segment)]
        if self.run_code:
            for block in _code_blocks(segment.target.text):
                results.append(await self._check_code(block))
        return results

    async def judge(self, segment: Segment) -> Verdict:
        results = await self.checks(segment)
        if not results:
            return Verdict.abstain("no arithmetic or asserted code to check")
        failed = [r for r in results if r.outcome == "fails"]
        if failed:
            listed = "; ".join(f"{_short(r.claim, 200)}: {r.detail}" for r in failed)
            return Verdict(vote=Vote.INVALID, confidence=1.0, reason=f"false: {listed}")
        unchecked = [r for r in results if r.outcome == "unchecked"]
        if unchecked:
            listed = "; ".join(f"{_short(r.claim, 200)}: {r.detail}" for r in unchecked)
            return Verdict.abstain(
                f"{len(unchecked)} of {len(results)} claims could not be checked: {listed}"
            )
        return Verdict(
            vote=Vote.VALID,
            confidence=self.valid_confidence,
            reason=(
                f"all {len(results)} claims hold (exact arithmetic; a decimal result may be "
                "rounded to its own number of decimals)"
            ),
        )


# --- LLM --------------------------------------------------------------------------------


def parse_verdict(text: str) -> Parsed[Verdict]:
    """Read a verdict from model text: one JSON object, bare or in a code fence.

    ``vote`` must be valid/invalid/abstain (any case), ``confidence`` a number in [0, 1],
    ``reason`` a string (may be missing).  The problem, when there is one, is worded so that it
    can be sent back to the model.
    """
    data = find_json(text)
    if not isinstance(data, dict):
        return Parsed(problem="the reply contains no JSON object")
    vote = data.get("vote")
    if not isinstance(vote, str) or vote.strip().lower() not in {v.value for v in Vote}:
        return Parsed(problem=f'"vote" must be "valid", "invalid" or "abstain", not {vote!r}')
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return Parsed(problem=f'"confidence" must be a number from 0 to 1, not {confidence!r}')
    if not 0.0 <= float(confidence) <= 1.0:
        return Parsed(problem=f'"confidence" must lie between 0 and 1, not {confidence!r}')
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return Parsed(problem=f'"reason" must be a string, not {reason!r}')
    verdict = Verdict(vote=Vote(vote.strip().lower()), confidence=float(confidence), reason=reason)
    return Parsed(value=verdict)


class LLMAuditor(AuditorBase):
    """Judges segments with a language model through goa's inference adapter.

    It sends :func:`~trust.audit_prompts.evaluator_prompt` (with the verdict JSON schema, which
    backends that can enforce it do), reads the reply with :func:`parse_verdict` and, while
    the reply is unusable, asks again with :func:`~trust.audit_prompts.retry_prompt` in the
    same conversation, at most ``max_retries`` times.  It abstains, with the last problem as
    the reason, when no usable reply comes or the model request fails for good
    (:class:`~goa.errors.ModelRequestError`).  ``calls`` counts the requests made.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        id: str | None = None,
        max_retries: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 400,
        seed: int | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        super().__init__(id or f"llm:{backend.model}", Tier.LLM)
        self.backend = backend
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.calls = 0

    @classmethod
    def from_card(cls, card: ModelCard, *, cache: bool = False, **options: Any) -> LLMAuditor:
        """An auditor on the model of a goa card (``goa.cards.ModelCard``), id ``llm:<card>``."""
        options.setdefault("id", f"llm:{card.id}")
        return cls(backend_for_card(card, cache=cache), **options)

    def _request(self, messages: Sequence[Message], segment: Segment) -> ChatRequest:
        return ChatRequest(
            messages=tuple(messages),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            json_schema=VERDICT_SCHEMA,
            tags=Tags(agent=self._id, stage="trust-audit", question=segment.id),
        )

    async def judge(self, segment: Segment) -> Verdict:
        messages = [
            Message(role="system", content=SYSTEM_PROMPT),
            Message(role="user", content=evaluator_prompt(segment)),
        ]
        problem = "no reply"
        for _ in range(self.max_retries + 1):
            self.calls += 1
            try:
                completion = await self.backend.complete(self._request(messages, segment))
            except ModelRequestError as error:
                return Verdict.abstain(f"model request failed: {error}")
            parsed = parse_verdict(completion.text)
            if parsed.ok and parsed.value is not None:
                return parsed.value
            problem = parsed.problem or "unusable reply"
            messages.append(Message(role="assistant", content=completion.text))
            messages.append(Message(role="user", content=retry_prompt(problem)))
        attempts = self.max_retries + 1
        return Verdict.abstain(f"no usable verdict after {attempts} attempts: {problem}")


def llm_auditors_for_pool(pool: Pool, **options: Any) -> list[LLMAuditor]:
    """One :class:`LLMAuditor` per card of a goa pool (``goa.pools.Pool``), local ones too."""
    return [LLMAuditor.from_card(card, **options) for card in pool.cards]


# --- Humans -----------------------------------------------------------------------------


class _StreamPrompt(Prompt):
    """A rich prompt that raises EOFError at the end of its input instead of asking forever."""

    @classmethod
    def get_input(
        cls, console: Console, prompt: Any, password: bool, stream: TextIO | None = None
    ) -> str:
        return _read(console, prompt, password, stream)


class _StreamFloatPrompt(FloatPrompt):
    @classmethod
    def get_input(
        cls, console: Console, prompt: Any, password: bool, stream: TextIO | None = None
    ) -> str:
        return _read(console, prompt, password, stream)


def _read(console: Console, prompt: Any, password: bool, stream: TextIO | None) -> str:
    if stream is None:
        return console.input(prompt, password=password)
    console.print(prompt, end="")
    line = stream.readline()
    if not line:
        raise EOFError("end of input")
    return line.rstrip("\r\n")


class HumanAuditor(AuditorBase):
    """A person at a terminal judges each segment: vote, confidence, reason.

    The segment is shown in a rich panel on ``output`` (default: the terminal) and the answers
    are read from ``input`` (default: the keyboard).  Votes are typed as ``v``/``i``/``a`` or
    in full; the confidence defaults to 1 and must lie in [0, 1]; the reason may be empty.
    End of input makes the auditor abstain.  Judgements are asked one at a time.
    """

    def __init__(
        self,
        id: str = "human",
        *,
        input: TextIO | None = None,
        output: TextIO | None = None,
    ) -> None:
        super().__init__(id, Tier.HUMAN)
        self._input = input
        self._console = Console(file=output, highlight=False) if output else Console()
        self._lock = asyncio.Lock()

    def _ask(self, segment: Segment) -> Verdict:
        console = self._console
        console.print(Panel(render_segment(segment), title=f"review {segment.id}"))
        shorthand = {"v": Vote.VALID, "i": Vote.INVALID, "a": Vote.ABSTAIN}
        choices = [*shorthand, *(vote.value for vote in Vote)]
        try:
            answer = _StreamPrompt.ask(
                "Vote (v = valid, i = invalid, a = abstain)",
                console=console,
                choices=choices,
                show_choices=False,
                case_sensitive=False,
                stream=self._input,
            )
            vote = shorthand.get(answer.strip().lower()) or Vote(answer.strip().lower())
            if vote is Vote.ABSTAIN:
                reason = _StreamPrompt.ask(
                    "Reason", console=console, default="", stream=self._input
                )
                return Verdict.abstain(reason or "the reviewer abstained")
            while True:
                confidence = _StreamFloatPrompt.ask(
                    "Confidence (0 to 1)", console=console, default=1.0, stream=self._input
                )
                if 0.0 <= confidence <= 1.0:
                    break
                console.print("[prompt.invalid]Please enter a number from 0 to 1")
            reason = _StreamPrompt.ask("Reason", console=console, default="", stream=self._input)
        except EOFError:
            return Verdict.abstain("the reviewer gave no answer (end of input)")
        return Verdict(vote=vote, confidence=confidence, reason=reason)

    async def judge(self, segment: Segment) -> Verdict:
        async with self._lock:
            if self._input is None:
                return await asyncio.to_thread(self._ask, segment)
            return self._ask(segment)


ANSWER_FORMAT = "trust-review-answer/1"
ITEM_FORMAT = "trust-review-item/1"


class FileQueueAuditor(AuditorBase):
    """Human review through a directory, for reviewers who answer later.

    ``judge`` writes the segment to ``<queue>/pending/<item>.json`` (once; ``item`` is
    :meth:`item_id`, a name made of the segment id and a hash of its content) and looks for
    ``<queue>/answered/<item>.json``.  Until that file exists the verdict is an abstain with
    the reason ``"awaiting review"``; call ``judge`` again later to collect the answer.  Once
    answered, the pending file is removed.

    A pending file holds ``{"format": "trust-review-item/1", "item", "auditor", "prompt"
    (the segment as text), "segment" (the segment as JSON), "answer_to" (the answer path)}``.
    An answer file holds one JSON object::

        {"vote": "valid" | "invalid" | "abstain", "confidence": 0..1, "reason": "...",
         "reviewer": "optional name", "item": "optional; must match the file name"}

    A malformed answer makes the auditor abstain with a reason that names the file; the item
    stays pending until the answer is fixed.
    """

    def __init__(self, queue_dir: Path | str, id: str = "review-queue") -> None:
        super().__init__(id, Tier.HUMAN)
        self.queue_dir = Path(queue_dir)

    @property
    def pending_dir(self) -> Path:
        return self.queue_dir / "pending"

    @property
    def answered_dir(self) -> Path:
        return self.queue_dir / "answered"

    @staticmethod
    def item_id(segment: Segment) -> str:
        """The queue name of a segment: its id (made file-safe) and a content hash."""
        digest = hashlib.sha256(segment.model_dump_json().encode()).hexdigest()[:12]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", segment.id)[:64]
        return f"{safe}-{digest}"

    def pending(self) -> list[str]:
        """The items waiting for an answer, sorted."""
        if not self.pending_dir.is_dir():
            return []
        return sorted(path.stem for path in self.pending_dir.glob("*.json"))

    def answer_path(self, segment: Segment) -> Path:
        """Where a reviewer puts the answer to this segment."""
        return self.answered_dir / f"{self.item_id(segment)}.json"

    def _enqueue(self, segment: Segment, item: str) -> None:
        path = self.pending_dir / f"{item}.json"
        if path.exists():
            return
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.answered_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "format": ITEM_FORMAT,
            "item": item,
            "auditor": self._id,
            "prompt": render_segment(segment),
            "segment": segment.model_dump(mode="json"),
            "answer_to": str(self.answered_dir / f"{item}.json"),
        }
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, path)

    def _read_answer(self, path: Path, item: str) -> Verdict | str:
        """The verdict of an answer file, or the problem with it."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"answer {path.name} is not readable JSON: {error}"
        if not isinstance(data, dict):
            return f"answer {path.name} is not a JSON object"
        if data.get("item", item) != item:
            return f"answer {path.name} is for item {data['item']!r}"
        fields = {key: data[key] for key in ("vote", "confidence", "reason") if key in data}
        parsed = parse_verdict(json.dumps(fields))
        if parsed.value is None:
            return f"answer {path.name} is malformed: {parsed.problem}"
        reviewer = data.get("reviewer")
        if isinstance(reviewer, str) and reviewer:
            reason = f"{parsed.value.reason} (reviewer: {reviewer})".strip()
            return parsed.value.model_copy(update={"reason": reason})
        return parsed.value

    async def judge(self, segment: Segment) -> Verdict:
        item = self.item_id(segment)
        answer = self.answered_dir / f"{item}.json"
        if answer.is_file():
            verdict = self._read_answer(answer, item)
            if not isinstance(verdict, str):
                (self.pending_dir / f"{item}.json").unlink(missing_ok=True)
                return verdict
            self._enqueue(segment, item)
            return Verdict.abstain(verdict)
        self._enqueue(segment, item)
        return Verdict.abstain("awaiting review")
