"""LLM calls per question for each GoA configuration (paper GoA, pooling, early exit, selectors).

Every model is a scripted agent (:class:`goa.testing.agents.Agent`): the panel
of ``benchmarks.goa_latency`` (cards ``a``, ``b``, ``c`` answering A, B, C and a
larger meta model ``m`` answering D; judges rank ``b`` over ``a`` over ``c``),
``k = 3`` of a 4-card pool so that the ``llm`` selector makes its call. Every
reply is usable, so there are no retries; the counts are those of a clean run
(a retry or a dropped agent changes them; see the result's ``incidents``).

Configurations (metric ``calls_<name>``, LLM calls per question):

- ``paper_max``: paper GoA, max pooling (1 select + 3 answers + 3 judges +
  2 forward + 1 reverse); ``paper_mean``: mean pooling (+1 reverse, +1 synthesis).
- ``early_exit_agree`` / ``early_exit_disagree``: ``early_exit=True`` when the
  three selected agents give the same final answer (stages 3-6 skipped) and
  when they do not (no call is added, so it costs the same as paper GoA).
  ``early_exit_agree_calls_fraction`` = agree / paper_max; with a share ``p``
  of questions on which the agents agree, the expected calls are
  ``paper_max - p x (paper_max - agree)``.
- ``embedding``: the ``embedding`` selector; no LLM call to select. The real
  :mod:`goa.embedding` is NOT used: a stand-in module with a deterministic
  ``embed`` (vectors from SHA-256 of each text) is put in ``sys.modules``
  while it runs, so no model is fetched or loaded. It changes which agents
  are picked, never the number of LLM calls (the selector makes none).
- ``profile``: ranked by the cards' measured accuracy, then size (no call);
  ``all``: every card of the pool answers (4 agents, ``k`` ignored).
- ``adaptive_easy`` / ``adaptive_medium`` / ``adaptive_hard``: ``adaptive_k``,
  the meta model rates difficulty 1 / 2 / 3, so k becomes 1 / 2 / 3 (the rating
  and the selection calls are made either way, concurrently).
- ``rounds2``: two rounds of forward and reverse passing (the first round's
  reverse pass covers every agent but the last, the last round's only the top).
- ``sequential``: paper GoA with ``sequential=True``: the same calls, one at a time.

Also per configuration (in ``configs`` of the JSON and in ``goa-calls.md``): calls
by stage, the sequential stages (critical path, counted as in
``benchmarks.goa_latency``), and prompt and completion sizes. Sizes are the
scripted backend's token count, whitespace-separated words: the prompts are the
project's real prompts, so prompt words compare configurations fairly; the
completions are canned replies, so completion words mean little.

Simulated: scripted models, no model runs. Usage:
``.venv/bin/python -m benchmarks.goa_calls [--questions N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.goa_latency import answer, sequential_stages
from benchmarks.results_file import RESULTS_DIR, write_result
from goa.result import STAGES, Result
from goa.testing.agents import Agent, agent, judge_by, make_goa

K = 3
SELECT = '{"selected": [1, 2, 3]}'


def panel(*, agree: bool = False, difficulty: int | None = None) -> dict[str, Agent]:
    """a, b, c (answering A, B, C, or all A when ``agree``) and a larger meta model m."""
    judge = judge_by({"B": 6, "A": 3, "C": 1, "D": 1})
    meta: dict[str, str] = {"select": SELECT, "pool": "synthesis\nAnswer: B"}
    if difficulty is not None:
        meta["difficulty"] = f'{{"difficulty": {difficulty}}}'
    letters = "AAA" if agree else "ABC"
    return {
        "a": agent("a", answer(letters[0]), score=judge, forward="refined by a\nAnswer: A"),
        "b": agent("b", answer(letters[1]), score=judge, reverse="reverse by b\nAnswer: B"),
        "c": agent("c", answer(letters[2]), score=judge, forward="refined by c\nAnswer: B"),
        "m": agent("m", answer("D"), score=judge, **meta),
    }


def fake_embed(texts: Sequence[str], kind: str = "query") -> list[list[float]]:
    """Deterministic 16-dimensional vectors from each text's SHA-256 (no model)."""
    vectors = []
    for text in texts:
        digest = hashlib.sha256(f"{kind}: {text}".encode()).digest()
        vectors.append([b / 255.0 - 0.5 for b in digest[:16]])
    return vectors


@contextmanager
def stand_in_embedding() -> Iterator[None]:
    """``goa.embedding`` replaced by a module whose ``embed`` is :func:`fake_embed`."""
    module = types.ModuleType("goa.embedding")
    module.embed = fake_embed  # type: ignore[attr-defined]
    saved = sys.modules.get("goa.embedding")
    sys.modules["goa.embedding"] = module
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["goa.embedding"]
        else:
            sys.modules["goa.embedding"] = saved


@dataclass
class Config:
    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    agents: Callable[[], dict[str, Agent]] = panel
    expect_early_exit: bool = False


CONFIGS = [
    Config("paper_max", "paper GoA, k=3, max pooling"),
    Config("paper_mean", "paper GoA, k=3, mean pooling", {"pooling": "mean"}),
    Config(
        "early_exit_agree",
        "early exit, initial answers agree",
        {"early_exit": True},
        lambda: panel(agree=True),
        expect_early_exit=True,
    ),
    Config("early_exit_disagree", "early exit, initial answers differ", {"early_exit": True}),
    Config("embedding", "embedding selector (stand-in embed)", {"selector": "embedding"}),
    Config("profile", "profile selector", {"selector": "profile"}),
    Config("all", "all selector (4 of 4 agents)", {"selector": "all"}),
    Config(
        "adaptive_easy",
        "adaptive k, difficulty 1 (k=1)",
        {"adaptive_k": True},
        lambda: panel(difficulty=1),
    ),
    Config(
        "adaptive_medium",
        "adaptive k, difficulty 2 (k=2)",
        {"adaptive_k": True},
        lambda: panel(difficulty=2),
    ),
    Config(
        "adaptive_hard",
        "adaptive k, difficulty 3 (k=3)",
        {"adaptive_k": True},
        lambda: panel(difficulty=3),
    ),
    Config("rounds2", "paper GoA, rounds=2", {"rounds": 2}),
    Config("sequential", "paper GoA, sequential mode", {"sequential": True}),
]


def stage_calls(stage: str) -> Callable[[Result], float]:
    """A function giving the number of calls a result made in ``stage``."""

    def calls(result: Result) -> float:
        summary = result.stages.get(stage)
        return summary.totals.calls if summary is not None else 0

    return calls


@dataclass
class Measured:
    config: Config
    results: list[Result]

    def mean(self, value: Callable[[Result], float]) -> float:
        return statistics.fmean(value(r) for r in self.results)

    @property
    def calls(self) -> float:
        return self.mean(lambda r: r.totals.calls)

    def summary(self) -> dict[str, Any]:
        by_stage = {stage: self.mean(stage_calls(stage)) for stage in STAGES}
        first = self.results[0]
        return {
            "label": self.config.label,
            "options": self.config.options,
            "calls": number(self.calls),
            "calls_by_stage": {s: number(n) for s, n in by_stage.items() if n},
            "sequential_stages": number(self.mean(sequential_stages)),
            "agents": len(first.selected),
            "prompt_words": number(self.mean(lambda r: r.totals.prompt_tokens)),
            "completion_words": number(self.mean(lambda r: r.totals.completion_tokens)),
            "early_exit": first.early_exit,
            "final_answer": first.final_answer,
            "reason": first.reason,
        }


def check(config: Config, result: Result) -> None:
    """Stop if a run did not go the way the configuration means (so counts stay honest)."""
    problems = []
    if not result.answered:
        problems.append(f"no answer: {result.reason}")
    if result.incidents:
        problems.append(f"incidents: {[i.message for i in result.incidents]}")
    if result.early_exit != config.expect_early_exit:
        problems.append(f"early_exit is {result.early_exit}")
    if config.name == "embedding" and not all(
        s.reason.startswith("embedding:") for s in result.selected
    ):
        problems.append(f"not selected by embedding: {[s.reason for s in result.selected]}")
    if problems:
        raise RuntimeError(f"{config.name}: " + "; ".join(problems))


async def measure(config: Config, questions: list[str]) -> Measured:
    goa = make_goa(config.agents(), sizes={"m": 7.0}, k=K, **config.options)
    results = []
    for question in questions:
        result = await goa.arun(question)
        check(config, result)
        results.append(result)
    return Measured(config, results)


async def measure_all(questions: list[str]) -> list[Measured]:
    with stand_in_embedding():
        return [await measure(config, questions) for config in CONFIGS]


def number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


def markdown(measured: list[Measured], metrics: dict[str, float | int]) -> str:
    lines = [
        "# LLM calls per question (scripted agents, simulated)",
        "",
        "Written by `.venv/bin/python -m benchmarks.goa_calls`; see `goa-calls.json`.",
        "4-card pool (3 agents and a larger meta model), k=3, one clean run (no retries).",
        "Words: whitespace-separated words of the real prompts (the scripted token count).",
        "",
        "| configuration | calls | by stage | sequential stages | agents | prompt words |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for m in measured:
        s = m.summary()
        stages = ", ".join(f"{k} {number(v)}" for k, v in s["calls_by_stage"].items())
        lines.append(
            f"| `{m.config.name}`: {s['label']} | {number(s['calls'])} | {stages} "
            f"| {number(s['sequential_stages'])} | {s['agents']} | {number(s['prompt_words'])} |"
        )
    lines += [
        "",
        f"Early exit: {metrics['calls_early_exit_agree']} calls when the initial answers agree, "
        f"{metrics['calls_early_exit_disagree']} when they differ "
        f"(agree / paper = {metrics['early_exit_agree_calls_fraction']}); "
        "with a share p of agreeing questions: "
        f"{metrics['calls_paper_max']} - p x "
        f"{number(metrics['calls_paper_max'] - metrics['calls_early_exit_agree'])} calls.",
        "",
        "The embedding selector ran with a stand-in `embed` (SHA-256 vectors, no model loaded);",
        "it makes no LLM call either way.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    questions = [
        f"Question {i + 1}: which option is right? A, B or C?" for i in range(args.questions)
    ]
    measured = asyncio.run(measure_all(questions))
    by_name = {m.config.name: m for m in measured}

    metrics: dict[str, float | int] = {f"calls_{m.config.name}": number(m.calls) for m in measured}
    paper = by_name["paper_max"].calls
    metrics["early_exit_agree_calls_fraction"] = round(by_name["early_exit_agree"].calls / paper, 4)
    metrics["early_exit_disagree_calls_fraction"] = round(
        by_name["early_exit_disagree"].calls / paper, 4
    )
    metrics["mean_vs_max_extra_calls"] = number(by_name["paper_mean"].calls - paper)
    metrics["prompt_words_paper_max"] = number(
        by_name["paper_max"].mean(lambda r: r.totals.prompt_tokens)
    )
    metrics["prompt_words_paper_mean"] = number(
        by_name["paper_mean"].mean(lambda r: r.totals.prompt_tokens)
    )
    metrics["questions"] = len(questions)
    metrics["k"] = K

    # Expected counts, from the formula in goa/pipeline.py's docstring (k = 3).
    expected = {
        "calls_paper_max": 1 + K + K + (K - 1) + 1,
        "calls_paper_mean": 1 + K + K + (K - 1) + (K - 1) + 1,
        "calls_embedding": K + K + (K - 1) + 1,
        "calls_sequential": metrics["calls_paper_max"],
        "calls_early_exit_disagree": metrics["calls_paper_max"],
    }
    goals: dict[str, dict[str, Any]] = {
        name: {"target": f"== {want}", "met": metrics[name] == want}
        for name, want in expected.items()
    }
    goals["calls_early_exit_agree"] = {
        "target": f"< calls_paper_max ({metrics['calls_paper_max']})",
        "met": metrics["calls_early_exit_agree"] < metrics["calls_paper_max"],
    }

    path = write_result(
        "goa-calls",
        metrics=metrics,
        goals=goals,
        simulated=True,
        extra={
            "note": (
                "Simulated: scripted agents (goa.testing.agents), no model runs; 4-card pool, "
                "k=3, clean runs without retries. The embedding selector used a stand-in "
                "goa.embedding.embed (SHA-256 vectors), not the real embedding model. Token "
                "counts are the scripted backend's whitespace word counts."
            ),
            "configs": {m.config.name: m.summary() for m in measured},
        },
    )
    table = RESULTS_DIR / "goa-calls.md"
    table.write_text(markdown(measured, metrics), encoding="utf-8")
    for m in measured:
        print(f"{m.config.name:20} {number(m.calls):>5} calls  {m.config.label}")
    met = all(g["met"] for g in goals.values())
    print(f"goals {'met' if met else 'NOT met'} -> {path}, {table}")


if __name__ == "__main__":
    main()
