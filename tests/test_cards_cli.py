"""``goa cards``: list, show, validate and generate, through typer's test runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.cards_cmd import cards_app
from goa import paths
from goa.cards import ModelCard, load_card
from goa.inference import ScriptedBackend

runner = CliRunner()

BAD_CARD = """\
id: bad
backend: llamacpp
model: smollm2-135m
description: A card with a wrong type, to test the validate command.
domains: [testing]
license: MIT
context_window: lots
"""


def test_list_json_parses() -> None:
    result = runner.invoke(cards_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)
    ids = {card["id"] for card in cards}
    assert {"smollm2-135m", "gpt-4o", "mathstral-7b"} <= ids
    assert all(ModelCard.model_validate(card) for card in cards)


def test_list_one_pool() -> None:
    result = runner.invoke(cards_app, ["list", "--pool", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 4


def test_list_table() -> None:
    result = runner.invoke(cards_app, ["list", "--pool", "goa-paper"])
    assert result.exit_code == 0, result.output
    assert "saul-7b-instruct" in result.stdout


def test_list_unknown_pool_is_one_error_line() -> None:
    result = runner.invoke(cards_app, ["list", "--pool", "nope"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown pool 'nope'; known pools: local, goa-paper, api"
    ]


def test_show() -> None:
    result = runner.invoke(cards_app, ["show", "qwen2.5-coder-1.5b", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["context_window"] == 32768
    yaml_result = runner.invoke(cards_app, ["show", "qwen2.5-coder-1.5b"])
    assert yaml_result.stdout.startswith("id: qwen2.5-coder-1.5b\n")


def test_show_unknown_card() -> None:
    result = runner.invoke(cards_app, ["show", "gpt5"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown model card 'gpt5'")


def test_validate_everything() -> None:
    result = runner.invoke(cards_app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "ok     modelcards/gpt-4o.yaml (gpt-4o)" in result.stdout
    assert result.stdout.strip().endswith("cards are valid")


def test_validate_bad_card_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CARD, encoding="utf-8")
    result = runner.invoke(cards_app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "bad.yaml:7 (context_window): Input should be a valid integer" in lines[0]
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output


def test_validate_reports_bad_user_config() -> None:
    config = paths.config_path()
    config.parent.mkdir(parents=True)
    config.write_text('[pools.mine]\ncards = ["gpt-4o", "nope"]\n', encoding="utf-8")
    result = runner.invoke(cards_app, ["validate"])
    assert result.exit_code == 2
    assert f"error: {config}:2 (pools.mine.cards): unknown model card 'nope'" in result.stderr


README = "# Tiny-Chat\nA 1.1B English chat model with a 4096-token context, MIT licensed."
REPLY = {
    "id": "whatever",
    "description": "A 1.1 billion parameter English chat model; weak at math and code.",
    "domains": ["general chat"],
    "parameters_b": 1.1,
    "context_window": 4096,
    "license": "MIT",
}


def test_generate_with_a_scripted_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = ScriptedBackend(["not json at all", json.dumps(REPLY)])
    asked_for: list[str] = []

    def fake_factory(card: ModelCard) -> ScriptedBackend:
        asked_for.append(card.id)
        return writer

    monkeypatch.setattr("goa.inference.factory.backend_for_card", fake_factory)
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    out = tmp_path / "cards" / "tiny-chat.yaml"
    args = ["generate", "--from", str(readme), "--model-string", "openai/tiny", "--out", str(out)]
    result = runner.invoke(cards_app, [*args, "--with", "gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    assert asked_for == ["gpt-4o-mini"]
    card = load_card(out)
    assert (card.id, card.model, card.backend) == ("tiny-chat", "openai/tiny", "litellm")
    again = runner.invoke(cards_app, [*args, "--with", "gpt-4o-mini"])
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_generate_gives_up_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = ScriptedBackend(["no", "no", "no"])
    monkeypatch.setattr("goa.inference.factory.backend_for_card", lambda card: writer)
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    out = tmp_path / "x.yaml"
    result = runner.invoke(
        cards_app, ["generate", "--from", str(readme), "--model-string", "m", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "wrote no valid card in 3 attempts" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_module_imports_no_heavy_libraries() -> None:
    code = (
        "import sys, cli.cards_cmd; "
        "print(sorted(m for m in ('pydantic', 'yaml', 'rich', 'goa.cards') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
