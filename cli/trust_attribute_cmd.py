"""``trust attribute LOG``: which agent, at which step, caused a multi-agent failure.

Only typer is imported at module level; the log readers, the causal interaction graph
(networkx) and the inference adapter load inside the command, so that ``trust --help`` stays
instant.

LOG is a Who&When case or the JSON of a GoA run's result (``Result.model_dump_json()``), as
:func:`trust.log_readers.read_log` reads them. The method is one of
:data:`trust.attribution_references.EVERY_METHOD` (``cig``, ours, by default; the Who&When
baselines; the judge-free reference points ``graph_root`` and ``first_step``); every method
but those of :data:`~trust.attribution_references.JUDGE_FREE` asks a judge, the model of the
card ``--judge`` names. The attribution goes on the ledger as one ``attribution`` record
(:func:`attribution_record`).

Exit codes: 0 when an attribution was made (a fallback included), 2 for anything to fix first
(a malformed or empty log, an unknown method or card, a missing ``--judge``), as one
``error: ...`` line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import fail, reports_errors
from cli.trust_ledger_cmd import open_ledger

if TYPE_CHECKING:
    from goa.inference.backend import Backend
    from trust.attribution import Attribution
    from trust.cig import CIG, LLMEdgeLinker
    from trust.interaction_log import InteractionLog

METHOD_NAMES = (
    "cig",
    "random",
    "all_at_once",
    "step_by_step",
    "binary_search",
    "graph_root",
    "first_step",
)
"""For the help text only: the registry is ``trust.attribution_references.EVERY_METHOD``."""

NO_JUDGE = ("random", "graph_root", "first_step")
"""For the help text only: ``trust.attribution_references.JUDGE_FREE``."""

GRAPH_METHODS = ("cig", "graph_root")
"""The methods that use the causal interaction graph (and so ``--link-with``)."""

LOG_HELP = "The log: a Who&When case (.json) or a GoA run's result JSON."


@reports_errors
def attribute(
    log_file: Annotated[Path, typer.Argument(metavar="LOG", help=LOG_HELP)],
    method: Annotated[
        str,
        typer.Option(help=f"The attribution method: {', '.join(METHOD_NAMES)}."),
    ] = "cig",
    judge_card: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="CARD",
            help=f"The judge: a model card id (not needed by {', '.join(NO_JUDGE)}).",
        ),
    ] = None,
    ground_truth: Annotated[
        bool | None,
        typer.Option(
            "--ground-truth/--no-ground-truth",
            help="Show the judge the correct final answer (default: when the log has one).",
            show_default=False,
        ),
    ] = None,
    link_with: Annotated[
        str | None,
        typer.Option(
            "--link-with",
            metavar="CARD",
            help="Let the model of this card add edges to the causal interaction graph "
            "(--method cig or graph_root; default: the deterministic rules alone).",
        ),
    ] = None,
    max_step_chars: Annotated[
        int | None,
        typer.Option(
            "--max-step-chars",
            min=1,
            metavar="N",
            help="Characters of each step the judge is shown (default: 2000).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random method and the judge.")] = 0,
    ledger_path: Annotated[
        Path | None,
        typer.Option("--ledger", metavar="PATH", help="The ledger file (default: the user's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Attribute a failed multi-agent interaction: name the responsible agent and the decisive
    step (for a GoA run, with its stage and round), why, and what the judge's calls cost. The
    attribution is appended to the ledger."""
    from trust.attribution_references import EVERY_METHOD, JUDGE_FREE

    if method not in EVERY_METHOD:
        raise fail(f"unknown method {method!r}; known: {', '.join(EVERY_METHOD)}")
    judged = method not in JUDGE_FREE
    if judged and judge_card is None:
        raise fail(f"--method {method} needs a judge: --judge CARD (a model card id)")
    if link_with is not None and method not in GRAPH_METHODS:
        raise fail(f"--link-with only applies to --method {' or '.join(GRAPH_METHODS)}")
    cards = _check_cards(judge_card if judged else None, link_with)

    from trust.log_readers import read_log

    log = read_log(log_file)
    if not log.steps:
        raise fail(f"{log_file}: the log has no steps to attribute")
    if ground_truth and log.ground_truth is None:
        raise fail(f"{log_file}: --ground-truth, but the log has no ground truth")
    with_truth = log.ground_truth is not None if ground_truth is None else ground_truth
    raw = log_file.read_bytes()

    attribution, graph, linker = asyncio.run(
        _attribute(
            log,
            method,
            cards,
            with_ground_truth=with_truth,
            max_step_chars=max_step_chars,
            seed=seed,
        )
    )
    step = log.steps[attribution.step]
    round_ = _goa_round(raw, attribution.step) if log.source == "goa" else None
    judge_id = judge_card if judged else None
    record = attribution_record(
        log,
        attribution,
        log_sha256=hashlib.sha256(raw).hexdigest(),
        judge=judge_id,
        with_ground_truth=with_truth,
        round_=round_,
    )
    with open_ledger(ledger_path, create=True) as ledger:
        entry = ledger.append(record)
    report: dict[str, Any] = {
        **attribution.model_dump(mode="json"),
        "total_tokens": attribution.total_tokens,
        "log_id": log.id,
        "source": log.source,
        "log_sha256": record["log_sha256"],
        "steps": len(log.steps),
        "judge": judge_id,
        "with_ground_truth": with_truth,
        "stage": step.stage,
        "round": round_,
        "label": log.label.model_dump(mode="json") if log.label is not None else None,
        "cig": graph.summary(),
        "linker": None
        if linker is None
        else {"card": link_with, "calls": linker.calls, "failures": len(linker.failures)},
        "ledger_entry": entry.index,
        "ledger_leaf_hash": entry.leaf_hash.hex(),
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_report(report)


def _check_cards(judge: str | None, linker: str | None) -> dict[str, str]:
    """Look the cards up now, so that an unknown one stops the command before any work (a
    GoaError naming the card and the near misses: exit code 2). Role -> card id."""
    from goa.cards import get_card

    cards = {"judge": judge, "linker": linker}
    found: dict[str, str] = {}
    for role, card_id in cards.items():
        if card_id is not None:
            get_card(card_id)
            found[role] = card_id
    return found


def _backend(card_id: str) -> Backend:
    from goa.cards import get_card
    from goa.inference.factory import backend_for_card

    return backend_for_card(get_card(card_id))


async def _attribute(
    log: InteractionLog,
    method: str,
    cards: dict[str, str],
    *,
    with_ground_truth: bool,
    max_step_chars: int | None,
    seed: int,
) -> tuple[Attribution, CIG, LLMEdgeLinker | None]:
    """Build the CIG (with the linker's edges when there is one) and run the method."""
    from trust.attribution import Judge
    from trust.attribution_cig import ALL_METHODS, cig_attribution
    from trust.attribution_prompts import DEFAULT_MAX_STEP_CHARS
    from trust.attribution_references import JUDGE_FREE
    from trust.cig import LLMEdgeLinker, abuild_cig

    opened: list[Backend] = []
    try:
        linker = None
        if "linker" in cards:
            opened.append(_backend(cards["linker"]))
            linker = LLMEdgeLinker(opened[-1])
        graph = await abuild_cig(log, linker=linker)
        if method in JUDGE_FREE:
            attribution = await _judge_free(log, method, graph, with_ground_truth, seed)
            return attribution, graph, linker
        opened.append(_backend(cards["judge"]))
        judge = Judge(
            opened[-1],
            id=f"judge:{cards['judge']}",
            seed=seed,
            max_step_chars=DEFAULT_MAX_STEP_CHARS if max_step_chars is None else max_step_chars,
        )
        if method == "cig":
            attribution = await cig_attribution(
                log, judge, with_ground_truth=with_ground_truth, seed=seed, graph=graph
            )
        else:
            attribution = await ALL_METHODS[method](
                log, judge, with_ground_truth=with_ground_truth, seed=seed
            )
        return attribution, graph, linker
    finally:
        for backend in opened:
            await backend.aclose()


async def _judge_free(
    log: InteractionLog, method: str, graph: CIG, with_ground_truth: bool, seed: int
) -> Attribution:
    """A method of ``JUDGE_FREE``; ``graph_root`` on the graph the command built."""
    from trust.attribution import random_attribution
    from trust.attribution_references import first_step_attribution, graph_root_attribution

    if method == "graph_root":
        return await graph_root_attribution(log, with_ground_truth=with_ground_truth, graph=graph)
    if method == "first_step":
        return await first_step_attribution(log, with_ground_truth=with_ground_truth)
    return await random_attribution(log, None, with_ground_truth=with_ground_truth, seed=seed)


def _goa_round(raw: bytes, step: int) -> int | None:
    """The round of the GoA call at ``step`` (the log keeps only its stage): read from the
    result JSON that ``read_log`` has already checked."""
    data = json.loads(raw)
    record = data["responses"][step]
    value = record.get("round") if isinstance(record, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def attribution_record(
    log: InteractionLog,
    attribution: Attribution,
    *,
    log_sha256: str,
    judge: str | None,
    with_ground_truth: bool,
    round_: int | None = None,
) -> dict[str, Any]:
    """The ledger record of one attribution (``kind: "attribution"``): what was attributed
    (the log's id, source and the SHA-256 of its file), how (method, judge card or None,
    whether the ground truth was shown), the answer (agent, step, the step's stage and round
    where the log has them, reason, fallback) and its cost (calls and tokens)."""
    step = log.steps[attribution.step]
    return {
        "kind": "attribution",
        "log_id": log.id,
        "source": log.source,
        "log_sha256": log_sha256,
        "method": attribution.method,
        "judge": judge,
        "with_ground_truth": with_ground_truth,
        "agent": attribution.agent,
        "step": attribution.step,
        "stage": step.stage,
        "round": round_,
        "reason": attribution.reason,
        "fallback": attribution.fallback,
        "calls": attribution.calls,
        "prompt_tokens": attribution.prompt_tokens,
        "completion_tokens": attribution.completion_tokens,
        "tokens_estimated": attribution.tokens_estimated,
    }


def _print_report(report: dict[str, Any]) -> None:
    judge = report["judge"] or "none"
    truth = "shown" if report["with_ground_truth"] else "not shown"
    if report["judge"] is None:
        truth = "not used"
    typer.echo(f"log: {report['log_id']} ({report['source']}, {report['steps']} steps)")
    typer.echo(f"method: {report['method']}  judge: {judge}  ground truth: {truth}")
    typer.echo(f"responsible agent: {report['agent']}")
    where = [f"stage {report['stage']}"] if report["stage"] is not None else []
    if report["round"] is not None:
        where.append(f"round {report['round']}")
    detail = f" ({', '.join(where)})" if where else ""
    typer.echo(f"decisive step: {report['step']}{detail}")
    typer.echo(f"reason: {report['reason'] or '-'}")
    estimated = ", estimated" if report["tokens_estimated"] else ""
    typer.echo(
        f"calls: {report['calls']}  tokens: {report['total_tokens']} "
        f"({report['prompt_tokens']} prompt + {report['completion_tokens']} completion"
        f"{estimated})"
    )
    typer.echo(f"fallback: {'yes' if report['fallback'] else 'no'}")
    for problem in report["problems"]:
        typer.echo(f"  problem: {problem}")
    label = report["label"]
    if label is not None:
        agent_ok = "right" if label["agent"] == report["agent"] else "wrong"
        step_ok = "right" if label["step"] == report["step"] else "wrong"
        typer.echo(
            f"label: {label['agent']} at step {label['step']} (agent {agent_ok}, step {step_ok})"
        )
    typer.echo(f"ledger entry: {report['ledger_entry']} (leaf hash {report['ledger_leaf_hash']})")
