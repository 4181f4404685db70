"""``trust ledger``: append to, read, verify, prove and sign the TRUST ledger.

Only typer is imported here; the ledger and the crypto load inside each command, so that
``trust --help`` stays instant.

Exit codes follow one rule: 0 when the command did what it says (for ``verify`` and
``checkpoint --verify``: the check passed), 1 when a verification ran and found the ledger or
checkpoint not to be what it claims, 2 for anything the user has to fix first (a bad argument,
malformed JSON, a file that is not a goa ledger), printed as one ``error: ...`` line.

Commands that only read never create a ledger: pointing them at a path where there is none is
an error rather than a fresh empty ledger that would then "verify".  Every hash is printed as
lowercase hex, and every ``--json`` output is one JSON document on stdout (``export`` writes JSON
lines, one entry per line).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.errors import fail, reports_errors

if TYPE_CHECKING:
    from trust.ledger import Entry, Ledger

ledger_app = typer.Typer(
    help="The TRUST ledger: an append-only, hash-chained Merkle log of JSON records.",
    no_args_is_help=True,
)

LedgerPath = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        metavar="PATH",
        help="The ledger's SQLite file (default: trust/ledger.sqlite in the user data dir).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

SHOW_DEFAULT_COUNT = 10


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def open_ledger(path: Path | None, *, create: bool = False) -> Iterator[Ledger]:
    """Open the ledger at ``path`` (default location when None) for one command.

    The ledger reports a foreign or corrupted file as a LedgerError; SQLite and OS errors that
    slip through anyway are turned into the same one-line message here, so that no command can
    end in a traceback because of a bad file.
    """
    import sqlite3

    from trust.ledger import Ledger

    where = Ledger.default_path() if path is None else path
    if not create and not where.exists():
        raise fail(f"{where}: no ledger there (`trust ledger append` creates one)")
    if where.exists() and not where.is_file():
        raise fail(f"{where}: not a file")
    try:
        if create:
            where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with Ledger(where) as ledger:
            yield ledger
    except BrokenPipeError:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise fail(f"{where}: not a usable goa ledger: {exc}") from None


def _hex_list(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _entry_json(entry: Entry, *, prev_hash: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "index": entry.index,
        "time": entry.time,
        "record": entry.record,
        "leaf_hash": entry.leaf_hash.hex(),
    }
    if prev_hash:
        row["prev_hash"] = entry.prev_hash.hex()
    return row


class _BadJson(ValueError):
    """A record that is not acceptable JSON; the message says why."""


def _reject_constant(name: str) -> NoReturn:
    raise _BadJson(f"{name} is not allowed in a record")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _BadJson(f"duplicate key {key!r}")
        record[key] = value
    return record


def _parse_record(text: str, where: str, line: int) -> dict[str, Any]:
    """Parse one record: a JSON object, no NaN/Infinity, no duplicate keys, valid Unicode.

    Duplicate keys are refused rather than silently collapsed (which ``json`` would do), since
    the ledger would then record something other than what was written.
    """
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise fail(
            f"{where}: line {line}: not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except _BadJson as exc:
        raise fail(f"{where}: line {line}: {exc}") from None
    except RecursionError:
        raise fail(f"{where}: line {line}: the record is nested too deeply") from None
    if not isinstance(value, dict):
        raise fail(f"{where}: line {line}: a record must be a JSON object, got {_kind(value)}")
    from trust.canonical import canonical_json

    try:
        canonical_json(value)  # what the ledger will hash: refuse here, with the line number
    except (TypeError, ValueError) as exc:
        raise fail(f"{where}: line {line}: {exc}") from None
    return value


def _kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _read_stdin_records() -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(sys.stdin, start=1):
        if line.strip():
            records.append(_parse_record(line, "<stdin>", number))
    return records


# --- commands ----------------------------------------------------------------------------------


@ledger_app.command("append")
@reports_errors
def append(
    record: Annotated[
        str,
        typer.Argument(
            metavar="RECORD",
            help="One JSON object to append, or - to append JSON lines from stdin "
            "(one object per line, all in one transaction).",
        ),
    ],
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Append records; print each new entry's index and leaf hash."""
    records = _read_stdin_records() if record == "-" else [_parse_record(record, "RECORD", 1)]
    if not records:
        print("no records on stdin: nothing appended", file=sys.stderr)
    with open_ledger(ledger_path, create=True) as ledger:
        entries = ledger.append_many(records) if records else []
    if as_json:
        typer.echo(_dumps([{"index": e.index, "leaf_hash": e.leaf_hash.hex()} for e in entries]))
    else:
        for entry in entries:
            typer.echo(f"entry {entry.index}  leaf hash {entry.leaf_hash.hex()}")


@ledger_app.command("show")
@reports_errors
def show(
    index: Annotated[
        int | None,
        typer.Argument(min=0, metavar="INDEX", help="Show only this entry (0-based)."),
    ] = None,
    start: Annotated[
        int | None, typer.Option("--from", min=0, metavar="N", help="First entry to show.")
    ] = None,
    stop: Annotated[
        int | None,
        typer.Option("--to", min=0, metavar="M", help="Last entry to show (inclusive)."),
    ] = None,
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Show entries: index, time, leaf hash and record.

    INDEX alone, the range --from N --to M (both inclusive; either end may be left out), or by
    default the last 10 entries."""
    if index is not None and (start is not None or stop is not None):
        raise fail("give either INDEX or --from/--to, not both")
    with open_ledger(ledger_path) as ledger:
        size = ledger.size
        if index is not None:
            first, last = index, index
        elif start is None and stop is None:
            first, last = max(0, size - SHOW_DEFAULT_COUNT), size - 1
        else:
            first = 0 if start is None else start
            last = size - 1 if stop is None else stop
            if first > last:
                raise fail(f"--from {first} is after --to {last}")
        if size and (first >= size or last >= size):
            beyond = first if first >= size else last
            raise fail(f"entry {beyond} does not exist: the ledger has {size} entries")
        if not size and index is not None:
            raise fail(f"entry {index} does not exist: the ledger is empty")
        entries = list(ledger.entries(first, last + 1)) if size else []
    if as_json:
        typer.echo(_dumps([_entry_json(e) for e in entries]))
        return
    if not entries:
        typer.echo("the ledger is empty")
    for entry in entries:
        typer.echo(
            f"{entry.index}  {_iso(entry.time)}  {entry.leaf_hash.hex()}  {_dumps(entry.record)}"
        )


@ledger_app.command("verify")
@reports_errors
def verify(
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
    checkpoint_file: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Also check the ledger against this signed checkpoint (needs --public-key).",
        ),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="PEM file of the checkpoint's key.")
    ] = None,
) -> None:
    """Recompute every leaf hash, the hash chain and the root; with --checkpoint, also check
    that the ledger still holds what the checkpoint signed (entries removed from the end or a
    rewritten log are caught only this way).

    Exit 0 when all match, 1 when the ledger was tampered with (the first bad entry is named),
    2 when the file is not a readable goa ledger."""
    if (checkpoint_file is None) != (public_key is None):
        raise fail("--checkpoint and --public-key go together")
    with open_ledger(ledger_path) as ledger:
        report = ledger.verify()
        against = _against_checkpoint(ledger, checkpoint_file, public_key) if report.ok else ""
    problem = report.problem
    if (
        not report.ok
        and report.first_bad is not None
        and f"entry {report.first_bad}" not in problem
    ):
        problem = f"entry {report.first_bad}: {problem}"
    ok = report.ok and not against
    problem = problem or against
    if as_json:
        typer.echo(
            _dumps(
                {
                    "ok": ok,
                    "size": report.size,
                    "root": report.root.hex(),
                    "first_bad": report.first_bad,
                    "problem": problem,
                }
            )
        )
    elif ok:
        typer.echo(f"ok: {report.size} entries, root {report.root.hex()}")
    else:
        typer.echo(f"TAMPERED: {problem}")
    if not ok:
        raise typer.Exit(code=1)


def _against_checkpoint(ledger: Ledger, checkpoint_file: Path | None, key: Path | None) -> str:
    """What no longer matches the checkpoint ("" when it matches, or none was given)."""
    if checkpoint_file is None or key is None:
        return ""
    from trust.checkpoint import CheckpointError, read_checkpoint, verify_log_against_checkpoint

    checkpoint = read_checkpoint(checkpoint_file)
    try:
        verify_log_against_checkpoint(ledger, checkpoint, _public_key_pem(key))
    except CheckpointError as exc:
        return f"checkpoint {checkpoint_file}: {exc}"
    return ""


@ledger_app.command("proof")
@reports_errors
def proof(
    index: Annotated[
        int, typer.Argument(min=0, metavar="INDEX", help="The entry to prove (0-based).")
    ],
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=1,
            metavar="N",
            help="Tree size to prove against (default: the whole ledger).",
        ),
    ] = None,
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Inclusion proof of entry INDEX, with the root and size it leads to.

    The proof lists the sibling hashes from the entry's leaf up to the root of the first N
    entries (default: all); verify it with the leaf hash, INDEX, N and that root."""
    with open_ledger(ledger_path) as ledger:
        tree_size = ledger.size if size is None else size
        if tree_size > ledger.size:
            raise fail(f"--size {tree_size} is beyond the ledger's {ledger.size} entries")
        if index >= tree_size:
            raise fail(f"entry {index} is not in a tree of {tree_size} entries")
        hashes = ledger.inclusion_proof(index, tree_size)
        root = ledger.root(tree_size)
        leaf = ledger.entry(index).leaf_hash
    result = {
        "index": index,
        "size": tree_size,
        "leaf_hash": leaf.hex(),
        "root": root.hex(),
        "proof": _hex_list(hashes),
    }
    _print_result(result, as_json)


@ledger_app.command("consistency")
@reports_errors
def consistency(
    size1: Annotated[
        int, typer.Argument(min=1, metavar="SIZE1", help="The older, smaller tree size.")
    ],
    size2: Annotated[
        int | None,
        typer.Argument(
            min=1, metavar="SIZE2", help="The newer tree size (default: the whole ledger)."
        ),
    ] = None,
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Consistency proof from tree size SIZE1 to SIZE2, with both roots.

    It shows that the first SIZE1 entries are unchanged within the first SIZE2 (default: all),
    i.e. that the ledger only grew between the two."""
    with open_ledger(ledger_path) as ledger:
        newer = ledger.size if size2 is None else size2
        if newer > ledger.size:
            raise fail(f"SIZE2 {newer} is beyond the ledger's {ledger.size} entries")
        if size1 > newer:
            raise fail(f"SIZE1 {size1} is larger than SIZE2 {newer}")
        hashes = ledger.consistency_proof(size1, newer)
        root1, root2 = ledger.root(size1), ledger.root(newer)
    result = {
        "size1": size1,
        "size2": newer,
        "root1": root1.hex(),
        "root2": root2.hex(),
        "proof": _hex_list(hashes),
    }
    _print_result(result, as_json)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(_dumps(result))
        return
    for name, value in result.items():
        if isinstance(value, list):
            typer.echo(f"{name}:")
            for item in value:
                typer.echo(f"  {item}")
        else:
            typer.echo(f"{name}: {value}")


@ledger_app.command("checkpoint")
@reports_errors
def checkpoint(
    verify_file: Annotated[
        Path | None,
        typer.Option(
            "--verify",
            metavar="FILE",
            help="Verify this saved checkpoint offline instead of signing a new one.",
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            metavar="PEMFILE",
            help="With --verify: the public key to verify with (`trust ledger export "
            "--public-key` prints it).",
        ),
    ] = None,
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Sign the ledger's size and root now, or verify a saved checkpoint offline.

    Without options: sign (size, root, time) with the ledger key (created on first use in the
    user data dir) and print the checkpoint JSON. With --verify FILE --public-key PEMFILE:
    check a saved checkpoint's signature, needing neither the ledger nor the private key; exit
    1 when it does not verify."""
    if verify_file is not None or public_key is not None:
        if verify_file is None or public_key is None:
            raise fail("--verify FILE and --public-key PEMFILE go together")
        _verify_saved_checkpoint(verify_file, public_key, as_json)
        return
    from trust.checkpoint import SigningKey

    with open_ledger(ledger_path) as ledger:
        size, root = ledger.size, ledger.root()
    signed = SigningKey.load_or_create().sign_checkpoint(size, root)
    typer.echo(json.dumps(signed.to_json(), indent=None if as_json else 2))


def _public_key_pem(path: Path) -> bytes:
    """The PEM bytes of a public key file, checked to be an Ed25519 public key."""
    from trust.checkpoint import CheckpointError, load_public_key

    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise fail(f"{path}: cannot read the public key: {exc.strerror}") from None
    try:
        load_public_key(pem)
    except CheckpointError as exc:
        raise fail(f"{path}: {exc}") from None
    return pem


def _verify_saved_checkpoint(path: Path, public_key: Path, as_json: bool) -> None:
    from trust.checkpoint import CheckpointError, read_checkpoint
    from trust.checkpoint import verify_checkpoint as check

    saved = read_checkpoint(path)
    pem = _public_key_pem(public_key)
    try:
        check(saved, pem)
    except CheckpointError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if as_json:
        verdict = {"ok": problem is None, "problem": problem or "", **saved.to_json()}
        typer.echo(_dumps(verdict))
    elif problem is None:
        typer.echo(
            f"ok: checkpoint of {saved.size} entries, root {saved.root.hex()}, "
            f"signed by key {saved.key_id} at {_iso(saved.time)}"
        )
    else:
        typer.echo(f"NOT VERIFIED: {path}: {problem}")
    if problem is not None:
        raise typer.Exit(code=1)


@ledger_app.command("export")
@reports_errors
def export(
    public_key: Annotated[
        bool,
        typer.Option(
            "--public-key", help="Print the ledger key's public key (PEM) instead of entries."
        ),
    ] = False,
    ledger_path: LedgerPath = None,
    as_json: AsJson = False,
) -> None:
    """Write every entry as JSON lines, or print the public key.

    Without options: one JSON object per entry (index, time, record, leaf_hash, prev_hash),
    with or without --json. With --public-key: the PEM public key that verifies this user's
    checkpoints (the key is created on first use); with --json, {key_id, public_key}."""
    if public_key:
        from trust.checkpoint import SigningKey

        key = SigningKey.load_or_create()
        pem = key.public_pem().decode("ascii")
        if as_json:
            typer.echo(_dumps({"key_id": key.key_id, "public_key": pem}))
        else:
            typer.echo(pem, nl=False)
        return
    with open_ledger(ledger_path) as ledger:
        for entry in ledger.entries():
            typer.echo(_dumps(_entry_json(entry, prev_hash=True)))
