"""Profiles: each agent's measured accuracy per domain, written into its model card.

:func:`profile_pool` runs every card of a pool alone
(:class:`~goa.baselines.SingleModel`) over the questions of a *development*
split, through :func:`~goa.eval.runner.run_eval` (one log per agent under
``<data dir>/profiles/<domain>/<card id>.jsonl``: a stopped profile resumes and,
with the response cache, repeats no call; delete the log to measure afresh),
and records in the card, as :class:`~goa.cards.Measurement` entries:

- one per category of the questions (MMLU: ``STEM``, ``humanities``...), and
- one for the whole set, named after it (``mmlu`` for ``mmlu``/``mmlu-dev``,
  ``mmlu`` for a file ``mmlu_dev.jsonl``), which also lists the fingerprints
  of the questions used (:func:`fingerprint`),

each with its accuracy, ``n``, the date (``as_of``) and the source ``goa profile
on <data> dev split``. New entries replace those of the same name; others stay.
The ``profile`` selector (:func:`goa.select.profile_ranking`) ranks by them.

Where the cards go
------------------
Built-in cards are package data and never written. Their updated copy goes to
the user's first card folder (``card_dirs`` in ``config.toml``); when none is
configured, to ``<config dir>/cards``, which is then added to ``config.toml``
as ``card_dirs = ["cards"]``. The copy says ``override: true``, so it replaces
the built-in card (see :mod:`goa.cards`). A user card is rewritten in its own
file (comments in that file are not kept).

Never on evaluation questions
-----------------------------
A named set is always loaded with ``split="dev"`` (``mmlu`` -> ``mmlu-dev``; a
set without a dev split is refused). Your own file must say it is a dev split
in its name: a word ``dev``, ``development``, ``val`` or ``validation`` (e.g.
``physics_dev.jsonl``) and no word ``test``. :func:`overlaps` tells whether an
evaluation's questions were used for a card's profile.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from goa import paths
from goa.cards import Measurement, ModelCard, builtin_cards, card_files, save_card
from goa.errors import ConfigError, GoaError
from goa.eval.datasets import DATASETS, OWN_FILE_SUFFIXES, Sample, load_dataset
from goa.eval.runlog import read_log
from goa.eval.runner import OnProgress, run_eval
from goa.pools import Pool, load_config

DEV_WORDS = frozenset({"dev", "development", "val", "validation"})
TEST_WORDS = frozenset({"test", "tests", "eval"})
_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class AgentProfile:
    """One agent's new measurements and where its card was written."""

    card_id: str
    measurements: dict[str, Measurement]
    path: Path


def fingerprint(sample: Sample) -> str:
    """A short hash of the question's text and options (not its id, so the same
    question is recognised under another id or in another set)."""
    text = "\n".join([sample.question.strip(), *(c.strip() for c in sample.choices or [])])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def overlaps(card: ModelCard, samples: Iterable[Sample]) -> bool:
    """Whether any of ``samples`` was used to measure one of the card's accuracies."""
    used: set[str] = set()
    for measurement in card.measured_accuracy.values():
        used.update(measurement.samples or ())
    return bool(used) and any(fingerprint(s) in used for s in samples)


def _words(name: str) -> list[str]:
    return [w for w in _WORD.split(name.lower()) if w]


def domain_name(data: str) -> str:
    """The name of the overall measurement: the set's name without its dev marker."""
    if data in DATASETS:
        return data.removesuffix("-dev")
    words = [w for w in _words(Path(data).stem) if w not in DEV_WORDS]
    return "-".join(words) or Path(data).stem


def load_dev_samples(
    data: str, *, limit: int | None = None, seed: int | None = None
) -> list[Sample]:
    """The questions of ``data``'s development split; a test split is refused."""
    if data not in DATASETS and data.lower().endswith(OWN_FILE_SUFFIXES):
        words = set(_words(Path(data).stem))
        if words & TEST_WORDS or not words & DEV_WORDS:
            raise ConfigError(
                data,
                "profiles are measured on a development split only, never on evaluation "
                "questions; name the file as a dev split (e.g. mmlu_dev.jsonl)",
            )
    return load_dataset(data, limit=limit, seed=seed, split="dev")


def measure(
    correct_by_id: dict[str, bool],
    samples: Sequence[Sample],
    *,
    domain: str,
    source: str,
    today: date,
) -> dict[str, Measurement]:
    """Accuracy per category and overall (named ``domain``) of the samples' results."""
    groups: dict[str, list[bool]] = {}
    for sample in samples:
        if sample.id in correct_by_id and sample.category:
            groups.setdefault(sample.category, []).append(correct_by_id[sample.id])
    done = [s for s in samples if s.id in correct_by_id]
    results: dict[str, Measurement] = {}
    for name in sorted(groups):
        hits = groups[name]
        results[name] = Measurement(
            accuracy=sum(hits) / len(hits), source=source, n=len(hits), as_of=today
        )
    if done:
        results[domain] = Measurement(
            accuracy=sum(correct_by_id[s.id] for s in done) / len(done),
            source=source,
            n=len(done),
            as_of=today,
            samples=tuple(sorted({fingerprint(s) for s in done})),
        )
    return results


def with_measurements(card: ModelCard, measurements: dict[str, Measurement]) -> ModelCard:
    """The card with ``measurements`` added (replacing those of the same name)."""
    merged = {**card.measured_accuracy, **measurements}
    data = card.model_dump()
    data["measured_accuracy"] = {k: m.model_dump() for k, m in merged.items()}
    return ModelCard.model_validate(data)


# --- Writing cards ---------------------------------------------------------------------


def profile_card_dir() -> Path:
    """The folder for written cards: the first ``card_dirs`` entry, else
    ``<config dir>/cards``, created and added to ``config.toml``."""
    config = load_config()
    if config.card_dirs:
        return config.card_dirs[0]
    directory = paths.config_dir() / "cards"
    text = config.text
    if re.search(r"^\s*card_dirs\s*=", text, flags=re.MULTILINE):
        text, count = re.subn(
            r"^(\s*card_dirs\s*=\s*)\[\s*\]", r'\1["cards"]', text, count=1, flags=re.MULTILINE
        )
        if not count:
            raise ConfigError(str(config.path), "cannot add 'cards' to card_dirs; add it by hand")
    else:
        text = 'card_dirs = ["cards"]\n' + ("\n" + text if text else "")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        config.path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GoaError(f"cannot prepare {directory}: {exc}") from None
    if load_config().card_dirs[:1] != (directory,):
        raise ConfigError(str(config.path), "card_dirs does not name the new card folder")
    return directory


def _user_card_file(card_id: str) -> Path | None:
    for directory in load_config().card_dirs:
        for path in card_files(directory):
            if path.stem == card_id:
                return path
    return None


def write_card(card: ModelCard) -> Path:
    """Save ``card``: over its user file, or as an overriding copy of a built-in card."""
    existing = _user_card_file(card.id)
    if existing is not None:
        return save_card(card, existing, overwrite=True)
    if card.id in builtin_cards():
        card = card.model_copy(update={"override": True})
    return save_card(card, profile_card_dir() / f"{card.id}.yaml", overwrite=True)


# --- Running ---------------------------------------------------------------------------


def log_path(domain: str, card_id: str) -> Path:
    return paths.data_dir() / "profiles" / domain / f"{card_id}.jsonl"


async def _measure_card(
    card: ModelCard,
    samples: Sequence[Sample],
    *,
    pool: Pool,
    data: str,
    domain: str,
    semaphore: asyncio.Semaphore,
    concurrency: int,
    max_tokens: int,
    cache: bool,
    today: date,
    on_progress: OnProgress | None,
) -> dict[str, Measurement]:
    from goa.baselines import SingleModel

    method = SingleModel(card, pool=pool, max_tokens=max_tokens, cache=cache)
    path = log_path(domain, card.id)
    await run_eval(
        method,
        samples,
        log_path=path,
        dataset=data,
        concurrency=concurrency,
        semaphore=semaphore,
        on_progress=on_progress,
    )
    wanted = {s.id for s in samples}
    records = read_log(path, method=method.name).records
    correct = {r.sample_id: r.correct for r in records if r.sample_id in wanted}
    source = f"goa profile on {data} dev split"
    return measure(correct, samples, domain=domain, source=source, today=today)


async def profile_pool(
    pool: Pool,
    data: str,
    *,
    limit: int | None = None,
    seed: int | None = None,
    concurrency: int = 8,
    max_tokens: int = 512,
    cache: bool = True,
    domain: str | None = None,
    today: date | None = None,
    write: bool = True,
    on_progress: OnProgress | None = None,
) -> list[AgentProfile]:
    """Measure every card of ``pool`` on ``data``'s dev split and write the cards.

    ``concurrency`` bounds the questions in flight over all agents together.
    """
    samples = load_dev_samples(data, limit=limit, seed=seed)
    if not samples:
        raise GoaError(f"{data}: no questions to profile on")
    name = domain or domain_name(data)
    when = today or date.today()
    semaphore = asyncio.Semaphore(concurrency)
    found = await asyncio.gather(
        *(
            _measure_card(
                card,
                samples,
                pool=pool,
                data=data,
                domain=name,
                semaphore=semaphore,
                concurrency=concurrency,
                max_tokens=max_tokens,
                cache=cache,
                today=when,
                on_progress=on_progress,
            )
            for card in pool.cards
        )
    )
    profiles = []
    for card, measurements in zip(pool.cards, found, strict=True):
        target = write_card(with_measurements(card, measurements)) if write else Path()
        profiles.append(AgentProfile(card.id, measurements, target))
    return profiles


__all__ = [
    "AgentProfile",
    "domain_name",
    "fingerprint",
    "load_dev_samples",
    "measure",
    "overlaps",
    "profile_card_dir",
    "profile_pool",
    "with_measurements",
    "write_card",
]
