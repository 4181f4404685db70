"""P2 (SIMULATED pool): LLM calls per question of GoA's cheaper variants at equal accuracy.

Paper GoA (k=3, LLM selector, max pooling, one round) against early exit
(unanimous, and by majority), the embedding selector (the real local embedding
model of :mod:`goa.embedding`; no LLM call for selection) and both, on
``--questions`` MMLU questions (seeded shuffle) answered by
:func:`~goa.testing.simulated.simulated_pool` (default specs, unchanged). No model
runs: every figure is simulated.

Definitions:

- calls/question: the calls each method recorded (failed ones included), over n.
- accuracy +- SE, SE = sqrt(p(1-p)/n).
- "equal accuracy": a variant's accuracy is at least paper GoA's minus one
  paper-GoA SE (``acc_variant >= acc_goa - se_goa``).
- ``call_reduction`` = 1 - calls(variant)/calls(paper GoA) for the variant with
  the fewest calls among those at equal accuracy (0 when none is). Goal >= 0.40.
- ``early_exit_rate_<variant>``: the fraction of questions on which the early
  exit fired (``Result.early_exit``, from the run log).

Usage: ``.venv/bin/python -m benchmarks.eval_calls [--questions N] [--seed S]``.
The per-sample logs go to a temporary directory (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.eval_simulated import GOA_VARIANTS, build_methods, per_question, run_methods
from benchmarks.results_file import write_result
from goa.eval.datasets import load_dataset
from goa.eval.runlog import read_log
from goa.testing.simulated import simulated_pool

MIN_REDUCTION = 0.40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=300, help="MMLU questions")
    parser.add_argument("--seed", type=int, default=0, help="shuffle and simulation seed")
    args = parser.parse_args()

    samples = load_dataset("mmlu", seed=args.seed, limit=args.questions)
    pool, agents = simulated_pool(samples, seed=args.seed)
    methods = build_methods(pool, agents, goa_only=True)
    with tempfile.TemporaryDirectory(prefix="eval-calls-") as tmp:
        summaries = asyncio.run(run_methods(methods, samples, dataset="mmlu", log_dir=Path(tmp)))
        exits: dict[str, float] = {}
        for name in GOA_VARIANTS:
            records = read_log(Path(tmp) / f"mmlu-{name}.jsonl", method=name).records
            fired = sum(bool(r.extra.get("early_exit")) for r in records)
            exits[name] = fired / len(records) if records else 0.0

    paper = summaries["goa"]
    paper_calls = per_question(paper)
    floor = paper.accuracy - paper.se
    metrics: dict[str, float | int] = {"questions": len(samples)}
    equal: dict[str, float] = {}
    for name, s in summaries.items():
        tag = name.replace("-", "_")
        calls = per_question(s)
        metrics[f"acc_{tag}"] = round(s.accuracy, 4)
        metrics[f"se_{tag}"] = round(s.se, 4)
        metrics[f"calls_{tag}"] = round(calls, 3)
        metrics[f"early_exit_rate_{tag}"] = round(exits[name], 4)
        if name != "goa" and s.accuracy >= floor:
            equal[name] = calls
        print(
            f"{name:26s} acc {s.accuracy:.3f} +- {s.se:.3f}  calls/q {calls:.2f}  "
            f"early exit {exits[name]:.1%}"
        )
    best = min(equal, key=lambda m: equal[m]) if equal else None
    reduction = 1.0 - equal[best] / paper_calls if best is not None else 0.0
    metrics["call_reduction"] = round(reduction, 4)
    print(f"call_reduction {reduction:.3f} ({best or 'no variant at equal accuracy'})")

    path = write_result(
        "eval-calls",
        metrics=metrics,
        goals={
            "call_reduction": {
                "target": (
                    f">= {MIN_REDUCTION} = 1 - calls/question of the cheapest variant at equal "
                    "accuracy / paper GoA's; equal accuracy: acc_variant >= acc_goa - se_goa "
                    "(within one standard error of paper GoA, or better). Simulated pool only."
                ),
                "met": reduction >= MIN_REDUCTION,
            },
        },
        simulated=True,
        extra={
            "best_variant": best,
            "note": (
                "SIMULATED: goa.testing.simulated.simulated_pool with its default specs "
                f"(not tuned), {len(samples)} MMLU questions shuffled with seed {args.seed}. "
                "Paper GoA makes 10 calls (select, difficulty, 3 answers, 3 scores, forward and "
                "reverse refinement; max pooling makes none). The embedding selector saves the "
                "selection call only; early exit saves calls only when it fires (see "
                "early_exit_rate_*): unanimous early exit (early_exit=True) fires rarely, "
                "majority early exit (early_exit='majority': more than half of the selected "
                "agents give the same final answer) fires on most questions and skips the "
                "judges and message passing. The real-pool part of P2 is in "
                "eval-real-local.json when measured."
            ),
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
