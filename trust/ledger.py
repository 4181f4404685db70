"""TRUST's ledger: an append-only, hash-chained Merkle log of audit decisions in SQLite.

What an entry is
----------------
A record is a JSON object.  The ledger stores its canonical encoding (``data``, see
:mod:`trust.canonical`), the RFC 9162 leaf hash of that encoding (``leaf``), the chain hash of
the entry before it (``prev``) and the time it was appended.  Two structures are built over the
entries, and each catches tampering on its own:

* a *hash chain*: ``chain(i) = SHA-256(0x02 || prev(i) || leaf(i))`` with ``prev(0)`` being 32
  zero bytes and ``prev(i) = chain(i - 1)``.  The ``0x02`` prefix keeps chain hashes apart from
  leaf (``0x00``) and node (``0x01``) hashes.  Changing, dropping or moving one entry breaks
  the link to the next one;
* an RFC 9162 *Merkle tree* over the leaf hashes (:mod:`trust.merkle`), whose root can be
  signed as a checkpoint and from which inclusion and consistency proofs are cut.

Storage
-------
Three tables.  ``meta`` holds a magic value and the format version; a database without them is
not opened (it is not ours).  ``entries(idx, data, leaf, prev, time)`` is keyed by the 0-based
index.  ``nodes(level, idx, hash)`` keeps the hash of every *complete, aligned, perfect*
subtree: the node at ``(level, idx)`` covers entries ``[idx * 2**level, (idx + 1) * 2**level)``.
Level 0 would be the leaves themselves, which ``entries.leaf`` already holds, so ``nodes``
starts at level 1.  A node is written in the same transaction as the entry that completes it:
appending entry ``i`` completes one node per trailing 1-bit of ``i`` (the carries of a binary
counter), about one node per entry on average.

Why these nodes are enough: in RFC 9162's recursive definition the tree over ``n`` entries is
split at the largest power of two below ``n``, and the left part of every split is a perfect
subtree that starts at a multiple of its own size, i.e. exactly one stored node.  The right part
is either perfect too or is split again.  The tree over the first ``n`` entries is therefore
the fold of the ``popcount(n)`` aligned subtrees named by the binary digits of ``n``, whatever
``n`` is, even long after more entries were appended.  The root at any past size, and every
hash that an inclusion or consistency proof needs, is so a handful of primary-key lookups
(``O(log n)``), with no tree kept in memory and nothing recomputed.

Concurrency and durability
--------------------------
The database runs in WAL mode (readers never block the writer) with ``synchronous=FULL`` and a
generous busy timeout.  Every append happens inside ``BEGIN IMMEDIATE``: the write lock is
taken *before* the tail of the ledger is read, so processes that append at the same moment
queue up one after another.  Each sees the tail the previous one committed, so no entry is
lost, no index is used twice and the chain never forks.  Records are encoded before the lock is
taken, so the lock is held only for hashing and inserting.  An insert that would overwrite an
existing entry or node (which only happens on a damaged ledger) fails the whole transaction.

Reads that need several lookups (roots, proofs) run inside one read transaction, so they see a
single consistent snapshot even while other processes append.

Verification
------------
:meth:`Ledger.verify` trusts nothing that is stored except ``data``.  It streams the entries in
index order in large chunks and, per chunk, recomputes all leaf hashes and chain hashes with
list comprehensions over local names, then compares whole chunks at once: the indexes with
``range``, the stored leaf hashes with the recomputed ones, and each stored ``prev`` with the
chain hash computed one row earlier.  Only a chunk that does not match is walked row by row to
name the first bad entry.  Then it rebuilds the tree bottom-up, one level at a time from the
recomputed leaf hashes, and compares each level with the stored nodes of that level fetched in
one ordered range query.  A bad node is reported as the first entry it covers.  Nodes are only
compared up to the first bad entry (a node over a bad entry says nothing new, and after a
deleted entry every later position shifts).  Stored nodes that reach beyond the last entry show
that entries were cut off the end.  Of all problems found, the one at the smallest entry index
is reported.

On a large ledger (at least two blocks of 2**16 entries) and a machine with several cores, the
same checks first run in parts: the ledger is cut at multiples of 2**16, worker processes
(forked before the read transaction starts, each with its own read-only connection) check one
block each while this process checks the first, and the levels above 2**16 are rebuilt here
from the hashes the parts hand back.  That path can only conclude "all good"; if anything does
not match, the one-process pass above runs and names the first bad entry.

What verification cannot see on its own: ``time`` is not hashed, and cutting off the last
entries is only visible while a stored node still covers them.  Signed checkpoints of the root
(:mod:`trust.checkpoint`) close both gaps for everything a checkpoint covers.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from goa import paths
from goa.errors import GoaError
from trust import merkle
from trust.canonical import canonical_json

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ZERO_HASH",
    "Entry",
    "Ledger",
    "LedgerError",
    "VerifyReport",
    "chain_hash",
]

MAGIC: Final = "goa-trust-ledger"
"""Value of the ``magic`` key in the ``meta`` table: marks a database as a goa ledger."""

FORMAT_VERSION: Final = 1
"""Version of the table layout; a ledger with another version is refused."""

ZERO_HASH: Final = bytes(merkle.HASH_SIZE)
"""``prev`` of entry 0: 32 zero bytes."""

BUSY_TIMEOUT_S: Final = 60.0
"""How long a writer waits for another process's transaction before giving up."""

_CHAIN_PREFIX: Final = b"\x02"
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_VERIFY_CHUNK: Final = 50_000
_PART_LEVEL: Final = 16  # parallel verification splits the ledger at multiples of 2**16
_MAX_PARTS: Final = 4
_PAGE: Final = 1_000

_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE entries ("
    " idx INTEGER PRIMARY KEY, data BLOB NOT NULL, leaf BLOB NOT NULL,"
    " prev BLOB NOT NULL, time REAL NOT NULL)",
    "CREATE TABLE nodes ("
    " level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,"
    " PRIMARY KEY (level, idx)) WITHOUT ROWID",
)

_sha256 = hashlib.sha256


class LedgerError(GoaError):
    """The ledger cannot be used: not a goa ledger, damaged, a bad record or bad sizes."""


def chain_hash(prev_hash: bytes, leaf_hash: bytes) -> bytes:
    """The chain hash of an entry: ``SHA-256(0x02 || prev_hash || leaf_hash)``."""
    return _sha256(_CHAIN_PREFIX + prev_hash + leaf_hash).digest()


@dataclass(frozen=True)
class Entry:
    """One ledger entry as stored, with its chain hash worked out."""

    index: int
    """0-based position in the ledger."""
    record: dict[str, Any]
    """The JSON object as appended (decoded from :attr:`data`)."""
    data: bytes
    """The canonical JSON encoding of :attr:`record`: what is hashed."""
    leaf_hash: bytes
    """``trust.merkle.leaf_hash(data)``."""
    prev_hash: bytes
    """Chain hash of the entry before (32 zero bytes for entry 0)."""
    chain_hash: bytes
    """``SHA-256(0x02 || prev_hash || leaf_hash)``."""
    time: float
    """Unix time in seconds when the entry was appended (not covered by any hash)."""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`Ledger.verify`."""

    ok: bool
    size: int
    """Number of entries stored."""
    root: bytes
    """Tree root recomputed from the stored data of those entries (EMPTY_ROOT for none)."""
    first_bad: int | None
    """Index of the first entry that does not match (``None`` when ``ok``)."""
    problem: str
    """``""`` when ``ok``, otherwise what did not match, starting with ``entry N:``."""


class Ledger:
    """An append-only ledger of JSON records in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        """Open the ledger at ``path``, creating it (and its folder) if it does not exist.

        Raises :class:`LedgerError` for a file that is not a goa ledger (another SQLite
        database, or not SQLite at all) or that cannot be opened.
        """
        self._path = Path(path)
        self._conn: sqlite3.Connection | None = None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"{self._path}: cannot create its folder: {exc}") from None
        try:
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self._path}: cannot open: {exc}") from None
        try:
            self._open(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerError(f"{self._path} is not a goa ledger ({exc})") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @classmethod
    def default_path(cls) -> Path:
        """Where goa keeps its ledger: ``<data dir>/trust/ledger.sqlite``."""
        return paths.data_dir() / "trust" / "ledger.sqlite"

    @property
    def path(self) -> Path:
        """The ledger's file."""
        return self._path

    # ---------------------------------------------------------------- opening and closing

    def _open(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        tables = _tables(conn)
        if not tables:
            # A new (or empty) file: make it a ledger.  Several processes may get here at once;
            # the immediate transaction lets only the first one create the tables.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not _tables(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("magic", MAGIC), ("version", str(FORMAT_VERSION))],
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            tables = _tables(conn)
        if "meta" not in tables:
            raise LedgerError(
                f"{self._path} is not a goa ledger (an SQLite database of another kind)"
            )
        meta = {str(key): value for key, value in conn.execute("SELECT key, value FROM meta")}
        if meta.get("magic") != MAGIC:
            raise LedgerError(f"{self._path} is not a goa ledger (its meta table is not goa's)")
        if meta.get("version") != str(FORMAT_VERSION):
            raise LedgerError(
                f"{self._path}: ledger format version {meta.get('version')!r} is not supported "
                f"(this goa reads version {FORMAT_VERSION})"
            )
        missing = {"entries", "nodes"} - tables
        if missing:
            raise LedgerError(
                f"{self._path}: ledger is damaged: table(s) {sorted(missing)} missing"
            )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")

    def close(self) -> None:
        """Close the database connection; the ledger cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"{self._path}: the ledger is closed")
        return self._conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction; SQLite errors become :class:`LedgerError`."""
        conn = self._connection()
        try:
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise LedgerError(
                f"{self._path}: ledger is damaged: an entry or node already exists ({exc}); "
                "run verify"
            ) from None
        except sqlite3.Error as exc:
            raise LedgerError(f"{self._path}: {exc}") from None

    # ---------------------------------------------------------------- reading

    @property
    def size(self) -> int:
        """Number of entries (one more than the highest index)."""
        with self._transaction("BEGIN") as conn:
            return _size(conn)

    def entry(self, index: int) -> Entry:
        """The entry at ``index``; :class:`LedgerError` if there is none."""
        with self._transaction("BEGIN") as conn:
            size = _size(conn)
            if not 0 <= index < size:
                raise LedgerError(f"no entry {index}: the ledger has {size} entries")
            row = conn.execute(
                "SELECT idx, data, leaf, prev, time FROM entries WHERE idx = ?", (index,)
            ).fetchone()
        if row is None:
            raise LedgerError(f"entry {index} is missing: the ledger is damaged (run verify)")
        return _entry_from_row(row)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        """The entries ``start, ..., stop - 1`` in order (``stop`` defaults to the size now).

        Needs ``0 <= start <= stop <= size``.  Entries are read a page at a time, so entries
        appended meanwhile are not included and memory stays small.
        """
        size = self.size
        end = size if stop is None else stop
        if not 0 <= start <= end <= size:
            raise LedgerError(
                f"bad entry range [{start}, {stop}): need 0 <= start <= stop <= {size}"
            )
        return self._iter_entries(start, end)

    def _iter_entries(self, start: int, stop: int) -> Iterator[Entry]:
        for low in range(start, stop, _PAGE):
            high = min(low + _PAGE, stop)
            with self._transaction("BEGIN") as conn:
                rows = conn.execute(
                    "SELECT idx, data, leaf, prev, time FROM entries"
                    " WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (low, high),
                ).fetchall()
            for expected, row in enumerate(rows, low):
                if row[0] != expected:
                    break
                yield _entry_from_row(row)
            if len(rows) != high - low or rows[-1][0] != high - 1:
                missing = low + next(
                    (k for k, row in enumerate(rows) if row[0] != low + k), len(rows)
                )
                raise LedgerError(f"entry {missing} is missing: the ledger is damaged (run verify)")

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root over the first ``size`` entries (default: all of them)."""
        with self._transaction("BEGIN") as conn:
            current = _size(conn)
            n = current if size is None else size
            if not 0 <= n <= current:
                raise LedgerError(f"no root for size {n}: the ledger has {current} entries")
            return _Tree(conn).hash(0, n) if n else merkle.EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 audit path of entry ``index`` in the tree of the first ``size`` entries.

        Check it with :func:`trust.merkle.verify_inclusion` against :meth:`root` of ``size``.
        """
        with self._transaction("BEGIN") as conn:
            current = _size(conn)
            n = current if size is None else size
            if not 0 <= index < n <= current:
                raise LedgerError(
                    f"no inclusion proof for entry {index} at size {n}: need "
                    f"0 <= index < size <= {current}"
                )
            return merkle.inclusion_path(index, n, _Tree(conn).hash)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The RFC 9162 proof that the first ``size1`` entries are a prefix of ``size2``.

        ``size2`` defaults to the current size; equal sizes give an empty proof.  Check it with
        :func:`trust.merkle.verify_consistency`.
        """
        with self._transaction("BEGIN") as conn:
            current = _size(conn)
            n = current if size2 is None else size2
            if not 0 < size1 <= n <= current:
                raise LedgerError(
                    f"no consistency proof from size {size1} to {n}: need "
                    f"0 < size1 <= size2 <= {current}"
                )
            return merkle.consistency_path(size1, n, _Tree(conn).hash)

    # ---------------------------------------------------------------- appending

    def append(self, record: Mapping[str, Any]) -> Entry:
        """Append one record (a JSON object) and return its entry."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> list[Entry]:
        """Append several records in one transaction: all of them, in order, or none."""
        encoded = [_encode(record, i) for i, record in enumerate(records)]
        if not encoded:
            return []
        sha = _sha256
        leaf_prefix, node_prefix, chain_prefix = _LEAF_PREFIX, _NODE_PREFIX, _CHAIN_PREFIX
        with self._transaction("BEGIN IMMEDIATE") as conn:
            n, chain, stack = _tail(conn)
            now = time.time()
            rows: list[tuple[int, bytes, bytes, bytes, float]] = []
            chains: list[bytes] = []
            node_rows: list[tuple[int, int, bytes]] = []
            for data in encoded:
                leaf = sha(leaf_prefix + data).digest()
                rows.append((n, data, leaf, chain, now))
                chain = sha(chain_prefix + chain + leaf).digest()
                chains.append(chain)
                # Entry n completes one perfect subtree per trailing 1-bit of n.
                h, pos, level = leaf, n, 0
                while pos & 1:
                    h = sha(node_prefix + stack.pop() + h).digest()
                    pos >>= 1
                    level += 1
                    node_rows.append((level, pos, h))
                stack.append(h)
                n += 1
            conn.executemany(
                "INSERT INTO entries (idx, data, leaf, prev, time) VALUES (?, ?, ?, ?, ?)", rows
            )
            conn.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", node_rows)
        loads = json.loads
        return [
            Entry(idx, loads(data), data, leaf, prev, ch, t)
            for (idx, data, leaf, prev, t), ch in zip(rows, chains, strict=True)
        ]

    # ---------------------------------------------------------------- verifying

    def verify(self) -> VerifyReport:
        """Recompute everything from the stored data and report the first entry that is off.

        Checks each leaf hash against its data, the chain, the indexes (0 to size - 1 with no
        gap), every stored tree node and that no node reaches past the last entry.  Never
        raises for a damaged ledger: damage is what the report describes.
        """
        conn = self._connection()
        collecting = gc.isenabled()
        gc.disable()  # millions of short-lived tuples: the cyclic collector only costs time
        try:
            # Workers are forked before this process starts its read transaction, so that
            # they inherit no SQLite lock state; each opens its own read-only connection.
            pool, workers = _start_workers(conn)
            try:
                with self._transaction("BEGIN") as conn:
                    report = None
                    if pool is not None:
                        report = _verify_in_parts(conn, self._path, pool, workers)
                    return report if report is not None else _verify(conn)
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
        finally:
            if collecting:
                gc.enable()


# -------------------------------------------------------------------- helpers


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }


def _size(conn: sqlite3.Connection) -> int:
    (last,) = conn.execute("SELECT max(idx) FROM entries").fetchone()
    return 0 if last is None else int(last) + 1


def _encode(record: Mapping[str, Any], position: int) -> bytes:
    if not isinstance(record, Mapping):
        raise LedgerError(
            f"record {position}: a ledger record must be a JSON object, got {type(record).__name__}"
        )
    try:
        return canonical_json(dict(record))
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"record {position} is not valid JSON for the ledger: {exc}") from None


def _entry_from_row(row: tuple[Any, ...]) -> Entry:
    index, data, leaf, prev, stamp = row
    if not isinstance(data, bytes) or not isinstance(prev, bytes) or len(prev) != merkle.HASH_SIZE:
        raise LedgerError(
            f"entry {index} is damaged: stored fields have the wrong type (run verify)"
        )
    if merkle.leaf_hash(data) != leaf:
        raise LedgerError(
            f"entry {index} is damaged: its leaf hash does not match its data (run verify)"
        )
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise LedgerError(f"entry {index} is damaged: its data is not a JSON object (run verify)")
    return Entry(index, record, data, leaf, prev, chain_hash(prev, leaf), float(stamp))


def _decompose(size: int) -> list[tuple[int, int]]:
    """``(level, idx)`` of the aligned perfect subtrees making up ``[0, size)``, largest first."""
    parts = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append((level, offset >> level))
            offset += 1 << level
    return parts


def _subtree(conn: sqlite3.Connection, level: int, idx: int) -> bytes:
    """The stored hash of the perfect subtree ``(level, idx)`` (level 0: a leaf hash)."""
    if level == 0:
        row = conn.execute("SELECT leaf FROM entries WHERE idx = ?", (idx,)).fetchone()
    else:
        row = conn.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
    if row is None or not isinstance(row[0], bytes) or len(row[0]) != merkle.HASH_SIZE:
        first = idx << level
        raise LedgerError(
            f"the ledger is damaged: the hash over entries [{first}, {first + (1 << level)}) "
            "is missing or malformed (run verify)"
        )
    return row[0]


def _tail(conn: sqlite3.Connection) -> tuple[int, bytes, list[bytes]]:
    """Size, last chain hash and compact-range hashes (largest first) of the ledger now."""
    row = conn.execute("SELECT idx, leaf, prev FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
    if row is None:
        return 0, ZERO_HASH, []
    size = int(row[0]) + 1
    stack = [_subtree(conn, level, idx) for level, idx in _decompose(size)]
    return size, chain_hash(row[2], row[1]), stack


class _Tree:
    """RFC 9162's recursive tree hash, answered from the stored subtree hashes; the proofs
    are trust.merkle's generators over :meth:`hash`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._memo: dict[tuple[int, int], bytes] = {}

    def hash(self, lo: int, hi: int) -> bytes:
        """MTH of entries ``[lo, hi)`` (``hi > lo``)."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            key = (n.bit_length() - 1, lo // n)
            found = self._memo.get(key)
            if found is None:
                found = self._memo[key] = _subtree(self._conn, *key)
            return found
        k = 1 << ((n - 1).bit_length() - 1)
        return merkle.node_hash(self.hash(lo, lo + k), self.hash(lo + k, hi))


# -------------------------------------------------------------------- verification


@dataclass
class _Problem:
    first_bad: int
    text: str


def _verify(conn: sqlite3.Connection) -> VerifyReport:
    leaves, entry_problem = _verify_entries(conn)
    size = len(leaves)
    limit = size if entry_problem is None else entry_problem.first_bad
    root, node_problem = _verify_nodes(conn, leaves, limit)
    problems = [p for p in (entry_problem, node_problem) if p is not None]
    if not problems:
        return VerifyReport(True, size, root, None, "")
    first = min(problems, key=lambda p: p.first_bad)
    return VerifyReport(False, size, root, first.first_bad, first.text)


def _verify_entries(conn: sqlite3.Connection) -> tuple[list[bytes], _Problem | None]:
    """Recompute the leaf hashes from the data and check indexes, leaf hashes and the chain."""
    sha = _sha256
    leaf_prefix, chain_prefix = _LEAF_PREFIX, _CHAIN_PREFIX
    leaves: list[bytes] = []
    problem: _Problem | None = None
    chain = ZERO_HASH
    pos = 0
    cursor = conn.execute("SELECT idx, data, leaf, prev FROM entries ORDER BY idx")
    fetch = cursor.fetchmany
    while rows := fetch(_VERIFY_CHUNK):
        count = len(rows)
        idxs, datas, stored, prevs = zip(*rows, strict=True)
        chain_before = chain
        try:
            computed = [sha(leaf_prefix + d).digest() for d in datas]
            if problem is None:
                chains = [
                    sha(chain_prefix + p + h).digest() for p, h in zip(prevs, computed, strict=True)
                ]
                good = (
                    idxs == tuple(range(pos, pos + count))
                    and stored == tuple(computed)
                    and prevs[0] == chain
                    and prevs[1:] == tuple(chains[:-1])
                )
                chain = chains[-1]
            else:
                good = True
        except TypeError:  # a stored field is not a blob
            good = False
        if not good:
            computed, chain, found = _check_rows(rows, pos, chain_before)
            problem = problem or found
        leaves += computed
        pos += count
    return leaves, problem


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "replace")


def _check_rows(
    rows: list[tuple[Any, ...]], pos: int, chain: bytes
) -> tuple[list[bytes], bytes, _Problem | None]:
    """The slow, row-by-row pass over a chunk that did not match: name its first bad entry."""
    computed: list[bytes] = []
    problem: _Problem | None = None
    for i, (idx, data, stored, prev) in enumerate(rows, pos):
        leaf = merkle.leaf_hash(_as_bytes(data))
        computed.append(leaf)
        if problem is None:
            text = ""
            if idx != i:
                if isinstance(idx, int) and idx > i:
                    text = f"entry {i}: missing (the next stored entry has index {idx})"
                else:
                    text = f"entry {i}: stored under the unexpected index {idx!r}"
            elif not isinstance(data, bytes):
                text = f"entry {i}: its data is not stored as a blob"
            elif stored != leaf:
                text = f"entry {i}: leaf hash does not match its data"
            elif prev != chain:
                text = (
                    f"entry {i}: previous hash is not 32 zero bytes"
                    if i == 0
                    else f"entry {i}: previous hash does not match the chain hash of entry {i - 1}"
                )
            if text:
                problem = _Problem(i, text)
        chain = chain_hash(_as_bytes(prev), leaf)
    return computed, chain, problem


def _verify_nodes(
    conn: sqlite3.Connection, leaves: list[bytes], limit: int
) -> tuple[bytes, _Problem | None]:
    """Rebuild the tree from ``leaves``; compare stored nodes that lie inside ``[0, limit)``.

    Returns the root over all of ``leaves`` and the node problem at the smallest entry.
    """
    size = len(leaves)
    sha = _sha256
    node_prefix = _NODE_PREFIX
    problem: _Problem | None = None
    peaks: list[bytes] = []  # the subtrees of size's binary digits, smallest first
    level = leaves
    height = 0
    while level:
        if len(level) & 1:
            peaks.append(level[-1])
        if height:
            found = _compare_level(conn, height, level, limit >> height)
            if found is not None and (problem is None or found.first_bad < problem.first_bad):
                problem = found
        level = [
            sha(node_prefix + a + b).digest()
            for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        height += 1
    beyond = _nodes_beyond(conn, size)
    if beyond is not None and (problem is None or beyond.first_bad < problem.first_bad):
        problem = beyond
    return merkle.fold_peaks(peaks[::-1]), problem


def _compare_level(
    conn: sqlite3.Connection, height: int, computed: list[bytes], count: int
) -> _Problem | None:
    """Compare the first ``count`` stored nodes of one level with the recomputed ones."""
    if count <= 0:
        return None
    rows = conn.execute(
        "SELECT idx, hash FROM nodes WHERE level = ? AND idx < ? ORDER BY idx", (height, count)
    ).fetchall()
    if (
        len(rows) == count
        and rows[0][0] == 0
        and rows[-1][0] == count - 1
        and [h for _, h in rows] == computed[:count]
    ):
        return None
    for p in range(count):
        row: tuple[Any, ...] | None = rows[p] if p < len(rows) else None
        if row is None or row[0] != p:
            what = "is missing"
        elif row[1] != computed[p]:
            what = "does not match the entries it covers"
        else:
            continue
        first = p << height
        return _Problem(
            first,
            f"entry {first}: stored tree node (level {height}, index {p}) over entries "
            f"[{first}, {first + (1 << height)}) {what}",
        )
    return None  # not reached: some row differed


def _nodes_beyond(conn: sqlite3.Connection, size: int) -> _Problem | None:
    """A stored node that reaches past the last entry: entries were cut off the end."""
    (top,) = conn.execute("SELECT max(level) FROM nodes").fetchone()
    (bottom,) = conn.execute("SELECT min(level) FROM nodes").fetchone()
    if top is None:
        return None
    if not isinstance(bottom, int) or not isinstance(top, int) or bottom < 1:
        return _Problem(size, f"entry {size}: the nodes table holds a node at level {bottom!r}")
    for height in range(1, top + 1):
        row = conn.execute(
            "SELECT min(idx) FROM nodes WHERE level = ? AND idx >= ?", (height, size >> height)
        ).fetchone()
        if row[0] is not None:
            first = row[0] << height
            return _Problem(
                size,
                f"entry {size}: missing: the ledger holds {size} entries but a stored tree node "
                f"covers entries [{first}, {first + (1 << height)}) (entries were removed "
                "from the end)",
            )
    return None


# -------------------------------------------------------------------- verification in parts
#
# The fast path for large ledgers.  The index range is cut at multiples of 2**_PART_LEVEL into
# one part per CPU core (at most _MAX_PARTS).  This process checks the first part while worker
# processes (spawned, each with its own connection) check the others: leaf hashes, the chain
# inside the part, and every stored node up to level _PART_LEVEL, which all lie inside one part.
# Each part hands back the first ``prev`` and last chain hash (to check the links between
# parts) and its level-_PART_LEVEL hashes, from which this process rebuilds and checks the
# levels above.  The fast path only ever says "all good": as soon as anything does not match
# (or the workers cannot be started), verification starts again on the exact one-process path,
# which names the first bad entry.


@dataclass(frozen=True)
class _PartResult:
    ok: bool
    first_prev: bytes = b""
    last_chain: bytes = b""
    top: tuple[bytes, ...] = ()
    low_peaks: tuple[bytes, ...] = ()


def _start_workers(conn: sqlite3.Connection) -> tuple[Pool | None, int]:
    """A pool of forked workers and its size, or ``None`` for the one-process path.

    Workers pay off only for large ledgers on machines with several cores, and only where
    ``fork`` exists (spawning would re-run the caller's main module).
    """
    try:
        size = _size(conn)
    except sqlite3.Error:
        size = 0
    parts = min(os.cpu_count() or 1, _MAX_PARTS, size >> _PART_LEVEL)
    if parts < 2:
        return None, 0
    try:
        return multiprocessing.get_context("fork").Pool(parts - 1), parts - 1
    except (ValueError, OSError):
        return None, 0


def _verify_in_parts(
    conn: sqlite3.Connection, path: Path, pool: Pool, workers: int
) -> VerifyReport | None:
    """Verify an intact ledger using several processes; ``None`` means "use the exact path"."""
    (low, high, count) = conn.execute("SELECT min(idx), max(idx), count(*) FROM entries").fetchone()
    unit = 1 << _PART_LEVEL
    if high is None or low != 0 or count != high + 1:
        return None
    size = count
    parts = min(workers + 1, size // unit)
    if parts < 2:
        return None
    units = -(-size // unit)  # ceil
    cuts = [min(size, (units * j + parts - 1) // parts * unit) for j in range(parts + 1)]
    try:
        pending = [
            pool.apply_async(_check_part_in_worker, (str(path), cuts[j], cuts[j + 1]))
            for j in range(1, parts)
        ]
        results = [_check_part(conn, cuts[0], cuts[1])]
        results += [job.get() for job in pending]
    except Exception:  # a worker failed: the exact path does the whole job
        return None
    chain = ZERO_HASH
    top: list[bytes] = []
    for result in results:
        if not result.ok or result.first_prev != chain:
            return None
        chain = result.last_chain
        top += result.top
    peaks = list(results[-1].low_peaks)
    level = top
    height = _PART_LEVEL
    sha = _sha256
    node_prefix = _NODE_PREFIX
    while level:
        if len(level) & 1:
            peaks.append(level[-1])
        if height > _PART_LEVEL and _compare_level(conn, height, level, len(level)) is not None:
            return None
        level = [
            sha(node_prefix + a + b).digest()
            for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        height += 1
    if _nodes_beyond(conn, size) is not None:
        return None
    return VerifyReport(True, size, merkle.fold_peaks(peaks[::-1]), None, "")


def _check_part_in_worker(path: str, start: int, stop: int) -> _PartResult:
    gc.disable()
    # Read-only: closing it can never checkpoint or remove the write-ahead log.
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("BEGIN")
        return _check_part(conn, start, stop)
    finally:
        conn.close()


def _check_part(conn: sqlite3.Connection, start: int, stop: int) -> _PartResult:
    """Check entries ``[start, stop)`` (``start`` a multiple of 2**_PART_LEVEL) and their nodes."""
    (count, low, high) = conn.execute(
        "SELECT count(*), min(idx), max(idx) FROM entries WHERE idx >= ? AND idx < ?",
        (start, stop),
    ).fetchone()
    if count != stop - start or low != start or high != stop - 1:
        return _PartResult(False)
    sha = _sha256
    leaf_prefix, chain_prefix, node_prefix = _LEAF_PREFIX, _CHAIN_PREFIX, _NODE_PREFIX
    leaves: list[bytes] = []
    cursor = conn.execute(
        "SELECT data, leaf, prev FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
        (start, stop),
    )
    first_prev = b""
    chain = b""
    try:
        while rows := cursor.fetchmany(_VERIFY_CHUNK):
            datas, stored, prevs = zip(*rows, strict=True)
            computed = [sha(leaf_prefix + d).digest() for d in datas]
            chains = [
                sha(chain_prefix + p + h).digest() for p, h in zip(prevs, computed, strict=True)
            ]
            if not leaves:
                first_prev = prevs[0]
            elif prevs[0] != chain:
                return _PartResult(False)
            if stored != tuple(computed) or prevs[1:] != tuple(chains[:-1]):
                return _PartResult(False)
            chain = chains[-1]
            leaves += computed
    except TypeError:  # a stored field is not a blob
        return _PartResult(False)
    low_peaks: list[bytes] = []
    level = leaves
    for height in range(1, _PART_LEVEL + 1):
        if len(level) & 1:
            low_peaks.append(level[-1])
        level = [
            sha(node_prefix + a + b).digest()
            for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        first = start >> height
        rows = conn.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (height, first, first + len(level)),
        ).fetchall()
        if [h for (h,) in rows] != level:
            return _PartResult(False)
    return _PartResult(True, first_prev, chain, tuple(level), tuple(low_peaks))
