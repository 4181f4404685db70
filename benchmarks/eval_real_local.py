"""REAL models: every method on MMLU with the four embedded local models.

The ``local`` pool (SmolLM2-135M-Instruct, Gemma-3-270M base, Qwen2.5-Coder-0.5B
and -1.5B-Instruct: the GGUF files of :mod:`goa.inference.local_models`, SHA-256
verified) answers ``--limit`` questions of the Graph-of-Agents MMLU sample
(seeded shuffle) with each method, through :func:`~goa.eval.runner.run_eval`,
every method at once, each with its own limit of questions in flight (so each
works through the questions in the same order, and a run cut short by its budget
leaves a long common prefix), and the shared response cache.

Methods (the defaults of :mod:`goa.eval.method_specs`, ``max_tokens`` as given):

- ``single-<model>``: each model alone; ``best_single_acc`` is the best of them
  *on these questions* (an oracle choice that flatters the single model).
- ``goa``: paper GoA (k=3, LLM selector, prompt judge, max pooling, one round).
- ``goa-early-exit``: the same, stopping after the answers when all agree.
- ``goa-majority-exit``: the same, stopping after the answers when more than
  half agree (the most relevant agent of that majority answers).
- ``goa-likelihood``: the same, the judges scoring answers by log-probability.
- ``moa``: Mixture-of-Agents, all four propose, 2 layers, the largest aggregates.
- ``self-moa``: the largest model sampled 4 times, then aggregated by itself.
- ``vote``: majority vote of all four.

Engines: with ``GOA_LOCAL_ENGINE=transformers`` the same GGUF files are
dequantised and run by transformers, batched (bf16 on a GPU); with llama.cpp
(the default) they run on the CPU, one request per model at a time (hours for
100 questions on 2 cores). The figures are accuracy of these real models; the
engine changes speed, and numerics only slightly (bf16 on dequantised Q4
weights instead of llama.cpp's quantised kernels).

Stopping and resuming: ``--budget-s`` cancels what is still running after that
many seconds; every finished sample is in the log, and a later run with the
same ``--log`` resumes. The metrics cover the questions that *every* method
finished, so methods are compared on the same questions. ``--retry-failed`` runs
again the logged questions whose model calls failed (out of GPU memory, say); their
new lines supersede the old ones.

Usage::

    GOA_LOCAL_ENGINE=transformers python -m benchmarks.eval_real_local \\
        --limit 500 --log runs/eval-real-local.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import (
    RESULTS_DIR,
    gpu_name,
    machine,
    transformers_batching,
    write_result,
)
from goa.cards import ModelCard
from goa.eval.datasets import load_dataset
from goa.eval.method_specs import MethodSpec, build_method
from goa.eval.runlog import LogRecord, read_log
from goa.eval.runner import accuracy_stats, run_eval
from goa.pools import Pool, load_pool

NAME = "eval-real-local"
MIN_QUESTIONS = 100


def method_specs(pool_ids: list[str], max_tokens: int) -> list[MethodSpec]:
    """The methods compared, in the order they are reported."""
    specs = [
        MethodSpec(method="single", model=agent, name=f"single-{agent}", max_tokens=max_tokens)
        for agent in pool_ids
    ]
    specs += [
        MethodSpec(method="goa", max_tokens=max_tokens),
        MethodSpec(method="goa", name="goa-early-exit", early_exit=True, max_tokens=max_tokens),
        MethodSpec(
            method="goa", name="goa-majority-exit", early_exit="majority", max_tokens=max_tokens
        ),
        MethodSpec(method="goa", name="goa-likelihood", judge="likelihood", max_tokens=max_tokens),
        MethodSpec(method="moa", max_tokens=max_tokens),
        MethodSpec(method="self-moa", max_tokens=max_tokens),
        MethodSpec(method="vote", max_tokens=max_tokens),
    ]
    return specs


async def run_all(args: argparse.Namespace, specs: list[MethodSpec]) -> None:
    """Every method at once, each with ``--concurrency`` questions in flight, until
    done or the budget runs out."""
    samples = load_dataset("mmlu", limit=args.limit, seed=args.seed)
    pool = load_pool("local")
    if os.environ.get("GOA_LOCAL_ENGINE") == "transformers":
        await asyncio.to_thread(preload, pool)
    started = time.perf_counter()

    def progress(state: Any) -> None:
        if state.done % 25 == 0 or state.done == state.total:
            print(
                f"[{time.perf_counter() - started:7.1f}s] {state.method}: "
                f"{state.done}/{state.total} acc {state.accuracy:.3f} calls {state.calls}",
                flush=True,
            )

    runs = [
        run_eval(
            build_method(spec, pool),
            samples,
            log_path=args.log,
            dataset="mmlu",
            concurrency=args.concurrency,
            on_progress=progress,
            retry_failed=args.retry_failed,
        )
        for spec in specs
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*runs), timeout=args.budget_s)
    except TimeoutError:
        print(f"budget of {args.budget_s:.0f} s spent: stopping (the log keeps what finished)")


def preload(pool: Pool) -> None:
    """Load every model of the pool before the clock starts (one thread each; the
    backend builds them one at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    from goa.inference.factory import backend_for_card
    from goa.inference.transformers_backend import TransformersBackend

    def load(card: ModelCard) -> object:
        backend = backend_for_card(card)
        assert isinstance(backend, TransformersBackend)
        return backend.load()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(pool.cards)) as threads:
        loaded = list(threads.map(load, pool.cards))
    print(f"loaded {len(loaded)} models in {time.perf_counter() - started:.1f} s", flush=True)


def _key(label: str) -> str:
    return label.replace("-", "_").replace(".", "_")


def summarize(log: Path, specs: list[MethodSpec], wanted: set[str]) -> dict[str, Any]:
    """Metrics over the questions of ``wanted`` that every method finished.

    ``call_reduction`` is P2 on the real pool, defined as in ``eval_calls``:
    1 - calls/question of the cheapest GoA variant whose accuracy is at least
    paper GoA's minus one paper-GoA SE, over paper GoA's calls/question (0 when
    no variant is at equal accuracy, or paper GoA did not run).
    """
    by_method: dict[str, dict[str, LogRecord]] = {s.label: {} for s in specs}
    for record in read_log(log).records:
        if record.method in by_method and record.sample_id in wanted:
            by_method[record.method].setdefault(record.sample_id, record)
    common = set.intersection(*(set(done) for done in by_method.values())) if by_method else set()
    metrics: dict[str, float | int] = {"questions": len(common)}
    rows: list[dict[str, Any]] = []
    singles: dict[str, float] = {}
    for spec in specs:
        records = [by_method[spec.label][sid] for sid in sorted(common)]
        n = len(records)
        correct = sum(r.correct for r in records)
        acc, se, _, _ = accuracy_stats(correct, n) if n else (0.0, 0.0, 0.0, 0.0)
        key = _key(spec.label)
        metrics[f"acc_{key}"] = round(acc, 4)
        metrics[f"se_{key}"] = round(se, 4)
        metrics[f"calls_{key}"] = round(sum(r.calls for r in records) / n, 3) if n else 0.0
        metrics[f"tokens_{key}"] = round(sum(r.tokens for r in records) / n, 1) if n else 0.0
        metrics[f"no_answer_{key}"] = sum(r.no_answer for r in records)
        metrics[f"errors_{key}"] = sum(bool(r.errors) for r in records)
        if spec.method == "single":
            singles[spec.label] = acc
        for r in records:
            rows.append(
                {
                    "method": spec.label,
                    "sample_id": r.sample_id,
                    "gold": r.gold,
                    "extracted": r.extracted,
                    "correct": int(r.correct),
                    "calls": r.calls,
                    "tokens": r.tokens,
                }
            )
    best = max(singles, key=lambda label: singles[label]) if singles else ""
    metrics["best_single_acc"] = round(singles.get(best, 0.0), 4)
    variant = _cheapest_equal_variant(metrics, specs)
    if variant is not None:
        metrics["call_reduction"] = round(
            1.0 - metrics[f"calls_{_key(variant)}"] / metrics["calls_goa"], 4
        )
    return {"metrics": metrics, "rows": rows, "best_single": best, "p2_variant": variant}


def _cheapest_equal_variant(metrics: dict[str, float | int], specs: list[MethodSpec]) -> str | None:
    labels = [s.label for s in specs]
    if "goa" not in labels or not metrics.get("calls_goa"):
        return None
    floor = metrics["acc_goa"] - metrics["se_goa"]
    equal = [
        s.label
        for s in specs
        if s.method == "goa" and s.label != "goa" and metrics[f"acc_{_key(s.label)}"] >= floor
    ]
    return min(equal, key=lambda label: metrics[f"calls_{_key(label)}"], default=None)


def write_outputs(summary: dict[str, Any], args: argparse.Namespace, extra: dict[str, Any]) -> None:
    metrics = summary["metrics"]
    n = int(metrics["questions"])
    gpu = extra.get("gpu")
    goals: dict[str, dict[str, Any]] = {
        "questions": {"target": f">= {MIN_QUESTIONS} MMLU questions", "met": n >= MIN_QUESTIONS}
    }
    if "call_reduction" in metrics:
        goals["call_reduction"] = {
            "target": ">= 0.4 at equal accuracy (acc_variant >= acc_goa - se_goa), real pool",
            "met": metrics["call_reduction"] >= 0.4,
        }
    write_result(
        NAME,
        metrics=metrics,
        goals=goals,
        simulated=False,
        command=args.command_text,
        machine_text=machine() + (f"; GPU {gpu}" if gpu else ""),
        extra={"best_single": summary["best_single"], "p2_variant": summary["p2_variant"], **extra},
    )
    with open(RESULTS_DIR / f"{NAME}-samples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=["method", "sample_id", "gold", "extracted", "correct", "calls", "tokens"]
        )
        writer.writeheader()
        writer.writerows(summary["rows"])
    lines = [
        f"# {NAME}: real local models on {n} MMLU questions",
        "",
        f"Engine: {extra.get('engine')}; GPU: {gpu or 'none'}; max_tokens {args.max_tokens}.",
        f"Command: `{args.command_text}`",
        "",
        "| method | accuracy | SE | calls/question | tokens/question | no answer |",
        "|---|---|---|---|---|---|",
    ]
    for key in [k.removeprefix("acc_") for k in metrics if k.startswith("acc_")]:
        lines.append(
            f"| {key} | {metrics[f'acc_{key}']:.3f} | {metrics[f'se_{key}']:.3f} | "
            f"{metrics[f'calls_{key}']:.2f} | {metrics[f'tokens_{key}']:.0f} | "
            f"{metrics[f'no_answer_{key}']} |"
        )
    lines += ["", f"Best single model on these questions: {summary['best_single']}."]
    (RESULTS_DIR / f"{NAME}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=8, help="questions in flight per method")
    parser.add_argument("--budget-s", type=float, default=math.inf)
    parser.add_argument("--log", type=Path, default=Path("goa-runs") / f"{NAME}.jsonl")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the logged questions whose model calls failed",
    )
    parser.add_argument(
        "--methods", default="", help="comma-separated labels to run (default: all)"
    )
    parser.add_argument(
        "--report",
        default="",
        help="comma-separated labels to report from the log (default: those run); a run that "
        "continues some methods of an earlier log reports them with the others",
    )
    parser.add_argument("--command", dest="command_text", default=None)
    args = parser.parse_args()
    args.command_text = args.command_text or "python -m benchmarks.eval_real_local " + " ".join(
        sys.argv[1:]
    )
    pool_ids = [card.id for card in load_pool("local").cards]
    specs = method_specs(pool_ids, args.max_tokens)
    all_specs = specs
    for option in ("methods", "report"):
        chosen = getattr(args, option).split(",") if getattr(args, option) else []
        unknown = sorted(set(chosen) - {s.label for s in all_specs})
        if unknown:
            parser.error(f"unknown methods {unknown}; known: {[s.label for s in all_specs]}")
    if args.methods:
        specs = [s for s in specs if s.label in args.methods.split(",")]
    reported = [s for s in all_specs if s.label in args.report.split(",")] if args.report else specs
    args.log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.summarize_only:
        asyncio.run(run_all(args, specs))
    engine = os.environ.get("GOA_LOCAL_ENGINE") or "llamacpp"
    extra = {
        "engine": engine,
        "gpu": gpu_name(),
        "wall_s": round(time.perf_counter() - started, 1),
        "limit": args.limit,
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "batching": transformers_batching(),
        "note": (
            "REAL models (not simulated): the four embedded GGUF models of the local pool. "
            "Metrics cover the questions every method finished; best_single_acc is the best "
            "single model chosen on these same questions (an oracle choice)."
        ),
    }
    wanted = {s.id for s in load_dataset("mmlu", limit=args.limit, seed=args.seed)}
    summary = summarize(args.log, reported, wanted)
    write_outputs(summary, args, extra)
    print(json.dumps(summary["metrics"], indent=1))


if __name__ == "__main__":
    main()
