"""The evaluation runner: every method, every sample, one log line each.

:func:`run_eval` asks a :class:`~goa.eval.method.Method` each sample's question
(:func:`~goa.eval.formatting.question_text`, with the sample's
:func:`~goa.eval.formatting.answer_format`), at most ``concurrency`` at once,
checks the reply (multiple choice: the final letter among the options the
question has; math: ``math-verify`` equivalence; code: the last code block run
against the tests in the sandbox) and appends the sample's line to the run log
as soon as it is done (:mod:`goa.eval.runlog`).

Resume: samples already in the log for this method are skipped, so a run killed
at any point (SIGKILL included) continues where it stopped; with the response
cache the calls of the samples in flight are not repeated either.

A method that raises is logged for that sample (the error in ``errors``, scored
wrong, no answer); the run goes on. Cancellation stops the run; every finished
sample is already on disk.

:func:`summarize` computes the same :class:`RunSummary` from a log.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from goa.eval.checking import Check, check_math, check_multiple_choice
from goa.eval.datasets import Sample
from goa.eval.formatting import answer_format, extract_code, question_text
from goa.eval.method import Method, MethodOutcome
from goa.eval.runlog import LogContents, LogRecord, RunLog, read_log
from goa.eval.sandbox import arun_humaneval

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class RunSummary:
    """Accuracy and spending of one method over a set of samples.

    ``se`` is the standard error sqrt(p(1-p)/n); ``ci_low``/``ci_high`` the
    normal-approximation 95% interval p +- 1.96 se, clipped to [0, 1].
    ``cost_usd`` is None when any call's cost is unknown. ``wall_s`` is this
    run's wall time (:func:`run_eval`), or from the first sample's start to the
    last sample's end in the log (:func:`summarize`; it spans any pause between
    a killed run and its resumption).
    """

    method: str
    n: int
    correct: int
    accuracy: float
    se: float
    ci_low: float
    ci_high: float
    no_answer: int
    errors: int
    """Samples whose line records at least one error."""
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    wall_s: float
    resumed: int = 0
    """Samples found in the log and not run again."""
    ran: int = 0
    """Samples run by this call."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Progress:
    """The state of a run after a sample (for progress bars)."""

    method: str
    done: int
    total: int
    correct: int
    no_answer: int
    errors: int
    calls: int
    tokens: int
    cost_usd: float | None
    elapsed_s: float
    last: LogRecord | None = None
    """The sample just finished (None for the first report, after resuming)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.done if self.done else 0.0


OnProgress = Callable[[Progress], None]


def accuracy_stats(correct: int, n: int) -> tuple[float, float, float, float]:
    """(accuracy, standard error, 95% low, 95% high); all 0 when n is 0."""
    if n <= 0:
        return 0.0, 0.0, 0.0, 0.0
    p = correct / n
    se = math.sqrt(p * (1.0 - p) / n)
    return p, se, max(0.0, p - Z_95 * se), min(1.0, p + Z_95 * se)


def summarize_records(
    records: Iterable[LogRecord],
    *,
    method: str = "",
    wall_s: float | None = None,
    resumed: int = 0,
    ran: int = 0,
) -> RunSummary:
    """The :class:`RunSummary` of some log records."""
    rows = list(records)
    n = len(rows)
    correct = sum(r.correct for r in rows)
    cost: float | None = 0.0
    for r in rows:
        cost = None if cost is None or r.cost_usd is None else cost + r.cost_usd
    if wall_s is None:
        starts = [r.timestamp - r.wall_s for r in rows]
        wall_s = max(r.timestamp for r in rows) - min(starts) if rows else 0.0
    accuracy, se, low, high = accuracy_stats(correct, n)
    names = sorted({r.method for r in rows})
    return RunSummary(
        method=method or ",".join(names),
        n=n,
        correct=correct,
        accuracy=accuracy,
        se=se,
        ci_low=low,
        ci_high=high,
        no_answer=sum(r.no_answer for r in rows),
        errors=sum(bool(r.errors) for r in rows),
        calls=sum(r.calls for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=cost,
        wall_s=wall_s,
        resumed=resumed,
        ran=ran,
    )


def summarize(log_path: Path, method: str | None = None) -> RunSummary:
    """The summary of a log: of ``method``'s samples, or of all lines when None."""
    contents = read_log(log_path, method=method)
    return summarize_records(contents.records, method=method or "")


def summarize_by_method(log_path: Path) -> dict[str, RunSummary]:
    """One summary per method in the log, in order of first appearance."""
    contents = read_log(log_path)
    methods = list(dict.fromkeys(r.method for r in contents.records))
    return {
        m: summarize_records([r for r in contents.records if r.method == m], method=m)
        for m in methods
    }


# --- checking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    check: Check
    detail: str = ""


async def check_sample(sample: Sample, reply: str | None) -> _Verdict:
    """Whether ``reply`` answers ``sample`` correctly (no reply: no answer)."""
    if reply is None or not reply.strip():
        return _Verdict(Check(correct=False, extracted=None, no_answer=True))
    if sample.kind == "multiple_choice":
        assert sample.choices is not None
        return _Verdict(check_multiple_choice(reply, sample.gold, len(sample.choices)))
    if sample.kind == "math":
        return _Verdict(check_math(reply, sample.gold))
    assert sample.code is not None
    code = extract_code(reply)
    if code is None:
        return _Verdict(Check(correct=False, extracted=None, no_answer=True), "no code block")
    task = sample.code
    result = await arun_humaneval(code, task.prompt, task.test, task.entry_point)
    detail = result.status if result.passed else f"{result.status}: {result.detail}"
    return _Verdict(Check(correct=result.passed, extracted=code, no_answer=False), detail)


# --- running ----------------------------------------------------------------------------


def _record(
    *,
    run_id: str,
    method: str,
    dataset: str,
    sample: Sample,
    question: str,
    outcome: MethodOutcome | None,
    verdict: _Verdict,
    errors: list[str],
    wall_s: float,
) -> LogRecord:
    errors = list(errors)
    if outcome is not None:
        errors = [
            f"{i.stage}/{i.agent}: {i.message}" for i in outcome.incidents if i.kind == "error"
        ] + errors
    totals = outcome.totals if outcome is not None else None
    return LogRecord(
        run_id=run_id,
        method=method,
        dataset=dataset,
        sample_id=sample.id,
        kind=sample.kind,
        subject=sample.subject,
        category=sample.category,
        question=question,
        gold=sample.gold,
        responses=[r.model_dump(mode="json") for r in outcome.responses] if outcome else [],
        graph=outcome.graph if outcome else {},
        final_answer=outcome.answer if outcome else None,
        answered=outcome.answered if outcome else False,
        reason=outcome.reason if outcome else "the method failed",
        extracted=verdict.check.extracted,
        correct=verdict.check.correct,
        no_answer=verdict.check.no_answer,
        check_detail=verdict.detail,
        calls=totals.calls if totals else 0,
        failed_calls=totals.failed_calls if totals else 0,
        prompt_tokens=totals.prompt_tokens if totals else 0,
        completion_tokens=totals.completion_tokens if totals else 0,
        cost_usd=totals.cost_usd if totals else 0.0,
        latency_s=totals.latency_s if totals else 0.0,
        wall_s=wall_s,
        errors=errors,
        extra=outcome.extra if outcome else {},
        timestamp=time.time(),
    )


async def _one(method: Method, sample: Sample, *, run_id: str, dataset: str) -> LogRecord:
    question = question_text(sample)
    started = time.perf_counter()
    outcome: MethodOutcome | None = None
    errors: list[str] = []
    verdict = _Verdict(Check(correct=False, extracted=None, no_answer=True))
    try:
        outcome = await method.solve(question, answer_format=answer_format(sample))
    except Exception as exc:  # one sample's failure must not stop the run
        errors.append(f"method: {type(exc).__name__}: {exc}")
    if outcome is not None:
        try:
            verdict = await check_sample(sample, outcome.answer if outcome.answered else None)
        except Exception as exc:
            errors.append(f"check: {type(exc).__name__}: {exc}")
    return _record(
        run_id=run_id,
        method=method.name,
        dataset=dataset,
        sample=sample,
        question=question,
        outcome=outcome,
        verdict=verdict,
        errors=errors,
        wall_s=time.perf_counter() - started,
    )


async def run_eval(
    method: Method,
    samples: Sequence[Sample],
    *,
    log_path: Path,
    dataset: str,
    concurrency: int = 8,
    semaphore: asyncio.Semaphore | None = None,
    run_id: str | None = None,
    on_progress: OnProgress | None = None,
    retry_failed: bool = False,
) -> RunSummary:
    """Evaluate ``method`` on ``samples``, logging each sample to ``log_path``.

    Samples already logged for this method are not run again (resume); the
    summary covers all of ``samples`` (the resumed ones from their log lines).
    ``retry_failed`` runs again the logged samples with failed model calls; their
    new lines supersede the old ones (:func:`~goa.eval.runlog.read_log`).
    ``semaphore``, when given, is shared with other runs (one global limit);
    else ``concurrency`` samples run at once. ``on_progress`` is called once
    after resuming and after each sample.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"sample id {dup!r} appears more than once")
    started = time.perf_counter()
    run_id = run_id or uuid.uuid4().hex[:12]
    limit = semaphore or asyncio.Semaphore(concurrency)
    contents: LogContents = read_log(log_path, method=method.name)
    wanted = set(ids)
    finished: list[LogRecord] = [
        r
        for r in contents.records
        if r.sample_id in wanted and not (retry_failed and r.failed_calls > 0)
    ]
    resumed = len(finished)
    done_ids = {r.sample_id for r in finished}
    todo = [s for s in samples if s.id not in done_ids]
    total = len(samples)

    def report(last: LogRecord | None) -> None:
        if on_progress is None:
            return
        s = summarize_records(finished, method=method.name, wall_s=0.0)
        on_progress(
            Progress(
                method=method.name,
                done=s.n,
                total=total,
                correct=s.correct,
                no_answer=s.no_answer,
                errors=s.errors,
                calls=s.calls,
                tokens=s.tokens,
                cost_usd=s.cost_usd,
                elapsed_s=time.perf_counter() - started,
                last=last,
            )
        )

    report(None)
    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for sample in todo:
        queue.put_nowait(sample)

    # Workers hand finished samples to one writer task and go straight on to the
    # next sample, so slow disk flushes never leave a concurrency slot idle; the
    # writer appends whatever has piled up in one write and one fsync. A sample
    # still queued when the process dies is simply run again on resume.
    outbox: asyncio.Queue[LogRecord | None] = asyncio.Queue()

    with RunLog(log_path) as log:

        async def worker() -> None:
            while True:
                try:
                    sample = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                async with limit:
                    record = await _one(method, sample, run_id=run_id, dataset=dataset)
                outbox.put_nowait(record)

        async def writer() -> None:
            done = False
            while not done:
                batch: list[LogRecord] = []
                item = await outbox.get()
                while item is not None:
                    batch.append(item)
                    if outbox.empty():
                        break
                    item = outbox.get_nowait()
                done = item is None
                await asyncio.to_thread(log.append_many, batch)
                for record in batch:
                    finished.append(record)
                    report(record)

        workers = min(concurrency, len(todo))
        async with asyncio.TaskGroup() as group:
            writing = group.create_task(writer())
            async with asyncio.TaskGroup() as solving:
                for _ in range(workers):
                    solving.create_task(worker())
            outbox.put_nowait(None)
            await writing

    return summarize_records(
        finished,
        method=method.name,
        wall_s=time.perf_counter() - started,
        resumed=resumed,
        ran=len(finished) - resumed,
    )


__all__ = [
    "OnProgress",
    "Progress",
    "RunSummary",
    "accuracy_stats",
    "check_sample",
    "run_eval",
    "summarize",
    "summarize_by_method",
    "summarize_records",
]
