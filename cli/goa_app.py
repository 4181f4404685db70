"""The ``goa`` command. Every command is a thin call into the goa library.

Nothing heavy is imported at module level, so ``goa --help`` stays instant.
"""

from __future__ import annotations

import typer

from cli.ask_cmd import ask
from cli.cards_cmd import cards_app
from cli.eval_cmd import eval_command
from cli.leaderboard_cmd import leaderboard_command
from cli.models_cmd import models_app
from cli.profile_cmd import profile_command
from cli.report_cmd import report_command
from cli.serve_cmd import serve_command

app = typer.Typer(
    name="goa",
    help="Graph-of-Agents: several LLMs answer together as a graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(
    "ask",
    help="Answer QUESTION with Graph-of-Agents (the embedded local models by default). "
    "Exit code 1 when no agent could answer.",
)(ask)
app.command("eval")(eval_command)
app.command("report")(report_command)
app.command("leaderboard")(leaderboard_command)
app.command(
    "profile",
    help="Measure each agent alone on a development split and write its accuracy "
    "per category into its model card.",
)(profile_command)
app.command(
    "serve",
    help="Serve pools as an OpenAI-compatible endpoint (model ids goa/POOL): /v1/models, "
    "/v1/chat/completions (streaming too), /healthz. Needs the 'serve' extra.",
)(serve_command)
app.add_typer(cards_app, name="cards")
app.add_typer(models_app, name="models")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
