"""``goa leaderboard``: recorded evaluation runs, best first, logs checked against the ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import reports_errors


@reports_errors
def leaderboard_command(
    ledger: Annotated[
        Path | None, typer.Option(help="The ledger (default: the user's ledger).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Only runs on this question set.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Runs recorded by `goa eval --record`, best accuracy first. A run whose log no
    longer matches the SHA-256 on the ledger is flagged `changed` (or `missing`)."""
    from goa.eval.leaderboard import leaderboard
    from trust.ledger import Ledger

    with Ledger(ledger or Ledger.default_path()) as book:
        standings = leaderboard(book, data=data)
    if as_json:
        rows = [{"entry": s.index, "status": s.status, **s.record} for s in standings]
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "#", "method", "data", "n", "accuracy", "cost", "log", "entry", title="leaderboard"
    )
    for rank, s in enumerate(standings, 1):
        record = s.record
        cost = record.get("cost_usd")
        shown = "[green]ok[/green]" if s.status == "ok" else f"[red]{s.status}[/red]"
        table.add_row(
            str(rank),
            str(record.get("method")),
            str(record.get("data")),
            str(record.get("n")),
            f"{s.accuracy:.3f} +- {float(record.get('se', 0.0)):.3f}",
            "unknown" if cost is None else f"${float(cost):.4f}",
            shown,
            str(s.index),
        )
    Console().print(table)
