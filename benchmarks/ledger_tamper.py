"""The ledger's tamper suite, exhaustively: every single-byte change of every entry.

On a ledger of 1,000 entries (records like those of ``benchmarks.ledger``), each
byte of each entry's stored canonical JSON is flipped in turn, directly in the
SQLite file, and :meth:`trust.ledger.Ledger.verify` must report that entry as the
first bad one; the byte is then restored. The test suite checks a sample of
these (one byte of every entry and every byte of three); this runs them all.
Deletions, truncation, reordering, stored-hash changes and re-signing with
another key are covered by ``tests/test_ledger.py``, ``tests/test_trust_cli.py``
and ``tests/test_checkpoint.py``.

Usage: ``python -m benchmarks.ledger_tamper``; writes
``benchmarks/results/ledger-tamper.json``.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import write_result
from trust.ledger import Ledger

ENTRIES = 1000


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ledger-tamper-") as tmp:
        path = Path(tmp) / "ledger.sqlite"
        with Ledger(path) as ledger:
            ledger.append_many(
                {"kind": "verdict", "i": i, "node": f"step-{i % 37}", "vote": "valid"}
                for i in range(ENTRIES)
            )
        # A second connection in autocommit mode plays the tamperer.
        conn = sqlite3.connect(path, isolation_level=None)
        rows = conn.execute("SELECT idx, data FROM entries ORDER BY idx").fetchall()
        changes = detected = named = 0
        with Ledger(path) as ledger:
            for idx, data in rows:
                for pos in range(len(data)):
                    changed = bytearray(data)
                    changed[pos] ^= 0x01 if pos % 2 else 0x80
                    conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (bytes(changed), idx))
                    report = ledger.verify()
                    changes += 1
                    detected += not report.ok
                    named += report.first_bad == idx
                conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (data, idx))
            intact = ledger.verify().ok
        conn.close()
    print(f"{changes} byte changes, {detected} detected, {named} named the right entry")
    write_result(
        "ledger-tamper",
        metrics={
            "entries": ENTRIES,
            "byte_changes": changes,
            "detected": detected,
            "named_right_entry": named,
            "restored_verifies": int(intact),
            "wall_s": round(time.perf_counter() - started, 1),
        },
        goals={
            "every_byte_change_detected": {
                "target": "every single-byte change of every entry's data is detected",
                "met": detected == changes and named == changes and intact,
            }
        },
        simulated=False,
    )


if __name__ == "__main__":
    main()
