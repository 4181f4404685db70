"""Reading a reasoning trace to audit from a file.

Accepted forms:

* JSON (``.json``): a list of step strings, or an object with ``"steps"`` (a list of
  strings) and optionally the question as ``"goal"``, ``"question"`` or ``"input"`` (the
  BIG-Bench Mistake layout is such an object);
* JSON lines (``.jsonl``): one such object or list per line; ``line`` picks one (1-based),
  and a file of several traces needs it;
* anything else: free text, split into steps by :func:`trust.decompose.split_steps`.

Every problem is a :class:`TraceFileError` naming the file, the line (and column, for JSON
syntax) and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goa.errors import GoaError

__all__ = ["Trace", "TraceFileError", "parse_trace", "read_trace"]

GOAL_KEYS = ("goal", "question", "input")


class TraceFileError(GoaError):
    """A trace file cannot be read; the message names the file, position and problem."""


@dataclass(frozen=True)
class Trace:
    """A trace to audit: its steps (or its free text) and the question, when known."""

    steps: tuple[str, ...] | str
    goal: str | None = None


def read_trace(path: Path, *, line: int | None = None) -> Trace:
    """The trace in ``path`` (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TraceFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TraceFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return parse_trace(text, name=str(path), kind=path.suffix.lower(), line=line)


def parse_trace(text: str, *, name: str, kind: str = "", line: int | None = None) -> Trace:
    """A trace from ``text``; ``kind`` is ``.json``, ``.jsonl`` or anything else for free
    text; ``name`` is what error messages call the source."""
    if kind == ".jsonl":
        return _from_jsonl(text, name, line)
    if line is not None:
        raise TraceFileError(f"{name}: a line can only be chosen in a .jsonl file")
    if kind == ".json":
        return _from_json(_load(text, name, 1), name, 1)
    if not text.strip():
        raise TraceFileError(f"{name}: the trace is empty")
    return Trace(steps=text)


def _load(text: str, name: str, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        row = line + exc.lineno - 1
        raise TraceFileError(f"{name}:{row}:{exc.colno}: invalid JSON: {exc.msg}") from None


def _from_jsonl(text: str, name: str, line: int | None) -> Trace:
    rows = [(n, row) for n, row in enumerate(text.splitlines(), start=1) if row.strip()]
    if not rows:
        raise TraceFileError(f"{name}: the file holds no trace")
    if line is None:
        if len(rows) > 1:
            raise TraceFileError(
                f"{name}: {len(rows)} traces in the file; choose one with --line N"
            )
        number, row = rows[0]
    else:
        found = [(n, r) for n, r in rows if n == line]
        if not found:
            raise TraceFileError(f"{name}:{line}: no trace on that line")
        number, row = found[0]
    return _from_json(_load(row, name, number), name, number)


def _from_json(data: Any, name: str, line: int) -> Trace:
    where = f"{name}:{line}"
    goal: str | None = None
    if isinstance(data, dict):
        if "steps" not in data:
            raise TraceFileError(f'{where}: no "steps" field (a list of step strings)')
        for key in GOAL_KEYS:
            value = data.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise TraceFileError(f'{where}: "{key}" must be a string')
                goal = value
                break
        steps = data["steps"]
    else:
        steps = data
    if not isinstance(steps, list):
        raise TraceFileError(f"{where}: steps must be a list of strings")
    for index, step in enumerate(steps):
        if not isinstance(step, str):
            raise TraceFileError(f"{where}: steps[{index}] is not a string")
    if not any(step.strip() for step in steps):
        raise TraceFileError(f"{where}: the trace has no steps")
    return Trace(steps=tuple(steps), goal=goal)
