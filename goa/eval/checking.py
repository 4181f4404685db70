"""Checking answers: the final letter of a multiple-choice reply, and math equivalence.

Extraction never guesses. A reply whose final answer cannot be read, is
ambiguous ("A or C"), or names an option the question does not have is scored
wrong and counted as "no answer" (:attr:`Check.no_answer`).

Math answers are compared with ``math-verify`` (imported lazily: importing this
module stays cheap). Its time limit uses ``signal.alarm``, which only works on the
main thread; elsewhere the comparison runs without a time limit.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from goa.parsing import extract_answer, normalise_answer

MAX_OPTIONS = 26
MATH_TIMEOUT_S = 5
"""Seconds math-verify may spend on one parse or comparison (main thread only)."""


@dataclass(frozen=True)
class Check:
    """The verdict on one reply: ``extracted`` is the answer read from it, if any."""

    correct: bool
    extracted: str | None
    no_answer: bool


# --- Multiple choice --------------------------------------------------------------

_LETTER = r"(?P<open>[(\[{]?)\s*(?P<letter>[A-Za-z])(?![A-Za-z0-9])"
_MARKUP = r"[*_`\"'\s]*"
# "Answer: B", "the answer is (B)", "the correct option is B", {"answer": "B"}.
_MC_ANSWER = re.compile(
    r"\b(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)"
    r"[\"'*_`]*\s*(?:(?:is|would\s+be|should\s+be|will\s+be|=|:|\uff1a)\s*)+"
    + _MARKUP
    + r"(?:(?:option|choice|letter)\s+)?"
    + _MARKUP
    + _LETTER,
    re.IGNORECASE,
)
_MC_BOXED = re.compile(
    r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*" + _LETTER + r"\s*[)\]]?\s*\}?\s*\}"
)
_MC_LAST_LINE = re.compile(r"^" + _MARKUP + _LETTER + r"\s*[)\]]?[*_`\"'.\s]*$")
# "A or C", "A, C", "A/C", "A and C": two options, so no answer.
_ANOTHER = re.compile(r"\s*[)\]]?\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?\s*[A-Z](?![A-Za-z0-9])")
# After an unbracketed "A" or "I": the article or the pronoun ("I think", "A bit").
_WORD_FOLLOWS = re.compile(r"(?:['\u2019]|\s+(?!(?:because|since|as|is|which|for)\b)[a-z])")
_ENDS = re.compile(r"[*_`\"']*\s*(?:[.):;,!}\]]|$)")


def _candidate(match: re.Match[str], text: str) -> str | None:
    """The letter of a match, "" when it names two options, None when it is not a letter."""
    letter = match.group("letter")
    tail = text[match.end() :].split("\n", 1)[0]
    if _ANOTHER.match(tail):
        return ""
    if not match.group("open"):
        if letter.islower() and not _ENDS.match(tail):
            return None
        if letter in "AI" and _WORD_FOLLOWS.match(tail):
            return None
    return letter.upper()


def extract_choice(text: str, n_options: int) -> str | None:
    """The final answer letter of a reply, among the ``n_options`` options A, B, ...

    Read from the last of: an answer line ("Answer: B", "the answer is (B)",
    "the correct option is B"), JSON (``{"answer": "B"}``), ``\\boxed{B}``, or a
    last line holding only the letter ("(B)"). None when there is none, when it
    names two options, or when it is beyond the options (E of four).
    """
    if not 1 <= n_options <= MAX_OPTIONS:
        raise ValueError(f"n_options must be between 1 and {MAX_OPTIONS}, not {n_options}")
    found: list[tuple[int, str]] = []
    for pattern in (_MC_ANSWER, _MC_BOXED):
        for match in pattern.finditer(text):
            letter = _candidate(match, text)
            if letter is not None:
                found.append((match.start("letter"), letter))
    lines = text.rstrip().splitlines()
    if lines:
        last = _MC_LAST_LINE.match(lines[-1])
        if last is not None:
            found.append((len(text), last.group("letter").upper()))
    if not found:
        return None
    letter = max(found)[1]
    if not letter or ord(letter) - ord("A") >= n_options:
        return None
    return letter


def check_multiple_choice(text: str, gold: str, n_options: int) -> Check:
    """Whether the reply's final letter is ``gold`` (a letter, any case)."""
    extracted = extract_choice(text, n_options)
    if extracted is None:
        return Check(correct=False, extracted=None, no_answer=True)
    return Check(correct=extracted == gold.strip().upper(), extracted=extracted, no_answer=False)


# --- Math -------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MATH_DELIMITERS = re.compile(r"^\s*(?:\$\$?|\\\(|\\\[)\s*(.*?)\s*(?:\$\$?|\\\)|\\\])\s*$", re.S)


def _braced(text: str, start: int) -> str | None:
    """The text inside the braces whose ``{`` is just before ``start``, or None if unclosed."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def extract_math(text: str) -> str | None:
    """The final answer of a math reply: the last ``\\boxed{...}``, else an ``Answer:`` line."""
    for match in reversed(list(_BOXED.finditer(text))):
        inside = _braced(text, match.end())
        if inside is not None and inside.strip():
            return inside.strip()
    answer = extract_answer(text)
    if answer is None:
        return None
    inner = _MATH_DELIMITERS.match(answer)
    answer = (inner.group(1) if inner else answer).strip().rstrip(".").strip()
    return answer or None


def _equivalent(gold: str, answer: str) -> bool:
    """math-verify's verdict on ``answer`` against ``gold``, both read as LaTeX."""
    from math_verify import (  # type: ignore[import-untyped]
        ExprExtractionConfig,
        LatexExtractionConfig,
        parse,
        verify,
    )

    limit = MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    parsed_gold = parse(f"${gold}$", extraction_config=config, parsing_timeout=limit)
    parsed_answer = parse(f"${answer}$", extraction_config=config, parsing_timeout=limit)
    if not parsed_gold or not parsed_answer:
        return normalise_answer(gold) == normalise_answer(answer)
    return bool(verify(parsed_gold, parsed_answer, timeout_seconds=limit))


def check_math(text: str, gold: str | int) -> Check:
    """Whether the reply's final answer equals ``gold`` (LaTeX, or an integer for AIME)."""
    extracted = extract_math(text)
    if extracted is None:
        return Check(correct=False, extracted=None, no_answer=True)
    gold_text = str(gold).strip()
    inner = _MATH_DELIMITERS.match(gold_text)
    if inner:
        gold_text = inner.group(1)
    return Check(correct=_equivalent(gold_text, extracted), extracted=extracted, no_answer=False)
