"""``goa report``: accuracy +- SE, 95% intervals and spending per method, from run logs."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail, reports_errors


class GroupBy(StrEnum):
    category = "category"
    subject = "subject"


@reports_errors
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run logs (JSONL) written by goa eval.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG: accuracy with 95% bars, calls/question.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML page with the plot.")
    ] = None,
    by: Annotated[
        GroupBy | None, typer.Option(help="Also break accuracy down by category or subject.")
    ] = None,
) -> None:
    """Compare methods across run logs: accuracy with SE and 95% CI, calls, tokens, cost."""
    from goa.eval.report import plot_png, render_tables, report, write_html

    rep = report(runs)
    for warning in rep.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    png = plot_png(rep) if plot is not None or html is not None else None
    try:
        if plot is not None and png is not None:
            plot.write_bytes(png)
        if html is not None:
            write_html(rep, html, png)
    except OSError as exc:
        raise fail(
            f"{exc.filename or plot or html}: cannot write ({exc.strerror or exc})"
        ) from None
    if as_json:
        print(rep.model_dump_json(indent=2))
        return
    from rich.console import Console

    console = Console()
    for table in render_tables(rep, by.value if by is not None else None):
        console.print(table)
