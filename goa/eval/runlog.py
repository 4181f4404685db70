"""The run log: one JSON line per evaluated sample, appended atomically.

Format
------
A UTF-8 JSONL file; each line is one :class:`LogRecord` (see its fields): the
run id, method, dataset, sample id, question, gold answer, every model call the
method made (``responses``: agent, stage, round, text, extracted answer, usage,
cost, latency, cached, error), the graph, the final reply, the answer the checker
read from it (``extracted``), ``correct``, ``no_answer``, calls, tokens, cost,
latency, errors and a UTC timestamp.

Atomicity
---------
:class:`RunLog` writes each line, newline included, with one ``os.write`` on a
descriptor opened with ``O_APPEND``, holding an exclusive ``fcntl.flock`` (so two
processes appending to the same log never interleave lines), then ``fsync``\\ s.
A process killed mid-write can leave at most one partial line at the end of the
file; the next writer first ends it with a newline so that its own line stays
whole, and :func:`read_log` skips (and reports) lines that do not parse. A
sample whose line is not whole counts as not done, so a resumed run does it again.
Duplicates (the same method and sample id) keep the first line, except that a
sample whose kept line has failed model calls (``failed_calls > 0``) is replaced by
a later line for it: that is how ``run_eval(..., retry_failed=True)`` (``goa eval
--retry-failed``) reruns samples whose calls failed (a server down, out of memory)
without rewriting the log.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class LogRecord(BaseModel):
    """One evaluated sample, as one line of the run log."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    method: str
    dataset: str
    sample_id: str
    kind: str
    subject: str | None = None
    category: str | None = None
    question: str
    """The question text exactly as the models read it."""
    gold: str
    responses: list[dict[str, Any]] = Field(default_factory=list)
    """Every model call of the method (agents' answers included), in order."""
    graph: dict[str, Any] = Field(default_factory=dict)
    final_answer: str | None = None
    """The method's final reply (None when it did not answer)."""
    answered: bool = False
    reason: str = ""
    extracted: str | None = None
    """What the checker read from the final reply (a letter, a math answer, code)."""
    correct: bool = False
    no_answer: bool = True
    check_detail: str = ""
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """None when the cost of any call is unknown."""
    latency_s: float = 0.0
    """Summed latency of the calls."""
    wall_s: float = 0.0
    """Wall time of the sample: the method's answer and the check."""
    errors: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    timestamp: float = 0.0
    """When the line was written (seconds since the epoch, UTC)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.sample_id)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class LogContents:
    """What :func:`read_log` found: the records, and the lines it skipped."""

    records: list[LogRecord] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)
    """1-based numbers of lines that do not parse (a crash mid-write leaves one)."""
    truncated_last: bool = False
    """The last line is incomplete (no final newline and not parsable)."""
    duplicates: int = 0
    """Lines dropped because an earlier line has the same method and sample id."""
    superseded: int = 0
    """Lines with failed calls replaced by a later line for the same sample (a retry)."""

    def done(self, method: str) -> set[str]:
        """The sample ids already logged for ``method``."""
        return {r.sample_id for r in self.records if r.method == method}

    def problems(self) -> list[str]:
        """The skipped lines in words (empty when the log is clean)."""
        notes = []
        if self.bad_lines:
            where = ", ".join(str(n) for n in self.bad_lines[:10])
            more = "" if len(self.bad_lines) <= 10 else f" and {len(self.bad_lines) - 10} more"
            last = " (the last one incomplete)" if self.truncated_last else ""
            notes.append(f"skipped unreadable line(s) {where}{more}{last}")
        if self.duplicates:
            notes.append(f"ignored {self.duplicates} duplicate line(s)")
        return notes


def read_log(path: Path, *, method: str | None = None) -> LogContents:
    """The records of a run log (none if it does not exist), first line of each sample kept."""
    contents = LogContents()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return contents
    lines = data.split(b"\n")
    ends_whole = data.endswith(b"\n") or not data
    if ends_whole:
        lines.pop()  # the empty piece after the final newline
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = LogRecord.model_validate_json(raw)
        except ValidationError:
            contents.bad_lines.append(number)
            if number == len(lines) and not ends_whole:
                contents.truncated_last = True
            continue
        if method is not None and record.method != method:
            continue
        index = seen.get(record.key)
        if index is not None:
            if contents.records[index].failed_calls > 0:  # a retry of a failed sample
                contents.records[index] = record
                contents.superseded += 1
            else:
                contents.duplicates += 1
            continue
        seen[record.key] = len(contents.records)
        contents.records.append(record)
    return contents


def _encode(record: LogRecord) -> bytes:
    return (record.model_dump_json() + "\n").encode("utf-8")


class RunLog:
    """An open run log that appends whole lines atomically (see the module docs).

    Safe to share between threads and between processes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: LogRecord) -> None:
        """Write ``record`` as one line and flush it to disk."""
        self.append_many([record])

    def append_many(self, records: Sequence[LogRecord]) -> None:
        """Write several records, one line each, in one write and one ``fsync``."""
        if records:
            self._write(b"".join(_encode(record) for record in records))

    def append_raw(self, line: bytes) -> None:
        """Write one already-encoded line (ending in a newline) atomically."""
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise ValueError("a log line must be one line ending in a newline")
        self._write(line)

    def _write(self, line: bytes) -> None:
        """Append whole lines under the file lock, then flush them to disk."""
        with self._lock:
            fd = self._fd
            if fd is None:
                raise ValueError(f"{self.path}: the run log is closed")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if _ends_unfinished(fd):
                    line = b"\n" + line  # end a partial line a killed writer left
                written = os.write(fd, line)
                if written != len(line):  # disk full: do not leave half a line behind
                    raise OSError(f"{self.path}: wrote {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_unfinished(fd: int) -> bool:
    """Whether the file is non-empty and its last byte is not a newline."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def dump_records(records: Iterable[LogRecord]) -> str:
    """Records as JSONL text (for tests and exports)."""
    return "".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in records)


__all__ = ["LogContents", "LogRecord", "RunLog", "dump_records", "read_log"]
