"""A tamper-evident leaderboard: evaluation runs recorded on the TRUST ledger.

``goa eval --record`` appends one ledger record per method it ran
(:func:`record_runs`): the method, the question set, the pool and its models,
n, accuracy and its standard error, cost, the run log's path, and the SHA-256
of that method's lines in the log (:func:`log_digest`). The ledger is
append-only and hash-chained (:mod:`trust.ledger`), so a recorded result cannot
be changed or removed afterwards without ``trust ledger verify`` noticing.

The log itself lives outside the ledger, so ``goa leaderboard``
(:func:`leaderboard`) recomputes each recorded digest from the log file as it
is now and flags a run whose lines were changed, removed or added to since
(``changed``), or whose log is gone (``missing``).

The digest covers only the recorded method's lines, in file order, so other
methods appending to the same log later do not disturb it; resuming or
rerunning the same method into that log does, and is flagged, which is what a
reader of the leaderboard should be told.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from goa.eval.runner import RunSummary
    from trust.ledger import Ledger

RECORD_TYPE = "goa-eval-run"
Status = Literal["ok", "changed", "missing"]


def log_digests(path: Path) -> dict[str, str] | None:
    """For every method in the run log: SHA-256 (hex) of its lines, in file order; None when
    the file cannot be read. Lines that do not parse are left out (a line cut short by a crash
    belongs to no finished sample). One pass over the file serves every method."""
    digests: dict[str, Any] = {}
    try:
        with path.open("rb") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("method"), str):
                    digest = digests.setdefault(record["method"], hashlib.sha256())
                    digest.update(line.rstrip(b"\n") + b"\n")
    except OSError:
        return None
    return {method: digest.hexdigest() for method, digest in digests.items()}


def log_digest(path: Path, method: str) -> str | None:
    """SHA-256 (hex) of the lines of ``method`` in the run log (of nothing when it has none);
    None when the file cannot be read."""
    digests = log_digests(path)
    return None if digests is None else digests.get(method, _NOTHING)


_NOTHING = hashlib.sha256().hexdigest()


def run_record(
    summary: RunSummary,
    *,
    data: str,
    pool: str,
    models: Sequence[str],
    log: Path,
    digests: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ledger record of one method's run (``digests``: :func:`log_digests` of ``log``,
    when already computed)."""
    if digests is None:
        digests = log_digests(log)
    return {
        "type": RECORD_TYPE,
        "method": summary.method,
        "data": data,
        "pool": pool,
        "models": list(models),
        "n": summary.n,
        "accuracy": round(summary.accuracy, 6),
        "se": round(summary.se, 6),
        "cost_usd": summary.cost_usd,
        "log": str(log.resolve()),
        "log_sha256": None if digests is None else digests.get(summary.method, _NOTHING),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def record_runs(
    ledger: Ledger,
    summaries: Iterable[RunSummary],
    *,
    data: str,
    pool: str,
    models: Sequence[str],
    log: Path,
) -> list[int]:
    """Append one record per summary; the ledger indexes of the new entries."""
    digests = log_digests(log)
    records = [
        run_record(s, data=data, pool=pool, models=models, log=log, digests=digests)
        for s in summaries
    ]
    return [entry.index for entry in ledger.append_many(records)]


@dataclass(frozen=True)
class Standing:
    """One recorded run on the leaderboard, with whether its log still matches."""

    index: int
    record: dict[str, Any]
    status: Status

    @property
    def accuracy(self) -> float:
        return float(self.record.get("accuracy", 0.0))


def leaderboard(ledger: Ledger, *, data: str | None = None) -> list[Standing]:
    """Every recorded run (of question set ``data`` if given), best accuracy first."""
    standings: list[Standing] = []
    logs: dict[Path, dict[str, str] | None] = {}  # each log file read once
    for entry in ledger.entries():
        record = entry.record
        if record.get("type") != RECORD_TYPE or (data is not None and record.get("data") != data):
            continue
        path = Path(str(record.get("log", "")))
        if path not in logs:
            logs[path] = log_digests(path) if path.is_file() else None
        found = logs[path]
        now = None if found is None else found.get(str(record.get("method")), _NOTHING)
        status: Status = (
            "missing" if now is None else "ok" if now == record.get("log_sha256") else "changed"
        )
        standings.append(Standing(entry.index, record, status))
    standings.sort(key=lambda s: (-s.accuracy, s.index))
    return standings


__all__ = [
    "RECORD_TYPE",
    "Standing",
    "leaderboard",
    "log_digest",
    "log_digests",
    "record_runs",
    "run_record",
]
