"""``bastion rules``: the catalogue of every rule, with severity and description."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table


def rules(
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON."),
    rule_id: str | None = typer.Argument(None, help="Show one rule in full.", show_default=False),
) -> None:
    """List every rule Bastion can raise."""
    from bastion.catalogue import all_rules

    catalogue = all_rules()
    if rule_id is not None:
        catalogue = tuple(r for r in catalogue if r.id == rule_id.upper())
        if not catalogue:
            Console(stderr=True).print(f"error: no rule {rule_id!r} (see `bastion rules`)",
                                       markup=False, style="bold red")
            raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in catalogue], indent=2))
        return
    console = Console(highlight=False)
    if rule_id is not None:
        rule = catalogue[0]
        console.print(f"{rule.id}  ({rule.severity.value}, {rule.category.value})", markup=False,
                      style="bold")
        console.print(rule.title, markup=False)
        console.print(rule.description, markup=False)
        if rule.remediation:
            console.print(f"fix: {rule.remediation}", markup=False)
        if rule.refs:
            console.print("see: " + ", ".join(f"{r.id} {r.url or ''}" for r in rule.refs),
                          markup=False)
        return
    table = Table(title=f"{len(catalogue)} rules")
    table.add_column("rule", no_wrap=True)  # ids are copied into policies: never cut them
    for name in ("severity", "category", "title"):
        table.add_column(name)
    for rule in catalogue:
        table.add_row(rule.id, rule.severity.value, rule.category.value, rule.title)
    console.print(table)
