"""``goa cards``: list, show, validate and generate model cards.

Only typer is imported here; the library loads inside each command, so that
``goa --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import reports_errors

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from goa.cards import CheckReport, ModelCard
    from goa.inference.backend import Backend

cards_app = typer.Typer(
    help="Model cards: what each model is good and bad at, and how to reach it.",
    no_args_is_help=True,
)

DEFAULT_WRITER = "qwen2.5-coder-1.5b"
FACTORY_MODULE = "goa.inference.factory"


def _selected_cards(pool: str | None) -> list[ModelCard]:
    if pool is not None:
        from goa.pools import load_pool

        return list(load_pool(pool).cards)
    from goa.cards import all_cards

    return list(all_cards().values())


def _price_text(card: ModelCard) -> str:
    if card.prices is None:
        return "-"
    return f"{card.prices.input_per_mtok:g} / {card.prices.output_per_mtok:g}"


def _print_table(cards: list[ModelCard], title: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("backend", no_wrap=True)
    for column in ("params B", "context", "$/Mtok in/out"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("domains", min_width=14)
    for card in cards:
        params = "-" if card.parameters_b is None else f"{card.parameters_b:g}"
        table.add_row(
            card.id,
            card.backend,
            params,
            f"{card.context_window:,}",
            _price_text(card),
            ", ".join(card.domains),
        )
    Console().print(table)


@cards_app.command("list")
@reports_errors
def list_cards(
    pool: Annotated[
        str | None, typer.Option(help="Only the cards of this pool (default: all cards).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """List the model cards (built-in and user cards, or one pool's)."""
    cards = _selected_cards(pool)
    if as_json:
        print(json.dumps([card.model_dump(mode="json") for card in cards], indent=2))
        return
    _print_table(cards, f"pool {pool}" if pool else "all model cards")


@cards_app.command("show")
@reports_errors
def show(
    card_id: Annotated[str, typer.Argument(metavar="ID", help="The card's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Show one model card (as YAML, or JSON with --json)."""
    from goa.cards import dump_card, get_card

    card = get_card(card_id)
    if as_json:
        print(card.model_dump_json(indent=2))
    else:
        print(dump_card(card), end="")


def _report_lines(report: CheckReport) -> None:
    for item in report.ok:
        print(f"ok     {item.source} ({item.card.id})")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)


@cards_app.command("validate")
@reports_errors
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Card files or folders (default: every built-in and user card, and the "
            "pools of config.toml)."
        ),
    ] = None,
) -> None:
    """Check model cards; print each problem with its file and line. Exit 2 on any error."""
    from goa.cards import check_cards
    from goa.errors import ConfigError

    report = check_cards(paths or None)
    if not paths:
        from goa.pools import list_pools

        try:
            list_pools()
        except ConfigError as exc:
            report.errors.append(exc)
    _report_lines(report)
    if report.errors:
        raise typer.Exit(code=2)
    print(f"all {len(report.ok)} cards are valid")


def _backend_for(card: ModelCard) -> Backend:
    """The backend of a card, through the factory module (looked up at call time)."""
    import importlib

    from goa.errors import GoaError

    try:
        factory = importlib.import_module(FACTORY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != FACTORY_MODULE:
            raise
        raise GoaError("no backend factory is available (goa.inference.factory)") from None
    backend: Backend = factory.backend_for_card(card)
    return backend


async def _closing(backend: Backend, work: Awaitable[ModelCard]) -> ModelCard:
    """Await ``work``, then close ``backend`` whatever happened."""
    try:
        return await work
    finally:
        await backend.aclose()


def _read_readme(path: Path) -> str:
    from goa.errors import GoaError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GoaError(f"cannot read {path}: {exc}") from None


def _default_id(out: Path) -> str | None:
    """The output file's name, when it is a valid card id."""
    import re

    from goa.cards import SLUG_PATTERN

    return out.stem if re.match(SLUG_PATTERN, out.stem) else None


@cards_app.command("generate")
@reports_errors
def generate(
    readme: Annotated[Path, typer.Option("--from", help="The model's README (Markdown).")],
    model_string: Annotated[
        str, typer.Option("--model-string", help="The model string the card will carry.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the card (YAML).")],
    writer: Annotated[
        str, typer.Option("--with", help="Card id of the model that writes the card.")
    ] = DEFAULT_WRITER,
    card_backend: Annotated[
        str, typer.Option("--backend", help="Backend of the new card (litellm, llamacpp...).")
    ] = "litellm",
    card_id: Annotated[
        str | None, typer.Option("--id", help="The new card's id (default: the --out name).")
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="API base URL of the new card.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Name of the env var that holds the API key.")
    ] = None,
    attempts: Annotated[int, typer.Option(min=1, help="Tries before giving up.")] = 3,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
) -> None:
    """Have a model read a README and write a model card, validated before it is saved."""
    import asyncio
    from typing import cast, get_args

    from goa.card_generation import generate_card
    from goa.cards import CardBackend, get_card, save_card
    from goa.errors import GoaError

    if card_backend not in get_args(CardBackend):
        raise GoaError(f"--backend must be one of {', '.join(get_args(CardBackend))}")
    if out.exists() and not force:
        raise GoaError(f"{out} already exists; pass --force to overwrite it")
    text = _read_readme(readme)
    backend = _backend_for(get_card(writer))
    work = generate_card(
        text,
        backend,
        model_string=model_string,
        card_backend=cast("CardBackend", card_backend),  # checked above
        max_attempts=attempts,
        card_id=card_id or _default_id(out),
        api_base=api_base,
        api_key_env=api_key_env,
    )
    card = asyncio.run(_closing(backend, work))
    path = save_card(card, out, overwrite=force)
    print(f"wrote {path} (card {card.id}); read it over before use")
