"""Renderers: one report, many audiences.

Each renderer is a function ``(report, rules) -> str``; :data:`RENDERERS` maps the
``--format`` choices to them. Hostile text from scanned files is escaped by every renderer
for its medium (terminal control codes, HTML, JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from bastion.findings import Report
from bastion.report.html import render_html
from bastion.report.json import render_json
from bastion.report.sarif import render_sarif
from bastion.report.terminal import render_terminal
from bastion.rules import Rule


class Format(StrEnum):
    TERMINAL = "terminal"
    JSON = "json"
    SARIF = "sarif"
    HTML = "html"


Renderer = Callable[[Report, Mapping[str, Rule]], str]

RENDERERS: dict[Format, Renderer] = {
    Format.TERMINAL: render_terminal,
    Format.JSON: render_json,
    Format.SARIF: render_sarif,
    Format.HTML: render_html,
}


def render(report: Report, fmt: Format, rules: Mapping[str, Rule] | None = None) -> str:
    if rules is None:
        from bastion.catalogue import all_rules

        rules = {rule.id: rule for rule in all_rules()}
    return RENDERERS[fmt](report, rules)


__all__ = ["RENDERERS", "Format", "render"]
