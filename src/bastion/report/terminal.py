"""Terminal output with Rich: findings grouped by severity, then one summary line.

Every text from a scanned file goes into :class:`rich.text.Text` objects, never markup, so a
hostile string cannot inject Rich markup; control characters were already made visible by
:func:`bastion.findings.clip`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule as Divider
from rich.text import Text

from bastion.findings import Finding, Report, Severity
from bastion.rules import Rule

STYLES = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "bold yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _finding(finding: Finding, rules: Mapping[str, Rule]) -> RenderableType:
    head = Text()
    head.append(f" {finding.severity.value.upper():<8} ", style=STYLES[finding.severity])
    head.append(" ")
    head.append(finding.rule_id, style="bold")
    head.append("  ")
    head.append(str(finding.location), style="underline")
    if not finding.active and finding.suppression is not None:
        head.append(f"  (suppressed: {finding.suppression.reason})", style="dim italic")
    body = Text(finding.message)
    if finding.evidence:
        body.append("\nevidence: ", style="dim")
        body.append(finding.evidence)
    if finding.remediation:
        body.append("\nfix: ", style="green")
        body.append(finding.remediation)
    refs = [r.id for r in finding.references]
    if refs:
        body.append("\nsee: ", style="dim")
        body.append(", ".join(refs), style="dim")
    return Group(head, Padding(body, (0, 0, 1, 11)))


def summary_line(report: Report) -> Text:
    counts = report.counts()
    failing = len(report.failing)
    text = Text()
    if report.passed:
        text.append(" PASSED ", style="bold white on green")
    else:
        text.append(" FAILED ", style="bold white on red")
    text.append(f"  {failing} finding{'s' if failing != 1 else ''} at or above "
                f"{report.fail_on.value}")
    parts = [f"{n} {sev.value}" for sev, n in counts.items() if n]
    if parts:
        text.append(" — " + ", ".join(parts))
    suppressed = sum(1 for f in report.findings if not f.active)
    if suppressed:
        text.append(f" · {suppressed} suppressed")
    stats = report.stats
    text.append(f" · {stats.files} file{'s' if stats.files != 1 else ''} "
                f"({_size(stats.bytes)}), {stats.analyzed} analysed"
                + (f" ({stats.cached} from cache)" if stats.cached else "")
                + f", {len(report.skipped)} skipped in {stats.seconds:.2f}s", style="dim")
    return text


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def renderables(report: Report, rules: Mapping[str, Rule]) -> Iterator[RenderableType]:
    current: Severity | None = None
    for finding in report.findings:
        if finding.severity != current:
            current = finding.severity
            yield Divider(Text(current.value.upper(), style=STYLES[current]), align="left",
                          style="dim")
        yield _finding(finding, rules)
    for note in report.notes:
        yield Text(f"note: {note}", style="dim")
    yield summary_line(report)


def print_report(report: Report, rules: Mapping[str, Rule], console: Console) -> None:
    for item in renderables(report, rules):
        console.print(item)


def render_terminal(report: Report, rules: Mapping[str, Rule], width: int = 100) -> str:
    """Plain text (no colour) for files and tests."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False,
                      highlight=False, emoji=False, soft_wrap=False)
    print_report(report, rules, console)
    return buffer.getvalue()
