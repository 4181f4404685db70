"""``goa profile``: measure each agent of a pool on a dev split, record it in its card."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import reports_errors

if TYPE_CHECKING:
    from goa.eval.profile import AgentProfile


@reports_errors
def profile_command(
    data: Annotated[
        str, typer.Option(help="Question set (its dev split: mmlu -> mmlu-dev) or a dev file.")
    ],
    pool: Annotated[str | None, typer.Option(help="Pool of models (default: 'local').")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many questions.")] = None,
    seed: Annotated[int | None, typer.Option(help="Shuffle the questions with this seed.")] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Questions in flight at once, over all agents.")
    ] = 8,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    cache: Annotated[bool, typer.Option(help="Use the response cache.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Measure each agent alone on a development split and write its accuracy per
    category (and overall) into its model card, with n and the date.

    Built-in cards get an overriding copy in your card folder. Never run on test
    questions: named sets use their dev split, and a file must be named as one.
    """
    import asyncio

    from goa.eval.profile import domain_name, profile_pool
    from goa.pools import load_pool

    chosen = load_pool(pool)
    profiles = asyncio.run(
        profile_pool(
            chosen,
            data,
            limit=limit,
            seed=seed,
            concurrency=concurrency,
            max_tokens=max_tokens,
            cache=cache,
        )
    )
    if as_json:
        print(json.dumps([_plain(p) for p in profiles], indent=2))
    else:
        _table(profiles, domain_name(data))


def _plain(profile: AgentProfile) -> dict[str, object]:
    return {
        "card": profile.card_id,
        "path": str(profile.path),
        "measurements": {
            name: m.model_dump(mode="json", exclude={"samples"})
            for name, m in profile.measurements.items()
        },
    }


def _table(profiles: list[AgentProfile], domain: str) -> None:
    from rich.console import Console
    from rich.table import Table

    categories = sorted({c for p in profiles for c in p.measurements if c != domain})
    table = Table("agent", f"{domain} (n)", *categories)
    for p in profiles:
        overall = p.measurements.get(domain)
        cells = [p.card_id, "-" if overall is None else f"{overall.accuracy:.3f} ({overall.n})"]
        for category in categories:
            m = p.measurements.get(category)
            cells.append("-" if m is None else f"{m.accuracy:.3f} ({m.n})")
        table.add_row(*cells)
    Console().print(table)
    err = Console(stderr=True)
    for p in profiles:
        err.print(f"[dim]{p.card_id}: card written to {p.path}[/dim]")
