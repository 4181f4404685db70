"""``trust ledger ...``: the ledger commands, run through typer's CliRunner on tmp_path ledgers.

Proofs printed by the CLI are checked with trust.merkle alone, and checkpoints with
trust.checkpoint and the exported public key, as an outside verifier would.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.trust_app import app
from goa import paths
from trust import merkle
from trust.canonical import canonical_json
from trust.checkpoint import Checkpoint, verify_checkpoint, verify_entry_against_checkpoint

runner = CliRunner()


def _run(*args: str | Path, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["ledger", *map(str, args)], input=stdin)


def _ok(*args: str | Path, stdin: str | None = None) -> Result:
    result = _run(*args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str | Path, stdin: str | None = None) -> Any:
    return json.loads(_ok(*args, "--json", stdin=stdin).stdout)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


def _record(i: int) -> dict[str, Any]:
    return {"decision": f"d{i}", "score": i / 4, "tags": ["x", i], "ünïcode": "✓"}


def _fill(ledger: Path, n: int) -> list[dict[str, Any]]:
    records = [_record(i) for i in range(n)]
    stdin = "".join(json.dumps(r) + "\n" for r in records)
    _ok("append", "-", "--ledger", ledger, stdin=stdin)
    return records


def _leaf(record: dict[str, Any]) -> bytes:
    return merkle.leaf_hash(canonical_json(record))


# --- append ------------------------------------------------------------------------------------


def test_append_one_record(ledger: Path) -> None:
    record = {"b": 1, "a": [True, None, "é"]}
    out = _json("append", json.dumps(record), "--ledger", ledger)
    assert out == [{"index": 0, "leaf_hash": _leaf(record).hex()}]
    text = _ok("append", '{"second": 2}', "--ledger", ledger).stdout
    assert text.split() == ["entry", "1", "leaf", "hash", _leaf({"second": 2}).hex()]


def test_append_from_stdin_in_one_batch(ledger: Path) -> None:
    _ok("append", '{"first": 0}', "--ledger", ledger)
    stdin = '{"n": 1}\n\n  {"n": 2}  \n{"n": 3}'  # blank lines skipped, last line unterminated
    out = _json("append", "-", "--ledger", ledger, stdin=stdin)
    assert [row["index"] for row in out] == [1, 2, 3]
    assert [row["leaf_hash"] for row in out] == [_leaf({"n": n}).hex() for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ("{not json", "error: RECORD: line 1: not valid JSON"),
        ("[1, 2]", "error: RECORD: line 1: a record must be a JSON object, got an array"),
        ('"text"', "error: RECORD: line 1: a record must be a JSON object, got a string"),
        ('{"x": NaN}', "error: RECORD: line 1: NaN is not allowed"),
        ('{"x": 1, "x": 2}', "error: RECORD: line 1: duplicate key 'x'"),
    ],
)
def test_append_bad_argument(ledger: Path, argument: str, problem: str) -> None:
    result = _run("append", argument, "--ledger", ledger)
    assert result.exit_code == 2
    assert problem in result.stderr
    assert "Traceback" not in result.output


def test_append_bad_stdin_line_is_named_and_nothing_is_appended(ledger: Path) -> None:
    _ok("append", '{"kept": true}', "--ledger", ledger)
    result = _run("append", "-", "--ledger", ledger, stdin='{"a": 1}\n{"b": 2}\n{"c": \n')
    assert result.exit_code == 2
    assert result.stderr.startswith("error: <stdin>: line 3: not valid JSON")
    assert "Traceback" not in result.output
    assert [row["index"] for row in _json("show", "--ledger", ledger)] == [0]


def test_append_empty_stdin_appends_nothing(ledger: Path) -> None:
    result = _run("append", "-", "--json", "--ledger", ledger, stdin="\n\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "nothing appended" in result.stderr


def test_default_ledger_lives_in_the_data_dir() -> None:
    _ok("append", '{"here": 1}')
    assert (paths.data_dir() / "trust" / "ledger.sqlite").is_file()
    assert _json("show")[0]["record"] == {"here": 1}


# --- show --------------------------------------------------------------------------------------


def test_show_defaults_to_the_last_ten(ledger: Path) -> None:
    records = _fill(ledger, 14)
    rows = _json("show", "--ledger", ledger)
    assert [row["index"] for row in rows] == list(range(4, 14))
    assert [row["record"] for row in rows] == records[4:]
    assert rows[0]["leaf_hash"] == _leaf(records[4]).hex()
    assert all(isinstance(row["time"], float) for row in rows)
    text = _ok("show", "--ledger", ledger).stdout.splitlines()
    assert len(text) == 10
    assert text[0].startswith("4  ")
    assert _leaf(records[4]).hex() in text[0]
    assert '"decision": "d4"' in text[0]


def test_show_one_entry_and_a_range(ledger: Path) -> None:
    records = _fill(ledger, 14)
    assert [row["record"] for row in _json("show", "2", "--ledger", ledger)] == [records[2]]
    rows = _json("show", "--from", "3", "--to", "5", "--ledger", ledger)
    assert [row["index"] for row in rows] == [3, 4, 5]
    rows = _json("show", "--from", "12", "--ledger", ledger)
    assert [row["index"] for row in rows] == [12, 13]
    rows = _json("show", "--to", "1", "--ledger", ledger)
    assert [row["index"] for row in rows] == [0, 1]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["14"], "entry 14 does not exist"),
        (["--from", "5", "--to", "20"], "entry 20 does not exist"),
        (["--from", "5", "--to", "3"], "--from 5 is after --to 3"),
        (["2", "--from", "1"], "give either INDEX or --from/--to"),
    ],
)
def test_show_out_of_range(ledger: Path, args: list[str], problem: str) -> None:
    _fill(ledger, 14)
    result = _run("show", *args, "--ledger", ledger)
    assert result.exit_code == 2
    assert f"error: {problem}" in result.stderr


def test_show_empty_ledger(ledger: Path) -> None:
    _ok("append", "-", "--ledger", ledger, stdin="")
    assert _json("show", "--ledger", ledger) == []
    assert "empty" in _ok("show", "--ledger", ledger).stdout


# --- verify ------------------------------------------------------------------------------------


def test_verify_ok(ledger: Path) -> None:
    records = _fill(ledger, 9)
    report = _json("verify", "--ledger", ledger)
    assert report["ok"] is True
    assert report["size"] == 9
    assert report["root"] == merkle.root([_leaf(r) for r in records]).hex()
    assert report["first_bad"] is None
    assert _ok("verify", "--ledger", ledger).stdout.startswith("ok: 9 entries, root ")


def _tamper(ledger: Path, index: int) -> None:
    """Flip one byte of entry ``index``'s stored data, straight in the SQLite file."""
    con = sqlite3.connect(ledger)
    try:
        columns = [row[1] for row in con.execute("PRAGMA table_info(entries)")]
        assert "data" in columns, columns
        key = next((c for c in ("idx", "index", "entry_index", "position") if c in columns), None)
        if key is None:
            where, arg = "rowid = ?", index + 1
        else:
            where, arg = f'"{key}" = ?', index
        (data,) = con.execute(f"SELECT data FROM entries WHERE {where}", (arg,)).fetchone()
        data = bytes(data)
        position = data.index(b"d")  # inside the record's text: still valid JSON after the flip
        changed = data[:position] + b"D" + data[position + 1 :]
        value: bytes | str = changed if isinstance(data, bytes) else changed.decode()
        con.execute(f"UPDATE entries SET data = ? WHERE {where}", (value, arg))
        con.commit()
    finally:
        con.close()


def test_verify_names_the_tampered_entry(ledger: Path) -> None:
    _fill(ledger, 20)
    _tamper(ledger, 17)
    result = _run("verify", "--ledger", ledger)
    assert result.exit_code == 1, result.output
    assert "entry 17" in result.stdout
    assert "Traceback" not in result.output
    report = json.loads(_run("verify", "--json", "--ledger", ledger).stdout)
    assert report["ok"] is False
    assert report["first_bad"] == 17
    assert "entry 17" in report["problem"]


def test_foreign_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"this is not a database\n" * 200)
    for args in (["verify"], ["show"], ["append", "{}"], ["export"], ["proof", "0"]):
        result = _run(*args, "--ledger", junk)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error:"), (args, result.stderr)
        assert "Traceback" not in result.output
    assert junk.read_bytes() == b"this is not a database\n" * 200


def test_foreign_sqlite_database_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    result = _run("verify", "--ledger", other)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.output


def test_read_commands_do_not_create_a_ledger(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    for args in (["verify"], ["show"], ["export"], ["checkpoint"]):
        result = _run(*args, "--ledger", missing)
        assert result.exit_code == 2
        assert "no ledger there" in result.stderr
    assert not missing.exists()


# --- proofs ------------------------------------------------------------------------------------


def test_inclusion_proofs_verify_with_merkle(ledger: Path) -> None:
    records = _fill(ledger, 13)
    leaves = [_leaf(r) for r in records]
    for size in (1, 5, 8, 13):
        for index in range(size):
            out = _json("proof", str(index), "--size", str(size), "--ledger", ledger)
            assert out["index"] == index
            assert out["size"] == size
            assert out["leaf_hash"] == leaves[index].hex()
            assert out["root"] == merkle.root(leaves[:size]).hex()
            proof = [bytes.fromhex(h) for h in out["proof"]]
            merkle.verify_inclusion(
                index, size, bytes.fromhex(out["leaf_hash"]), proof, bytes.fromhex(out["root"])
            )
    default = _json("proof", "3", "--ledger", ledger)
    assert default["size"] == 13
    text = _ok("proof", "3", "--ledger", ledger).stdout
    assert f"root: {merkle.root(leaves).hex()}" in text
    assert all(f"  {h}" in text for h in default["proof"])


def test_consistency_proofs_verify_with_merkle(ledger: Path) -> None:
    records = _fill(ledger, 13)
    leaves = [_leaf(r) for r in records]
    for size1 in range(1, 14):
        for size2 in (size1, 8, 13):
            if size2 < size1:
                continue
            out = _json("consistency", str(size1), str(size2), "--ledger", ledger)
            assert (out["size1"], out["size2"]) == (size1, size2)
            assert out["root1"] == merkle.root(leaves[:size1]).hex()
            assert out["root2"] == merkle.root(leaves[:size2]).hex()
            merkle.verify_consistency(
                size1,
                size2,
                [bytes.fromhex(h) for h in out["proof"]],
                bytes.fromhex(out["root1"]),
                bytes.fromhex(out["root2"]),
            )
    assert _json("consistency", "4", "--ledger", ledger)["size2"] == 13


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["proof", "13"], "entry 13 is not in a tree of 13 entries"),
        (["proof", "2", "--size", "14"], "--size 14 is beyond"),
        (["consistency", "5", "3"], "SIZE1 5 is larger than SIZE2 3"),
        (["consistency", "5", "14"], "SIZE2 14 is beyond"),
    ],
)
def test_proof_arguments_out_of_range(ledger: Path, args: list[str], problem: str) -> None:
    _fill(ledger, 13)
    result = _run(*args, "--ledger", ledger)
    assert result.exit_code == 2
    assert f"error: {problem}" in result.stderr


# --- checkpoints and export --------------------------------------------------------------------


def test_checkpoint_then_offline_verify(ledger: Path, tmp_path: Path) -> None:
    records = _fill(ledger, 6)
    signed = _ok("checkpoint", "--ledger", ledger).stdout
    checkpoint = Checkpoint.from_json(json.loads(signed))
    assert checkpoint.size == 6
    assert checkpoint.root == merkle.root([_leaf(r) for r in records])
    key_file = paths.data_dir() / "trust" / "ledger-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    pem = _ok("export", "--public-key").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    exported = _json("export", "--public-key")
    assert exported["public_key"] == pem
    assert exported["key_id"] == checkpoint.key_id
    verify_checkpoint(checkpoint, pem.encode())

    saved, public = tmp_path / "cp.json", tmp_path / "ledger.pub"
    saved.write_text(signed)
    public.write_text(pem)
    key_file.unlink()  # offline verification needs neither the private key nor the ledger
    ledger.unlink()
    ok = _run("checkpoint", "--verify", saved, "--public-key", public)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"ok: checkpoint of 6 entries, root {checkpoint.root.hex()}")
    verdict = _json("checkpoint", "--verify", saved, "--public-key", public)
    assert verdict["ok"] is True
    assert verdict["size"] == 6

    forged = json.loads(signed)
    forged["size"] = 7
    saved.write_text(json.dumps(forged))
    bad = _run("checkpoint", "--verify", saved, "--public-key", public)
    assert bad.exit_code == 1
    assert "bad signature" in bad.stdout
    bad_json = _run("checkpoint", "--verify", saved, "--public-key", public, "--json")
    assert bad_json.exit_code == 1
    assert json.loads(bad_json.stdout)["ok"] is False


def test_checkpoint_verify_with_another_key_fails(ledger: Path, tmp_path: Path) -> None:
    _fill(ledger, 3)
    saved = tmp_path / "cp.json"
    saved.write_text(_ok("checkpoint", "--ledger", ledger).stdout)
    from trust.checkpoint import SigningKey

    stranger = tmp_path / "stranger.pub"
    stranger.write_bytes(SigningKey.load_or_create(tmp_path / "k" / "key.pem").public_pem())
    result = _run("checkpoint", "--verify", saved, "--public-key", stranger)
    assert result.exit_code == 1
    assert "wrong key" in result.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{oops", "line 1: the checkpoint is not valid JSON"), ('{"size": 1}', "missing")],
)
def test_checkpoint_verify_malformed_file(tmp_path: Path, content: str, problem: str) -> None:
    saved = tmp_path / "cp.json"
    saved.write_text(content)
    public = tmp_path / "ledger.pub"
    public.write_text(_ok("export", "--public-key").stdout)
    result = _run("checkpoint", "--verify", saved, "--public-key", public)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {saved}: ")
    assert problem in result.stderr
    assert "Traceback" not in result.output


def test_checkpoint_verify_needs_both_options(tmp_path: Path) -> None:
    result = _run("checkpoint", "--verify", tmp_path / "cp.json")
    assert result.exit_code == 2
    assert "go together" in result.stderr
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("junk")
    saved = tmp_path / "cp.json"
    saved.write_text("{}")
    result = _run("checkpoint", "--verify", saved, "--public-key", tmp_path / "nope.pem")
    assert result.exit_code == 2


def test_key_readable_by_others_is_refused(ledger: Path) -> None:
    _fill(ledger, 1)
    _ok("checkpoint", "--ledger", ledger)
    key_file = paths.data_dir() / "trust" / "ledger-key.pem"
    key_file.chmod(0o644)
    result = _run("checkpoint", "--ledger", ledger)
    assert result.exit_code == 2
    assert f"chmod 600 {key_file}" in result.stderr


def test_checkpointed_entry_verifies_with_cli_proof(ledger: Path) -> None:
    records = _fill(ledger, 11)
    checkpoint = Checkpoint.from_json(json.loads(_ok("checkpoint", "--ledger", ledger).stdout))
    pem = _ok("export", "--public-key").stdout.encode()
    out = _json("proof", "7", "--size", str(checkpoint.size), "--ledger", ledger)
    verify_entry_against_checkpoint(
        checkpoint, pem, 7, _leaf(records[7]), [bytes.fromhex(h) for h in out["proof"]]
    )


def test_export_writes_every_entry_as_json_lines(ledger: Path) -> None:
    records = _fill(ledger, 5)
    lines = _ok("export", "--ledger", ledger).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["index"] for row in rows] == list(range(5))
    assert [row["record"] for row in rows] == records
    chain = bytes(32)
    for row, record in zip(rows, records, strict=True):
        assert set(row) == {"index", "time", "record", "leaf_hash", "prev_hash"}
        assert row["leaf_hash"] == _leaf(record).hex()
        assert row["prev_hash"] == chain.hex()
        chain = hashlib.sha256(b"\x02" + chain + bytes.fromhex(row["leaf_hash"])).digest()
    assert _ok("export", "--json", "--ledger", ledger).stdout.splitlines() == lines


def test_help_lists_the_ledger_commands() -> None:
    result = runner.invoke(app, ["ledger", "--help"])
    assert result.exit_code == 0
    for command in ("append", "show", "verify", "proof", "consistency", "checkpoint", "export"):
        assert command in result.stdout


def test_verify_against_a_checkpoint_catches_removed_and_rewritten_entries(
    ledger: Path, tmp_path: Path
) -> None:
    """Recomputing the ledger alone cannot see a dropped last entry or a consistent rewrite;
    a signed checkpoint can."""
    _fill(ledger, 5)
    saved, public = tmp_path / "cp.json", tmp_path / "ledger.pub"
    saved.write_text(_ok("checkpoint", "--ledger", ledger).stdout)
    public.write_text(_ok("export", "--public-key").stdout)
    with_checkpoint = ("--checkpoint", saved, "--public-key", public)
    _ok("verify", "--ledger", ledger, *with_checkpoint)

    conn = sqlite3.connect(ledger)
    with conn:
        conn.execute("DELETE FROM entries WHERE idx = 4")
    conn.close()
    dropped = _run("verify", "--ledger", ledger, *with_checkpoint)
    assert dropped.exit_code == 1, dropped.output
    assert "TAMPERED" in dropped.stdout

    ledger.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    for i in range(5):
        _ok("append", "--ledger", ledger, json.dumps({"rewritten": i}))
    assert _run("verify", "--ledger", ledger).exit_code == 0  # consistent in itself
    rewritten = _run("verify", "--ledger", ledger, *with_checkpoint)
    assert rewritten.exit_code == 1
    assert "rewritten" in rewritten.stdout
    lone = _run("verify", "--ledger", ledger, "--checkpoint", saved)
    assert lone.exit_code == 2
