"""The ``trust`` command: reasoning audits and the TRUST ledger."""

from __future__ import annotations

import typer

from cli.trust_attribute_cmd import attribute
from cli.trust_audit_cmd import audit
from cli.trust_hdag_cmd import hdag
from cli.trust_ledger_cmd import ledger_app

app = typer.Typer(
    name="trust",
    help="TRUST: audit chains of thought and record every decision on a verifiable ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """TRUST: audit chains of thought and record every decision on a verifiable ledger."""


app.command()(audit)
app.command()(hdag)
app.command()(attribute)
app.add_typer(ledger_app, name="ledger")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
