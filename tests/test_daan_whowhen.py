"""The Who&When harness's persistence (benchmarks.daan_whowhen): every finished attribution is
on disk at once, a cut or killed run keeps it, and ``--resume`` runs only what is missing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks import daan_whowhen
from benchmarks.daan_whowhen import CaseResult, CasesFile, RunConfig, attribute_all
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Completion
from trust.attribution import Attribution, Judge
from trust.attribution_references import REFERENCE_METHODS
from trust.interaction_log import InteractionLog, Label, Step
from trust.simulated_judge import DEFAULT_NOISE, DEFAULT_NOISE_NO_GT, SimulatedJudgeBackend

N_CASES = 3
PER_CASE = len(daan_whowhen.METHODS) * 2  # every method in both settings
SIM = "daan-whowhen-simulated"


class CountingJudge(SimulatedJudgeBackend):
    """The simulated judge, counting requests per case; it never answers the cases of
    ``hang`` and fails on those of ``fail``."""

    hang: frozenset[str] = frozenset()
    fail: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_case: Counter[str] = Counter()

    async def complete(self, request: ChatRequest) -> Completion:
        case = request.tags.question or ""
        self.per_case[case] += 1
        if case in self.fail:
            raise RuntimeError(f"killed while attributing case {case}")
        if case in self.hang:
            await asyncio.Event().wait()  # never set
        return await super().complete(request)


def use_judge(
    monkeypatch: pytest.MonkeyPatch, *, hang: Sequence[str] = (), fail: Sequence[str] = ()
) -> list[CountingJudge]:
    """Makes the harness use a :class:`CountingJudge`; the list gets each one it makes."""
    made: list[CountingJudge] = []

    def make_backend(spec: str, logs: Sequence[InteractionLog], seed: int) -> tuple[Backend, bool]:
        labels = {log.id: log.label for log in logs if log.label is not None}
        judge = CountingJudge(
            labels, noise=DEFAULT_NOISE, noise_no_gt=DEFAULT_NOISE_NO_GT, seed=seed
        )
        judge.hang, judge.fail = frozenset(hang), frozenset(fail)
        made.append(judge)
        return judge, True

    monkeypatch.setattr(daan_whowhen, "make_backend", make_backend)
    return made


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Three Who&When cases, ids "1", "2", "3", each with its own decisive step."""
    folder = tmp_path / "cases"
    folder.mkdir()
    for i in range(N_CASES):
        history = [
            {"role": "assistant", "name": "Planner", "content": "plan"},
            {"role": "assistant", "name": "Coder", "content": "print(6 * 8)"},
            {"role": "user", "name": "Computer_terminal", "content": "exitcode: 0\n48"},
            {"role": "assistant", "name": "Verifier", "content": "looks right"},
            {"role": "assistant", "name": "Planner", "content": "The answer is 48."},
        ]
        case = {
            "question": "What is 6 times 7?",
            "ground_truth": "42",
            "history": history,
            "mistake_agent": ["Coder", "Planner", "Verifier"][i],
            "mistake_step": str([1, 0, 3][i]),
            "mistake_reason": "wrong factor",
            "system_prompt": {"Planner": "plans", "Coder": "codes", "Verifier": "checks"},
        }
        (folder / f"{i + 1}.json").write_text(json.dumps(case), encoding="utf-8")
    return folder


def run(data: Path, out: Path, *flags: str) -> dict[str, Any]:
    assert daan_whowhen.main(["--data", str(data), "--out", str(out), *flags]) == 0
    record: dict[str, Any] = json.loads((out / f"{SIM}.json").read_text(encoding="utf-8"))
    return record


def cases_text(out: Path) -> str:
    return (out / f"{SIM}.cases.jsonl").read_text(encoding="utf-8")


def keys_on_disk(out: Path) -> list[tuple[str, str, bool]]:
    lines = cases_text(out).splitlines()
    return [CaseResult.from_record(json.loads(line)).key for line in lines]


def all_keys(cases: Sequence[str]) -> set[tuple[str, str, bool]]:
    return {(c, m, t) for c in cases for m in daan_whowhen.METHODS for t in (True, False)}


def cut_run(monkeypatch: pytest.MonkeyPatch, data: Path, out: Path) -> dict[str, Any]:
    """A run whose judge never answers case 2, cut by a small budget."""
    use_judge(monkeypatch, hang=["2"])
    return run(data, out, "--budget-s", "0.5")


def test_a_budget_cut_keeps_every_finished_attribution_on_disk(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    record = cut_run(monkeypatch, data, out)
    # random and the reference points need no judge, so they finished case 2 too; nothing
    # else of case 2 did
    free = ("random", *REFERENCE_METHODS)
    expected = all_keys(["1", "3"]) | {("2", m, t) for m in free for t in (True, False)}
    keys = keys_on_disk(out)
    assert set(keys) == expected
    assert len(keys) == len(expected)
    assert record["cases"] == 2  # only the cases every (method, setting) finished are scored
    assert not record["goals"]["all_cases"]["met"]
    assert (record["attributions_reused"], record["attributions_run"]) == (0, len(expected))


def test_a_killed_run_keeps_the_cases_it_finished_in_case_major_order(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    use_judge(monkeypatch, fail=["3"])
    with pytest.raises(RuntimeError, match="killed"):
        daan_whowhen.main(["--data", str(data), "--out", str(out), "--concurrency", "1"])
    keys = keys_on_disk(out)  # case-major: cases 1 and 2 whole, before case 3 began
    assert [key[0] for key in keys[: 2 * PER_CASE]] == ["1"] * PER_CASE + ["2"] * PER_CASE
    assert set(keys[: 2 * PER_CASE]) == all_keys(["1", "2"])
    # of case 3, at most what needs no judge (random, the reference points) finished while
    # the run was stopping
    free = {("3", m) for m in ("random", *REFERENCE_METHODS)}
    assert {key[:2] for key in keys[2 * PER_CASE :]} <= free


def test_resume_runs_only_the_missing_attributions_and_matches_one_run(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    judges = use_judge(monkeypatch)
    once = run(data, whole)
    case2_calls = judges[-1].per_case["2"]
    assert case2_calls > 0

    out = tmp_path / "out"
    cut = cut_run(monkeypatch, data, out)
    judges = use_judge(monkeypatch)
    resumed = run(data, out, "--resume", "--note", "the first part ran elsewhere")
    assert judges[-1].per_case == Counter({"2": case2_calls})  # only case 2's missing ones
    assert resumed["note"] == "the first part ran elsewhere"
    assert "note" not in once
    assert resumed["attributions_reused"] == cut["attributions_run"]
    assert resumed["attributions_run"] == N_CASES * PER_CASE - cut["attributions_run"]
    assert resumed["metrics"] == once["metrics"]
    assert resumed["goals"]["all_cases"]["met"]
    assert cases_text(out) == cases_text(whole)  # sorted, whatever the completion order


def test_without_resume_the_cases_file_starts_afresh(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    judges = use_judge(monkeypatch)
    run(data, out)
    first = cases_text(out)
    again = run(data, out)
    assert again["attributions_reused"] == 0
    assert sum(judges[-1].per_case.values()) == judges[-1].calls > 0
    assert cases_text(out) == first


def test_a_resume_of_fewer_cases_keeps_the_others_lines(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    judges = use_judge(monkeypatch)
    run(data, out)
    whole = cases_text(out)
    record = run(data, out, "--resume", "--limit", "2")
    assert (record["attributions_reused"], record["attributions_run"]) == (2 * PER_CASE, 0)
    assert judges[-1].calls == 0
    assert record["cases"] == 2
    assert sorted(cases_text(out).splitlines()) == sorted(whole.splitlines())


@pytest.mark.parametrize(
    "before",
    [
        ["--max-tokens", "128"],
        ["--max-step-chars", "100"],
        ["--max-retries", "0"],
        ["--judge", "local:another-model"],  # the scripted judge stands in for it
    ],
)
def test_lines_from_other_settings_are_not_reused(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path, before: list[str]
) -> None:
    out = tmp_path / "out"
    use_judge(monkeypatch)
    run(data, out, *before)
    judges = use_judge(monkeypatch)
    record = run(data, out, "--resume")
    assert (record["attributions_reused"], record["attributions_run"]) == (0, N_CASES * PER_CASE)
    assert judges[-1].calls > 0
    lines = [json.loads(line) for line in cases_text(out).splitlines()]
    configs = [line["config"] for line in lines]
    assert len(lines) == 2 * N_CASES * PER_CASE  # the other settings' lines are kept
    assert configs[0] != configs[-1]


def test_a_torn_last_line_is_skipped_and_run_again(
    monkeypatch: pytest.MonkeyPatch, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    use_judge(monkeypatch)
    run(data, out)
    whole = cases_text(out)
    path = out / f"{SIM}.cases.jsonl"
    path.write_text(whole[: -len(whole.splitlines()[-1]) // 2], encoding="utf-8")  # torn
    record = run(data, out, "--resume")
    assert (record["attributions_reused"], record["attributions_run"]) == (
        N_CASES * PER_CASE - 1,
        1,
    )
    assert cases_text(out) == whole


def test_the_next_append_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    config = RunConfig(
        judge="simulated",
        engine="simulated",
        max_step_chars=10,
        max_tokens=5,
        max_retries=0,
        seed=0,
    )
    path = tmp_path / "cases.jsonl"
    first = CaseResult("1", "m", True, "A", 1, Attribution(method="m", agent="A", step=1))
    second = CaseResult("2", "m", True, "B", 0, Attribution(method="m", agent="A", step=2))
    writer = CasesFile(path, config)
    assert writer.start(resume=True) == []
    writer.append(first)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"case": "2", "meth')  # a killed run's last, torn line
    reader = CasesFile(path, config)
    assert reader.start(resume=True) == [first]
    reader.append(second)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert CaseResult.from_record(json.loads(lines[-1])) == second
    assert CasesFile(path, config).start(resume=True) == [first, second]


def test_results_come_sorted_whatever_order_they_finish_in() -> None:
    label = Label(agent="A", step=0)
    logs = [
        InteractionLog(
            id=case,
            source="test",
            question="q",
            steps=(Step(index=0, agent="A", content="x"),),
            label=label,
        )
        for case in ("a", "b")
    ]
    b_done = asyncio.Event()
    seen: list[str] = []

    async def method(log: InteractionLog, judge: Judge, /, **_: object) -> Attribution:
        if log.id == "a":
            await b_done.wait()
        else:
            b_done.set()
        return Attribution(method="m", agent="A", step=0)

    async def go() -> list[CaseResult]:
        judge = Judge(SimulatedJudgeBackend({}))
        return await attribute_all(
            logs, judge, {"m": method}, settings=(True,), on_result=lambda r: seen.append(r.case)
        )

    results = asyncio.run(go())
    assert seen == ["b", "a"]
    assert [r.case for r in results] == ["a", "b"]
