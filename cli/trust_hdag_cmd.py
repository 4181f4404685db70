"""``trust hdag TRACE``: decompose a chain of thought into its H-DAG and show it.

Only typer is imported at module level; the decomposers, rich and the inference adapter load
inside the command, so that ``trust --help`` stays instant.

The rule-based decomposer (``trust.decompose``) is the default; ``--llm CARD`` asks the model
of a goa card (a built-in card of ``modelcards/`` or a user card, as the pools use them)
through ``trust.llm_decompose``.  When the model gives no usable decomposition after its
retries, the rule-based H-DAG is shown instead, with a note on stderr.

Exit codes: 0 when the H-DAG was printed, 2 for anything to fix first (a malformed trace file,
an unknown card), as one ``error: ...`` line.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import reports_errors
from cli.trust_audit_cmd import LINE_HELP, TRACE_HELP, load_trace

if TYPE_CHECKING:
    from trust.hdag import HDAG
    from trust.trace_file import Trace


@reports_errors
def hdag(
    trace: Annotated[str, typer.Argument(help=TRACE_HELP)],
    line: Annotated[int | None, typer.Option("--line", min=1, help=LINE_HELP)] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            metavar="CARD",
            help="Decompose with the model of this card (default: the rule-based decomposer).",
        ),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, help="With --llm: how often an unusable reply is asked again.")
    ] = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the H-DAG as JSON instead of a tree.")
    ] = False,
) -> None:
    """Decompose a chain of thought into its hierarchical DAG (goal > strategy > tactic >
    step > operation, with the dependencies between steps) and print it as a tree, or as
    JSON with --json."""
    found = load_trace(trace, line)
    if llm is None:
        from trust.decompose import decompose

        graph = decompose(found.steps, goal=found.goal)
    else:
        graph = llm_decompose_trace(found, llm, max_retries)
    if as_json:
        print(graph.model_dump_json(indent=2))
        return
    from rich.console import Console

    from trust.hdag_view import hdag_tree

    Console().print(hdag_tree(graph))


def llm_decompose_trace(
    found: Trace, card_id: str, max_retries: int, *, then: str = "showing"
) -> HDAG:
    """The H-DAG of ``found`` by the model of card ``card_id``, falling back to the rules
    with a note on stderr (``then``: what is done with the rule-based H-DAG instead)."""
    from goa.cards import get_card
    from trust.llm_decompose import LLMDecomposer

    decomposer = LLMDecomposer.from_card(get_card(card_id), max_retries=max_retries, fallback=True)

    async def run() -> HDAG:
        try:
            return await decomposer.decompose(found.steps, goal=found.goal)
        finally:
            await decomposer.backend.aclose()

    graph = asyncio.run(run())
    if decomposer.fell_back:
        print(
            f"note: {decomposer.problem}; {then} the rule-based decomposition instead",
            file=sys.stderr,
        )
    return graph
