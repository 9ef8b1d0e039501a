"""The ``bastion`` Typer app: one module per subcommand.

Exit codes, for every command: 0 passed, 1 findings at or above the threshold, 2 usage or
operational error (a missing path, a bad policy). Errors are one clear message, never a
traceback (set ``BASTION_DEBUG=1`` to see one).
"""

from __future__ import annotations

import typer

from bastion import __version__
from bastion.cli import assess as assess_cmd
from bastion.cli import audit as audit_cmd
from bastion.cli import db as db_cmd
from bastion.cli import gateway as gateway_cmd
from bastion.cli import probe as probe_cmd
from bastion.cli import rules as rules_cmd
from bastion.cli import sbom as sbom_cmd
from bastion.cli import scan as scan_cmd
from bastion.cli import schema as schema_cmd
from bastion.cli import serve as serve_cmd
from bastion.cli import sign as sign_cmd

app = typer.Typer(
    name="bastion",
    help="Bastion: security for the machine-learning lifecycle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bastion {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Bastion: security for the machine-learning lifecycle."""


app.command("scan")(scan_cmd.scan)
app.command("rules")(rules_cmd.rules)
app.command("schema")(schema_cmd.schema)
app.command("audit")(audit_cmd.audit_cmd)
app.add_typer(db_cmd.app, name="db")
app.command("sbom")(sbom_cmd.sbom)
app.command("sign")(sign_cmd.sign)
app.command("verify")(sign_cmd.verify)
app.command("keygen")(sign_cmd.keygen)
app.command("probe")(probe_cmd.probe)
app.add_typer(gateway_cmd.models_app, name="models")
app.add_typer(gateway_cmd.keys_app, name="keys")
app.add_typer(gateway_cmd.access_app, name="access")
app.add_typer(gateway_cmd.audit_log_app, name="audit-log")
app.command("serve")(serve_cmd.serve)
app.command("assess")(assess_cmd.assess)


def main() -> None:
    app()
