"""P3 (SIMULATED): how busy the runner keeps its concurrency limit over 500 questions.

Paper GoA (k=3, LLM selector, max pooling, one round: 10 calls in 5 sequential
stages) over :func:`~goa.testing.simulated.simulated_pool`, every agent with a
fixed latency ``--latency`` seconds per call (default 0.03; the default specs
otherwise unchanged), runs ``--questions`` MMLU questions (default 500) through
:func:`~goa.eval.runner.run_eval` with ``concurrency=--limit`` (default 64). No
model runs: every figure is simulated.

Measurement: the method is wrapped so that each ``solve`` records its start and
end (``time.perf_counter()``). Busy time is integrated exactly from these
timestamps: ``busy = sum over questions of (end - start)``, which equals the
integral over time of the number of questions in flight.

- ``utilization`` = busy / (limit x wall), where ``wall`` is the span from the
  first solve's start to the last solve's end (the time the run is answering
  questions). Goal >= 0.90.
- ``utilization_run_eval`` = busy / (limit x run_eval's wall), which also counts
  opening the log, its last appends and the summary.
- ``ideal_utilization`` = n / (limit x ceil(n / limit)): the best possible with
  equal question times (the last wave cannot fill the limit).
- ``max_in_flight``: the largest number of questions in flight at once.
- ``calls_in_flight_mean``: the mean number of model calls in flight over the
  same wall (agents wrapped likewise).

Usage: ``.venv/bin/python -m benchmarks.eval_throughput [--questions N]
[--limit C] [--latency S]``. The run log goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.eval_simulated import K
from benchmarks.results_file import write_result
from goa.baselines import GoAMethod
from goa.eval.datasets import load_dataset
from goa.eval.method import Method, MethodOutcome
from goa.eval.runner import run_eval
from goa.inference.types import ChatRequest, Completion
from goa.pipeline import GraphOfAgents
from goa.testing.simulated import SimAgentSpec, SimulatedAgent, default_specs, simulated_pool

MIN_UTILIZATION = 0.90


class Spans:
    """Start and end times of things in flight, and the most in flight at once."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.now = 0
        self.peak = 0

    def enter(self) -> float:
        self.now += 1
        self.peak = max(self.peak, self.now)
        return time.perf_counter()

    def leave(self, start: float) -> None:
        self.now -= 1
        self.spans.append((start, time.perf_counter()))

    def busy_within(self, low: float, high: float) -> float:
        return sum(max(0.0, min(e, high) - max(s, low)) for s, e in self.spans)


class Instrumented:
    """A method whose solves are timed (see the module docstring)."""

    def __init__(self, inner: Method, spans: Spans) -> None:
        self.inner = inner
        self.spans = spans

    @property
    def name(self) -> str:
        return self.inner.name

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        start = self.spans.enter()
        try:
            return await self.inner.solve(question, answer_format=answer_format)
        finally:
            self.spans.leave(start)


class TimedAgent(SimulatedAgent):
    """A simulated agent whose calls are timed."""

    def __init__(self, inner: SimulatedAgent, spans: Spans) -> None:
        super().__init__(inner.spec, inner.key, seed=inner.seed)
        self.spans = spans

    async def complete(self, request: ChatRequest) -> Completion:
        start = self.spans.enter()
        try:
            return await super().complete(request)
        finally:
            self.spans.leave(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--limit", type=int, default=64, help="the concurrency limit")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    samples = load_dataset("mmlu", seed=args.seed, limit=args.questions)
    specs: list[SimAgentSpec] = [replace(s, latency_s=args.latency) for s in default_specs()]
    pool, agents = simulated_pool(samples, seed=args.seed, specs=specs)
    calls = Spans()
    timed = {name: TimedAgent(agent, calls) for name, agent in agents.items()}
    solves = Spans()
    method = Instrumented(GoAMethod(GraphOfAgents(pool, k=K, backends=timed), name="goa"), solves)

    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        summary = asyncio.run(
            run_eval(
                method,
                samples,
                log_path=Path(tmp) / "run.jsonl",
                dataset="mmlu",
                concurrency=args.limit,
            )
        )

    first = min(s for s, _ in solves.spans)
    last = max(e for _, e in solves.spans)
    wall = last - first
    busy = solves.busy_within(first, last)
    n = len(solves.spans)
    utilization = busy / (args.limit * wall)
    ideal = n / (args.limit * math.ceil(n / args.limit))
    durations = sorted(e - s for s, e in solves.spans)
    metrics: dict[str, float | int] = {
        "utilization": round(utilization, 4),
        "utilization_run_eval": round(busy / (args.limit * summary.wall_s), 4),
        "ideal_utilization": round(ideal, 4),
        "questions": n,
        "concurrency_limit": args.limit,
        "latency_s": args.latency,
        "max_in_flight": solves.peak,
        "wall_s": round(wall, 3),
        "run_eval_wall_s": round(summary.wall_s, 3),
        "question_s_median": round(durations[len(durations) // 2], 4),
        "question_s_max": round(durations[-1], 4),
        "calls_per_question": round(summary.calls / summary.n, 3),
        "calls_in_flight_mean": round(calls.busy_within(first, last) / wall, 2),
        "calls_in_flight_max": calls.peak,
        "questions_per_s": round(n / wall, 2),
        "accuracy": round(summary.accuracy, 4),
        "errors": summary.errors,
    }
    for key, value in metrics.items():
        print(f"{key:24s} {value}")
    path = write_result(
        "eval-throughput",
        metrics=metrics,
        goals={
            "utilization": {
                "target": (
                    f">= {MIN_UTILIZATION}: sum over questions of solve time / (limit x wall), "
                    "wall = first solve start to last solve end; exact integral of questions "
                    "in flight from timestamps. Simulated pool."
                ),
                "met": utilization >= MIN_UTILIZATION,
            },
        },
        simulated=True,
        extra={
            "note": (
                "SIMULATED: goa.testing.simulated.simulated_pool, default specs with "
                f"latency_s={args.latency} per call; paper GoA k={K} through "
                f"goa.eval.runner.run_eval(concurrency={args.limit}); {n} MMLU questions "
                f"shuffled with seed {args.seed}. The last wave cannot fill the limit, hence "
                "ideal_utilization < 1."
            ),
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
