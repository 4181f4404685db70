"""``goa eval``: run methods over a question set, one JSONL line per sample, resumable."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import fail, reports_errors

if TYPE_CHECKING:
    from goa.eval.runner import RunSummary


@reports_errors
def eval_command(
    data: Annotated[
        str,
        typer.Option(
            help="Question set name (mmlu, gpqa, math, ...), a .json/.jsonl/.parquet file, "
            "or hub:OWNER/NAME[:CONFIG] (a Hugging Face dataset)."
        ),
    ],
    method: Annotated[
        str | None,
        typer.Option(help="goa, goa-random, single, moa, self-moa or vote (or use --config)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with [[methods]] tables: several methods.")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Pool of models (default: 'local').")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many questions.")] = None,
    subject: Annotated[list[str] | None, typer.Option(help="Only this subject (repeatable).")] = (
        None
    ),
    category: Annotated[
        list[str] | None, typer.Option(help="Only this category (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Shuffle the questions with this seed.")] = None,
    split: Annotated[str, typer.Option(help="test or dev.")] = "test",
    k: Annotated[int, typer.Option("-k", min=1, help="GoA: agents picked.")] = 3,
    model: Annotated[
        str | None, typer.Option("-m", "--model", help="single / self-moa: the card to use.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    concurrency: Annotated[int, typer.Option(min=1, help="Questions in flight at once.")] = 8,
    log: Annotated[
        Path | None,
        typer.Option(help="The JSONL log (default: goa-runs/DATA.jsonl); a rerun resumes it."),
    ] = None,
    cache: Annotated[bool, typer.Option(help="Use the response cache.")] = True,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Run again the logged questions whose model calls failed (a server down, "
            "out of memory); their new lines supersede the old ones.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Append each method's result and its log's SHA-256 to the TRUST ledger "
            "(see `goa leaderboard`).",
        ),
    ] = False,
    ledger: Annotated[
        Path | None, typer.Option(help="The ledger for --record (default: the user's ledger).")
    ] = None,
) -> None:
    """Evaluate methods on a question set. A run that is stopped resumes where it was."""
    import asyncio

    from goa.eval.datasets import load_dataset
    from goa.eval.method_specs import build_method, load_method_specs, method_spec
    from goa.pools import load_pool

    if (method is None) == (config is None):
        raise fail("give either --method or --config")
    if config is not None:
        specs = load_method_specs(config)
    else:
        specs = [method_spec(method=method, k=k, model=model, max_tokens=max_tokens, cache=cache)]
    samples = load_dataset(
        data,
        limit=limit,
        subjects=subject or (),
        categories=category or (),
        seed=seed,
        split=split,
    )
    chosen = load_pool(pool)
    from goa.eval.profile import overlaps

    tainted = [card.id for card in chosen.cards if overlaps(card, samples)]
    if tainted:
        raise fail(
            f"card(s) {', '.join(tainted)} were profiled on some of these questions; "
            "evaluating on them would overstate the profile selector (use other questions)"
        )
    path = log or Path("goa-runs") / f"{_log_stem(data)}.jsonl"
    summaries = [
        asyncio.run(
            _run(
                build_method(spec, chosen),
                samples,
                path,
                data,
                concurrency,
                as_json,
                retry_failed=retry_failed,
            )
        )
        for spec in specs
    ]
    if record:
        _record(summaries, data=data, pool=chosen.name, models=chosen.ids, log=path, at=ledger)
    if as_json:
        print(json.dumps([_plain(s) for s in summaries], indent=2))
    else:
        _table(summaries, path)


async def _run(
    method: Any,
    samples: Any,
    path: Path,
    data: str,
    concurrency: int,
    quiet: bool,
    *,
    retry_failed: bool = False,
) -> RunSummary:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from goa.eval.runner import Progress as RunProgress
    from goa.eval.runner import run_eval

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=quiet or not console.is_terminal,
    ) as bar:
        task = bar.add_task(method.name, total=len(samples), status="")

        def on_progress(state: RunProgress) -> None:
            cost = "unknown" if state.cost_usd is None else f"${state.cost_usd:.4f}"
            status = f"acc {state.accuracy:.3f}  calls {state.calls}  cost {cost}"
            bar.update(task, completed=state.done, status=status)

        return await run_eval(
            method,
            samples,
            log_path=path,
            dataset=data,
            concurrency=concurrency,
            on_progress=on_progress,
            retry_failed=retry_failed,
        )


def _record(
    summaries: list[RunSummary],
    *,
    data: str,
    pool: str,
    models: tuple[str, ...],
    log: Path,
    at: Path | None,
) -> None:
    from rich.console import Console

    from goa.eval.leaderboard import record_runs
    from trust.ledger import Ledger

    with Ledger(at or Ledger.default_path()) as book:
        indexes = record_runs(book, summaries, data=data, pool=pool, models=models, log=log)
    Console(stderr=True).print(
        f"[dim]recorded on the ledger as entr{'y' if len(indexes) == 1 else 'ies'} "
        f"{', '.join(map(str, indexes))}[/dim]"
    )


def _log_stem(data: str) -> str:
    """A file name for the default log: ``mmlu``, ``my-questions``, ``hub-cais-mmlu-all``."""
    stem = data if data.startswith("hub:") else Path(data).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "run"


def _plain(summary: RunSummary) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(summary)


def _table(summaries: list[RunSummary], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("method", "n", "accuracy", "95% CI", "no answer", "calls", "tokens", "cost")
    for s in summaries:
        cost = "unknown" if s.cost_usd is None else f"${s.cost_usd:.4f}"
        table.add_row(
            s.method,
            str(s.n),
            f"{s.accuracy:.3f} +- {s.se:.3f}",
            f"[{s.ci_low:.3f}, {s.ci_high:.3f}]",
            str(s.no_answer),
            str(s.calls),
            str(s.prompt_tokens + s.completion_tokens),
            cost,
        )
    Console().print(table)
    Console(stderr=True).print(f"[dim]per-sample log: {path}[/dim]")
