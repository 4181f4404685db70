"""DAAN on Who&When: failure-attribution baselines on the 126 algorithm-generated cases.

Each case (``../shared/data/trust/who-and-when/algorithm-generated/*.json``, read by
:func:`trust.log_readers.read_who_and_when_dir`; ``--data`` for another folder) is a failed
multi-agent interaction labelled with the responsible agent and the decisive step. Every method
of :data:`METHODS` (``--methods`` keeps some) attributes every case in two settings: with the
ground-truth answer shown to the judge (the headline) and without it (``_no_gt``).

Judges
------
``--judge simulated`` (the default)
    :class:`trust.simulated_judge.SimulatedJudgeBackend`, which knows the labels and errs by
    a documented noise model (``DEFAULT_NOISE`` with the ground truth, ``DEFAULT_NOISE_NO_GT``
    without). **Every figure is then simulated** (``"simulated": true`` in the result file)
    and says nothing about a real model; it checks the harness and the methods' mechanics.
``--judge local:<card id>``
    A real model, through ``goa.inference.factory.backend_for_card(goa.cards.get_card(id))``.

Metrics, per method ``M`` (suffix ``_no_gt`` for the setting without the ground truth):
``agent_acc_M`` (the agent named is the labelled one), ``step_acc_M`` (the step is the
labelled one exactly), ``step_acc_pm1_M`` and ``step_acc_pm5_M`` (within 1 and 5 steps),
``tokens_M`` (mean prompt + completion tokens per case), ``calls_M`` (mean judge requests per
case) and ``fallback_M`` (share of cases where the method fell back on a default). Accuracies
are fractions of the cases. ``random`` uses no judge: its tokens are 0; nor do the two
reference points, ``graph_root`` (``cig`` without its judge) and ``first_step``
(:mod:`trust.attribution_references`), which say what a log's shape alone gives. The goal
``cig_beats_every_baseline`` compares ``cig`` with the Who&When baselines.

Published GPT-4o figures on this subset (agent / step accuracy in %, with ground truth), for
comparison with a real judge: random 29.1/19.1, all-at-once 54.3/12.5, step-by-step 35.2/25.5,
binary search 44.1/24.0.

Usage::

    .venv/bin/python -m benchmarks.daan_whowhen --out /tmp/daan
    .venv/bin/python -m benchmarks.daan_whowhen --judge local:qwen2.5-coder-1.5b \\
        --limit 10 --out /tmp/daan-real

writes ``daan-whowhen.json`` (project format) and ``daan-whowhen.cases.jsonl`` (one line per
case, method and setting) into ``--out`` (default ``benchmarks/results``).

Persistence and resume
----------------------
Attributions are scheduled case-major (for each case, every setting and method), at most
``--concurrency`` in flight, so that a run cut by ``--budget-s`` (or killed) completes whole
cases early. Each attribution is appended to the cases file as soon as it finishes (one JSON
line, flushed and fsynced: :class:`CasesFile`), so a killed or budget-cut run keeps
everything that finished. Each line carries the :class:`RunConfig` (judge,
``max_step_chars``, ``max_tokens``, ``max_retries``, seed, the engine that ran the judge) it
was made with. Without ``--resume`` the cases file is started afresh; with it, every
finished (case, method, setting) of the same configuration is read back and reused, and only
the missing ones are run (lines that do not parse, such as a torn last line, are skipped;
lines of another configuration are never reused). The metrics cover every finished result,
reused and new, of the cases that every (method, setting) finished; ``attributions_reused``
and ``attributions_run`` in the result file say how many were reused and how many were run
now. At the end the cases file is rewritten atomically: this run's finished results in the
(setting, method, case) order, so the file does not depend on the order attributions
finished in, then, unchanged, the lines read back that this run did not ask for (other
cases, methods or settings, other configurations), so that nothing finished is lost.

For a long real-judge run, repeat the same command with ``--resume`` until ``all_cases`` is
met (the cases file can be carried to another machine)::

    .venv/bin/python -m benchmarks.daan_whowhen --judge local:qwen2.5-coder-1.5b \\
        --budget-s 3000 --resume --out /tmp/daan-real
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.results_file import (
    RESULTS_DIR,
    engine_label,
    transformers_batching,
    write_result,
)
from goa.eval.datasets import shared_data_dir
from goa.eval.runlog import RunLog
from goa.inference.backend import Backend
from trust.attribution import METHODS as BASELINES
from trust.attribution import Attribution, AttributionMethod, Judge
from trust.attribution_prompts import DEFAULT_MAX_STEP_CHARS
from trust.attribution_references import EVERY_METHOD
from trust.interaction_log import InteractionLog
from trust.simulated_judge import DEFAULT_NOISE, DEFAULT_NOISE_NO_GT, SimulatedJudgeBackend

METHODS: dict[str, AttributionMethod] = EVERY_METHOD
"""Ours (``cig``, :mod:`trust.attribution_cig`), the Who&When baselines, and the judge-free
reference points of :mod:`trust.attribution_references` (not rivals in the goal)."""

NAME = "daan-whowhen"

PUBLISHED_GPT4O: dict[str, dict[str, float]] = {
    "random": {"agent_acc": 0.291, "step_acc": 0.191},
    "all_at_once": {"agent_acc": 0.543, "step_acc": 0.125},
    "step_by_step": {"agent_acc": 0.352, "step_acc": 0.255},
    "binary_search": {"agent_acc": 0.441, "step_acc": 0.240},
}
"""Zhang et al. 2025, GPT-4o, algorithm-generated subset, with ground truth."""

SETTINGS: dict[str, bool] = {"": True, "_no_gt": False}
"""Metric suffix -> whether the judge is shown the ground truth."""


def default_data_dir() -> Path:
    """The Who&When algorithm-generated folder of the shared data (``$GOA_SHARED_DATA``)."""
    return shared_data_dir() / "trust" / "who-and-when" / "algorithm-generated"


def load_cases(folder: Path) -> list[InteractionLog]:
    """Every labelled case of the folder, in numeric order (the one place that reads data)."""
    from trust.log_readers import read_who_and_when_dir

    return [log for log in read_who_and_when_dir(folder) if log.label is not None]


ResultKey = tuple[str, str, bool]
"""(case, method, with_ground_truth): what one attribution is of."""


@dataclass(frozen=True)
class CaseResult:
    """One method's attribution of one case in one setting, beside the label."""

    case: str
    method: str
    with_ground_truth: bool
    label_agent: str
    label_step: int
    attribution: Attribution

    @property
    def key(self) -> ResultKey:
        return (self.case, self.method, self.with_ground_truth)

    @property
    def agent_right(self) -> bool:
        return self.attribution.agent == self.label_agent

    def step_within(self, tolerance: int) -> bool:
        return abs(self.attribution.step - self.label_step) <= tolerance

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["attribution"] = self.attribution.model_dump(mode="json")
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> CaseResult:
        """The result :meth:`record` wrote (``KeyError``, ``TypeError`` or ``ValueError``
        when ``data`` is not one)."""
        return cls(
            case=str(data["case"]),
            method=str(data["method"]),
            with_ground_truth=bool(data["with_ground_truth"]),
            label_agent=str(data["label_agent"]),
            label_step=int(data["label_step"]),
            attribution=Attribution.model_validate(data["attribution"]),
        )


@dataclass(frozen=True)
class RunConfig:
    """The settings that change a run's attributions: lines made with another are not reused."""

    judge: str
    engine: str
    """What ran the judge: ``simulated``, or :func:`benchmarks.results_file.engine_label`."""
    max_step_chars: int | None
    max_tokens: int
    max_retries: int
    seed: int

    def record(self) -> dict[str, Any]:
        return asdict(self)


class CasesFile:
    """The cases JSONL file: one line per finished attribution, with the run's configuration.

    :meth:`start` begins the file afresh or, to resume, reads back what it holds;
    :meth:`append` adds one result durably as soon as it finishes (:class:`RunLog`'s whole-line
    appends: fsynced, a torn last line that a killed run left is ended first);
    :meth:`rewrite` replaces the file atomically (temp file, then :func:`os.replace`)."""

    def __init__(self, path: Path, config: RunConfig) -> None:
        self.path = path
        self.config = config
        self.found: list[CaseResult] = []
        """This configuration's results that :meth:`start` read back."""
        self.kept: list[str] = []
        """Lines that parse but are not this configuration's results: kept by :meth:`rewrite`."""

    def start(self, *, resume: bool) -> list[CaseResult]:
        """This configuration's results already in the file (with ``resume``; none without it,
        and the file is emptied)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume or not self.path.exists():
            self.path.write_text("", encoding="utf-8")
            return []
        self.found, self.kept = self._read()
        return list(self.found)

    def _read(self) -> tuple[list[CaseResult], list[str]]:
        results: dict[ResultKey, CaseResult] = {}
        kept: list[str] = []
        config = self.config.record()
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            data = _parse(line)
            if data is None:
                continue
            result = _result_of(data) if data.get("config") == config else None
            if result is None:
                kept.append(line)
            else:
                results.setdefault(result.key, result)
        return list(results.values()), kept

    def line(self, result: CaseResult) -> str:
        return json.dumps({**result.record(), "config": self.config.record()})

    def append(self, result: CaseResult) -> None:
        with RunLog(self.path) as log:
            log.append_raw((self.line(result) + "\n").encode("utf-8"))

    def rewrite(self, results: Sequence[CaseResult]) -> None:
        """The file holds ``results`` (in their order), then what :meth:`start` read back and
        ``results`` do not replace (another run's cases, methods or settings; lines of another
        configuration), so that nothing finished is lost."""
        keys = {result.key for result in results}
        others = [result for result in self.found if result.key not in keys]
        temp = self.path.with_name(self.path.name + ".tmp")
        with temp.open("w", encoding="utf-8") as f:
            for result in [*results, *others]:
                f.write(self.line(result) + "\n")
            for line in self.kept:
                f.write(line + "\n")
            _sync(f)
        os.replace(temp, self.path)


def _sync(f: IO[Any]) -> None:
    f.flush()
    os.fsync(f.fileno())


def _parse(line: str) -> dict[str, Any] | None:
    """The JSON object on the line, or None (a torn or foreign line)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _result_of(data: Mapping[str, Any]) -> CaseResult | None:
    try:
        return CaseResult.from_record(data)
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def reusable(
    found: Sequence[CaseResult],
    logs: Sequence[InteractionLog],
    methods: Sequence[str],
    settings: Sequence[bool],
) -> list[CaseResult]:
    """The results of ``found`` this run asks for, with the case's current label."""
    labels = {log.id: log.label for log in logs}
    keep: list[CaseResult] = []
    for result in found:
        label = labels.get(result.case)
        if (
            label is not None
            and result.method in methods
            and result.with_ground_truth in settings
            and (label.agent, label.step) == (result.label_agent, result.label_step)
        ):
            keep.append(result)
    return keep


def case_seed(seed: int, case: str, with_ground_truth: bool) -> int:
    """A seed per (run seed, case, setting), independent of the order cases are run in."""
    key = f"{seed}\x00{case}\x00{with_ground_truth}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def result_order(
    logs: Sequence[InteractionLog], methods: Sequence[str], settings: Sequence[bool]
) -> Callable[[CaseResult], tuple[int, int, int]]:
    """A sort key putting results in the order (setting, method, case) of the arguments."""
    case_at = {log.id: i for i, log in enumerate(logs)}
    method_at = {name: i for i, name in enumerate(methods)}
    setting_at = {truth: i for i, truth in enumerate(settings)}

    def key(result: CaseResult) -> tuple[int, int, int]:
        return (
            setting_at[result.with_ground_truth],
            method_at[result.method],
            case_at[result.case],
        )

    return key


def complete_cases(results: Sequence[CaseResult], every: int) -> list[CaseResult]:
    """The results of the cases that have ``every`` results (each (method, setting) done)."""
    per_case = Counter(result.case for result in results)
    return [result for result in results if per_case[result.case] == every]


async def attribute_all(
    logs: Sequence[InteractionLog],
    judge: Judge,
    methods: Mapping[str, AttributionMethod],
    *,
    settings: Sequence[bool] = (True, False),
    concurrency: int = 16,
    seed: int = 0,
    budget_s: float | None = None,
    reuse: Sequence[CaseResult] = (),
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every (case, setting, method) not in ``reuse``, scheduled case-major,
    ``concurrency`` attributions at a time; ``on_result`` is called with each as it
    finishes. Returns ``reuse`` and what finished, sorted in the order (setting, method,
    case). With ``budget_s``, what has not finished by then is cancelled and left out."""
    gate = asyncio.Semaphore(max(1, concurrency))
    have = {result.key for result in reuse}

    async def one(log: InteractionLog, name: str, truth: bool) -> CaseResult:
        assert log.label is not None
        async with gate:
            attribution = await methods[name](
                log, judge, with_ground_truth=truth, seed=case_seed(seed, log.id, truth)
            )
        result = CaseResult(log.id, name, truth, log.label.agent, log.label.step, attribution)
        if on_result is not None:
            on_result(result)
        return result

    tasks = [
        asyncio.ensure_future(one(log, name, truth))
        for log in logs
        for truth in settings
        for name in methods
        if (log.id, name, truth) not in have
    ]
    try:
        async with asyncio.timeout(budget_s):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    done = [t.result() for t in tasks if t.done() and not t.cancelled()]
    return sorted([*reuse, *done], key=result_order(logs, list(methods), settings))


async def run_all(
    logs: Sequence[InteractionLog],
    judge: Judge,
    methods: Mapping[str, AttributionMethod],
    *,
    settings: Sequence[bool] = (True, False),
    **options: Any,
) -> list[CaseResult]:
    """:func:`attribute_all` (``options``: its other keyword arguments), keeping only the
    cases every (method, setting) finished, so that every method is scored on the same cases;
    results in the order (setting, method, case)."""
    finished = await attribute_all(logs, judge, methods, settings=settings, **options)
    return complete_cases(finished, len(settings) * len(methods))


def _share(n: int, hits: int) -> float:
    return round(hits / n, 4)


def score(results: Sequence[CaseResult]) -> dict[str, float]:
    """The metrics (see the module) of every (method, setting) present in ``results``."""
    groups: dict[tuple[str, bool], list[CaseResult]] = {}
    for result in results:
        groups.setdefault((result.method, result.with_ground_truth), []).append(result)
    metrics: dict[str, float] = {}
    for (method, truth), group in groups.items():
        suffix = "" if truth else "_no_gt"
        n = len(group)

        metrics[f"agent_acc_{method}{suffix}"] = _share(n, sum(r.agent_right for r in group))
        metrics[f"step_acc_{method}{suffix}"] = _share(n, sum(r.step_within(0) for r in group))
        metrics[f"step_acc_pm1_{method}{suffix}"] = _share(n, sum(r.step_within(1) for r in group))
        metrics[f"step_acc_pm5_{method}{suffix}"] = _share(n, sum(r.step_within(5) for r in group))
        tokens = sum(r.attribution.total_tokens for r in group)
        metrics[f"tokens_{method}{suffix}"] = round(tokens / n, 1)
        metrics[f"calls_{method}{suffix}"] = round(sum(r.attribution.calls for r in group) / n, 2)
        metrics[f"fallback_{method}{suffix}"] = _share(
            n, sum(r.attribution.fallback for r in group)
        )
    return metrics


def judge_engine(spec: str) -> str:
    """The engine behind a ``local:<card id>`` judge (llama.cpp, transformers with or
    without a JSON grammar): attributions of one are not reused for another."""
    from goa.cards import get_card

    return engine_label(get_card(spec.removeprefix("local:")).backend)


def make_backend(spec: str, logs: Sequence[InteractionLog], seed: int) -> tuple[Backend, bool]:
    """The judge's backend for ``--judge`` and whether it is simulated."""
    if spec == "simulated":
        backend = SimulatedJudgeBackend.for_logs(
            logs, noise=DEFAULT_NOISE, noise_no_gt=DEFAULT_NOISE_NO_GT, seed=seed
        )
        return backend, True
    if spec.startswith("local:"):
        from goa.cards import get_card
        from goa.inference.factory import backend_for_card

        return backend_for_card(get_card(spec.removeprefix("local:"))), False
    raise SystemExit(f"--judge must be 'simulated' or 'local:<card id>', not {spec!r}")


def _table(metrics: Mapping[str, float], methods: Sequence[str], simulated: bool) -> str:
    title = "SIMULATED judge" if simulated else "real judge"
    lines = [
        f"Who&When attribution ({title}); accuracies in %, tokens and calls per case",
        f"{'method':<15}{'setting':<8}{'agent':>7}{'step':>7}{'±1':>7}{'±5':>7}"
        f"{'tokens':>10}{'calls':>7}{'fallbk':>8}",
    ]
    for method in methods:
        for suffix, name in (("", "gt"), ("_no_gt", "no gt")):
            key = f"{method}{suffix}"
            if f"agent_acc_{key}" not in metrics:
                continue
            lines.append(
                f"{method:<15}{name:<8}"
                f"{100 * metrics[f'agent_acc_{key}']:>7.1f}"
                f"{100 * metrics[f'step_acc_{key}']:>7.1f}"
                f"{100 * metrics[f'step_acc_pm1_{key}']:>7.1f}"
                f"{100 * metrics[f'step_acc_pm5_{key}']:>7.1f}"
                f"{metrics[f'tokens_{key}']:>10.0f}"
                f"{metrics[f'calls_{key}']:>7.2f}"
                f"{100 * metrics[f'fallback_{key}']:>8.1f}"
            )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--judge", default="simulated", help="simulated | local:<card id>")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument(
        "--settings", choices=["both", "gt", "no_gt"], default="both", help="ground truth shown"
    )
    parser.add_argument("--data", type=Path, default=None, help="Who&When case folder")
    parser.add_argument("--limit", type=int, default=None, help="the first N cases only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16, help="attributions at a time")
    parser.add_argument("--budget-s", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--max-step-chars", type=int, default=DEFAULT_MAX_STEP_CHARS)
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished attributions of the cases file (same settings); run the rest",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--note",
        default="",
        help="a line kept in the result file (e.g. where the reused attributions were made)",
    )
    return parser


def _goals(
    metrics: Mapping[str, float],
    methods: Sequence[str],
    settings: Sequence[bool],
    n_logs: int,
    complete: bool,
) -> dict[str, dict[str, Any]]:
    goals: dict[str, dict[str, Any]] = {
        "all_cases": {
            "target": f"every method attributes all {n_logs} cases in every setting",
            "met": complete and n_logs > 0,
        },
    }
    if "cig" in methods and "step_by_step" in methods and True in settings:
        rivals = [m for m in methods if m in BASELINES]  # the Who&When baselines
        ours = metrics.get("agent_acc_cig", 0.0)
        goals["cig_beats_every_baseline"] = {
            "target": "cig's agent-level accuracy (ground truth shown) above every baseline's, "
            "with the same judge, at fewer tokens per case than step-by-step",
            "met": all(ours > metrics.get(f"agent_acc_{m}", 1.0) for m in rivals)
            and metrics.get("tokens_cig", 0.0) < metrics.get("tokens_step_by_step", 0.0),
        }
    return goals


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    methods = {m: METHODS[m] for m in names}
    settings = {"both": (True, False), "gt": (True,), "no_gt": (False,)}[args.settings]

    logs = load_cases(args.data or default_data_dir())[: args.limit]
    backend, simulated = make_backend(args.judge, logs, args.seed)
    judge = Judge(
        backend,
        id=f"judge:{args.judge}",
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
        seed=args.seed,
        max_step_chars=args.max_step_chars,
    )
    config = RunConfig(
        judge=args.judge,
        engine="simulated" if simulated else judge_engine(args.judge),
        max_step_chars=args.max_step_chars,
        max_tokens=args.max_tokens,
        max_retries=args.max_retries,
        seed=args.seed,
    )
    # A real judge writes daan-whowhen.json (the headline); the simulated judge
    # daan-whowhen-simulated.json beside it, so neither run overwrites the other.
    name = f"{NAME}-simulated" if simulated else NAME
    cases_file = CasesFile(args.out / f"{name}.cases.jsonl", config)
    reuse = reusable(cases_file.start(resume=args.resume), logs, names, settings)
    started = time.perf_counter()
    finished = asyncio.run(
        attribute_all(
            logs,
            judge,
            methods,
            settings=settings,
            concurrency=args.concurrency,
            seed=args.seed,
            budget_s=args.budget_s,
            reuse=reuse,
            on_result=cases_file.append,
        )
    )
    elapsed = time.perf_counter() - started
    cases_file.rewrite(finished)
    results = complete_cases(finished, len(settings) * len(methods))
    metrics = score(results)
    print(_table(metrics, names, simulated))

    complete = len(results) == len(logs) * len(methods) * len(settings)
    extra: dict[str, Any] = {
        "judge": "SIMULATED (trust.simulated_judge)" if simulated else args.judge,
        "cases": len({r.case for r in results}),
        "cases_asked": len(logs),
        "methods": names,
        "max_step_chars": args.max_step_chars,
        "elapsed_s": round(elapsed, 1),
        "attributions_reused": len(reuse),
        "attributions_run": len(finished) - len(reuse),
        "attributions_asked": len(logs) * len(methods) * len(settings),
        "published_gpt4o_with_gt": PUBLISHED_GPT4O,
        "batching": transformers_batching(),
    }
    if args.note:
        extra["note"] = args.note
    if simulated:
        extra["noise"] = asdict(DEFAULT_NOISE)
        extra["noise_no_gt"] = asdict(DEFAULT_NOISE_NO_GT)
    path = write_result(
        name,
        metrics=metrics,
        goals=_goals(metrics, names, settings, len(logs), complete),
        simulated=simulated,
        extra=extra,
        directory=args.out,
    )
    print(f"wrote {path} and {cases_file.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
