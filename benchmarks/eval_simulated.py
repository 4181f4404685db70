"""SIMULATED: accuracy and calls per question of every method on the multiple-choice sets.

Every agent is a :class:`~goa.testing.simulated.SimulatedAgent` of
:func:`~goa.testing.simulated.simulated_pool` (its default six specs: four
domain experts at 0.85 on their MMLU category, 0.5 elsewhere; a weak generalist
at 0.4 and a large generalist at 0.6, the meta model). No model runs: every
figure here is simulated. The agents are given to each method as ``backends=``
(:func:`~goa.eval.method_specs.build_method` takes no backends, so the methods
are built here directly with the same defaults as there).

Methods (all through :func:`~goa.eval.runner.run_eval`, one shared pool):

- ``goa``: paper GoA, k=3, LLM selector, max pooling, one round.
- ``goa-early-exit``: the same with ``early_exit=True``.
- ``goa-embedding``: the same with ``selector="embedding"`` (the real local
  embedding model of :mod:`goa.embedding`, multilingual-e5-small; no LLM call).
- ``goa-embedding-early-exit``: both.
- ``goa-majority-exit``: paper GoA stopping after the answers when more than
  half of the agents agree (``early_exit="majority"``).
- ``goa-embedding-majority-exit``: that with the embedding selector.
- ``goa-random``: GoA over 3 agents drawn at random per question (ablation).
- ``single:<agent>``: each agent alone (1 call). ``single`` in the summary is
  the pool's largest card (the default of ``goa eval``); ``best_single`` is the
  agent with the best accuracy *on that set* (an oracle choice, made on the
  test questions themselves).
- ``moa``: Mixture-of-Agents, all six propose, 2 layers, the largest card aggregates.
- ``self-moa``: the largest card sampled 4 times, then aggregated by itself.
- ``vote``: majority vote of all six.

Caveats of the simulated pool, which bound what these figures can say:

- A simulated agent's answer is deterministic per (seed, agent, question):
  Self-MoA's four samples are the same answer, so Self-MoA equals the single
  model by construction.
- The simulated agents know no ``aggregate`` stage: an MoA aggregator (and a
  Self-MoA aggregator) answers with its own first answer, so MoA equals the
  aggregator alone by construction.
- GPQA and MedMCQA samples carry no MMLU category, so every agent answers them
  at its ``default_accuracy`` (0.5 / 0.4 / 0.6): no agent is an expert there.
- MATH-500, AIME and HumanEval are not multiple choice: the simulated pool
  cannot answer them (it only knows letter answers), so they are left out.

Usage: ``.venv/bin/python -m benchmarks.eval_simulated [--mmlu N] [--seed S]``.
The per-sample logs go to a temporary directory (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.results_file import RESULTS_DIR, write_result
from goa.baselines import GoAMethod, MajorityVote, MixtureOfAgents, SelfMoA, SingleModel, random_goa
from goa.eval.datasets import Sample, load_dataset
from goa.eval.method import Method
from goa.eval.runner import RunSummary, run_eval
from goa.inference.backend import Backend
from goa.pipeline import GraphOfAgents, largest_card
from goa.pools import Pool
from goa.testing.simulated import simulated_pool

K = 3
SETS: dict[str, int | None] = {"mmlu": 300, "mmlu-pro": 50, "gpqa": 198, "medmcqa": 100}
NOT_SUPPORTED = ("math", "aime", "humaneval")
GOA_VARIANTS: dict[str, dict[str, object]] = {
    "goa": {},
    "goa-early-exit": {"early_exit": True},
    "goa-embedding": {"selector": "embedding"},
    "goa-embedding-early-exit": {"selector": "embedding", "early_exit": True},
    "goa-majority-exit": {"early_exit": "majority"},
    "goa-embedding-majority-exit": {"selector": "embedding", "early_exit": "majority"},
}


def goa_variant(
    name: str, pool: Pool, backends: Mapping[str, Backend], **options: object
) -> GoAMethod:
    """Paper GoA (k=3, LLM selector, max pooling, 1 round) with ``options`` changed."""
    graph = GraphOfAgents(pool, k=K, backends=backends, **options)  # type: ignore[arg-type]
    return GoAMethod(graph, name=name)


def build_methods(
    pool: Pool, backends: Mapping[str, Backend], *, goa_only: bool = False
) -> list[Method]:
    """Every compared method over the simulated ``pool`` (see the module docstring)."""
    methods: list[Method] = [
        goa_variant(name, pool, backends, **opts) for name, opts in GOA_VARIANTS.items()
    ]
    if goa_only:
        return methods
    ids = [card.id for card in pool.cards]
    top = largest_card(pool.cards).id
    methods.append(random_goa(pool, K, seed=0, backends=backends))
    methods += [SingleModel(a, name=f"single:{a}", pool=pool, backends=backends) for a in ids]
    methods.append(MixtureOfAgents(ids, top, layers=2, pool=pool, backends=backends))
    methods.append(SelfMoA(top, samples=4, pool=pool, backends=backends))
    methods.append(MajorityVote(ids, name="vote", pool=pool, backends=backends))
    return methods


async def run_methods(
    methods: Sequence[Method],
    samples: Sequence[Sample],
    *,
    dataset: str,
    log_dir: Path,
    concurrency: int = 32,
) -> dict[str, RunSummary]:
    """Each method over ``samples``, one after the other, logged under ``log_dir``."""
    out: dict[str, RunSummary] = {}
    for method in methods:
        log = log_dir / f"{dataset}-{method.name.replace(':', '_')}.jsonl"
        out[method.name] = await run_eval(
            method, samples, log_path=log, dataset=dataset, concurrency=concurrency
        )
    return out


def per_question(summary: RunSummary) -> float:
    return summary.calls / summary.n if summary.n else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mmlu", type=int, default=SETS["mmlu"], help="MMLU questions")
    parser.add_argument("--seed", type=int, default=0, help="shuffle and simulation seed")
    args = parser.parse_args()
    sizes = {**SETS, "mmlu": args.mmlu}

    metrics: dict[str, float | int] = {}
    table: dict[str, dict[str, dict[str, float | int | str]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eval-simulated-") as tmp:
        for dataset, limit in sizes.items():
            samples = load_dataset(dataset, seed=args.seed, limit=limit)
            pool, agents = simulated_pool(samples, seed=args.seed)
            top = largest_card(pool.cards).id
            methods = build_methods(pool, agents)
            summaries = asyncio.run(
                run_methods(methods, samples, dataset=dataset, log_dir=Path(tmp))
            )
            singles = {m: s for m, s in summaries.items() if m.startswith("single:")}
            best = max(singles, key=lambda m: singles[m].accuracy)
            rows: dict[str, dict[str, float | int | str]] = {}
            for name, s in summaries.items():
                rows[name] = {
                    "n": s.n,
                    "accuracy": round(s.accuracy, 4),
                    "se": round(s.se, 4),
                    "calls_per_question": round(per_question(s), 3),
                    "no_answer": s.no_answer,
                    "errors": s.errors,
                }
            rows["single"] = {**rows[f"single:{top}"], "agent": top}
            rows["best_single"] = {**rows[best], "agent": best.removeprefix("single:")}
            table[dataset] = rows
            for name in (*GOA_VARIANTS, "goa-random", "single", "best_single"):
                tag = f"{dataset}_{name}".replace("-", "_")
                metrics[f"acc_{tag}"] = rows[name]["accuracy"]  # type: ignore[assignment]
                metrics[f"se_{tag}"] = rows[name]["se"]  # type: ignore[assignment]
                metrics[f"calls_{tag}"] = rows[name]["calls_per_question"]  # type: ignore[assignment]
            for name in ("moa", "self-moa", "vote"):
                tag = f"{dataset}_{name}".replace("-", "_")
                metrics[f"acc_{tag}"] = rows[name]["accuracy"]  # type: ignore[assignment]
                metrics[f"se_{tag}"] = rows[name]["se"]  # type: ignore[assignment]
                metrics[f"calls_{tag}"] = rows[name]["calls_per_question"]  # type: ignore[assignment]
            print(f"{dataset} (n={len(samples)}):")
            for name, row in rows.items():
                print(
                    f"  {name:28s} acc {row['accuracy']:.3f} +- {row['se']:.3f}  "
                    f"calls/q {row['calls_per_question']:.2f}"
                )
    metrics["wall_s"] = round(time.perf_counter() - started, 1)

    path = write_result(
        "eval-simulated",
        metrics=metrics,
        goals={},
        simulated=True,
        extra={
            "note": (
                "SIMULATED: goa.testing.simulated.simulated_pool (default six specs), no model "
                "runs. Sets: "
                + ", ".join(f"{d} n={n}" for d, n in sizes.items())
                + f", shuffled with seed {args.seed}. Accuracy +- SE = sqrt(p(1-p)/n). "
                "best_single is chosen on the test questions (oracle). Self-MoA's samples are "
                "identical and the simulated agents have no 'aggregate' behaviour (they answer "
                "with their own first answer), so Self-MoA and MoA equal their aggregator alone "
                "by construction. GPQA and MedMCQA carry no MMLU category: every agent answers "
                "at its default accuracy there. goa-embedding uses the real local embedding "
                "model (goa.embedding, multilingual-e5-small)."
            ),
            "not_supported": {
                name: "not multiple choice: the simulated pool only answers letter questions"
                for name in NOT_SUPPORTED
            },
            "table": table,
        },
    )
    _write_markdown(table, RESULTS_DIR / "eval-simulated.md")
    print(f"-> {path}")


def _write_markdown(table: dict[str, dict[str, dict[str, float | int | str]]], path: Path) -> None:
    lines = [
        "# Simulated evaluation (SIMULATED pool, no model runs)",
        "",
        "Produced by `.venv/bin/python -m benchmarks.eval_simulated`; see eval-simulated.json.",
        "",
    ]
    for dataset, rows in table.items():
        lines += [
            f"## {dataset}",
            "",
            "| method | accuracy ± SE | calls/question |",
            "|---|---|---|",
        ]
        for name, row in rows.items():
            agent = f" ({row['agent']})" if "agent" in row else ""
            lines.append(
                f"| {name}{agent} | {row['accuracy']:.3f} ± {row['se']:.3f} "
                f"| {row['calls_per_question']:.2f} |"
            )
        lines.append("")
    lines.append(
        "MATH-500, AIME and HumanEval: not supported by the simulated pool (not multiple choice)."
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
