"""How ``goa ask`` shows a run on stderr: live stage progress, the graph tree, usage."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from goa.result import Event, Result, Totals

_err = Console(stderr=True)


@contextmanager
def stage_progress() -> Iterator[tuple[Callable[[Event], None], Callable[[], None]]]:
    """An event handler that shows the current stage on a terminal (nothing otherwise),
    and a function that takes the progress line away (before streaming starts)."""
    if not sys.stderr.isatty():
        yield (lambda event: None), (lambda: None)
        return
    status = _err.status("starting")
    status.start()
    shown = [True]

    def stop() -> None:
        if shown[0]:
            status.stop()
            shown[0] = False

    def on_event(event: Event) -> None:
        if not shown[0]:
            return
        if event.kind == "stage_started" and event.stage:
            status.update(f"{event.stage} ({event.elapsed_s:.1f} s)")
        elif event.kind in ("retry", "fallback", "error", "dropped"):
            _err.print(f"[dim]{event.kind}: {event.message}[/dim]")

    try:
        yield on_event, stop
    finally:
        stop()


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _totals(totals: Totals) -> str:
    return (
        f"{totals.calls} calls, {totals.prompt_tokens}+{totals.completion_tokens} tokens, "
        f"{_cost(totals.cost_usd)}"
    )


def print_tree(result: Result) -> None:
    """The run as a tree: selection, ranking with relevance, removals, stages, incidents."""
    tree = Tree(
        f"[bold]{result.question_id}[/bold] {result.wall_s:.1f} s, {_totals(result.totals)}"
    )
    selected = tree.add(f"selected ({result.selector}, k={result.k})")
    for choice in result.selected:
        selected.add(f"{choice.agent}: {choice.reason}")
    if result.early_exit:
        tree.add("early exit: every first answer agreed")
    ranking = tree.add("ranking (most relevant first)")
    for position, agent in enumerate(result.ranking, 1):
        final = "  [green]final[/green]" if agent == result.final_agent else ""
        ranking.add(f"{position}. {agent}  relevance {result.relevance.get(agent, 0.0):.3f}{final}")
    if result.scores:
        scores = tree.add("scores (judge -> answer)")
        for judge, row in result.scores.items():
            scores.add(f"{judge}: " + ", ".join(f"{a} {s:.2f}" for a, s in row.items()))
    for removal in result.removed:
        tree.add(f"[yellow]removed[/yellow] {removal.agent} at {removal.stage}: {removal.reason}")
    stages = tree.add("stages")
    for name, stage in result.stages.items():
        counts = ", ".join(
            f"{n} {label}"
            for n, label in (
                (stage.retries, "retries"),
                (stage.fallbacks, "fallbacks"),
                (stage.errors, "errors"),
                (stage.dropped, "dropped"),
            )
            if n
        )
        stages.add(
            f"{name}: {stage.wall_s:.2f} s, {_totals(stage.totals)}"
            + (f"; {counts}" if counts else "")
        )
    for incident in result.incidents:
        tree.add(f"[dim]{incident.kind} at {incident.stage}: {incident.message}[/dim]")
    _err.print(tree)


def print_usage(result: Result) -> None:
    """Tokens, cost and summed call latency per agent, with the total."""
    table = Table("agent", "calls", "prompt", "completion", "cost", "latency s", title="usage")
    rows = [*result.agents.items(), ("total", result.totals)]
    for agent, totals in rows:
        table.add_row(
            agent,
            str(totals.calls),
            str(totals.prompt_tokens),
            str(totals.completion_tokens),
            _cost(totals.cost_usd),
            f"{totals.latency_s:.2f}",
        )
    _err.print(table)
