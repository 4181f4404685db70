"""``goa eval``: methods over a question set, a resumable log, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.goa_app import app
from goa import paths
from goa.inference import factory
from goa.testing.agents import Agent, agent

runner = CliRunner()

CARD = """\
id: {id}
backend: scripted
model: {id}
description: A scripted agent for the goa eval tests, number {size}.
domains: [testing]
parameters_b: {size}
context_window: 4096
license: MIT
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Agent]]:
    """Three scripted agents that always answer B, and four questions (gold B, B, B, A)."""
    config = paths.config_path()
    cards = config.parent / "cards"
    cards.mkdir(parents=True)
    agents = {}
    for size, card_id in enumerate("xyz", 1):
        (cards / f"{card_id}.yaml").write_text(CARD.format(id=card_id, size=size))
        agents[card_id] = agent(card_id, "It is B.\nAnswer: B", pool="Pooled: B.\nAnswer: B")
    config.write_text('card_dirs = ["cards"]\n\n[pools.trio]\ncards = ["x", "y", "z"]\n')
    monkeypatch.setattr(factory, "backend_for_card", lambda card, cache=False: agents[card.id])
    data = tmp_path / "quiz.jsonl"
    rows = [
        {"id": f"q{i}", "question": f"Question {i}?", "choices": ["yes", "no"], "gold": gold}
        for i, gold in enumerate("BBBA")
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data, agents


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["eval", *args])


def test_vote_run_logs_every_sample_and_reports_accuracy(
    setup: tuple[Path, dict[str, Agent]], tmp_path: Path
) -> None:
    data, agents = setup
    log = tmp_path / "run.jsonl"
    result = invoke(
        "--method", "vote", "--data", str(data), "--pool", "trio", "--log", str(log), "--json"
    )
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert (summary["method"], summary["n"], summary["correct"]) == ("vote", 4, 3)
    assert summary["accuracy"] == 0.75
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(line["sample_id"] for line in lines) == ["q0", "q1", "q2", "q3"]
    assert sum(len(a.requests) for a in agents.values()) == 12  # 3 voters x 4 questions


def test_rerun_resumes_without_new_calls(
    setup: tuple[Path, dict[str, Agent]], tmp_path: Path
) -> None:
    data, agents = setup
    log = tmp_path / "run.jsonl"
    args = (
        "--method",
        "single",
        "--data",
        str(data),
        "--pool",
        "trio",
        "--log",
        str(log),
        "--json",
    )
    assert invoke(*args).exit_code == 0
    before = sum(len(a.requests) for a in agents.values())
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert sum(len(a.requests) for a in agents.values()) == before
    assert len(log.read_text().splitlines()) == 4


def test_config_file_runs_several_methods(
    setup: tuple[Path, dict[str, Agent]], tmp_path: Path
) -> None:
    data, _ = setup
    config = tmp_path / "methods.toml"
    config.write_text(
        '[[methods]]\nmethod = "single"\n\n[[methods]]\nmethod = "moa"\nlayers = 1\n\n'
        '[[methods]]\nmethod = "goa"\nname = "goa-k2"\nk = 2\nselector = "profile"\n'
    )
    log = tmp_path / "run.jsonl"
    result = invoke(
        "--config", str(config), "--data", str(data), "--pool", "trio", "--log", str(log), "--json"
    )
    assert result.exit_code == 0, result.output
    names = [s["method"] for s in json.loads(result.stdout)]
    assert names == ["single:z", "moa", "goa-k2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "mmlu"], "error: give either --method or --config"),
        (["--method", "vote", "--data", "nosuch"], "error: "),
        (["--method", "dice", "--data", "mmlu"], "error: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_config_names_the_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "methods.toml"
    config.write_text('[[methods]]\nmethod = "goa"\nk = 0\n')
    result = invoke("--config", str(config), "--data", "mmlu")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {config} (methods #1, k): ")


def test_malformed_dataset_names_file_and_row(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "question": "Q?", "choices": ["x", "y"], "gold": "C"}\n')
    result = invoke("--method", "vote", "--data", str(data))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {data}:1")


def test_questions_a_card_was_profiled_on_are_refused(
    setup: tuple[Path, dict[str, Agent]], tmp_path: Path
) -> None:
    from goa.eval.datasets import load_dataset
    from goa.eval.profile import fingerprint

    data, _ = setup
    used = [fingerprint(s) for s in load_dataset(str(data))][:1]
    cards = paths.config_path().parent / "cards"
    card = cards / "x.yaml"
    card.write_text(
        card.read_text()
        + f"measured_accuracy:\n  quiz:\n    accuracy: 0.5\n    n: 1\n    samples: [{used[0]}]\n"
    )
    result = invoke(
        "--method",
        "single",
        "--data",
        str(data),
        "--pool",
        "trio",
        "--log",
        str(tmp_path / "l.jsonl"),
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: card(s) x were profiled on some of these questions")


def test_retry_failed_asks_again_only_for_the_questions_whose_calls_failed(
    setup: tuple[Path, dict[str, Agent]], tmp_path: Path
) -> None:
    data, agents = setup
    log = tmp_path / "run.jsonl"
    args = ("--method", "single", "--data", str(data), "--pool", "trio", "--log", str(log))
    assert invoke(*args, "--json").exit_code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:  # as if q2's call had run out of memory
        if line["sample_id"] == "q2":
            line.update(failed_calls=1, correct=False, no_answer=True)
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = sum(len(a.requests) for a in agents.values())
    result = invoke(*args, "--json", "--retry-failed")
    assert result.exit_code == 0, result.output
    assert sum(len(a.requests) for a in agents.values()) == before + 1
    (summary,) = json.loads(result.stdout)
    assert (summary["n"], summary["correct"]) == (4, 3)
    assert len(log.read_text().splitlines()) == 5
