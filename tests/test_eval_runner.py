"""The evaluation runner: logging, scoring, resume, atomic appends under SIGKILL."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from goa.eval.datasets import CodeTask, Sample
from goa.eval.formatting import answer_format, extract_code, question_text
from goa.eval.method import MethodOutcome
from goa.eval.runlog import LogRecord, RunLog, read_log
from goa.eval.runner import Progress, accuracy_stats, run_eval, summarize
from goa.inference.types import Usage
from goa.result import CallRecord, Incident, Totals

_INDEX = re.compile(r"^Q(\d+)\b")


def mc(i: int, gold: str = "B", n: int = 4) -> Sample:
    return Sample(
        id=f"t/{i}",
        question=f"Q{i} which?",
        choices=[f"opt{j}" for j in range(n)],
        gold=gold,
        kind="multiple_choice",
    )


class Scripted:
    """Answers 'Answer: B' (right) for indexes in ``right``, 'Answer: A' otherwise."""

    def __init__(self, name: str = "scripted", right: set[int] | None = None) -> None:
        self._name = name
        self.right = right
        self.asked: list[int] = []

    @property
    def name(self) -> str:
        return self._name

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        match = _INDEX.match(question)
        assert match is not None
        i = int(match.group(1))
        self.asked.append(i)
        await asyncio.sleep(0)
        letter = "B" if self.right is None or i in self.right else "A"
        text = f"thinking\nAnswer: {letter}"
        record = CallRecord(
            agent="a1",
            stage="answer",
            text=text,
            answer=letter,
            usage=Usage(prompt_tokens=10, completion_tokens=5),
            cost_usd=0.01,
        )
        return MethodOutcome(
            method=self.name,
            answer=text,
            answered=True,
            responses=[record],
            totals=Totals.of([record]),
        )


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- formatting ---------------------------------------------------------------------------


def test_multiple_choice_question_and_format_use_the_real_letters() -> None:
    sample = mc(1, gold="E", n=5)
    text = question_text(sample)
    assert text.startswith("Q1 which?")
    assert "(A) opt0" in text
    assert "(E) opt4" in text
    assert "A, B, C, D or E" in answer_format(sample)


def test_goa_question_is_reused_verbatim() -> None:
    original = "Q? The options are: (A) x (B) y"
    sample = Sample(
        id="g/0",
        question="Q?",
        choices=["x", "y"],
        gold="A",
        kind="multiple_choice",
        meta={"goa_question": original},
    )
    assert question_text(sample) == original
    assert "A or B" in answer_format(sample)


def test_math_and_code_formats() -> None:
    math_sample = Sample(id="m/0", question="1+1?", gold="2", kind="math")
    assert question_text(math_sample) == "1+1?"
    assert "boxed" in answer_format(math_sample)
    prompt = "def f(x):\n    '''twice'''\n"
    code = Sample(
        id="c/0",
        question=prompt,
        gold="    return 2 * x\n",
        kind="code",
        code=CodeTask(prompt=prompt, test="def check(f):\n    assert f(2) == 4\n", entry_point="f"),
    )
    assert prompt in question_text(code)
    assert "```python" in answer_format(code)
    assert extract_code("x\n```python\na = 1\n```\ny\n```py\nb = 2\n```") == "b = 2\n"
    assert extract_code("no code") is None


# --- running and scoring -----------------------------------------------------------------


def test_every_sample_logged_once_with_accuracy_and_se(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    samples = [mc(i) for i in range(20)]
    method = Scripted(right=set(range(15)))
    seen: list[Progress] = []
    summary = asyncio.run(
        run_eval(method, samples, log_path=log, dataset="t", concurrency=4, on_progress=seen.append)
    )
    rows = lines_of(log)
    assert Counter(str(r["sample_id"]) for r in rows) == Counter(s.id for s in samples)
    assert summary.n == 20
    assert summary.correct == 15
    assert summary.ran == 20
    assert summary.accuracy == pytest.approx(0.75)
    assert summary.se == pytest.approx(math.sqrt(0.75 * 0.25 / 20))
    assert summary.ci_low == pytest.approx(0.75 - 1.959964 * summary.se, abs=1e-6)
    assert summary.calls == 20
    assert summary.tokens == 300
    assert summary.cost_usd == pytest.approx(0.2)
    assert summary.no_answer == 0
    assert seen[0].done == 0
    assert seen[-1].done == 20
    assert seen[-1].correct == 15
    assert seen[-1].accuracy == pytest.approx(0.75)
    again = summarize(log, "scripted")
    assert (again.n, again.correct, again.se, again.cost_usd) == (
        20,
        15,
        summary.se,
        summary.cost_usd,
    )
    row = rows[0]
    for key in ("run_id", "question", "gold", "responses", "graph", "final_answer", "extracted"):
        assert key in row
    assert row["responses"][0]["agent"] == "a1"  # type: ignore[index]


def test_accuracy_stats_edges() -> None:
    assert accuracy_stats(0, 0) == (0.0, 0.0, 0.0, 0.0)
    p, se, low, high = accuracy_stats(10, 10)
    assert (p, se, low, high) == (1.0, 0.0, 1.0, 1.0)
    p, se, low, high = accuracy_stats(1, 4)
    assert se == pytest.approx(math.sqrt(0.25 * 0.75 / 4))
    assert low == 0.0
    assert high == pytest.approx(0.25 + 1.959964 * se, abs=1e-6)


class Failing(Scripted):
    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        if question.startswith("Q3 "):
            raise RuntimeError("boom")
        if question.startswith("Q4 "):
            return MethodOutcome(
                method=self.name,
                answer=None,
                answered=False,
                reason="no agent answered",
                incidents=[Incident(kind="error", stage="answer", agent="a1", message="down")],
            )
        if question.startswith("Q5 "):
            return MethodOutcome(method=self.name, answer="I am not sure", answered=True)
        return await super().solve(question, answer_format=answer_format)


def test_failures_are_logged_and_scored_as_no_answer(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    summary = asyncio.run(run_eval(Failing(), [mc(i) for i in range(6)], log_path=log, dataset="t"))
    rows = {r["sample_id"]: r for r in lines_of(log)}
    assert rows["t/3"]["errors"] == ["method: RuntimeError: boom"]
    assert rows["t/4"]["errors"] == ["answer/a1: down"]
    assert rows["t/4"]["no_answer"]
    assert rows["t/5"]["no_answer"]
    assert rows["t/5"]["extracted"] is None
    assert summary.n == 6
    assert summary.correct == 3
    assert summary.no_answer == 3
    assert summary.errors == 2


def test_unknown_cost_makes_the_total_unknown(tmp_path: Path) -> None:
    class NoCost(Scripted):
        async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
            outcome = await super().solve(question, answer_format=answer_format)
            record = outcome.responses[0].model_copy(update={"cost_usd": None})
            return outcome.model_copy(update={"responses": [record], "totals": Totals.of([record])})

    log = tmp_path / "run.jsonl"
    summary = asyncio.run(run_eval(NoCost(), [mc(0), mc(1)], log_path=log, dataset="t"))
    assert summary.cost_usd is None
    assert summarize(log).cost_usd is None


class Replies:
    """Replies with a fixed text."""

    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        return MethodOutcome(method=self.name, answer=self.text, answered=True)


def test_math_sample_is_checked_for_equivalence(tmp_path: Path) -> None:
    sample = Sample(id="m/0", question="Half of one?", gold="\\frac{1}{2}", kind="math")
    summary = asyncio.run(
        run_eval(Replies("so\n\\boxed{0.5}"), [sample], log_path=tmp_path / "l", dataset="m")
    )
    assert summary.correct == 1


def test_code_sample_runs_the_last_code_block(tmp_path: Path) -> None:
    prompt = "def twice(x):\n    '''Twice x.'''\n"
    sample = Sample(
        id="c/0",
        question=prompt,
        gold="    return 2 * x\n",
        kind="code",
        code=CodeTask(
            prompt=prompt, test="def check(f):\n    assert f(3) == 6\n", entry_point="twice"
        ),
    )
    good = "```python\ndef twice(x):\n    return 2 * x\n```"
    bad = "```python\ndef twice(x):\n    return x\n```"
    log = tmp_path / "l"
    assert asyncio.run(run_eval(Replies(good), [sample], log_path=log, dataset="c")).correct == 1
    wrong = asyncio.run(run_eval(Replies(bad), [sample], log_path=tmp_path / "l2", dataset="c"))
    assert wrong.correct == 0
    assert wrong.no_answer == 0


# --- resume --------------------------------------------------------------------------------


def test_resume_skips_logged_samples(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    samples = [mc(i) for i in range(10)]
    first = Scripted()
    asyncio.run(run_eval(first, samples[:6], log_path=log, dataset="t"))
    second = Scripted()
    summary = asyncio.run(run_eval(second, samples, log_path=log, dataset="t"))
    assert sorted(second.asked) == [6, 7, 8, 9]
    assert summary.n == 10
    assert summary.resumed == 6
    assert summary.ran == 4
    assert Counter(str(r["sample_id"]) for r in lines_of(log)) == Counter(s.id for s in samples)
    # Another method on the same log runs everything.
    other = Scripted(name="other")
    asyncio.run(run_eval(other, samples, log_path=log, dataset="t"))
    assert sorted(other.asked) == list(range(10))


def test_truncated_last_line_is_ignored_and_redone(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    samples = [mc(i) for i in range(6)]
    asyncio.run(run_eval(Scripted(), samples[:5], log_path=log, dataset="t"))
    last_line = log.read_bytes().splitlines()[-1]
    # A crash mid-write of sample 5's line: half of a line, no newline.
    line5 = json.dumps({**json.loads(last_line), "sample_id": "t/5"}).encode() + b"\n"
    fragment = line5[: len(line5) // 2]
    with log.open("ab") as f:
        f.write(fragment)
    contents = read_log(log)
    assert contents.truncated_last
    assert contents.bad_lines == [6]
    assert len(contents.records) == 5
    assert contents.problems()
    method = Scripted()
    summary = asyncio.run(run_eval(method, samples, log_path=log, dataset="t"))
    assert method.asked == [5]
    assert summary.n == 6
    after = read_log(log)
    assert sorted(r.sample_id for r in after.records) == [s.id for s in samples]
    assert after.records[-1].sample_id == "t/5"
    assert after.bad_lines == [6]
    assert not after.truncated_last


def test_duplicates_keep_the_first_line(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    base = LogRecord(
        run_id="r", method="m", dataset="t", sample_id="t/0", kind="math", question="q", gold="1"
    )
    with RunLog(log) as out:
        out.append(base.model_copy(update={"correct": True}))
        out.append(base.model_copy(update={"correct": False}))
        with pytest.raises(ValueError, match="one line"):
            out.append_raw(b"two\nlines\n")
    contents = read_log(log)
    assert contents.duplicates == 1
    assert contents.records[0].correct


class Flaky(Scripted):
    """Like :class:`Scripted`, but the model call of the questions in ``down`` fails."""

    def __init__(self, down: set[int]) -> None:
        super().__init__()
        self.down = down

    async def solve(self, question: str, *, answer_format: str) -> MethodOutcome:
        match = _INDEX.match(question)
        assert match is not None
        if int(match.group(1)) not in self.down:
            return await super().solve(question, answer_format=answer_format)
        self.asked.append(int(match.group(1)))
        record = CallRecord(agent="a1", stage="answer", error="CUDA out of memory")
        return MethodOutcome(
            method=self.name,
            answer=None,
            answered=False,
            reason="no agent answered",
            responses=[record],
            totals=Totals.of([record]),
        )


def test_retry_failed_reruns_only_samples_whose_calls_failed(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    samples = [mc(i) for i in range(6)]
    first = asyncio.run(run_eval(Flaky({1, 4}), samples, log_path=log, dataset="t"))
    assert (first.correct, first.no_answer) == (4, 2)
    # a plain resume keeps the failed lines
    again = Flaky(set())
    asyncio.run(run_eval(again, samples, log_path=log, dataset="t"))
    assert again.asked == []
    # --retry-failed runs them again; their new lines supersede the old ones
    retry = Flaky({4})  # sample 4 fails again
    summary = asyncio.run(run_eval(retry, samples, log_path=log, dataset="t", retry_failed=True))
    assert sorted(retry.asked) == [1, 4]
    assert (summary.n, summary.correct, summary.resumed, summary.ran) == (6, 5, 4, 2)
    contents = read_log(log)
    assert (contents.superseded, contents.duplicates) == (2, 0)
    by_id = {r.sample_id: r for r in contents.records}
    assert by_id["t/1"].correct
    assert by_id["t/1"].failed_calls == 0
    assert by_id["t/4"].failed_calls == 1
    assert len(lines_of(log)) == 8  # nothing rewritten: two lines appended
    # the superseding line stays: a later plain run finds 6 samples done
    last = Flaky(set())
    assert asyncio.run(run_eval(last, samples, log_path=log, dataset="t")).correct == 5
    assert last.asked == []


# --- SIGKILL and several processes ---------------------------------------------------------

CHILD = r"""
import asyncio, re, sys
from pathlib import Path
from goa.eval.datasets import Sample
from goa.eval.method import MethodOutcome
from goa.eval.runner import run_eval

log, name, n, hang_from = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

class Paced:
    name = sys.argv[2]
    async def solve(self, question, *, answer_format):
        i = int(re.match(r"Q(\d+)", question).group(1))
        if i >= hang_from:
            await asyncio.Event().wait()  # never released: the run cannot finish
        await asyncio.sleep(0.001 * (i % 3))  # pacing only, so lines land over time
        text = "Answer: B" if i % 2 == 0 else "Answer: C"
        return MethodOutcome(method=self.name, answer=text, answered=True)

samples = [
    Sample(id=f"t/{i}", question=f"Q{i} which?", choices=["a", "b", "c", "d"], gold="B",
           kind="multiple_choice")
    for i in range(n)
]
asyncio.run(run_eval(Paced(), samples, log_path=Path(log), dataset="t", concurrency=16))
"""


def _child(log: Path, name: str, n: int, hang_from: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(log), name, str(n), str(hang_from)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_run_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    n = 200
    child = _child(log, "paced", n, hang_from=170)
    try:
        deadline = time.monotonic() + 60
        while _count_lines(log) < 60:
            assert child.poll() is None, child.stderr.read() if child.stderr else b""
            assert time.monotonic() < deadline, "the child logged too little in 60 s"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    before = read_log(log)
    logged = {r.sample_id for r in before.records}
    assert 60 <= len(logged) < n
    assert before.duplicates == 0
    assert before.bad_lines in ([], [len(before.records) + 1])  # at most a cut last line

    class Paced(Scripted):
        pass

    method = Paced(name="paced")
    samples = [mc(i) for i in range(n)]
    summary = asyncio.run(run_eval(method, samples, log_path=log, dataset="t", concurrency=16))
    asked = {f"t/{i}" for i in method.asked}
    assert len(method.asked) == len(asked)  # no sample asked twice
    assert asked == {s.id for s in samples} - logged  # only the ones not logged
    after = read_log(log)
    assert after.duplicates == 0
    assert Counter(r.sample_id for r in after.records) == Counter(s.id for s in samples)
    assert summary.n == n
    assert summary.resumed == len(logged)


def test_two_processes_appending_to_one_log_do_not_interleave(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    n = 150
    children = [_child(log, name, n, hang_from=n) for name in ("m1", "m2")]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    contents = read_log(log)
    assert contents.bad_lines == []
    assert contents.duplicates == 0
    assert len(log.read_bytes().splitlines()) == 2 * n
    for name in ("m1", "m2"):
        ids = [r.sample_id for r in contents.records if r.method == name]
        assert sorted(ids) == sorted(f"t/{i}" for i in range(n))
        summary = summarize(log, name)
        assert summary.n == n
        assert summary.correct == n // 2
