"""Reading structured output from model text, forgivingly but never by guessing.

Models wrap JSON in code fences, prose or Python-style quotes; these readers find
the object wherever it is. Each ``parse_*`` returns a :class:`Parsed`: a value
and, when the reply is not fully usable, the problem in words that can be sent
back to the model as feedback. A value may come with a problem (a partial
selection, scores that do not add up to 1) so that a stage can fall back on the
best partial reply once its retries are spent.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SCORE_SUM_TOLERANCE = 0.05
"""Scores whose sum is within this of 1 are accepted (and rescaled to sum to exactly 1)."""

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_ANSWER_LINE = re.compile(
    r"^[\s>*_#-]*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[*_]*\s*[:\uff1a]\s*(.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parse: ``value`` (possibly partial) and ``problem`` (None when fully valid)."""

    value: T | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.value is not None


# --- JSON -----------------------------------------------------------------------


def _candidates(text: str) -> list[str]:
    fenced = [m.group(1) for m in _FENCE.finditer(text)]
    return [*fenced, text]


def _load(snippet: str) -> Any:
    """JSON, else a Python literal (single quotes); raises ValueError if neither."""
    try:
        return json.loads(snippet)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(snippet)
    # TypeError: a literal with an unhashable key, such as {[1, 2]: 3} (a model wrote one).
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _balanced(text: str, start: int) -> str | None:
    """The bracketed span opening at ``start``, matching brackets outside strings."""
    pairs = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in pairs:
            stack.append(pairs[char])
        elif char in "}]":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return text[start : i + 1]
    return None


def find_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (fenced or bare), or None."""
    for candidate in _candidates(text):
        stripped = candidate.strip()
        try:
            value = _load(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict | list):
            return value
        for match in re.finditer(r"[\[{]", candidate):
            span = _balanced(candidate, match.start())
            if span is None:
                continue
            try:
                value = _load(span)
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return value
    return None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%"))
        except ValueError:
            return None
        if value.strip().endswith("%"):
            number /= 100
    else:
        return None
    return number if math.isfinite(number) else None


def _as_index(value: object) -> int | None:
    """A candidate number from ``3``, ``"3"``, ``"Candidate 3"`` or ``{"index": 3}``."""
    if isinstance(value, dict):
        for key in ("index", "candidate", "number", "id", "agent"):
            if key in value:
                return _as_index(value[key])
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        numbers = _NUMBER.findall(value)
        return int(numbers[0]) if len(numbers) == 1 else None
    return None


# --- Node sampling --------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Zero-based candidate indices, best first, with the reasons given (if any)."""

    indices: tuple[int, ...]
    reasons: tuple[str | None, ...]


def _selection_items(data: Any) -> tuple[list[Any], list[Any]] | None:
    if isinstance(data, list):
        return data, []
    if isinstance(data, dict):
        for key in ("selected", "selection", "candidates", "agents", "indices", "picks"):
            items = data.get(key)
            if isinstance(items, list):
                reasons = data.get("reasons")
                return items, reasons if isinstance(reasons, list) else []
    return None


def parse_selection(text: str, *, candidates: int, k: int) -> Parsed[Selection]:
    """Read the meta model's picks: ``k`` distinct numbers in 1..``candidates``.

    Repeats are dropped (the first mention counts) and so are numbers out of
    range; the valid picks are returned even when there is a problem, so that a
    last, partial reply can still be used.
    """
    data = find_json(text)
    found = _selection_items(data) if data is not None else None
    if found is None:
        return Parsed(problem='no JSON object of the form {"selected": [...]} was found.')
    items, raw_reasons = found
    indices: list[int] = []
    reasons: list[str | None] = []
    bad: list[str] = []
    repeats = 0
    for position, item in enumerate(items):
        number = _as_index(item)
        if number is None or not 1 <= number <= candidates:
            bad.append(json.dumps(item) if not isinstance(item, str) else repr(item))
            continue
        if number - 1 in indices:
            repeats += 1
            continue
        indices.append(number - 1)
        reason = item.get("reason") if isinstance(item, dict) else None
        if reason is None and position < len(raw_reasons):
            reason = raw_reasons[position]
        reasons.append(str(reason).strip() if reason else None)
    problems = []
    if bad:
        problems.append(
            f"{', '.join(bad)} {'is not a' if len(bad) == 1 else 'are not'} candidate "
            f"number{'' if len(bad) == 1 else 's'} (use numbers from 1 to {candidates})"
        )
    if repeats:
        problems.append("a candidate was listed more than once")
    if len(indices) != k:
        problems.append(f"list exactly {k} different candidates, not {len(indices)}")
    value = Selection(tuple(indices), tuple(reasons))
    return Parsed(value=value, problem="; ".join(problems) + "." if problems else None)


def selection_schema(*, candidates: int, k: int) -> dict[str, Any]:
    """The JSON schema of a selection reply (for structured outputs)."""
    return {
        "type": "object",
        "properties": {
            "selected": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": candidates},
                "minItems": k,
                "maxItems": k,
            },
            "reasons": {"type": "array", "items": {"type": "string"}, "minItems": k, "maxItems": k},
        },
        "required": ["selected", "reasons"],
    }


# --- Difficulty -----------------------------------------------------------------


DIFFICULTY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"difficulty": {"type": "integer", "enum": [1, 2, 3]}},
    "required": ["difficulty"],
}
"""The JSON schema of a difficulty rating (for structured outputs)."""


def parse_difficulty(text: str) -> Parsed[int]:
    """A difficulty rating 1, 2 or 3, from ``{"difficulty": 2}`` or a bare digit."""
    data = find_json(text)
    value: object = None
    if isinstance(data, dict):
        value = data.get("difficulty")
    elif data is None and re.fullmatch(r"\s*[123]\s*\.?\s*", text):
        value = text.strip().rstrip(".")
    number = _as_number(value)
    if number is None or number not in (1.0, 2.0, 3.0):
        return Parsed(problem='reply with {"difficulty": N} where N is 1, 2 or 3.')
    return Parsed(value=int(number))


# --- Peer scores ----------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """One judge's scores, in the order of the answers it was shown."""

    values: tuple[float, ...]

    def rescaled(self) -> Scores:
        """The same scores divided by their sum (so that they add up to 1)."""
        total = sum(self.values)
        return Scores(tuple(v / total for v in self.values))


def _score_items(data: Any, count: int) -> list[Any] | None:
    if isinstance(data, dict) and "scores" in data:
        data = data["scores"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        by_number: dict[int, Any] = {}
        for key, value in data.items():
            number = _as_index(key)
            if number is not None:
                by_number[number] = value
        if sorted(by_number) == list(range(1, count + 1)):
            return [by_number[n] for n in range(1, count + 1)]
    return None


def scores_schema(count: int) -> dict[str, Any]:
    """The JSON schema of a judge's reply (for structured outputs)."""
    return {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "items": {"type": "number", "minimum": 0, "maximum": 1},
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": ["scores"],
    }


def parse_scores(text: str, *, count: int) -> Parsed[Scores]:
    """Read ``count`` scores in [0, 1] that add up to 1.

    A sum within :data:`SCORE_SUM_TOLERANCE` of 1 is accepted and rescaled. Other
    non-negative scores with a positive sum are returned as a value *with* a
    problem: the caller may rescale them once retries are spent.
    """
    data = find_json(text)
    items = _score_items(data, count) if data is not None else None
    if items is None:
        return Parsed(
            problem=f'no JSON object of the form {{"scores": [...]}} with {count} numbers.'
        )
    numbers = [_as_number(item) for item in items]
    if any(n is None for n in numbers):
        return Parsed(problem="every score must be a number.")
    values = tuple(n for n in numbers if n is not None)
    if len(values) != count:
        return Parsed(problem=f"give exactly {count} scores, one per answer, not {len(values)}.")
    if any(v < 0 for v in values):
        return Parsed(problem="scores cannot be negative.")
    total = sum(values)
    if total <= 0:
        return Parsed(problem="the scores are all zero; share 1 point between the answers.")
    scores = Scores(values)
    if abs(total - 1.0) <= SCORE_SUM_TOLERANCE and all(v <= 1.0 for v in values):
        return Parsed(value=scores.rescaled())
    return Parsed(
        value=scores,
        problem=f"the scores add up to {total:g}; they must be between 0 and 1 and add up to 1.",
    )


# --- Final answers --------------------------------------------------------------


def extract_answer(text: str) -> str | None:
    """The final answer of a reply: the text after the last ``Answer:`` line, or None."""
    matches = _ANSWER_LINE.findall(text)
    if not matches:
        return None
    answer = str(matches[-1]).strip().strip("*_`").strip()
    answer = answer.rstrip(".").strip()
    return answer or None


def normalise_answer(answer: str) -> str:
    """An answer reduced for comparison: case, markup, brackets and spacing ignored."""
    text = answer.casefold()
    text = re.sub(r"[*_`\"'()\[\]{}]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(".!;:,").strip()


def all_agree(answers: Sequence[str | None]) -> bool:
    """True when there are at least two answers, all extracted and all the same."""
    if len(answers) < 2 or any(a is None for a in answers):
        return False
    return len({normalise_answer(a) for a in answers if a is not None}) == 1


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The answer (normalised) that more than half of ``answers`` give, or None.

    An answer that could not be extracted (None) counts against every answer,
    so two of three agents must agree even when the third gave no answer.
    """
    if len(answers) < 2:
        return None
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            key = normalise_answer(answer)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    top, votes = max(counts.items(), key=lambda item: item[1])
    return top if 2 * votes > len(answers) else None


def unusable(text: str) -> str | None:
    """Why a reply cannot serve as an answer (empty, no letters or digits), or None."""
    if not text.strip():
        return "empty reply"
    if not any(char.isalnum() for char in text):
        return "reply has no letters or digits"
    return None
