"""The BIG-Bench Mistake benchmark with real evaluators, driven here by scripted models: the
votes file (caching, resume), the adversary replay, and the result files."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import re
from pathlib import Path

import pytest

from benchmarks import audit_bbm_llm
from benchmarks.audit_bbm import Role, Setting, Trace
from benchmarks.audit_bbm_llm import (
    HONEST_STAKE,
    Evaluator,
    JudgeSettings,
    PairVotes,
    Prepared,
    Status,
    StepVote,
    VoteStore,
    adversary_stake,
    collect,
    committee_params,
    prepare,
    replay,
    select_traces,
    status_of,
)
from benchmarks.results_file import RESULTS_DIR
from goa.errors import ModelRequestError
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest, Completion
from trust.audit import AuditConfig, audit_trace
from trust.auditors import AuditorBase, ComputationalAuditor
from trust.decompose import decompose
from trust.segment import Segment
from trust.verdict import Tier, Verdict, Vote

MODELS = ("m-a", "m-b", "m-c", "m-d")
SETTINGS = JudgeSettings(max_tokens=64, max_retries=1)


def _reply(vote: str) -> str:
    return json.dumps({"vote": vote, "confidence": 0.9, "reason": "scripted"})


def _judged_step(request: ChatRequest) -> str:
    """The text of the step a prompt asks about."""
    prompt = request.messages[1].content
    match = re.search(r"STEP TO JUDGE:\n\[step\d+\] (.*)", prompt)
    assert match is not None
    return match.group(1)


def _goal(request: ChatRequest) -> str:
    match = re.search(r"GOAL \(the question being answered\):\n(.*)", request.messages[1].content)
    assert match is not None
    return match.group(1)


def _sharp(request: ChatRequest) -> str:
    """A scripted model that finds every step containing WRONG."""
    return _reply("invalid" if "WRONG" in _judged_step(request) else "valid")


class HangingBackend(ScriptedBackend):
    """Answers like :func:`_sharp`, but never answers for the traces whose goal is in
    ``hang_on`` (a run killed while they are in flight)."""

    def __init__(self, model: str, hang_on: set[str]) -> None:
        super().__init__(_sharp, model=model)
        self.hang_on = hang_on

    async def complete(self, request: ChatRequest) -> Completion:
        if _goal(request) in self.hang_on:
            await asyncio.Event().wait()
        return await super().complete(request)


def _toy(index: int, mistake: int | None, n: int = 4) -> Trace:
    steps = tuple(
        f"Claim {k} of trace {index}{' WRONG' if k == mistake else ''}." for k in range(n)
    )
    return Trace("toy", index, steps, mistake, goal=f"question {index}")


def _prepared(traces: list[Trace]) -> list[Prepared]:
    async def go() -> list[Prepared]:
        checker = ComputationalAuditor(run_code=False)
        return [await prepare(t, checker) for t in traces]

    return asyncio.run(go())


def _pairs(prepared: Prepared, votes: dict[str, list[Vote]]) -> dict[str, PairVotes]:
    return {
        model: PairVotes(
            trace=prepared.trace.key,
            model=model,
            sha=prepared.sha,
            steps=tuple(StepVote(v, 0.9, Status.VOTE, 1) for v in column),
        )
        for model, column in votes.items()
    }


# ---------------------------------------------------------------------- stakes


def test_adversaries_hold_exactly_the_level_share_of_stake() -> None:
    for n in range(1, 5):
        assert adversary_stake(n, 0) == 0
        for pct in (10, 20, 30, 40):
            adversarial = n * adversary_stake(n, pct)
            assert adversarial * 100 == pct * (adversarial + n * HONEST_STAKE)
    params = committee_params(4, 0)
    assert params.llm.quorum_stake == 2 * HONEST_STAKE  # half of the committee's stake
    assert committee_params(4, 40).llm.quorum_stake == (4 * HONEST_STAKE * 100 // 60) // 2


def test_select_traces_is_a_seeded_sorted_sample_per_task() -> None:
    traces = [Trace(task, i, ("s",), None) for task in ("a", "b") for i in range(20)]
    chosen = select_traces(traces, 5, seed=1)
    assert [t.task for t in chosen] == ["a"] * 5 + ["b"] * 5
    assert chosen == select_traces(traces, 5, seed=1)
    assert [t.index for t in chosen[:5]] == sorted(t.index for t in chosen[:5])
    assert chosen != select_traces(traces, 5, seed=2)
    assert select_traces(traces, None, seed=0) == traces


# ---------------------------------------------------------------------- verdicts


def test_status_tells_parse_failures_request_failures_and_abstentions_apart() -> None:
    seg = _prepared([_toy(0, None, 1)])[0].segments[0]

    async def judge(backend: ScriptedBackend) -> StepVote:
        evaluator = Evaluator("m", backend, "fake")
        return await audit_bbm_llm.judge_step(evaluator, seg, SETTINGS, asyncio.Semaphore(1))

    garbled = asyncio.run(judge(ScriptedBackend(["no json", "still none"])))
    assert (garbled.vote, garbled.status, garbled.calls) == (Vote.ABSTAIN, Status.PARSE_FAILURE, 2)
    failed = asyncio.run(judge(ScriptedBackend([ModelRequestError("down")])))
    assert failed.status is Status.REQUEST_FAILURE
    chose = asyncio.run(judge(ScriptedBackend(["oops", _reply("abstain")])))
    assert (chose.status, chose.calls) == (Status.ABSTAIN, 2)
    assert status_of(Verdict(vote=Vote.INVALID, confidence=1.0)) is Status.VOTE


# ---------------------------------------------------------------------- votes file


def test_a_killed_run_resumes_without_judging_any_pair_twice(tmp_path: Path) -> None:
    traces = [_toy(0, 2), _toy(1, None), _toy(2, 1)]
    prepared = _prepared(traces)
    store = VoteStore(tmp_path / "votes.jsonl")
    first = [Evaluator(m, HangingBackend(m, {"question 1"}), "fake") for m in MODELS[:2]]
    got = asyncio.run(collect(prepared, first, store, SETTINGS, budget_s=1.0, quiet=True))
    assert got.timed_out
    assert got.judged_pairs == 4  # traces 0 and 2, both models; trace 1 was in flight
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert sorted((json.loads(x)["trace"], json.loads(x)["model"]) for x in lines) == [
        ("toy:0", "m-a"),
        ("toy:0", "m-b"),
        ("toy:2", "m-a"),
        ("toy:2", "m-b"),
    ]
    with store.path.open("a", encoding="utf-8") as handle:  # killed while writing a line
        handle.write('{"format": "audit-bbm-llm-votes/1", "trace": "toy:1", "mod')

    second = [Evaluator(m, ScriptedBackend(_sharp, model=m), "fake") for m in MODELS[:2]]
    again = asyncio.run(collect(prepared, second, store, SETTINGS, quiet=True))
    assert (again.reused_pairs, again.judged_pairs, again.skipped_lines) == (4, 2, 1)
    for ev in second:
        assert isinstance(ev.backend, ScriptedBackend)
        assert {_goal(r) for r in ev.backend.requests} == {"question 1"}
        assert len(ev.backend.requests) == len(traces[1].steps)
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert lines[4].endswith('"mod')  # the torn line stays alone on its line
    pairs = [(r["trace"], r["model"]) for r in map(json.loads, lines[:4] + lines[5:])]
    assert len(pairs) == len(set(pairs)) == 6
    assert all(len(again.votes[t.key]) == 2 for t in traces)

    third = [Evaluator(m, ScriptedBackend([], model=m), "fake") for m in MODELS[:2]]
    done = asyncio.run(collect(prepared, third, store, SETTINGS, quiet=True))
    assert (done.reused_pairs, done.judged_pairs, done.calls) == (6, 0, 0)
    other = JudgeSettings(max_tokens=65, max_retries=1)  # other settings: not reused
    assert VoteStore(store.path).load(other)[0] == {}


def test_steps_the_computational_auditor_decides_are_not_sent_to_the_models() -> None:
    trace = Trace("toy", 5, ("We add: 2 + 2 = 4.", "So the answer is four."), None, goal="q")
    prepared = _prepared([trace])
    assert not prepared[0].needs_llm(0)
    assert prepared[0].needs_llm(1)


# ---------------------------------------------------------------------- replay


class ReplayAuditor(AuditorBase):
    """Votes what a cached pair says, through the real audit_trace."""

    def __init__(self, pair: PairVotes) -> None:
        super().__init__(f"llm:{pair.model}", Tier.LLM)
        self.pair = pair

    async def judge(self, segment: Segment) -> Verdict:
        step = self.pair.steps[int(segment.id.removeprefix("step")) - 1]
        vote = Vote.ABSTAIN if step is None else step.vote
        return Verdict(vote=vote, confidence=0.9)


def test_no_adversaries_decide_exactly_as_audit_trace_with_equal_stakes(
    shared_data: Path,
) -> None:
    from benchmarks.audit_bbm import load_traces

    rng = random.Random(4)
    real = load_traces(shared_data / "trust" / "big-bench-mistake", limit=3)
    traces = [_toy(i, i % 5 if i % 5 < 4 else None, 6) for i in range(12)] + real
    kinds = [Vote.VALID, Vote.INVALID, Vote.ABSTAIN]
    for p in _prepared(traces):
        n = rng.randint(1, 4)
        votes = {m: rng.choices(kinds, [5, 3, 2], k=len(p.segments)) for m in MODELS[:n]}
        pairs = _pairs(p, votes)
        mine = replay(p, pairs, Setting("llm"))
        report = asyncio.run(
            audit_trace(
                decompose(list(p.trace.steps), goal=p.trace.goal),
                computational=ComputationalAuditor(),
                evaluators=[ReplayAuditor(pair) for pair in pairs.values()],
                config=AuditConfig(
                    replicas=n,
                    cap=1.0,
                    stake=HONEST_STAKE,
                    deposit=10**12,
                    params=committee_params(n, 0),
                ),
            )
        )
        assert mine.decisions == tuple(s.decision.value for s in report.steps)
        assert mine.verdict == report.verdict.value
        assert mine.first_faulty_index == report.first_faulty_index


def _unanimous(p: Prepared) -> dict[str, PairVotes]:
    """Four models that vote the gold label where there is one, and ``valid`` after it."""
    m = p.trace.mistake_index
    column = [Vote.INVALID if i == m else Vote.VALID for i in range(len(p.segments))]
    return _pairs(p, {model: column for model in MODELS})


def test_adversaries_below_half_cannot_turn_a_unanimous_committee() -> None:
    prepared = _prepared([_toy(i, (i % 3) or None, 5) for i in range(9)])
    for p in prepared:
        pairs = _unanimous(p)
        honest = replay(p, pairs, Setting("llm"))
        assert honest.first_faulty_index == p.trace.mistake_index
        for kind in (Role.FLIPPER, Role.COLLUDER):
            for pct in (10, 20, 30, 40):
                out = replay(p, pairs, Setting("llm", kind, pct))
                for mine, ref in zip(out.decisions, honest.decisions, strict=True):
                    assert mine in (ref, "undecided")  # never the other way
                if pct <= 30:  # a 40%+ lead clears the 30% margin
                    assert out.decisions == honest.decisions
        flipped = replay(p, pairs, Setting("llm", Role.FLIPPER, 40))
        assert set(flipped.decisions) == {"undecided"}  # 60 against 40: a 20% lead
        assert flipped.voted_steps == flipped.undecided_steps == len(p.segments)


def test_colluders_win_only_where_the_honest_models_are_split() -> None:
    p = _prepared([_toy(0, 2, 4)])[0]
    split = [Vote.VALID, Vote.VALID, Vote.INVALID, Vote.VALID]
    votes = {m: split for m in MODELS[:3]} | {MODELS[3]: [Vote.VALID] * 4}
    pairs = _pairs(p, votes)
    assert replay(p, pairs, Setting("llm")).decisions[2] == "invalid"  # 3 to 1: a 50% lead
    collude = replay(p, pairs, Setting("llm", Role.COLLUDER, 30))
    assert collude.decisions[2] == "undecided"  # 52.5% against 47.5%
    assert collude.first_faulty_index != 2
    flipper = replay(p, pairs, Setting("llm", Role.FLIPPER, 10))
    assert flipper.decisions[2] == "invalid"  # 3 to 1 scaled by 0.8: a 40% lead


def test_simulated_humans_decide_only_what_the_llm_tier_left_undecided() -> None:
    prepared = _prepared([_toy(i, 1 if i % 2 else None, 4) for i in range(6)])
    for p in prepared:
        pairs = _unanimous(p)
        alone = replay(p, pairs, Setting("llm", Role.FLIPPER, 40))
        helped = replay(p, pairs, Setting("llm", Role.FLIPPER, 40), humans=5)
        assert alone.escalated_steps == 0
        assert helped.escalated_steps == helped.voted_steps == len(p.segments)
        labelled = len(p.segments) if p.trace.mistake_index is None else 2
        assert helped.decisions[labelled:] == ("undecided",) * (len(p.segments) - labelled)
        clean = replay(p, pairs, Setting("llm"), humans=5)
        assert clean.escalated_steps == 0
        assert clean.decisions == replay(p, pairs, Setting("llm")).decisions


# ---------------------------------------------------------------------- the command


def test_main_writes_the_result_files_and_reuses_the_votes(
    shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = sorted(RESULTS_DIR.iterdir()) if RESULTS_DIR.is_dir() else []
    argv = [
        "--limit",
        "1",
        "--tasks",
        "multistep_arithmetic,word_sorting",
        "--data",
        str(shared_data / "trust" / "big-bench-mistake"),
        "--out",
        str(out),
    ]

    def evaluators() -> list[Evaluator]:
        return [Evaluator(m, ScriptedBackend(_sharp, model=m), "fake") for m in MODELS[:2]]

    paths = audit_bbm_llm.main(argv, evaluators=evaluators(), quiet=True)
    assert {p.name for p in out.iterdir()} == {
        "audit-bbm-llm.json",
        "audit-bbm-llm.md",
        "audit-bbm-llm.votes.jsonl",
    }
    assert all(p.parent == out for p in paths.values())
    assert sorted(RESULTS_DIR.iterdir()) == before
    record = json.loads((out / "audit-bbm-llm.json").read_text(encoding="utf-8"))
    assert set(record) >= {"benchmark", "command", "date", "machine", "simulated", "metrics"}
    assert record["benchmark"] == "audit-bbm-llm"
    assert record["simulated"] is False
    assert record["engine"] == "fake"
    assert record["models"] == ["m-a", "m-b"]
    metrics = record["metrics"]
    assert metrics["n_traces"] == 2
    assert metrics["calls"] == metrics["calls_this_run"] > 0
    for pct in (0, 10, 20, 30, 40):
        for key in (f"acc_adv{pct}", f"f1_adv{pct}", f"acc_adv{pct}_sim_humans"):
            assert 0.0 <= metrics[key] <= 1.0
    for key in (
        "acc_adv30_colluder",
        "f1_adv40_flipper_sim_humans",
        "escalation_adv0_sim_humans",
        "acc_computational_multistep_arithmetic",
        "acc_adv0_word_sorting",
        "f1_adv0_word_sorting_sim_humans",
        "calls_m-a",
        "parse_failure_rate_m-b",
        "abstain_rate_m-a",
        "wall_s",
    ):
        assert key in metrics
    assert all({"target", "met"} <= set(g) for g in record["goals"].values())
    text = (out / "audit-bbm-llm.md").read_text(encoding="utf-8")
    assert "REAL" in text
    assert "SIMULATED" in text

    audit_bbm_llm.main(argv, evaluators=evaluators(), quiet=True)
    again = json.loads((out / "audit-bbm-llm.json").read_text(encoding="utf-8"))["metrics"]
    assert again["calls_this_run"] == 0
    assert again["pairs_reused"] == 4
    assert again["acc_adv0"] == metrics["acc_adv0"]

    # the committed form of the votes: gzipped, replayed as it is, and never appended to
    gz = tmp_path / "votes.jsonl.gz"
    gz.write_bytes(gzip.compress((out / "audit-bbm-llm.votes.jsonl").read_bytes()))
    replayed_out = tmp_path / "replayed"
    replay_argv = [*argv[:-1], str(replayed_out), "--votes", str(gz), "--replay-only"]
    audit_bbm_llm.main(replay_argv, evaluators=evaluators(), quiet=True)
    replayed = json.loads((replayed_out / "audit-bbm-llm.json").read_text(encoding="utf-8"))
    assert replayed["metrics"]["acc_adv0"] == metrics["acc_adv0"]
    assert replayed["metrics"]["calls_this_run"] == 0
    with pytest.raises(SystemExit) as refused:
        audit_bbm_llm.main([*argv, "--votes", str(gz)], evaluators=evaluators(), quiet=True)
    assert refused.value.code == 2
