"""``goa profile``: measured accuracy per category written into the cards, never on test sets."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.profile_cmd import profile_command
from goa import paths
from goa.cards import ModelCard, all_cards, builtin_cards, check_cards, load_card
from goa.errors import ConfigError
from goa.eval.datasets import load_file
from goa.eval.profile import fingerprint, load_dev_samples, overlaps, profile_pool
from goa.inference import factory
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest
from goa.pools import load_pool
from goa.select import profile_ranking
from goa.testing.agents import Agent

app = typer.Typer()
app.command("profile")(profile_command)


@app.callback()
def _root() -> None:
    """Keep ``profile`` a subcommand."""


runner = CliRunner()

CARD = """\
id: {id}
backend: scripted
model: {id}
description: A scripted agent for the goa profile tests, number {size}.
domains: [testing]
parameters_b: {size}
context_window: 4096
license: MIT
"""

# 4 STEM and 4 humanities questions; the gold letter cycles A, B, C, D.
QUESTIONS = [(f"q{i}", "STEM" if i < 4 else "humanities", "ABCD"[i % 4]) for i in range(8)]
# Which questions each agent answers right.
RIGHT = {
    "sci": {"q0", "q1", "q2", "q3", "q4"},  # STEM 4/4, humanities 1/4
    "hum": {"q0", "q1", "q4", "q5", "q6", "q7"},  # STEM 2/4, humanities 4/4
}


def write_dev(directory: Path, name: str = "school_dev.jsonl") -> Path:
    path = directory / name
    rows = [
        {
            "id": qid,
            "question": f"Profile question {qid}: which letter?",
            "choices": ["one", "two", "three", "four"],
            "gold": gold,
            "category": category,
        }
        for qid, category, gold in QUESTIONS
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def answerer(name: str) -> Agent:
    golds = {qid: gold for qid, _, gold in QUESTIONS}

    def reply(request: ChatRequest) -> str:
        text = request.messages[-1].content
        found = re.search(r"Profile question (q\d+)", text)
        assert found is not None, text
        qid = found.group(1)
        gold = golds[qid]
        letter = gold if qid in RIGHT[name] else "ABCD"[("ABCD".index(gold) + 1) % 4]
        return f"Thinking.\nAnswer: {letter}"

    return Agent(name, answer=reply)


@pytest.fixture
def agents(monkeypatch: pytest.MonkeyPatch) -> dict[str, Agent]:
    made = {name: answerer(name) for name in RIGHT}

    def backend_for(card: ModelCard, *, cache: Any = False) -> Backend:
        return made[card.id]

    monkeypatch.setattr(factory, "backend_for_card", backend_for)
    return made


@pytest.fixture
def pool(agents: dict[str, Agent]) -> str:
    """A user pool 'duo' of the scripted cards sci and hum, in the user's card folder."""
    config = paths.config_path()
    cards = config.parent / "mycards"
    cards.mkdir(parents=True)
    for size, card_id in enumerate(agents, 1):
        (cards / f"{card_id}.yaml").write_text(CARD.format(id=card_id, size=size))
    config.write_text('card_dirs = ["mycards"]\n\n[pools.duo]\ncards = ["sci", "hum"]\n')
    return "duo"


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["profile", *args])


def test_cards_get_accuracy_per_category_with_n_and_date(pool: str, tmp_path: Path) -> None:
    dev = write_dev(tmp_path)
    day = date(2025, 3, 4)
    profiles = asyncio.run(profile_pool(load_pool(pool), str(dev), today=day, concurrency=3))
    assert [p.card_id for p in profiles] == ["sci", "hum"]
    cards = all_cards()
    expected = {
        "sci": {"STEM": 1.0, "humanities": 0.25, "school": 5 / 8},
        "hum": {"STEM": 0.5, "humanities": 1.0, "school": 6 / 8},
    }
    for card_id, accuracies in expected.items():
        card = cards[card_id]
        assert {k: m.accuracy for k, m in card.measured_accuracy.items()} == accuracies
        for name, m in card.measured_accuracy.items():
            assert m.n == (8 if name == "school" else 4)
            assert m.as_of == day
            assert m.source == f"goa profile on {dev} dev split"
        # written over the user's own card file, which still loads
        path = paths.config_dir() / "mycards" / f"{card_id}.yaml"
        assert load_card(path) == card
        assert not card.override
    # the profile selector now ranks by the measurements
    duo = load_pool(pool).cards
    assert [p.card.id for p in profile_ranking(duo, "STEM")] == ["sci", "hum"]
    assert [p.card.id for p in profile_ranking(duo, "humanities")] == ["hum", "sci"]
    assert [p.card.id for p in profile_ranking(duo, "school")] == ["hum", "sci"]


def test_rerun_resumes_from_the_log(pool: str, tmp_path: Path, agents: dict[str, Agent]) -> None:
    dev = write_dev(tmp_path)
    asyncio.run(profile_pool(load_pool(pool), str(dev)))
    calls = sum(len(a.requests) for a in agents.values())
    assert calls == 16
    asyncio.run(profile_pool(load_pool(pool), str(dev)))
    assert sum(len(a.requests) for a in agents.values()) == calls


def test_overlaps_tells_which_questions_were_used(pool: str, tmp_path: Path) -> None:
    dev = write_dev(tmp_path)
    asyncio.run(profile_pool(load_pool(pool), str(dev), limit=3))
    card = all_cards()["sci"]
    samples = load_file(dev)
    assert overlaps(card, samples[:1])
    assert not overlaps(card, samples[3:])
    assert card.measured_accuracy["school"].samples == tuple(
        sorted(fingerprint(s) for s in samples[:3])
    )
    assert not overlaps(builtin_cards()["gpt-4o"], samples)


def test_builtin_card_gets_an_overriding_user_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No card_dirs configured: <config dir>/cards is created and added to config.toml."""
    sci = answerer("sci")
    monkeypatch.setattr(factory, "backend_for_card", lambda card, *, cache=False: sci)
    paths.config_path().parent.mkdir(parents=True, exist_ok=True)
    paths.config_path().write_text('[pools.one]\ncards = ["smollm2-135m"]\n')
    dev = write_dev(tmp_path)
    before = builtin_cards()["smollm2-135m"]
    (profile,) = asyncio.run(profile_pool(load_pool("one"), str(dev)))
    assert profile.path == paths.config_dir() / "cards" / "smollm2-135m.yaml"
    assert 'card_dirs = ["cards"]' in paths.config_path().read_text()
    card = all_cards()["smollm2-135m"]
    assert card.override
    assert card.measured_accuracy["STEM"].accuracy == 1.0
    assert card.measured_accuracy["mmlu"] == before.measured_accuracy["mmlu"]  # kept
    assert builtin_cards()["smollm2-135m"] == before  # the package is untouched
    assert load_pool("one").cards[0] == card
    report = check_cards()
    assert not report.errors
    assert [i.card for i in report.ok if i.card.id == "smollm2-135m"] == [card]


def test_user_card_without_override_still_may_not_reuse_a_builtin_id(tmp_path: Path) -> None:
    text = CARD.format(id="gpt-4o", size=1)
    (tmp_path / "gpt-4o.yaml").write_text(text)
    with pytest.raises(ConfigError, match="override: true"):
        all_cards([tmp_path])
    (tmp_path / "gpt-4o.yaml").write_text(text + "override: true\n")
    assert all_cards([tmp_path])["gpt-4o"].model == "gpt-4o"
    assert all_cards([tmp_path])["gpt-4o"].description.startswith("A scripted agent")


@pytest.mark.parametrize("name", ["school_test.jsonl", "school.jsonl", "dev_test.json"])
def test_a_file_not_named_as_a_dev_split_is_refused(tmp_path: Path, name: str) -> None:
    dev = write_dev(tmp_path, name)
    with pytest.raises(ConfigError, match="development split only"):
        load_dev_samples(str(dev))


def test_named_sets_use_their_dev_split_and_a_set_without_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no dev split"):
        load_dev_samples("aime")


def test_cli_prints_the_table_and_json(pool: str, tmp_path: Path) -> None:
    dev = write_dev(tmp_path)
    result = invoke("--pool", pool, "--data", str(dev), "--concurrency", "2")
    assert result.exit_code == 0, result.output
    assert "STEM" in result.stdout
    assert "humanities" in result.stdout
    assert "1.000 (4)" in result.stdout
    assert "0.625 (8)" in result.stdout
    result = invoke("--pool", pool, "--data", str(dev), "--json", "--limit", "4")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["card"] for d in data] == ["sci", "hum"]
    assert data[1]["measurements"]["STEM"]["accuracy"] == 0.5
    assert data[1]["measurements"]["school"]["n"] == 4


def test_cli_bad_pool_is_one_line_exit_2(pool: str, tmp_path: Path) -> None:
    dev = write_dev(tmp_path)
    result = invoke("--pool", "nope", "--data", str(dev))
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown pool 'nope'" in result.stderr


def test_cli_refuses_a_test_file(pool: str, tmp_path: Path) -> None:
    dev = write_dev(tmp_path, "school_test.jsonl")
    result = invoke("--pool", pool, "--data", str(dev))
    assert result.exit_code == 2
    assert "development split only" in result.stderr
