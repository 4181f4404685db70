"""Model cards: what each agent is, in the words the Graph-of-Agents selector reads.

A card is one YAML file named ``<id>.yaml``. The built-in cards live in the
``modelcards`` package; users add their own folders through ``card_dirs`` in
``config.toml`` (see :mod:`goa.pools`). Every error names the file and the line
of the offending field, e.g. ``modelcards/foo.yaml:7 (context_window): Input
should be a valid integer``.

Overriding a built-in card
--------------------------
A user card may not silently reuse the id of a built-in card (a duplicate id is
an error), but one that says ``override: true`` replaces the built-in card of
that id everywhere (pools included). ``goa profile`` writes such copies to record
measured accuracies of built-in models. Two user cards with one id stay an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from goa.errors import ConfigError, GoaError

CardBackend = Literal["litellm", "llamacpp", "transformers", "scripted"]
LOCAL_BACKENDS: frozenset[str] = frozenset({"llamacpp", "transformers"})
SLUG_PATTERN = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$"
CARD_SUFFIXES = (".yaml", ".yml")
BUILTIN_PACKAGE = "modelcards"

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Prefixes of real API keys (OpenAI, Groq, xAI, Google, Hugging Face, Replicate...).
_KEY_PREFIXES = ("sk-", "sk_", "gsk_", "xai-", "AIza", "hf_", "r8_", "pk-", "key-", "Bearer ")


# --- Schema -------------------------------------------------------------------


class Prices(BaseModel):
    """USD per million tokens. Local models cost 0; list prices carry their date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    as_of: date | None = None
    source: str | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one call at these prices."""
        spent = prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        return spent / 1e6


class Measurement(BaseModel):
    """An accuracy in [0, 1] on one domain or benchmark, with where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy: float = Field(ge=0.0, le=1.0)
    source: str | None = None
    n: int | None = Field(default=None, ge=0)
    """How many questions the accuracy was measured on."""
    as_of: date | None = None
    """When it was measured."""
    samples: tuple[str, ...] | None = None
    """Fingerprints of the questions used (:func:`goa.eval.profile.fingerprint`),
    so that an evaluation can check it does not reuse them."""


def _bare_number_as_measurement(value: object) -> object:
    """Let a card write ``mmlu: 0.44`` as shorthand for ``mmlu: {accuracy: 0.44}``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"accuracy": value}
    return value


Accuracy = Annotated[Measurement, BeforeValidator(_bare_number_as_measurement)]


class ModelCard(BaseModel):
    """One model as an agent: how to reach it and what it is good and bad at.

    Unknown fields are rejected so that a misspelt field name is caught.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(pattern=SLUG_PATTERN, max_length=64)
    backend: CardBackend
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    description: str = Field(min_length=20)
    domains: tuple[str, ...] = Field(min_length=1)
    task_specialization: tuple[str, ...] = ()
    parameters_b: float | None = Field(default=None, gt=0)
    features: tuple[str, ...] = ()
    context_window: int = Field(gt=0, strict=True)
    prices: Prices | None = None
    license: str = Field(min_length=1)
    measured_accuracy: dict[str, Accuracy] = Field(default_factory=dict)
    override: bool = False
    """A user card that replaces the built-in card with the same id."""

    @field_validator("api_key_env")
    @classmethod
    def _env_var_name_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _looks_like_secret(value):
            # Never echo the value: it may be a real key.
            raise ValueError(
                "this looks like an API key itself; give the NAME of the environment "
                "variable that holds the key (e.g. OPENAI_API_KEY), never the key"
            )
        if not _ENV_NAME.match(value):
            raise ValueError(
                "must be an environment variable name: capital letters, digits and "
                "underscores, starting with a letter (e.g. OPENAI_API_KEY)"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _plain_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if "@" in value.split("/")[2]:
            raise ValueError("must not embed credentials; use api_key_env instead")
        return value

    @field_validator("domains", "task_specialization", "features")
    @classmethod
    def _no_blank_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("items must not be blank")
        return value

    @property
    def is_local(self) -> bool:
        """Runs on this machine (no per-token charge, no network)."""
        return self.backend in LOCAL_BACKENDS

    def accuracy(self, domain: str) -> float | None:
        """The measured accuracy on ``domain``, or ``None`` when not measured."""
        measurement = self.measured_accuracy.get(domain)
        return None if measurement is None else measurement.accuracy

    def expertise(self) -> str:
        """Domains and specialisations in one sentence: what the embedding selector
        compares with the question (shorter than the profile, so the small local
        embedding model is not swamped by generic words)."""
        text = f"Expert in {', '.join(self.domains)}."
        if self.task_specialization:
            text += f" Specialised in {', '.join(self.task_specialization)}."
        return text

    def profile(self) -> str:
        """What the GoA selector reads: the description and lists, never the name."""
        lines = [self.description, f"Domains: {', '.join(self.domains)}."]
        if self.task_specialization:
            lines.append(f"Specialised in: {', '.join(self.task_specialization)}.")
        if self.features:
            lines.append(f"Features: {', '.join(self.features)}.")
        lines.append(f"Context window: {self.context_window} tokens.")
        return "\n".join(lines)


def _looks_like_secret(value: str) -> bool:
    if value.startswith(_KEY_PREFIXES):
        return True
    has_lower = any(c.islower() for c in value)
    has_digit = any(c.isdigit() for c in value)
    # Env var names are short, upper case words; keys are long mixed-case strings.
    return len(value) >= 24 and has_lower and has_digit


def card_json_schema() -> dict[str, Any]:
    """The JSON schema of a card (for documentation and LLM prompts)."""
    return ModelCard.model_json_schema()


# --- Locating problems in YAML -------------------------------------------------


def _label(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: ``domains[2]``, ``prices.as_of``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "card"


def _child(node: yaml.Node, part: int | str) -> tuple[yaml.Node, int] | None:
    """The child node at ``part`` and the line (1-based) that names it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value, key.start_mark.line + 1
    items: list[yaml.Node] = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(part, int) and 0 <= part < len(items):
        return items[part], items[part].start_mark.line + 1
    return None


def line_of(root: yaml.Node, loc: Sequence[int | str]) -> int:
    """The line of the deepest node along ``loc`` (a pydantic error location)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line


def _located(exc: ValidationError, root: yaml.Node, source: str) -> ConfigError:
    """One ConfigError for all of a validation's errors: the first one locates it."""
    issues = [(line_of(root, e["loc"]), _label(e["loc"]), e["msg"]) for e in exc.errors()]
    (line, label, message), rest = issues[0], issues[1:]
    extra = "".join(f"; also line {ln} ({lb}): {msg}" for ln, lb, msg in rest)
    return ConfigError(f"{source}:{line} ({label})", message + extra)


def _yaml_problem(exc: yaml.YAMLError, source: str) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        return ConfigError(f"{source}:{line}", f"YAML syntax error: {problem}")
    return ConfigError(source, f"YAML error: {exc}")


def _check_unique_keys(node: yaml.Node, source: str) -> None:
    """YAML lets a later key silently replace an earlier one; a card may not."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ConfigError(f"{source}:{line} ({key.value})", "this field appears twice")
                seen.add(key.value)
            _check_unique_keys(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(item, source)


def compose_yaml(text: str, source: str) -> tuple[yaml.Node, Any]:
    """The node tree (for line numbers) and the plain data of one YAML document."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}:1", "the file is empty; expected a mapping of card fields")
        _check_unique_keys(node, source)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, source) from None
    finally:
        loader.dispose()
    return node, data


# --- Loading ------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCard:
    """A card with where it came from, for error messages."""

    card: ModelCard
    source: str
    id_line: int = 1
    builtin: bool = False

    @property
    def where(self) -> str:
        return f"{self.source}:{self.id_line}"


def parse_card(text: str, source: str, *, expected_id: str | None = None) -> LoadedCard:
    """Parse and validate a card's YAML text; ``source`` names it in errors.

    ``expected_id`` (the file name without suffix) must match the card's id.
    """
    root, data = compose_yaml(text, source)
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1
        raise ConfigError(f"{source}:{line}", "expected a mapping of card fields")
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as exc:
        raise _located(exc, root, source) from None
    id_line = line_of(root, ("id",))
    if expected_id is not None and card.id != expected_id:
        raise ConfigError(
            f"{source}:{id_line} (id)",
            f"the card id {card.id!r} does not match the file name; name the file "
            f"{card.id}.yaml or change the id",
        )
    return LoadedCard(card, source, id_line)


def display_path(path: Path) -> str:
    """A path as users should see it: relative to the working directory if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(display_path(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(display_path(path), f"cannot read the file: {exc}") from None


def load_card(path: Path | str) -> ModelCard:
    """Load and validate one card file (any file name)."""
    return load_card_file(Path(path)).card


def load_card_file(path: Path, *, check_name: bool = False) -> LoadedCard:
    """Load one card with its source; ``check_name`` requires ``<id>.yaml``."""
    expected = path.stem if check_name else None
    return parse_card(_read(path), display_path(path), expected_id=expected)


def card_files(directory: Path) -> list[Path]:
    """The card files of a folder, sorted by name."""
    if not directory.is_dir():
        raise ConfigError(display_path(directory), "not a directory")
    return sorted(p for p in directory.iterdir() if p.suffix in CARD_SUFFIXES and p.is_file())


def _index(loaded: Iterable[LoadedCard]) -> dict[str, LoadedCard]:
    """Cards by id; a second card with the same id is an error."""
    by_id: dict[str, LoadedCard] = {}
    for item in loaded:
        first = by_id.get(item.card.id)
        if first is not None:
            raise ConfigError(
                f"{item.where} (id)",
                f"duplicate card id {item.card.id!r}: already defined in {first.where}",
            )
        by_id[item.card.id] = item
    return by_id


def _load_dir(directory: Path) -> list[LoadedCard]:
    return [load_card_file(p, check_name=True) for p in card_files(directory)]


def load_cards(directory: Path | str) -> dict[str, ModelCard]:
    """All cards of one folder, by id. Files must be named ``<id>.yaml``."""
    return {cid: item.card for cid, item in _index(_load_dir(Path(directory))).items()}


def _builtin_sources() -> list[tuple[str, str, str]]:
    """(text, source, expected id) of each built-in card file."""
    package = resources.files(BUILTIN_PACKAGE)
    entries = sorted(
        (e for e in package.iterdir() if e.name.endswith(CARD_SUFFIXES)),
        key=lambda e: e.name.rsplit(".", 1)[0],
    )
    return [
        (e.read_text(encoding="utf-8"), f"{BUILTIN_PACKAGE}/{e.name}", e.name.rsplit(".", 1)[0])
        for e in entries
    ]


def _builtin_card(text: str, source: str, expected_id: str) -> LoadedCard:
    return dataclasses.replace(parse_card(text, source, expected_id=expected_id), builtin=True)


@functools.cache
def _builtin() -> tuple[LoadedCard, ...]:
    loaded = [_builtin_card(t, s, i) for t, s, i in _builtin_sources()]
    _index(loaded)
    return tuple(loaded)


def builtin_cards() -> dict[str, ModelCard]:
    """The cards shipped with goa, by id."""
    return {item.card.id: item.card for item in _builtin()}


def _user_card_dirs() -> tuple[Path, ...]:
    from goa.pools import user_card_dirs  # pools builds on cards: import late

    return user_card_dirs()


def _all_loaded(card_dirs: Iterable[Path] | None) -> dict[str, LoadedCard]:
    dirs = _user_card_dirs() if card_dirs is None else tuple(card_dirs)
    by_id = _index(_builtin())
    user: list[LoadedCard] = []
    for directory in dirs:
        user.extend(_load_dir(directory))
    for cid, item in _index(user).items():
        first = by_id.get(cid)
        if first is not None and not item.card.override:
            raise ConfigError(
                f"{item.where} (id)",
                f"duplicate card id {cid!r}: already defined in {first.where} "
                "(add 'override: true' to replace the built-in card)",
            )
        by_id[cid] = item
    return by_id


def all_cards(card_dirs: Iterable[Path] | None = None) -> dict[str, ModelCard]:
    """Built-in cards plus those of ``card_dirs`` (default: the user's config)."""
    return {cid: item.card for cid, item in _all_loaded(card_dirs).items()}


def unknown_card_message(card_id: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(card_id, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known cards: {', '.join(names)}"
    return f"unknown model card {card_id!r}; {hint}"


def get_card(card_id: str, card_dirs: Iterable[Path] | None = None) -> ModelCard:
    """The card with this id, among built-in and user cards."""
    cards = all_cards(card_dirs)
    if card_id not in cards:
        raise GoaError(unknown_card_message(card_id, cards))
    return cards[card_id]


# --- Checking many files at once (``goa cards validate``) ----------------------


@dataclass
class CheckReport:
    """The outcome of checking several card files: every error, not just the first."""

    ok: list[LoadedCard] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)


def _expand(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """Files to check, each with whether its name must match its id."""
    for path in paths:
        if path.is_dir():
            yield from ((p, True) for p in card_files(path))
        else:
            yield path, False


def _check_one(report: CheckReport, load: Callable[[], LoadedCard]) -> None:
    try:
        report.ok.append(load())
    except ConfigError as exc:
        report.errors.append(exc)


def check_cards(paths: Iterable[Path] | None = None) -> CheckReport:
    """Check the given files and folders, or every built-in and user card.

    Duplicate ids are reported once per extra copy.
    """
    report = CheckReport()
    if paths is None:
        _check_builtin(report)
        try:
            targets = [(p, True) for d in _user_card_dirs() for p in card_files(d)]
        except ConfigError as exc:
            report.errors.append(exc)
            targets = []
    else:
        targets = []
        for path in paths:
            try:
                targets.extend(_expand([path]))
            except ConfigError as exc:
                report.errors.append(exc)
    for path, check_name in targets:
        _check_one(report, functools.partial(load_card_file, path, check_name=check_name))
    _check_duplicates(report)
    return report


def _check_builtin(report: CheckReport) -> None:
    for text, source, expected in _builtin_sources():
        _check_one(report, functools.partial(_builtin_card, text, source, expected))


def _check_duplicates(report: CheckReport) -> None:
    seen: dict[str, LoadedCard] = {}
    unique: list[LoadedCard] = []
    for item in report.ok:
        first = seen.setdefault(item.card.id, item)
        if first is item:
            unique.append(item)
        elif first.builtin and not item.builtin and item.card.override:
            seen[item.card.id] = item
            unique[unique.index(first)] = item
        else:
            report.errors.append(
                ConfigError(
                    f"{item.where} (id)",
                    f"duplicate card id {item.card.id!r}: already defined in {first.where}",
                )
            )
    report.ok = unique


# --- Writing ------------------------------------------------------------------


def dump_card(card: ModelCard) -> str:
    """The card as YAML, fields in schema order, empty optional fields left out."""
    dumped = card.model_dump(mode="json", exclude_none=True)
    data = {k: v for k, v in dumped.items() if v != {} and not (k == "override" and v is False)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=88)


def save_card(card: ModelCard, path: Path | str, *, overwrite: bool = False) -> Path:
    """Write ``card`` to ``path`` as YAML, after checking the text reads back as the card."""
    target = Path(path)
    text = dump_card(card)
    reread = parse_card(text, display_path(target)).card
    if reread != card:
        raise GoaError(f"{display_path(target)}: the card does not survive a YAML round trip")
    if target.exists() and not overwrite:
        raise GoaError(f"{display_path(target)} already exists; pass overwrite to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GoaError(f"cannot write {display_path(target)}: {exc}") from None
    return target
