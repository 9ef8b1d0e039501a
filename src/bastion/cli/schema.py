"""``bastion schema``: the JSON Schema of ``--format json`` reports."""

from __future__ import annotations

import json

import typer


def schema() -> None:
    """Print the JSON Schema that JSON reports follow."""
    from bastion.report.schema import report_schema

    typer.echo(json.dumps(report_schema(), indent=2))
