"""``goa ask``: answer one question with Graph-of-Agents.

Stdout carries only the answer (or, with ``--json``, the whole result); progress,
the ``-v`` graph tree and the ``--usage`` table go to stderr. On a terminal the
call that produces the final answer streams as it is generated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import goa_options as opt
from cli.errors import fail, reports_errors

if TYPE_CHECKING:
    from goa.pipeline import GraphOfAgents
    from goa.pools import Pool
    from goa.result import Result


@reports_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question, or - to read it from stdin.")],
    pool: Annotated[
        str | None, typer.Option(help="Pool of models (default: the configured default, 'local').")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("-m", "--model", help="Use only this card (repeatable)."),
    ] = None,
    k: opt.KOption = 3,
    pooling: opt.PoolingOption = opt.PoolingChoice.max,
    selector: opt.SelectorOption = opt.SelectorChoice.llm,
    judge: opt.JudgeOption = opt.JudgeChoice.prompt,
    adaptive_k: Annotated[
        bool, typer.Option(help="Let the meta model's difficulty rating set k.")
    ] = False,
    rounds: opt.RoundsOption = 1,
    early_exit: opt.EarlyExitOption = False,
    meta: Annotated[
        str | None, typer.Option(help="Card id of the meta model (default: the pool's largest).")
    ] = None,
    structured: opt.StructuredOption = False,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per call.")] = 512,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    timeout: opt.TimeoutOption = None,
    budget: opt.BudgetOption = None,
    cache: Annotated[bool, typer.Option(help="Reuse and store answers in the response cache.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = (
        False
    ),
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show the graph, scores and timings (stderr).")
    ] = False,
    usage: Annotated[
        bool, typer.Option("--usage", help="Show tokens, cost and latency per agent (stderr).")
    ] = False,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Audit the answer's reasoning with TRUST (the pool's models judge its steps; "
            'on the ledger); the report goes to stderr, or under "audit" with --json.',
        ),
    ] = False,
) -> None:
    """Answer QUESTION with Graph-of-Agents over a pool of models (the embedded local
    models by default). Exit code 1 when no agent could answer."""
    if question == "-":
        question = sys.stdin.read()
    if not question.strip():
        raise fail("the question is empty")
    from goa.ask import pool_for
    from goa.pipeline import GraphOfAgents

    if selector is opt.SelectorChoice.embedding:  # fetch the embedding model with a progress bar
        from goa.embedding import ensure_embedding_model

        ensure_embedding_model(progress=True)

    goa = GraphOfAgents(
        pool_for(pool, model or ()),
        k=k,
        selector=selector.value,
        adaptive_k=adaptive_k,
        judge=judge.value,
        pooling=pooling.value,
        rounds=rounds,
        early_exit=early_exit,
        meta=meta,
        structured=structured,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout_s=timeout,
        budget_usd=budget,
        cache=cache,
        progress=True,
    )
    streaming = not as_json and sys.stdout.isatty()
    result, streamed = _run(goa, question.strip(), streaming=streaming)
    audited = _audit(question.strip(), result, goa.pool) if audit and result.answered else None
    _report(result, as_json=as_json, streamed=streamed, audit=audited)
    if verbose:
        from cli.result_view import print_tree

        print_tree(result)
    if usage:
        from cli.result_view import print_usage

        print_usage(result)
    if not result.answered:
        raise typer.Exit(code=1)


class _Streamed:
    """Writes streamed pieces to the terminal (after stopping the progress line) and
    keeps them, to compare with the final answer."""

    def __init__(self, before_first: Callable[[], None]) -> None:
        self.pieces: list[str] = []
        self._before_first: Callable[[], None] | None = before_first

    def __call__(self, piece: str) -> None:
        if self._before_first is not None:
            self._before_first()
            self._before_first = None
        self.pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()


def _run(goa: GraphOfAgents, question: str, *, streaming: bool) -> tuple[Result, str | None]:
    """The result, and the text streamed to the terminal (None when not streaming)."""
    from cli.result_view import stage_progress

    with stage_progress() as (on_event, stop_progress):
        streamed = _Streamed(stop_progress) if streaming else None
        result = goa.run(question, on_event=on_event, on_delta=streamed)
    return result, "".join(streamed.pieces) if streamed else None


def _audit(question: str, result: Result, pool: Pool) -> dict[str, Any]:
    """The TRUST audit of the answer's reasoning, as its JSON form."""
    import asyncio

    from cli.trust_ledger_cmd import open_ledger
    from trust.audit import audit_answer

    with open_ledger(None, create=True) as ledger:
        report = asyncio.run(audit_answer(question, result.answer or "", pool=pool, ledger=ledger))
    return report.to_dict()


def _print_audit(audit: dict[str, Any]) -> None:
    steps = ", ".join(f"{s['step']} {s['decision']}" for s in audit["steps"])
    entries = audit["ledger_entries"]
    print(
        f"audit: {audit['verdict']}; first faulty step: {audit['first_faulty_step'] or 'none'}"
        f"; {steps}; ledger entries {entries[0]}-{entries[-1]}",
        file=sys.stderr,
    )


def _report(
    result: Result, *, as_json: bool, streamed: str | None, audit: dict[str, Any] | None = None
) -> None:
    if as_json:
        if audit is None:
            print(result.model_dump_json(indent=2))
        else:
            print(json.dumps({**result.model_dump(mode="json"), "audit": audit}, indent=2))
        return
    if audit is not None:
        _print_audit(audit)
    if not result.answered:
        print(f"no answer: {result.reason}", file=sys.stderr)
        return
    answer = result.answer or ""
    if streamed is not None and streamed.strip() == answer.strip():
        print()  # the answer is on the screen already
        return
    if streamed:
        print("\n(the streamed reply failed; the final answer follows)", file=sys.stderr)
    print(answer)
