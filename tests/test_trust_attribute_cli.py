"""``trust attribute LOG``: a Who&When case and a real GoA run, the ledger, and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.trust_app import app
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest
from goa.result import Result as GoaResult
from goa.testing import ScriptedBackend
from goa.testing.agents import agent, judge_by, make_goa
from trust.attribution_cig import ALL_METHODS, candidates
from trust.attribution_prompts import describe_prompt
from trust.attribution_references import EVERY_METHOD, JUDGE_FREE
from trust.cig import build_cig
from trust.ledger import Ledger
from trust.log_readers import read_log

runner = CliRunner()

JUDGE_CARD = "gpt-4o-mini"  # a built-in card; its backend is replaced by a scripted one


def _attribute(*args: str | Path) -> Result:
    return runner.invoke(app, ["attribute", *map(str, args)])


def _asked(request: ChatRequest) -> int:
    prompt = next(m.content for m in request.messages if m.role == "user")
    task = describe_prompt(prompt)
    assert task is not None
    assert task.step is not None
    return task.step


def _judge_decisive_at(monkeypatch: pytest.MonkeyPatch, target: int) -> ScriptedBackend:
    """Every card's backend becomes a judge that calls only step ``target`` decisive."""
    import goa.inference.factory

    def verdict(request: ChatRequest) -> str:
        step = _asked(request)
        decisive = step == target
        return json.dumps({"decisive": decisive, "reason": f"step {step} decisive: {decisive}"})

    backend = ScriptedBackend(verdict)

    def fake(card: object, *, cache: bool = False) -> Backend:
        return backend

    monkeypatch.setattr(goa.inference.factory, "backend_for_card", fake)
    return backend


def _verifies(ledger: Path) -> None:
    with Ledger(ledger) as opened:
        assert opened.verify().ok
    checked = runner.invoke(app, ["ledger", "verify", "--ledger", str(ledger)])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("ok: ")


@pytest.fixture
def who_and_when(shared_data: Path) -> Path:
    path = shared_data / "trust" / "who-and-when" / "algorithm-generated" / "1.json"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


# --- A Who&When case -------------------------------------------------------------------------


def test_who_and_when_case_names_the_step_the_judge_calls_decisive(
    who_and_when: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = read_log(who_and_when)
    chain = candidates(log, build_cig(log))
    target = chain[-1]  # the failure anchor: the judge says no to every earlier candidate
    agent_name = log.steps[target].agent
    backend = _judge_decisive_at(monkeypatch, target)
    ledger = tmp_path / "ledger.sqlite"

    text = _attribute(who_and_when, "--judge", JUDGE_CARD, "--ledger", ledger)
    assert text.exit_code == 0, text.output
    assert f"responsible agent: {agent_name}\n" in text.stdout
    assert f"decisive step: {target}\n" in text.stdout
    assert "fallback: no" in text.stdout
    assert "ledger entry: 0 " in text.stdout
    assert [_asked(r) for r in backend.requests] == chain  # earliest first, up to the yes

    as_json = _attribute(who_and_when, "--judge", JUDGE_CARD, "--ledger", ledger, "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert (report["agent"], report["step"], report["method"]) == (agent_name, target, "cig")
    assert report["log_id"] == "1"
    assert report["source"] == "who-and-when"
    assert report["with_ground_truth"] is True  # the case has one
    assert report["calls"] == len(chain)
    assert report["prompt_tokens"] > 0
    assert report["fallback"] is False
    assert report["cig"]["nodes"] == len(log.steps)
    assert report["ledger_entry"] == 1

    _verifies(ledger)
    with Ledger(ledger) as opened:
        assert opened.size == 2
        record = opened.entry(1).record
    assert record["kind"] == "attribution"
    assert (record["agent"], record["step"], record["method"]) == (agent_name, target, "cig")
    assert record["judge"] == JUDGE_CARD
    assert record["log_sha256"] == report["log_sha256"]
    assert record["log_sha256"] == hashlib.sha256(who_and_when.read_bytes()).hexdigest()


def test_no_ground_truth_is_not_shown_to_the_judge(
    who_and_when: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _judge_decisive_at(monkeypatch, 0)
    args = ("--judge", JUDGE_CARD, "--method", "step_by_step", "--no-ground-truth", "--json")
    result = _attribute(who_and_when, *args, "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["method"], report["step"], report["with_ground_truth"]) == (
        "step_by_step",
        0,
        False,
    )
    assert all(
        "CORRECT FINAL ANSWER" not in m.content for r in backend.requests for m in r.messages
    )


def test_random_needs_no_judge(who_and_when: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "l.sqlite"
    result = _attribute(who_and_when, "--method", "random", "--ledger", ledger, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    log = read_log(who_and_when)
    assert report["method"] == "random"
    assert report["judge"] is None
    assert report["agent"] in log.agent_names()
    assert 0 <= report["step"] < len(log.steps)
    assert report["calls"] == 0
    _verifies(ledger)
    with Ledger(ledger) as opened:
        assert opened.entry(0).record["method"] == "random"


def test_graph_root_needs_no_judge_and_answers_the_earliest_causal_candidate(
    who_and_when: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "l.sqlite"
    result = _attribute(who_and_when, "--method", "graph_root", "--ledger", ledger, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    log = read_log(who_and_when)
    root = candidates(log, build_cig(log))[0]
    assert (report["method"], report["step"], report["agent"]) == (
        "graph_root",
        root,
        log.steps[root].agent,
    )
    assert (report["judge"], report["calls"], report["total_tokens"]) == (None, 0, 0)
    _verifies(ledger)
    with Ledger(ledger) as opened:
        assert opened.entry(0).record["method"] == "graph_root"


# --- A GoA run ------------------------------------------------------------------------------

QUESTION = "Which option is right? A, B or C? (It is A.)"


def _answer(letter: str) -> str:
    return f"Option {letter} fits best.\nAnswer: {letter}"


def _wrong_run() -> GoaResult:
    """Agents alice and bob answer A (right), carol C (wrong); the judges favour C, so carol
    ranks first and max pooling gives her (wrong) answer."""
    judge = judge_by({"C": 6, "A": 2})
    backends = {
        "alice": agent("alice", _answer("A"), score=judge),
        "bob": agent("bob", _answer("A"), score=judge),
        "carol": agent("carol", _answer("C"), score=judge),
        "meta": agent("meta", _answer("A"), score=judge, select='{"selected": [1, 2, 3]}'),
    }
    return make_goa(backends, sizes={"meta": 7.0}).run(QUESTION)


def test_goa_run_names_the_agent_and_stage_of_the_wrong_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _wrong_run()
    assert run.final_answer == "C"
    assert run.ranking[0] == "carol"
    path = tmp_path / "run.json"
    path.write_text(run.model_dump_json(), encoding="utf-8")
    (culprit,) = [
        i for i, r in enumerate(run.responses) if r.agent == "carol" and r.stage == "answer"
    ]
    backend = _judge_decisive_at(monkeypatch, culprit)
    ledger = tmp_path / "ledger.sqlite"

    text = _attribute(path, "--judge", JUDGE_CARD, "--ledger", ledger)
    assert text.exit_code == 0, text.output
    assert "log: run (goa, " in text.stdout
    assert "ground truth: not shown" in text.stdout  # a GoA result has none
    assert "responsible agent: carol\n" in text.stdout
    assert re.search(rf"^decisive step: {culprit} \(stage answer\b", text.stdout, re.M)
    assert backend.requests  # the judge was asked

    as_json = _attribute(path, "--judge", JUDGE_CARD, "--ledger", ledger, "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert (report["agent"], report["step"], report["stage"]) == ("carol", culprit, "answer")
    assert report["source"] == "goa"
    assert report["log_id"] == "run"
    assert report["round"] == run.responses[culprit].round
    assert report["cig"]["log_id"] == "run"

    _verifies(ledger)
    with Ledger(ledger) as opened:
        assert opened.size == 2
        record = opened.entry(1).record
    assert (record["agent"], record["stage"], record["source"]) == ("carol", "answer", "goa")


def test_link_with_builds_the_graph_with_a_model(
    who_and_when: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import goa.inference.factory

    linker = ScriptedBackend(lambda request: json.dumps({"edges": []}))
    judge = ScriptedBackend(lambda request: json.dumps({"decisive": True, "reason": "r"}))

    def fake(card: object, *, cache: bool = False) -> Backend:
        return linker if getattr(card, "id", "") == "gpt-4o" else judge

    monkeypatch.setattr(goa.inference.factory, "backend_for_card", fake)
    args = ("--judge", JUDGE_CARD, "--link-with", "gpt-4o", "--json")
    result = _attribute(who_and_when, *args, "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["linker"] == {"card": "gpt-4o", "calls": len(linker.requests), "failures": 0}
    assert linker.requests  # the linker was asked about the group chat's steps
    assert len(judge.requests) == 1  # the first candidate is called decisive


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"history": [\n  {"role": "a", "content": "x"},\n]}', "log.json: 3:1: invalid JSON"),
        ('{"question": "q", "history": [{"role": 3, "content": "x"}]}', "log.json: history[0]"),
        ('{"question": "q", "history": []}', "log.json: history: is empty"),
        ("[1, 2]", "log.json: not a known log format"),
    ],
)
def test_malformed_log_is_exit_2_with_file_and_position(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "log.json"
    path.write_text(content, encoding="utf-8")
    ledger = tmp_path / "l.sqlite"
    result = _attribute(path, "--method", "random", "--ledger", ledger)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not ledger.exists()


def test_goa_result_with_no_calls_is_exit_2(tmp_path: Path) -> None:
    run = _wrong_run().model_copy(update={"responses": []})
    path = tmp_path / "empty.json"
    path.write_text(run.model_dump_json(), encoding="utf-8")
    result = _attribute(path, "--method", "random", "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 2
    assert "empty.json: the log has no steps to attribute" in result.stderr
    assert "Traceback" not in result.output


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = _attribute(tmp_path / "nope.json", "--method", "random")
    assert result.exit_code == 2
    assert "nope.json: no such file" in result.stderr


def test_unknown_judge_card_is_exit_2_before_the_ledger(who_and_when: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "l.sqlite"
    result = _attribute(who_and_when, "--judge", "no-such-card", "--ledger", ledger)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown model card 'no-such-card'")
    assert "Traceback" not in result.output
    assert not ledger.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--method cig needs a judge: --judge CARD"),
        (("--method", "nope", "--judge", JUDGE_CARD), "unknown method 'nope'"),
        (("--method", "random", "--link-with", JUDGE_CARD), "--link-with only applies"),
        (("--method", "first_step", "--link-with", JUDGE_CARD), "--link-with only applies"),
    ],
)
def test_bad_options_are_exit_2(
    who_and_when: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _attribute(who_and_when, *args, "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_ground_truth_asked_for_but_absent_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(_wrong_run().model_dump_json(), encoding="utf-8")
    result = _attribute(path, "--method", "random", "--ground-truth")
    assert result.exit_code == 2
    assert "the log has no ground truth" in result.stderr


def test_every_method_is_offered() -> None:
    from cli.trust_attribute_cmd import METHOD_NAMES, NO_JUDGE

    assert set(METHOD_NAMES) == set(EVERY_METHOD)
    assert set(ALL_METHODS) < set(EVERY_METHOD)
    assert next(iter(EVERY_METHOD)) == "cig"
    assert set(NO_JUDGE) == JUDGE_FREE


# --- README ----------------------------------------------------------------------------------


def test_readme_example_runs_as_written(repo_root: Path, shared_data: Path, tmp_path: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    (example,) = [b for b in blocks if "trust attribute" in b]
    bin_dir = str(Path(sys.executable).parent) + "/"
    env = {**os.environ, "GOA_DATA_DIR": str(tmp_path / "data")}
    for line in example.strip().splitlines():
        command = line.split("  #")[0].strip().replace(".venv/bin/", bin_dir)
        done = subprocess.run(
            command, shell=True, cwd=repo_root, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        if "--json" in command:
            assert json.loads(done.stdout)["ledger_entry"] == 0
