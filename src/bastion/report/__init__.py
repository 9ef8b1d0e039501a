"""Renderers: one report, many audiences.

Each renderer is a function ``(report, rules) -> str``; :data:`RENDERERS` names the module
and function behind each ``--format`` choice, imported only when that format is asked for
(a scan that prints to the terminal never loads the HTML, SARIF or CycloneDX code). Hostile
text from scanned files is escaped by every renderer for its medium (terminal control codes,
HTML, JSON).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from bastion.findings import Report
    from bastion.rules import Rule


class Format(StrEnum):
    TERMINAL = "terminal"
    JSON = "json"
    SARIF = "sarif"
    HTML = "html"
    CYCLONEDX = "cyclonedx"


Renderer = Callable[["Report", Mapping[str, "Rule"]], str]

#: ``module:function`` of each renderer.
RENDERERS: dict[Format, str] = {
    Format.TERMINAL: "bastion.report.terminal:render_terminal",
    Format.JSON: "bastion.report.json:render_json",
    Format.SARIF: "bastion.report.sarif:render_sarif",
    Format.HTML: "bastion.report.html:render_html",
    Format.CYCLONEDX: "bastion.report.cyclonedx:render_cyclonedx",
}
#: Formats that print rule descriptions, and so need the whole rule catalogue.
NEEDS_CATALOGUE = frozenset({Format.SARIF, Format.HTML, Format.CYCLONEDX})


def renderer(fmt: Format) -> Renderer:
    module, _, name = RENDERERS[fmt].partition(":")
    return cast(Renderer, getattr(importlib.import_module(module), name))


def render(report: Report, fmt: Format, rules: Mapping[str, Rule] | None = None) -> str:
    if rules is None:
        if fmt in NEEDS_CATALOGUE:
            from bastion.catalogue import all_rules

            rules = {rule.id: rule for rule in all_rules()}
        else:
            rules = {}
    return renderer(fmt)(report, rules)


__all__ = ["RENDERERS", "Format", "render", "renderer"]
