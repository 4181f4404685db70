"""Pools: named groups of model cards, the agents a Graph-of-Agents run may pick from.

Built-in pools: ``local`` (the four models that run here; the default),
``goa-paper`` (the six open models of the Graph-of-Agents paper, served by an
OpenAI-compatible server) and ``api`` (hosted API models). Users add pools,
card folders and a default pool in ``config.toml`` (:func:`goa.paths.config_path`)::

    default_pool = "mine"
    card_dirs = ["~/goa-cards"]          # relative paths: from the config's folder

    [pools.mine]
    description = "A cheap API model and a local coder"
    cards = ["gpt-4o-mini", "qwen2.5-coder-1.5b"]

Other top-level keys are left to the subsystems that own them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from goa import paths
from goa.cards import SLUG_PATTERN, ModelCard, all_cards, unknown_card_message
from goa.errors import ConfigError, GoaError

DEFAULT_POOL = "local"

# name -> (description, card ids)
BUILTIN_POOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local": (
        "The four small models embedded with goa, run on this machine by llama.cpp.",
        ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"),
    ),
    "goa-paper": (
        "The six open 7-8B models of the Graph-of-Agents paper, behind an "
        "OpenAI-compatible server (vLLM) at http://localhost:8000/v1.",
        (
            "qwen2.5-7b-instruct",
            "qwen2.5-coder-7b-instruct",
            "mathstral-7b",
            "bio-medical-llama-3-8b",
            "finance-llama3-8b",
            "saul-7b-instruct",
        ),
    ),
    "api": (
        "Hosted API models reached through litellm; each needs its provider's key.",
        (
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "o3-mini",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "mistral-large-2411",
            "deepseek-chat",
            "llama-3.3-70b-groq",
            "llama-3.3-70b-together",
            "gpt-oss-120b-groq",
        ),
    ),
}


@dataclass(frozen=True)
class Pool:
    """A named group of cards."""

    name: str
    cards: tuple[ModelCard, ...]
    description: str = ""
    builtin: bool = False

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(card.id for card in self.cards)

    def __len__(self) -> int:
        return len(self.cards)


# --- The user's config file ------------------------------------------------------

PoolName = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]


class PoolConfig(BaseModel):
    """One ``[pools.NAME]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cards: tuple[str, ...] = Field(min_length=1)
    description: str = ""


class _ConfigFile(BaseModel):
    """The keys of ``config.toml`` that pools own; other keys belong to others."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    default_pool: PoolName | None = None
    card_dirs: tuple[str, ...] = ()
    pools: dict[PoolName, PoolConfig] = Field(default_factory=dict)


@dataclass(frozen=True)
class UserConfig:
    """The user's pools and settings, with the file text kept to locate problems."""

    path: Path
    text: str = ""
    default_pool: str | None = None
    card_dirs: tuple[Path, ...] = ()
    pools: dict[str, PoolConfig] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return bool(self.text)

    def line_of(self, keys: Sequence[str], value: str | None = None) -> int | None:
        """The line where ``keys`` (and then the quoted ``value``) appear, in order."""
        return find_line(self.text, keys, value)

    def where(self, keys: Sequence[str], value: str | None = None) -> str:
        """``path:line`` for a key path, or just the path when the line is not found."""
        line = self.line_of(keys, value)
        return f"{self.path}:{line}" if line else str(self.path)


def find_line(text: str, keys: Sequence[str], value: str | None = None) -> int | None:
    """Search ``keys`` one after the other as whole words, then ``value`` in quotes.

    TOML parsers give no positions for values, so a search of the text stands in.
    Returns the 1-based line of the last thing found, or None if the first key is
    not there.
    """
    position: int | None = None
    start = 0
    needles = [rf"(?<![\w-]){re.escape(k)}(?![\w-])" for k in keys]
    if value is not None:
        needles.append(rf"([\"']){re.escape(value)}\1")
    for needle in needles:
        match = re.search(needle, text[start:])
        if match is None:
            break
        position = start + match.start()
        start = position + len(match.group(0))
    return None if position is None else text.count("\n", 0, position) + 1


def _toml_problem(exc: tomllib.TOMLDecodeError, path: Path, text: str) -> ConfigError:
    """tomllib puts the position at the end of its message: ``(at line 3, column 7)``."""
    message = str(exc)
    match = re.search(r"\s*\((?:at line (\d+), column \d+|at end of document)\)$", message)
    if match is None:
        return ConfigError(str(path), f"TOML syntax error: {message}")
    line = match.group(1) or str(text.count("\n") + 1)
    return ConfigError(f"{path}:{line}", f"TOML syntax error: {message[: match.start()]}")


def _config_problem(exc: ValidationError, path: Path, text: str) -> ConfigError:
    error = exc.errors()[0]
    keys = [str(part) for part in error["loc"] if not isinstance(part, int)]
    line = find_line(text, keys)
    where = f"{path}:{line}" if line else str(path)
    label = ".".join(str(p) for p in error["loc"]) or "config"
    more = len(exc.errors()) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ConfigError(f"{where} ({label})", error["msg"] + extra)


def _card_dirs(raw: tuple[str, ...], config: Path, text: str) -> tuple[Path, ...]:
    dirs = []
    for entry in raw:
        directory = Path(entry).expanduser()
        if not directory.is_absolute():
            directory = config.parent / directory
        if not directory.is_dir():
            line = find_line(text, ["card_dirs"], entry)
            where = f"{config}:{line}" if line else str(config)
            raise ConfigError(f"{where} (card_dirs)", f"{entry!r} is not a directory")
        dirs.append(directory)
    return tuple(dirs)


def load_config(path: Path | None = None) -> UserConfig:
    """The user's config (``config.toml``); an absent file is an empty config."""
    path = paths.config_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UserConfig(path=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_problem(exc, path, text) from None
    try:
        parsed = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise _config_problem(exc, path, text) from None
    for name in parsed.pools:
        if name in BUILTIN_POOLS:
            line = find_line(text, ["pools", name])
            where = f"{path}:{line}" if line else str(path)
            raise ConfigError(
                f"{where} (pools.{name})", f"{name!r} is a built-in pool; choose another name"
            )
    return UserConfig(
        path=path,
        text=text,
        default_pool=parsed.default_pool,
        card_dirs=_card_dirs(parsed.card_dirs, path, text),
        pools=dict(parsed.pools),
    )


def user_card_dirs() -> tuple[Path, ...]:
    """The card folders named in the user's config."""
    return load_config().card_dirs


# --- Pools ---------------------------------------------------------------------


def builtin_pools(cards: dict[str, ModelCard] | None = None) -> dict[str, Pool]:
    """The pools shipped with goa."""
    known = all_cards(()) if cards is None else cards
    return {
        name: Pool(name, tuple(known[i] for i in ids), description, builtin=True)
        for name, (description, ids) in BUILTIN_POOLS.items()
    }


def _user_pool(config: UserConfig, name: str, cards: dict[str, ModelCard]) -> Pool:
    spec = config.pools[name]
    for card_id in spec.cards:
        if card_id not in cards:
            where = config.where(["pools", name, "cards"], card_id)
            raise ConfigError(f"{where} (pools.{name}.cards)", unknown_card_message(card_id, cards))
    return Pool(name, tuple(cards[i] for i in spec.cards), spec.description)


def _all_pools(config: UserConfig) -> dict[str, Pool]:
    cards = all_cards(config.card_dirs)
    pools = builtin_pools(cards)
    for name in config.pools:
        pools[name] = _user_pool(config, name, cards)
    _check_default(config, pools)
    return pools


def _check_default(config: UserConfig, pools: dict[str, Pool]) -> None:
    name = config.default_pool
    if name is not None and name not in pools:
        where = config.where(["default_pool"])
        raise ConfigError(
            f"{where} (default_pool)",
            f"unknown pool {name!r}; known pools: {', '.join(pools)}",
        )


def list_pools() -> list[Pool]:
    """Built-in pools, then the user's, all checked."""
    return list(_all_pools(load_config()).values())


def default_pool_name() -> str:
    """The pool used when none is named: the user's ``default_pool`` or ``local``."""
    config = load_config()
    if config.default_pool is not None:
        _check_default(config, _all_pools(config))
        return config.default_pool
    return DEFAULT_POOL


def load_pool(name: str | None = None) -> Pool:
    """The pool called ``name`` (default: :func:`default_pool_name`)."""
    config = load_config()
    pools = _all_pools(config)
    chosen = name or config.default_pool or DEFAULT_POOL
    if chosen not in pools:
        raise GoaError(f"unknown pool {chosen!r}; known pools: {', '.join(pools)}")
    return pools[chosen]
