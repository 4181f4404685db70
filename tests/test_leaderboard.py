"""`goa eval --record` and `goa leaderboard`: results on the ledger, logs checked against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.goa_app import app
from goa.eval.leaderboard import RECORD_TYPE, log_digest
from goa.testing.agents import Agent
from tests.test_eval_cli import setup  # noqa: F401  (the fixture: three scripted agents)
from trust.ledger import Ledger

runner = CliRunner()


def _eval(data: Path, log: Path, ledger: Path, *method: str) -> Any:
    args = ["eval", *method, "--data", str(data), "--pool", "trio", "--log", str(log)]
    return runner.invoke(app, [*args, "--record", "--ledger", str(ledger), "--json"])


def _board(ledger: Path) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["leaderboard", "--ledger", str(ledger), "--json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_recorded_run_is_on_the_ledger_with_its_log_digest(
    setup: tuple[Path, dict[str, Agent]],  # noqa: F811
    tmp_path: Path,
) -> None:
    data, _ = setup
    log, ledger = tmp_path / "run.jsonl", tmp_path / "ledger.sqlite"
    assert _eval(data, log, ledger, "--method", "vote").exit_code == 0
    with Ledger(ledger) as book:
        (entry,) = list(book.entries())
        assert book.verify().ok
    record = entry.record
    assert record["type"] == RECORD_TYPE
    assert (record["method"], record["n"], record["accuracy"]) == ("vote", 4, 0.75)
    assert record["models"] == ["x", "y", "z"]
    assert record["log_sha256"] == log_digest(log, "vote")
    (row,) = _board(ledger)
    assert (row["method"], row["status"], row["entry"]) == ("vote", "ok", 0)


def test_leaderboard_is_best_first_and_flags_changed_and_missing_logs(
    setup: tuple[Path, dict[str, Agent]],  # noqa: F811
    tmp_path: Path,
) -> None:
    data, _ = setup
    ledger = tmp_path / "ledger.sqlite"
    vote_log, single_log = tmp_path / "vote.jsonl", tmp_path / "single.jsonl"
    assert _eval(data, vote_log, ledger, "--method", "vote").exit_code == 0
    assert _eval(data, single_log, ledger, "--method", "single", "-m", "x").exit_code == 0
    # Another method appending to the same log leaves the recorded digest alone.
    assert (
        runner.invoke(
            app,
            [
                "eval",
                "--method",
                "single",
                "-m",
                "y",
                "--data",
                str(data),
                "--pool",
                "trio",
                "--log",
                str(vote_log),
            ],
        ).exit_code
        == 0
    )
    rows = _board(ledger)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["accuracy"] for r in rows] == sorted((r["accuracy"] for r in rows), reverse=True)

    lines = vote_log.read_text().splitlines()
    first_vote = next(i for i, line in enumerate(lines) if json.loads(line)["method"] == "vote")
    changed = json.loads(lines[first_vote])
    changed["correct"] = not changed["correct"]
    lines[first_vote] = json.dumps(changed)
    vote_log.write_text("\n".join(lines) + "\n")
    single_log.unlink()
    statuses = {r["method"]: r["status"] for r in _board(ledger)}
    assert statuses == {"vote": "changed", "single:x": "missing"}


def test_leaderboard_of_a_file_that_is_not_a_ledger_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-ledger.sqlite"
    bogus.write_text("hello")
    result = runner.invoke(app, ["leaderboard", "--ledger", str(bogus)])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert "Traceback" not in result.output
