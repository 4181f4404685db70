"""Question sets from the Hugging Face hub, as :class:`~goa.eval.datasets.Sample`.

``hub:OWNER/NAME`` or ``hub:OWNER/NAME:CONFIG`` loads a hub dataset through the
``datasets`` library (imported only when one is loaded; files are cached under
the user data folder, in ``hf-datasets``). A local folder of parquet or JSON
files may stand in place of ``OWNER/NAME``: ``datasets`` reads it the same way.

goa's ``test`` split is the hub's ``test``; ``dev`` is ``validation``, else
``dev``. Each row is read by its columns, see :func:`row_sample`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from goa import paths
from goa.errors import ConfigError
from goa.eval.datasets import (
    LETTERS,
    MMLU_SUBJECTS,
    Sample,
    _need_str,
    _own_fields,
    _sample,
)

PREFIX = "hub:"

SPLITS: dict[str, tuple[str, ...]] = {"test": ("test",), "dev": ("validation", "dev")}
"""goa's split -> the hub split names tried, in order."""

LAYOUTS = (
    "goa's own (question, gold, ...), MMLU (question, choices, answer index), "
    "MMLU-Pro (question, options, answer letter) or math (question, answer)"
)

_GSM8K_MARKER = "\n#### "


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``hub:OWNER/NAME[:CONFIG]`` -> (path or hub id, config or None)."""
    rest = spec.removeprefix(PREFIX).strip()
    if rest and (Path(rest).is_dir() or ":" not in rest):
        path, config = rest, None
    else:
        path, _, config = rest.rpartition(":")
    if not path or config == "":
        raise ConfigError(f"dataset {spec!r}", "expected hub:OWNER/NAME or hub:OWNER/NAME:CONFIG")
    return path, config


def _short(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _is_unknown_split(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and str(exc).startswith("Unknown split")


def _hub_failure(exc: BaseException) -> bool:
    """The hub could not be reached, or has no such dataset (or it is gated)."""
    if isinstance(exc, (ConnectionError, TimeoutError, FileNotFoundError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "HfHubHTTPError",
            "RepositoryNotFoundError",
            "HTTPError",
            "ConnectError",
            "TimeoutException",
        }
    )


def _load_split(spec: str, path: str, config: str | None, split: str) -> tuple[str, Any]:
    """(the hub split loaded, its ``datasets.Dataset``)."""
    import datasets

    where = f"dataset {spec}"
    tried = SPLITS[split]
    last: BaseException | None = None
    for hub_split in tried:
        try:
            table = datasets.load_dataset(
                path, config, split=hub_split, cache_dir=str(paths.data_dir() / "hf-datasets")
            )
        except Exception as exc:  # datasets and huggingface_hub raise many types
            if _is_unknown_split(exc):
                last = exc
                continue
            if _hub_failure(exc):
                raise ConfigError(
                    where,
                    f"the Hugging Face hub could not be reached or the dataset was not found "
                    f"({_short(exc)})",
                ) from None
            raise ConfigError(where, f"cannot load: {_short(exc)}") from None
        assert isinstance(table, datasets.Dataset)
        return hub_split, table
    assert last is not None
    raise ConfigError(
        where, f"has no {' or '.join(tried)} split for goa's {split!r} ({_short(last)})"
    )


def _letter(location: str, answer: Any, count: int) -> str:
    """An MMLU answer (an index 0.., or already a letter) as the option's letter."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < min(count, len(LETTERS)):
            return LETTERS[answer]
        raise ConfigError(location, f"answer: index {answer} is not one of the {count} choices")
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in LETTERS:
        return answer.strip()
    raise ConfigError(location, "answer: expected the index of the right choice")


def _str_list(location: str, row: dict[str, Any], key: str) -> list[str]:
    value = row.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(location, f"{key}: expected a list of strings")
    return list(value)


def _label(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def row_sample(location: str, row: dict[str, Any], default_id: str, meta: dict[str, Any]) -> Sample:
    """One hub row as a sample, the layout told by its columns.

    - goa's own schema (``question`` and ``gold``; see :mod:`goa.eval.datasets`);
    - MMLU: ``question``, ``choices`` (list), ``answer`` (0-based index), ``subject``;
    - MMLU-Pro: ``question``, ``options`` (list), ``answer`` (letter), ``category``;
    - math: ``question`` and ``answer`` (the gold answer; for a GSM8K-style
      solution ending ``#### N``, ``N``, with the solution kept in ``meta``).
    """
    columns = set(row)
    if {"question", "gold"} <= columns:
        own = {key: value for key, value in row.items() if value is not None}
        fields = _own_fields(location, own, default_id)
        own_meta = fields.get("meta")
        if own_meta is None or isinstance(own_meta, dict):  # else the schema reports it
            fields["meta"] = {**meta, **(own_meta or {})}
        return _sample(location, fields)
    if {"question", "choices", "answer"} <= columns:
        choices = _str_list(location, row, "choices")
        subject = _label(row.get("subject"))
        subcategory, category = MMLU_SUBJECTS.get(subject or "", (None, None))
        fields = {
            "id": default_id,
            "question": _need_str(location, row, "question"),
            "choices": choices,
            "gold": _letter(location, row["answer"], len(choices)),
            "kind": "multiple_choice",
            "subject": subject,
            "category": category,
            "meta": {**meta, **({"subcategory": subcategory} if subcategory else {})},
        }
        return _sample(location, fields)
    if {"question", "options", "answer"} <= columns:
        fields = {
            "id": default_id,
            "question": _need_str(location, row, "question"),
            "choices": _str_list(location, row, "options"),
            "gold": _need_str(location, row, "answer").strip(),
            "kind": "multiple_choice",
            "subject": _label(row.get("subject")),
            "category": _label(row.get("category")),
            "meta": meta,
        }
        return _sample(location, fields)
    if {"question", "answer"} <= columns:
        answer = _need_str(location, row, "answer")
        extra: dict[str, Any] = {}
        if _GSM8K_MARKER in answer:
            extra["solution"] = answer
            answer = answer.rsplit(_GSM8K_MARKER, 1)[1]
        fields = {
            "id": default_id,
            "question": _need_str(location, row, "question"),
            "gold": answer.strip(),
            "kind": "math",
            "subject": _label(row.get("subject")),
            "category": _label(row.get("category")),
            "meta": {**meta, **extra},
        }
        return _sample(location, fields)
    raise ConfigError(
        location,
        f"no known layout for the columns {', '.join(sorted(columns))}; expected {LAYOUTS}",
    )


def _rows(table: Any) -> Iterator[dict[str, Any]]:
    for row in table:
        yield dict(row)


def load_hub(spec: str, *, split: str) -> list[Sample]:
    """The questions of ``hub:OWNER/NAME[:CONFIG]`` (or ``hub:FOLDER``) for goa's ``split``.

    ``split`` is goa's ``"test"`` or ``"dev"``. Needs network access to the hub
    (or its files already in the ``datasets`` cache) unless a local folder is given.
    """
    if split not in SPLITS:
        raise ConfigError("--split", f"unknown split {split!r}; known: {', '.join(sorted(SPLITS))}")
    path, config = parse_spec(spec)
    shown = f"{PREFIX}{path}" + (f":{config}" if config else "")
    hub_split, table = _load_split(shown, path, config, split)
    base = (Path(path).name if Path(path).is_dir() else path) + (f":{config}" if config else "")
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for index, row in enumerate(_rows(table)):
        location = f"{shown} ({hub_split}, row {index})"
        meta = {"source": shown, "split": hub_split, "row": index}
        sample = row_sample(location, row, f"{base}/{hub_split}/{index}", meta)
        if sample.id in seen:
            raise ConfigError(location, f"id {sample.id!r} repeats (first at {seen[sample.id]})")
        seen[sample.id] = location
        samples.append(sample)
    if not samples:
        raise ConfigError(f"dataset {shown}", f"no questions in the {hub_split} split")
    return samples
