"""Hub datasets (``hub:OWNER/NAME``): row layouts, splits and errors, all offline.

A local folder stands in for the hub id: ``datasets`` loads it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.goa_app import app
from goa.errors import ConfigError
from goa.eval.datasets import load_dataset
from goa.eval.hub_datasets import load_hub, parse_spec


def _parquet(folder: Path, split: str, rows: list[dict[str, Any]]) -> Path:
    from datasets import Dataset

    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def _jsonl(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode, also where datasets / huggingface_hub were imported before."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


MMLU_ROWS = [
    {
        "question": "What is 2 + 2?",
        "subject": "elementary_mathematics",
        "choices": ["3", "4", "5", "6"],
        "answer": 1,
    },
    {
        "question": "Which organ pumps blood?",
        "subject": "anatomy",
        "choices": ["liver", "lung", "kidney", "heart"],
        "answer": 3,
    },
]


def test_mmlu_layout_maps_index_to_letter_and_subject_to_category(tmp_path: Path) -> None:
    folder = _parquet(tmp_path / "mmlu", "test", MMLU_ROWS)
    first, second = load_hub(f"hub:{folder}", split="test")
    assert (first.kind, first.choices, first.gold) == ("multiple_choice", ["3", "4", "5", "6"], "B")
    assert (first.subject, first.category) == ("elementary_mathematics", "stem")
    assert first.meta["subcategory"] == "math"
    assert (second.gold, second.letters, second.category) == ("D", "ABCD", "other")
    assert first.id == "mmlu/test/0"
    assert first.meta["split"] == "test"


def test_mmlu_pro_layout_keeps_the_letter_and_category(tmp_path: Path) -> None:
    rows = [
        {
            "question_id": 70,
            "question": "Which is a prime?",
            "options": ["4", "6", "7", "8", "9", "10", "12", "14", "15", "16"],
            "answer": "C",
            "answer_index": 2,
            "cot_content": "",
            "category": "math",
            "src": "ori_mmlu-high_school_mathematics",
        }
    ]
    folder = _parquet(tmp_path / "mmlu-pro", "test", rows)
    (sample,) = load_hub(f"hub:{folder}", split="test")
    assert (sample.kind, sample.gold, sample.letters) == ("multiple_choice", "C", "ABCDEFGHIJ")
    assert (sample.category, sample.subject) == ("math", None)


def test_math_layout_gold_is_the_answer(tmp_path: Path) -> None:
    rows = [
        {"question": "Solve $x + 1 = 3$.", "answer": "2"},
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    ]
    folder = _jsonl(tmp_path / "math", "test.jsonl", rows)
    plain, gsm8k = load_hub(f"hub:{folder}", split="test")
    assert (plain.kind, plain.gold, plain.choices) == ("math", "2", None)
    assert gsm8k.gold == "7"
    assert gsm8k.meta["solution"] == "3 + 4 = 7\n#### 7"


def test_goa_own_schema_rows_are_read_as_own_files(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "gold": "B"},
        {"id": "q2", "question": "Solve $x + 1 = 3$.", "gold": "2", "kind": "math"},
    ]
    folder = _jsonl(tmp_path / "own", "test.jsonl", rows)
    mc, math = load_hub(f"hub:{folder}", split="test")
    assert (mc.id, mc.kind, mc.gold, mc.choices) == ("q1", "multiple_choice", "B", ["3", "4"])
    assert (math.id, math.kind, math.gold) == ("q2", "math", "2")


def test_own_schema_errors_name_the_hub_row(tmp_path: Path) -> None:
    rows = [{"question": "2 + 2 = ?", "choices": ["3", "4"], "gold": "C"}]
    folder = _jsonl(tmp_path / "own", "test.jsonl", rows)
    with pytest.raises(ConfigError, match=r"\(test, row 0\): gold 'C' is not one of the options"):
        load_hub(f"hub:{folder}", split="test")


def test_dev_split_prefers_validation(tmp_path: Path) -> None:
    folder = _parquet(tmp_path / "mmlu", "test", MMLU_ROWS)
    _parquet(folder, "validation", MMLU_ROWS[:1])
    (sample,) = load_hub(f"hub:{folder}", split="dev")
    assert sample.meta["split"] == "validation"
    assert sample.id == "mmlu/validation/0"
    assert len(load_hub(f"hub:{folder}", split="test")) == 2


def test_dev_split_falls_back_to_a_dev_split_and_config_is_picked(tmp_path: Path) -> None:
    folder = _jsonl(tmp_path / "set", "dev.jsonl", [{"question": "1 + 1?", "answer": "2"}])
    _jsonl(folder, "test.jsonl", [{"question": "2 + 2?", "answer": "4"}])
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: arith\n  data_files:\n"
        "  - split: dev\n    path: dev.jsonl\n  - split: test\n    path: test.jsonl\n---\n"
    )
    (sample,) = load_hub(f"hub:{folder}:arith", split="dev")
    assert (sample.gold, sample.meta["split"], sample.id) == ("2", "dev", "set:arith/dev/0")
    with pytest.raises(ConfigError, match=r"cannot load: BuilderConfig 'nosuch' not found"):
        load_hub(f"hub:{folder}:nosuch", split="test")


def test_missing_dev_split_is_a_config_error(tmp_path: Path) -> None:
    folder = _parquet(tmp_path / "mmlu", "test", MMLU_ROWS)
    with pytest.raises(ConfigError, match=r"has no validation or dev split for goa's 'dev'"):
        load_hub(f"hub:{folder}", split="dev")


def test_unknown_columns_name_the_row_and_its_columns(tmp_path: Path) -> None:
    rows = [{"problem": "What is 1 + 1?", "solution": "2"}]
    folder = _parquet(tmp_path / "odd", "test", rows)
    with pytest.raises(ConfigError) as caught:
        load_hub(f"hub:{folder}", split="test")
    assert caught.value.location == f"hub:{folder} (test, row 0)"
    assert "problem, solution" in caught.value.problem
    assert "no known layout" in caught.value.problem


def test_load_dataset_routes_hub_and_applies_filters(tmp_path: Path) -> None:
    folder = _parquet(tmp_path / "mmlu", "test", MMLU_ROWS)
    (sample,) = load_dataset(f"hub:{folder}", subjects=["anatomy"])
    assert sample.gold == "D"
    assert len(load_dataset(f"hub:{folder}", limit=1)) == 1
    with pytest.raises(ConfigError, match=r"unknown category 'law'"):
        load_dataset(f"hub:{folder}", categories=["law"])


@pytest.mark.usefixtures("offline")
def test_unreachable_or_unknown_hub_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_hub("hub:goa-made-up-owner/no-such-dataset-xyz", split="test")
    assert caught.value.location == "dataset hub:goa-made-up-owner/no-such-dataset-xyz"
    assert "could not be reached or the dataset was not found" in caught.value.problem
    assert "\n" not in caught.value.problem


@pytest.mark.parametrize("spec", ["hub:", "hub:owner/name:"])
def test_malformed_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected hub:OWNER/NAME"):
        parse_spec(spec)


def test_spec_with_config() -> None:
    assert parse_spec("hub:cais/mmlu:all") == ("cais/mmlu", "all")
    assert parse_spec("hub:cais/mmlu") == ("cais/mmlu", None)


@pytest.mark.usefixtures("offline")
def test_cli_missing_hub_id_exits_2_with_one_error_line() -> None:
    result = CliRunner().invoke(
        app, ["eval", "--method", "vote", "--data", "hub:goa-made-up-owner/no-such-dataset-xyz"]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: dataset hub:goa-made-up-owner/no-such-dataset-xyz: ")
    assert "could not be reached" in result.stderr
    assert "Traceback" not in result.output


def test_default_log_name_of_a_hub_id_is_a_plain_file_name() -> None:
    from cli.eval_cmd import _log_stem

    assert _log_stem("hub:cais/mmlu:all") == "hub-cais-mmlu-all"
    assert _log_stem("mmlu") == "mmlu"
    assert _log_stem("data/questions.jsonl") == "questions"
