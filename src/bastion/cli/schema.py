"""``bastion schema``: the JSON Schema of ``--format json`` reports."""

from __future__ import annotations

import json

import typer

from bastion.report.json import report_schema


def schema() -> None:
    """Print the JSON Schema that JSON reports follow."""
    typer.echo(json.dumps(report_schema(), indent=2))
