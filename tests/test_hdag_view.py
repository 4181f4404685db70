"""The H-DAG tree view (trust.hdag_view) and the ``trust hdag`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from cli.trust_app import app
from goa.inference.backend import Backend
from goa.testing import ScriptedBackend
from trust.decompose import decompose
from trust.hdag import HDAG, HNode, Level
from trust.hdag_view import hdag_tree, shorten

runner = CliRunner()

STEPS = ["First, 3 + 4 = 7.", "Then 7 * 2 = 14.", "So 14 - 5 = 9, the answer."]
GOAL = "What is (3 + 4) * 2 - 5?"


def _render(hdag: HDAG, verdicts: dict[str, str] | None = None, width: int = 120) -> str:
    console = Console(record=True, width=width)
    console.print(hdag_tree(hdag, verdicts))
    return console.export_text()


def _trust(*args: str | Path, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(map(str, args)), input=stdin)


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"goal": GOAL, "steps": STEPS}), encoding="utf-8")
    return path


# --- the tree -----------------------------------------------------------------------------


def test_the_tree_shows_every_node_its_dependencies_and_the_verdicts() -> None:
    hdag = decompose(STEPS, goal=GOAL)
    verdicts = {"step1": "valid", "step2": "invalid", "step3": "undecided", "nowhere": "valid"}
    text = _render(hdag, verdicts)
    for node in hdag.nodes:
        assert node.id in text
    for mark in ("[valid]", "[invalid]", "[undecided]"):
        assert mark in text
    lines = {line.split()[-1]: line for line in text.splitlines() if line.strip()}
    assert "step2" in lines["[invalid]"]
    assert "uses step1" in lines["[invalid]"]
    assert "uses step2" in lines["[undecided]"]
    # The levels nest: goal > strategy > tactic > step > operation.
    indents = {
        node.id: next(line for line in text.splitlines() if f"{node.id} " in line).index(node.id)
        for node in hdag.nodes
    }
    assert indents["goal"] < indents["strategy"] < indents["tactic"] < indents["step2"]
    assert indents["step2"] < indents["step2.op1"]


def test_the_tree_has_colours_and_no_markup_from_the_trace() -> None:
    hdag = decompose(["[bold]Take[/bold] 2 + 2 = 4.", "Then 4 * 3 = 12."], goal="[red]q")
    console = Console(record=True, width=100, color_system="truecolor", force_terminal=True)
    console.print(hdag_tree(hdag, {"step1": "valid", "step2": "invalid"}))
    plain = console.export_text(clear=False)
    assert "[bold]Take[/bold]" in plain
    assert "[red]q" in plain
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled  # verdicts and ids are styled


def test_long_text_is_shortened_and_other_ids_show_their_level() -> None:
    long = "word " * 100
    hdag = HDAG(
        nodes=(
            HNode(id="q", level=Level.GOAL, text="the question", parent=None),
            HNode(id="s1", level=Level.STEP, text=long, parent="q"),
            HNode(id="s2", level=Level.STEP, text="next", parent="q", depends_on=("s1",)),
            HNode(id="c", level=Level.OPERATION, text="1 + 1 = 2", parent="s2"),
        )
    )
    text = _render(hdag, width=200)
    assert "q (goal)" in text
    assert "s1 (step)" in text
    assert "c (operation)" in text
    assert "uses s1" in text
    assert "..." in text
    assert len(shorten(long, 40)) <= 40
    assert shorten("a\n  b", 40) == "a b"


def test_an_llm_decomposition_renders_with_its_tactics() -> None:
    import asyncio

    from trust.llm_decompose import llm_decompose

    reply = {
        "goal": "g",
        "strategies": [
            {
                "text": "plan",
                "tactics": [{"text": "add", "steps": [1]}, {"text": "rest", "steps": [2, 3]}],
            }
        ],
        "steps": [
            {"step": 1, "depends_on": [], "operations": ["3 + 4 = 7"]},
            {"step": 2, "depends_on": [1], "operations": []},
            {"step": 3, "depends_on": [1, 2], "operations": []},
        ],
    }
    hdag = asyncio.run(llm_decompose(STEPS, ScriptedBackend([json.dumps(reply)])))
    text = _render(hdag)
    for node_id in ("strategy1", "tactic1", "tactic2", "step1.op1"):
        assert node_id in text
    assert "uses step1, step2" in text
    assert "(tactic)" not in text


# --- trust hdag ---------------------------------------------------------------------------


def test_trust_hdag_prints_the_tree(trace_file: Path) -> None:
    result = _trust("hdag", trace_file)
    assert result.exit_code == 0, result.output
    for node in decompose(STEPS, goal=GOAL).nodes:
        assert node.id in result.stdout
    assert GOAL in result.stdout
    assert "uses step1" in result.stdout


def test_trust_hdag_json_round_trips(trace_file: Path) -> None:
    result = _trust("hdag", trace_file, "--json")
    assert result.exit_code == 0, result.output
    hdag = HDAG.from_json(result.stdout)
    assert hdag == decompose(STEPS, goal=GOAL)
    assert json.loads(result.stdout)["nodes"][0]["id"] == "goal"


def test_trust_hdag_reads_stdin_and_jsonl_lines(tmp_path: Path) -> None:
    result = _trust("hdag", "-", "--json", stdin="1. 2 + 2 = 4.\n2. 4 * 5 = 20.\n")
    assert result.exit_code == 0, result.output
    assert [n.id for n in HDAG.from_json(result.stdout).nodes if n.level is Level.STEP] == [
        "step1",
        "step2",
    ]
    lines = tmp_path / "traces.jsonl"
    lines.write_text(json.dumps(["a 1 + 1 = 2"]) + "\n" + json.dumps(STEPS) + "\n")
    result = _trust("hdag", lines, "--line", "2", "--json")
    assert result.exit_code == 0, result.output
    assert HDAG.from_json(result.stdout) == decompose(STEPS)


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"steps": [1, "x"]}', ".json", "trace.json:1: steps[0] is not a string"),
        ('{"steps": [\n "a",\n ]}', ".json", "trace.json:3:2: invalid JSON"),
        ('["a"]\n{"steps": 3}\n', ".jsonl", "trace.jsonl:2: steps must be a list"),
    ],
)
def test_a_malformed_trace_file_exits_2_naming_file_and_line(
    tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    trace = tmp_path / f"trace{suffix}"
    trace.write_text(content, encoding="utf-8")
    line = ["--line", "2"] if suffix == ".jsonl" else []
    result = _trust("hdag", trace, *line)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output


def test_a_missing_file_and_an_unknown_card_exit_2(trace_file: Path, tmp_path: Path) -> None:
    result = _trust("hdag", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "nope.json: no such file" in result.output
    result = _trust("hdag", trace_file, "--llm", "no-such-card")
    assert result.exit_code == 2
    assert "unknown model card 'no-such-card'" in result.output


def _scripted_card(monkeypatch: pytest.MonkeyPatch, backend: ScriptedBackend) -> None:
    import trust.llm_decompose

    def fake(card: object, *, cache: bool = False) -> Backend:
        return backend

    monkeypatch.setattr(trust.llm_decompose, "backend_for_card", fake)


def test_trust_hdag_llm_uses_the_cards_model(
    trace_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = {
        "goal": "ignored: the file names the goal",
        "strategies": [{"text": "plan", "tactics": [{"text": "compute", "steps": [1, 2, 3]}]}],
        "steps": [
            {"step": 1, "depends_on": [], "operations": ["3 + 4 = 7"]},
            {"step": 2, "depends_on": [1], "operations": ["7 * 2 = 14"]},
            {"step": 3, "depends_on": [2], "operations": ["14 - 5 = 9"]},
        ],
    }
    backend = ScriptedBackend(["not json", json.dumps(reply)])
    _scripted_card(monkeypatch, backend)
    result = _trust("hdag", trace_file, "--llm", "gpt-4o-mini", "--json")
    assert result.exit_code == 0, result.output
    hdag = HDAG.from_json(result.stdout)
    assert hdag.goal.text == GOAL
    assert hdag.node("tactic1").text == "compute"
    assert len(backend.requests) == 2
    assert result.stderr == ""


def test_trust_hdag_llm_falls_back_with_a_note(
    trace_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_card(monkeypatch, ScriptedBackend(["no", "no"]))
    result = _trust("hdag", trace_file, "--llm", "gpt-4o-mini", "--max-retries", "1")
    assert result.exit_code == 0, result.output
    assert "note: no usable decomposition" in result.stderr
    assert "rule-based decomposition instead" in result.stderr
    assert "step3" in result.stdout


# --- trust audit --tree -------------------------------------------------------------------


def test_trust_audit_tree_shows_each_steps_decision(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(["First, 3 + 4 = 7.", "Then 7 * 2 = 15."]), encoding="utf-8")
    ledger = tmp_path / "ledger.sqlite"
    result = _trust("audit", trace, "--ledger", ledger, "--tree")
    assert result.exit_code == 0, result.output
    tree = result.stdout[result.stdout.index("goal ") :]
    assert "step1" in tree
    assert "[valid]" in tree
    assert "[invalid]" in tree
    result = _trust("audit", trace, "--ledger", ledger, "--tree", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["first_faulty_step"] == "step2"
    assert "[invalid]" in result.stderr
