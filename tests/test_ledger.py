"""Tests for trust.ledger (the SQLite ledger) and trust.canonical (its record encoding).

The tamper suite edits the SQLite file directly, the way an attacker with write access would,
and checks that :meth:`Ledger.verify` notices and names the first bad entry.  Every entry of a
1,000-entry ledger gets single-byte changes of its data: for speed (a verify of 1,000 entries takes
several milliseconds), one byte per entry, at a position that moves through the record from
entry to entry, plus every byte of entries 0, 511 and 999.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trust import merkle
from trust.canonical import canonical_json
from trust.ledger import ZERO_HASH, Entry, Ledger, LedgerError, chain_hash


def _record(i: int) -> dict[str, Any]:
    return {"kind": "verdict", "i": i, "node": f"n{i % 7}", "vote": "valid"}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine 1,000-entry ledger; tests copy it before tampering."""
    path = tmp_path_factory.mktemp("ledger") / "thousand.sqlite"
    with Ledger(path) as ledger:
        ledger.append_many(_record(i) for i in range(1000))
        assert ledger.verify().ok
    return path


def _copy(source: Path, target: Path) -> Path:
    """Copy a ledger through SQLite's backup API (the WAL content included)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


# -------------------------------------------------------------------- canonical JSON


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, 2, {"d": None, "c": True}]}) == (
        b'{"a":[1,2,{"c":true,"d":null}],"b":1}'
    )
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1})


def test_canonical_json_writes_unicode_as_utf8() -> None:
    assert canonical_json({"v": "Grüße ✓"}) == '{"v":"Grüße ✓"}'.encode()
    assert canonical_json({"q": 'a"\n'}) == b'{"q":"a\\"\\n"}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_canonical_json_rejects_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError, match="no JSON form"):
        canonical_json({"x": [bad]})


@pytest.mark.parametrize("bad", [{1: "a"}, {"s": {1, 2}}, {"b": b"x"}, {"o": object()}])
def test_canonical_json_rejects_non_json_types(bad: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(bad)


def test_canonical_json_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="Unicode"):
        canonical_json({"s": "\ud800"})


@pytest.mark.parametrize("bad", [[1, 2], "text", 3, None])
def test_append_rejects_records_that_are_not_objects(ledger: Ledger, bad: Any) -> None:
    with pytest.raises(LedgerError, match="JSON object"):
        ledger.append(bad)
    assert ledger.size == 0


def test_append_rejects_nan_and_leaves_ledger_unchanged(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="record 1"):
        ledger.append_many([{"ok": 1}, {"x": float("nan")}])
    assert ledger.size == 0


# -------------------------------------------------------------------- appending and reading


def test_append_entry_entries_and_size(ledger: Ledger) -> None:
    assert ledger.size == 0
    first = ledger.append({"b": "ü", "a": 1})
    assert first.index == 0
    assert first.record == {"a": 1, "b": "ü"}
    assert first.data == canonical_json({"a": 1, "b": "ü"})
    assert first.leaf_hash == merkle.leaf_hash(first.data)
    assert first.prev_hash == ZERO_HASH
    assert first.chain_hash == chain_hash(ZERO_HASH, first.leaf_hash)
    more = ledger.append_many(_record(i) for i in range(1, 5))
    assert [e.index for e in more] == [1, 2, 3, 4]
    assert more[0].prev_hash == first.chain_hash
    assert all(b.prev_hash == a.chain_hash for a, b in itertools.pairwise(more))
    assert ledger.size == 5
    assert ledger.entry(3) == more[2]
    listed = list(ledger.entries())
    assert listed == [first, *more]
    assert list(ledger.entries(2, 4)) == more[1:3]
    assert ledger.append_many([]) == []
    assert isinstance(listed[0], Entry)


def test_bad_indexes_and_sizes_raise(ledger: Ledger) -> None:
    ledger.append_many(_record(i) for i in range(3))
    for call in (
        lambda: ledger.entry(3),
        lambda: ledger.entry(-1),
        lambda: ledger.entries(2, 5),
        lambda: ledger.root(4),
        lambda: ledger.inclusion_proof(3),
        lambda: ledger.inclusion_proof(1, 1),
        lambda: ledger.consistency_proof(0, 2),
        lambda: ledger.consistency_proof(3, 2),
        lambda: ledger.consistency_proof(1, 4),
    ):
        with pytest.raises(LedgerError):
            call()


def test_reopen_keeps_entries_and_default_path(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "l.sqlite"
    with Ledger(path) as ledger:
        ledger.append({"a": 1})
        root = ledger.root()
    with Ledger(path) as again:
        assert again.size == 1
        assert again.root() == root
        assert again.append({"a": 2}).index == 1
    assert Ledger.default_path().parts[-2:] == ("trust", "ledger.sqlite")
    closed = Ledger(path)
    closed.close()
    with pytest.raises(LedgerError, match="closed"):
        _ = closed.size


# -------------------------------------------------------------------- roots and proofs


def test_roots_and_proofs_at_every_size_up_to_70(ledger: Ledger) -> None:
    assert ledger.root() == merkle.EMPTY_ROOT
    leaves: list[bytes] = []
    roots = [merkle.EMPTY_ROOT]
    for i in range(70):
        leaves.append(ledger.append(_record(i)).leaf_hash)
        roots.append(merkle.root(leaves))
        assert ledger.root() == roots[-1]
    for n in range(71):
        assert ledger.root(n) == roots[n]
        for m in range(n):
            proof = ledger.inclusion_proof(m, n)
            assert proof == merkle.inclusion_proof(leaves[:n], m)
            merkle.verify_inclusion(m, n, leaves[m], proof, roots[n])
        for m in range(1, n + 1):
            proof = ledger.consistency_proof(m, n)
            assert proof == merkle.consistency_proof(leaves, m, n)
            merkle.verify_consistency(m, n, proof, roots[m], roots[n])


def test_proofs_at_random_sizes_of_a_larger_ledger(ledger: Ledger) -> None:
    ledger.append_many(_record(i) for i in range(5000))
    leaves = [e.leaf_hash for e in ledger.entries()]
    assert ledger.root() == merkle.root(leaves) == ledger.verify().root
    rng = random.Random(9162)
    for _ in range(150):
        n = rng.randint(1, 5000)
        m = rng.randrange(n)
        root = ledger.root(n)
        merkle.verify_inclusion(m, n, leaves[m], ledger.inclusion_proof(m, n), root)
        old = rng.randint(1, n)
        merkle.verify_consistency(old, n, ledger.consistency_proof(old, n), ledger.root(old), root)
    proof = ledger.inclusion_proof(4321)
    merkle.verify_inclusion(4321, 5000, leaves[4321], proof, ledger.root())
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(4321, 5000, leaves[4320], proof, ledger.root())


# -------------------------------------------------------------------- not a ledger


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="not a goa ledger"):
        Ledger(path)


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('magic', 'something-else')")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="not a goa ledger"):
        Ledger(path)


def test_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(LedgerError, match="not a goa ledger"):
        Ledger(path)
    assert path.read_bytes().startswith(b"this is not a database")


# -------------------------------------------------------------------- tampering


def _tampered(thousand: Path, tmp_path: Path, *statements: tuple[str, tuple[Any, ...]]) -> Any:
    path = _copy(thousand, tmp_path / "t.sqlite")
    conn = sqlite3.connect(path)
    for sql, params in statements:
        conn.execute(sql, params)
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        return ledger.verify()


def _byte_changes_are_detected(path: Path, every_byte: set[int] | None) -> int:
    """Flip each chosen byte of each entry's stored data in turn; verify must name that
    entry. ``every_byte``: the entries whose every byte is flipped (None: all of them);
    the others get one byte, its position walking through the record."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT idx, data FROM entries ORDER BY idx").fetchall()
    conn.close()
    checked = 0
    with Ledger(path) as ledger:
        conn = ledger._connection()
        for idx, data in rows:
            full = every_byte is None or idx in every_byte
            for pos in range(len(data)) if full else [(idx * 7) % len(data)]:
                changed = bytearray(data)
                changed[pos] ^= 0x01 if pos % 2 else 0x80
                conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (bytes(changed), idx))
                report = ledger.verify()
                assert not report.ok
                assert report.first_bad == idx, (idx, pos, report.problem)
                assert report.problem == f"entry {idx}: leaf hash does not match its data"
                checked += 1
            conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (data, idx))
        assert ledger.verify().ok
    return checked


def test_single_byte_changes_of_data_are_detected(thousand: Path) -> None:
    """One byte of every entry, and every byte of three entries (the fast sample)."""
    assert _byte_changes_are_detected(thousand, {0, 511, 999}) > 1100


@pytest.mark.parametrize("idx", [0, 1, 500, 999])
def test_changed_leaf_hash_is_detected(thousand: Path, tmp_path: Path, idx: int) -> None:
    report = _tampered(
        thousand, tmp_path, ("UPDATE entries SET leaf = ? WHERE idx = ?", (bytes(32), idx))
    )
    assert (report.ok, report.first_bad) == (False, idx)
    assert "leaf hash" in report.problem


@pytest.mark.parametrize("idx", [0, 1, 500, 999])
def test_changed_prev_hash_is_detected(thousand: Path, tmp_path: Path, idx: int) -> None:
    report = _tampered(
        thousand, tmp_path, ("UPDATE entries SET prev = ? WHERE idx = ?", (b"\x07" * 32, idx))
    )
    assert (report.ok, report.first_bad) == (False, idx)
    assert "previous hash" in report.problem


@pytest.mark.parametrize(("level", "idx"), [(1, 0), (1, 250), (3, 77), (5, 30), (9, 0)])
def test_changed_node_hash_names_first_entry_it_covers(
    thousand: Path, tmp_path: Path, level: int, idx: int
) -> None:
    report = _tampered(
        thousand,
        tmp_path,
        ("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (bytes(32), level, idx)),
    )
    assert (report.ok, report.first_bad) == (False, idx << level)
    assert f"level {level}, index {idx}" in report.problem


def test_deleted_node_is_detected(thousand: Path, tmp_path: Path) -> None:
    report = _tampered(thousand, tmp_path, ("DELETE FROM nodes WHERE level = 2 AND idx = 9", ()))
    assert (report.ok, report.first_bad) == (False, 36)
    assert "missing" in report.problem


def test_data_and_leaf_rewritten_together_break_the_chain(thousand: Path, tmp_path: Path) -> None:
    data = canonical_json({"kind": "verdict", "i": 400, "vote": "invalid"})
    report = _tampered(
        thousand,
        tmp_path,
        (
            "UPDATE entries SET data = ?, leaf = ? WHERE idx = 400",
            (data, merkle.leaf_hash(data)),
        ),
    )
    # The rewrite is self-consistent at entry 400; the chain link into entry 401 breaks.  Nodes
    # over entry 401 are not compared (they lie past the first bad entry), so 401 is named.
    assert (report.ok, report.first_bad) == (False, 401)
    assert "chain hash of entry 400" in report.problem


@pytest.mark.parametrize("idx", [0, 1, 333, 998, 999])
def test_deleted_entry_is_detected(thousand: Path, tmp_path: Path, idx: int) -> None:
    report = _tampered(thousand, tmp_path, ("DELETE FROM entries WHERE idx = ?", (idx,)))
    assert (report.ok, report.first_bad) == (False, idx)
    assert "missing" in report.problem


@pytest.mark.parametrize("k", [1, 2, 7, 100, 1000])
def test_truncated_end_is_detected_through_stored_nodes(
    thousand: Path, tmp_path: Path, k: int
) -> None:
    report = _tampered(thousand, tmp_path, ("DELETE FROM entries WHERE idx >= ?", (1000 - k,)))
    assert (report.ok, report.size, report.first_bad) == (False, 1000 - k, 1000 - k)
    assert "removed from the end" in report.problem


@pytest.mark.parametrize(("i", "j"), [(0, 1), (10, 500), (998, 999)])
def test_swapped_entries_are_detected(thousand: Path, tmp_path: Path, i: int, j: int) -> None:
    report = _tampered(
        thousand,
        tmp_path,
        ("UPDATE entries SET idx = -1 WHERE idx = ?", (i,)),
        ("UPDATE entries SET idx = ? WHERE idx = ?", (i, j)),
        ("UPDATE entries SET idx = ? WHERE idx = -1", (j,)),
    )
    assert (report.ok, report.first_bad) == (False, i)


def test_non_blob_data_is_reported_not_raised(thousand: Path, tmp_path: Path) -> None:
    report = _tampered(thousand, tmp_path, ("UPDATE entries SET data = 'x' WHERE idx = 5", ()))
    assert (report.ok, report.first_bad) == (False, 5)


def test_damaged_entry_is_not_returned_as_an_entry(thousand: Path, tmp_path: Path) -> None:
    path = _copy(thousand, tmp_path / "t.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE entries SET data = ? WHERE idx = 3", (b'{"i":999}',))
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        with pytest.raises(LedgerError, match="entry 3 is damaged"):
            ledger.entry(3)
        assert ledger.entry(4).index == 4


# -------------------------------------------------------------------- several processes


def _append_worker(path: str, worker: int) -> None:
    with Ledger(Path(path)) as ledger:
        for batch in range(100):
            ledger.append_many(
                {"worker": worker, "n": batch * 100 + k, "vote": "valid"} for k in range(100)
            )


def test_four_processes_appending_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    Ledger(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_worker, args=(str(path), w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0
    with Ledger(path) as ledger:
        assert ledger.size == 40_000
        seen = sorted((e.record["worker"], e.record["n"]) for e in ledger.entries())
        assert seen == [(w, n) for w in range(4) for n in range(10_000)]
        report = ledger.verify()
        assert report.ok, report.problem
        assert report.root == ledger.root()


# -------------------------------------------------------------------- the parallel fast path


def test_large_ledger_verifies_in_parts_and_falls_back_on_damage(tmp_path: Path) -> None:
    """140,000 entries: past two 2**16 parts, so verify uses forked workers where it can."""
    path = tmp_path / "large.sqlite"
    with Ledger(path) as ledger:
        for low in range(0, 140_000, 20_000):
            ledger.append_many(_record(i) for i in range(low, low + 20_000))
        report = ledger.verify()
        assert (report.ok, report.size) == (True, 140_000)
        assert report.root == ledger.root()
        conn = ledger._connection()
        conn.execute("UPDATE entries SET data = ? WHERE idx = 100000", (b'{"i":0}',))
        conn.execute("DELETE FROM entries WHERE idx = 120000")
        report = ledger.verify()
        assert (report.ok, report.first_bad) == (False, 100_000)
        assert report.problem == "entry 100000: leaf hash does not match its data"
