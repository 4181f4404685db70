"""``goa ask``: answer one question with a pool of models."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.errors import reports_errors


@reports_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    pool: Annotated[
        str | None, typer.Option(help="Pool of models (default: the configured default, 'local').")
    ] = None,
    agent: Annotated[
        str | None, typer.Option(help="Card id of the agent to ask (default: the pool's largest).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens in the answer.")] = 512,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    cache: Annotated[
        bool, typer.Option(help="Reuse and store answers in the response cache.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer QUESTION with a pool of models (the embedded local models by default)."""
    from goa.ask import ask as run_ask

    answer = run_ask(
        question,
        pool=pool,
        agent=agent,
        max_tokens=max_tokens,
        temperature=temperature,
        cache=cache,
        progress=True,
    )
    if as_json:
        print(json.dumps(answer.model_dump(mode="json"), indent=2))
        return
    from rich.console import Console

    usage = answer.completion.usage
    cost = answer.completion.cost_usd
    cost_text = "unknown" if cost is None else f"${cost:.6f}"
    print(answer.answer)
    Console(stderr=True).print(
        f"[dim]{answer.agent}: {usage.prompt_tokens} prompt + {usage.completion_tokens} "
        f"completion tokens, {answer.completion.latency_s:.1f} s, cost {cost_text}[/dim]"
    )
