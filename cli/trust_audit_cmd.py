"""``trust audit TRACE``: audit a chain of thought and record every decision on the ledger.

Only typer is imported at module level; the auditors (sympy, rich, the inference adapter)
load inside the command, so that ``trust --help`` stays instant.

The trace is decomposed by the rule-based decomposer (``trust.decompose``) unless
``--decompose-with CARD`` names a model card: then that model gives the H-DAG's structure, as
``trust hdag --llm CARD`` does (the same card lookup, and the same fallback to the rule-based
H-DAG with a ``note:`` on stderr when the model gives no usable decomposition).

Exit codes: 0 when the audit ran (whatever its verdict), 2 for anything to fix first (a
malformed trace file, an unknown pool or card, a bad option), as one ``error: ...`` line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import fail, reports_errors
from cli.trust_ledger_cmd import open_ledger

if TYPE_CHECKING:
    from trust.audit import AuditReport
    from trust.trace_file import Trace

TRACE_HELP = (
    'The trace: a .json file (a list of steps, or {"steps": [...], "goal": ...}), '
    "a .jsonl file (one trace per line, with --line), a text file, or - for stdin."
)
LINE_HELP = "The trace on this line of a .jsonl file."


def load_trace(trace: str, line: int | None) -> Trace:
    """The trace named on the command line: a file (see ``trust.trace_file``) or ``-`` for
    stdin. A missing file exits with code 2 here; a malformed one raises TraceFileError (a
    GoaError naming the file and line, which ``reports_errors`` turns into exit code 2)."""
    from trust.trace_file import parse_trace, read_trace

    if trace == "-":
        return parse_trace(sys.stdin.read(), name="<stdin>")
    path = Path(trace)
    if not path.is_file():
        raise fail(f"{path}: no such file")
    return read_trace(path, line=line)


@reports_errors
def audit(
    trace: Annotated[str, typer.Argument(help=TRACE_HELP)],
    line: Annotated[int | None, typer.Option("--line", min=1, help=LINE_HELP)] = None,
    pool: Annotated[
        str | None,
        typer.Option("--pool", help="Use every model of this pool as an LLM evaluator."),
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Evaluators per step.")] = 3,
    cap: Annotated[
        float,
        typer.Option(
            min=0.01, max=1.0, help="Largest share of the trace one evaluator may see (1: no cap)."
        ),
    ] = 1.0,
    coalition: Annotated[
        int, typer.Option(min=1, help="Coalition size the exposure figure is reported for.")
    ] = 2,
    human: Annotated[
        bool, typer.Option("--human", help="Review undecided steps yourself in the terminal.")
    ] = False,
    queue: Annotated[
        Path | None,
        typer.Option(
            "--queue", metavar="DIR", help="Send undecided steps to a file queue for reviewers."
        ),
    ] = None,
    ledger_path: Annotated[
        Path | None,
        typer.Option("--ledger", metavar="PATH", help="The ledger file (default: the user's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the assignment of steps to evaluators.")] = 0,
    decompose_with: Annotated[
        str | None,
        typer.Option(
            "--decompose-with",
            metavar="CARD",
            help="Decompose the trace with the model of this card, as trust hdag --llm does "
            "(default: the rule-based decomposer).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    tree: Annotated[
        bool,
        typer.Option(
            "--tree",
            help="Also print the H-DAG as a tree with each step's decision (on stderr with "
            "--json).",
        ),
    ] = False,
) -> None:
    """Audit a chain of thought: arithmetic is checked, the other steps go to a committee of
    evaluators that commit and reveal stake-weighted votes; undecided steps escalate to
    humans. Prints the verdict, the first faulty step, every step's decision, the exposure
    figure and the ledger entries."""
    from trust.audit import AuditConfig, audit_trace
    from trust.auditors import ComputationalAuditor, FileQueueAuditor, HumanAuditor

    found = load_trace(trace, line)
    evaluators = []
    if pool is not None:
        from goa.pools import load_pool
        from trust.auditors import llm_auditors_for_pool

        evaluators = llm_auditors_for_pool(load_pool(pool))
    humans: list[HumanAuditor | FileQueueAuditor] = []
    if human:
        humans.append(HumanAuditor(output=sys.stderr))
    if queue is not None:
        humans.append(FileQueueAuditor(queue))
    config = AuditConfig(replicas=replicas, cap=cap, coalition_size=coalition, seed=seed)
    if decompose_with is None:
        from trust.decompose import decompose

        hdag = decompose(found.steps, goal=found.goal)
    else:  # trust hdag's lookup and fallback note (imported here: it imports this module)
        from cli.trust_hdag_cmd import llm_decompose_trace

        hdag = llm_decompose_trace(found, decompose_with, max_retries=2, then="auditing")
    with open_ledger(ledger_path, create=True) as ledger:
        report = asyncio.run(
            audit_trace(
                hdag,
                computational=ComputationalAuditor(),
                evaluators=evaluators,
                humans=humans,
                config=config,
                ledger=ledger,
            )
        )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if tree:
        _print_tree(report, stderr=as_json)


def _print_tree(report: AuditReport, *, stderr: bool) -> None:
    """The audited H-DAG with each step's decision, and the trace's verdict on the goal."""
    from rich.console import Console

    from trust.hdag_view import hdag_tree

    verdicts = {step.step: step.decision.value for step in report.steps}
    verdicts[report.hdag.goal.id] = report.verdict.value
    Console(stderr=stderr).print(hdag_tree(report.hdag, verdicts))


def _print_report(report: AuditReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    colour = {"valid": "green", "invalid": "red", "undecided": "yellow"}
    verdict = report.verdict.value
    console.print(f"verdict: [{colour[verdict]}]{verdict}[/]")
    console.print(f"first faulty step: {report.first_faulty_step or 'none'}")
    table = Table("step", "decision", "by", "reason")
    for step in report.steps:
        decision = step.decision.value
        table.add_row(step.step, f"[{colour[decision]}]{decision}[/]", step.tier.value, step.reason)
    console.print(table)
    seen = report.exposure
    if seen.single_auditor is None:
        console.print("exposure: no evaluator saw any part of the trace")
    else:
        console.print(
            f"exposure: one evaluator saw at most {seen.single:.0%} of the trace; "
            f"{seen.coalition_size} together at most {seen.coalition_upper:.0%}"
        )
    entries = report.ledger_entries
    where = f"{entries[0]}-{entries[-1]}" if entries else "none"
    console.print(f"ledger entries: {where} (trace sha256 {report.trace_sha256[:16]}...)")
