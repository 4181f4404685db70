"""The Graph-of-Agents options that ``goa ask`` and ``goa serve`` share.

Each is a typed ``Annotated`` alias, so a command declares ``k: KOption = 3`` and
both commands spell, check and document an option the same way.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class PoolingChoice(StrEnum):
    max = "max"
    mean = "mean"


class JudgeChoice(StrEnum):
    prompt = "prompt"
    likelihood = "likelihood"
    auto = "auto"


class SelectorChoice(StrEnum):
    llm = "llm"
    embedding = "embedding"
    all = "all"
    profile = "profile"


KOption = Annotated[int, typer.Option("-k", min=1, help="How many agents node sampling picks.")]
PoolingOption = Annotated[
    PoolingChoice,
    typer.Option(help="max: the top agent's answer; mean: the meta model synthesises all answers."),
]
SelectorOption = Annotated[SelectorChoice, typer.Option(help="How agents are picked.")]
JudgeOption = Annotated[
    JudgeChoice,
    typer.Option(
        help="How agents score each other: prompt (the paper: a JSON reply), "
        "likelihood (log-probabilities of each answer; llama.cpp models), auto."
    ),
]
RoundsOption = Annotated[int, typer.Option(min=1, help="Rounds of forward and reverse passing.")]
EarlyExitOption = Annotated[
    bool, typer.Option(help="Stop after the first answers when they all agree.")
]
StructuredOption = Annotated[
    bool, typer.Option(help="Ask for schema-constrained JSON where the backend can.")
]
TimeoutOption = Annotated[
    float | None, typer.Option(min=0.001, help="Seconds each agent call may take.")
]
BudgetOption = Annotated[
    float | None, typer.Option(min=0.0, help="Most USD the selected agents may cost.")
]
