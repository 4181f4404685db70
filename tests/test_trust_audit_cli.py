"""``trust audit TRACE``: the command over real BIG-Bench Mistake traces and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.trust_app import app
from goa.inference.backend import Backend
from goa.testing import ScriptedBackend
from trust.ledger import Ledger
from trust.trace_file import TraceFileError, parse_trace

runner = CliRunner()


def _audit(*args: str | Path, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["audit", *map(str, args)], input=stdin)


@pytest.fixture
def bbm(shared_data: Path) -> Path:
    return shared_data / "trust" / "big-bench-mistake" / "multistep_arithmetic.jsonl"


def test_audit_of_a_trace_names_the_first_mistake_and_records_it(bbm: Path, tmp_path: Path) -> None:
    first = bbm.read_text(encoding="utf-8").splitlines()[0]
    trace = tmp_path / "trace.json"
    trace.write_text(first, encoding="utf-8")
    ledger = tmp_path / "ledger.sqlite"
    result = _audit(trace, "--ledger", ledger, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "invalid"
    assert report["first_faulty_index"] == json.loads(first)["mistake_index"]
    assert report["steps"][report["first_faulty_index"]]["tier"] == "computational"
    with Ledger(ledger) as opened:
        assert opened.verify().ok
        assert opened.size == len(report["ledger_entries"])
        assert opened.entry(opened.size - 1).record["kind"] == "audit"


def test_text_output_and_a_line_of_a_jsonl_file(bbm: Path, tmp_path: Path) -> None:
    result = _audit(bbm, "--line", "1", "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 0, result.output
    assert "verdict: invalid" in result.stdout
    assert "first faulty step: step4" in result.stdout


def test_several_traces_need_a_line(bbm: Path, tmp_path: Path) -> None:
    result = _audit(bbm, "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 2
    assert "choose one with --line" in result.output
    assert "Traceback" not in result.output


def test_free_text_from_stdin(tmp_path: Path) -> None:
    text = "Step 1: 2 + 3 = 5.\nStep 2: 5 * 4 = 21.\n"
    result = _audit("-", "--ledger", tmp_path / "l.sqlite", "--json", stdin=text)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["first_faulty_step"] == "step2"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"steps": [1, "x"]}', ".json", "trace.json:1: steps[0] is not a string"),
        ('{"steps": [\n "a",\n ]}', ".json", "trace.json:3:2: invalid JSON"),
        ('{"goal": "g"}', ".json", 'trace.json:1: no "steps" field'),
        ('{"steps": ["a"]}\n{"steps": 3}\n', ".jsonl", "trace.jsonl:2: steps must be a list"),
        ("   \n", ".txt", "trace.txt: the trace is empty"),
    ],
)
def test_malformed_traces_name_file_position_and_reason(
    tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    trace = tmp_path / f"trace{suffix}"
    trace.write_text(content, encoding="utf-8")
    extra = ["--line", "2"] if suffix == ".jsonl" else []
    result = _audit(trace, *extra, "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = _audit(tmp_path / "nope.json", "--ledger", tmp_path / "l.sqlite")
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_goal_is_read_from_the_question_fields() -> None:
    trace = parse_trace('{"input": "2 + 2 =", "steps": ["2 + 2 = 4"]}', name="t", kind=".json")
    assert trace.goal == "2 + 2 ="
    assert trace.steps == ("2 + 2 = 4",)
    with pytest.raises(TraceFileError, match="only be chosen"):
        parse_trace("text", name="t", kind=".txt", line=2)


# --- --decompose-with CARD ------------------------------------------------------------------

LLM_TRACE = {"goal": "What is (3 + 4) * 2?", "steps": ["First, 3 + 4 = 7.", "Then 7 * 2 = 15."]}
LLM_REPLY = {
    "goal": "ignored: the file names the goal",
    "strategies": [{"text": "plan", "tactics": [{"text": "bracket first", "steps": [1, 2]}]}],
    "steps": [
        {"step": 1, "depends_on": [], "operations": ["3 + 4 = 7"]},
        {"step": 2, "depends_on": [1], "operations": ["7 * 2 = 15"]},
    ],
}


def _scripted_card(monkeypatch: pytest.MonkeyPatch, backend: ScriptedBackend) -> None:
    import trust.llm_decompose

    def fake(card: object, *, cache: bool = False) -> Backend:
        return backend

    monkeypatch.setattr(trust.llm_decompose, "backend_for_card", fake)


@pytest.fixture
def llm_trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(LLM_TRACE), encoding="utf-8")
    return path


def test_decompose_with_a_card_audits_the_models_hdag(
    llm_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend([json.dumps(LLM_REPLY)])
    _scripted_card(monkeypatch, backend)
    args = ("--decompose-with", "gpt-4o-mini", "--json", "--tree")
    result = _audit(llm_trace, "--ledger", tmp_path / "l.sqlite", *args)
    assert result.exit_code == 0, result.output
    assert len(backend.requests) == 1
    report = json.loads(result.stdout)
    assert report["first_faulty_step"] == "step2"
    assert "bracket first" in result.stderr  # the model's tactic, in the audited tree
    assert "note:" not in result.stderr


def test_decompose_with_falls_back_to_the_rules_with_a_note(
    llm_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend(["no json"] * 3)
    _scripted_card(monkeypatch, backend)
    result = _audit(llm_trace, "--ledger", tmp_path / "l.sqlite", "--decompose-with", "gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert len(backend.requests) == 3  # asked, then retried twice
    assert "note: no usable decomposition" in result.stderr
    assert "first faulty step: step2" in result.stdout


def test_decompose_with_an_unknown_card_exits_2_before_the_ledger(
    llm_trace: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "l.sqlite"
    result = _audit(llm_trace, "--ledger", ledger, "--decompose-with", "no-such-card")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown model card 'no-such-card'")
    assert "Traceback" not in result.output
    assert not ledger.exists()
