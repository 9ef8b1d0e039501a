"""Terminal output: readable at a fixed width, and hostile text shown, never interpreted."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console

from bastion.catalogue import all_rules
from bastion.findings import Category, Finding, Location, Report, Severity
from bastion.report import Format, render
from bastion.report.terminal import print_report, render_terminal, summary_line
from bastion.rules import UNREADABLE

RULES = {rule.id: rule for rule in all_rules()}


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_content_at_fixed_width(sample_report: Report) -> None:
    text = render_terminal(sample_report, RULES, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    lines = _lines(text)
    # Grouped by severity, most severe first.
    dividers = [line.split()[0] for line in lines if "────" in line]
    assert dividers == ["CRITICAL", "HIGH", "LOW"]
    assert any(line.startswith(" CRITICAL") and "PLUGIN-EVIL" in line
               and "/abs/path/evil model.bin:7" in line for line in lines)
    assert "models/bundle.zip » inner.tar » data.pkl @1234" in text
    assert "fix: Make the file readable" in text
    assert "see: CWE-502, ML06" in text
    assert "(suppressed: known loop, harmless)" in text
    assert "note: advisory database is 3 days old" in text
    tail = " ".join(line for line in lines[-3:] if "evidence" not in line)  # summary closes
    assert "FAILED" in tail
    assert "2 findings at or above medium — 1 critical, 1 high" in tail
    assert "1 suppressed" in tail


def test_narrow_width_wraps_without_losing_text(sample_report: Report) -> None:
    text = render_terminal(sample_report, RULES, width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "PLUGIN-EVIL" in text


def test_hostile_markup_and_escapes_are_shown_literally(sample_report: Report) -> None:
    text = render_terminal(sample_report, RULES, width=200)
    assert "\x1b" not in text  # no live escape reaches the terminal
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "[bold red]x[/]" in text  # markup printed as typed, not interpreted
    assert "\\x1b[31mRED\\x1b[0m" in text  # the escape made visible
    assert "<script>alert(1)</script>" in text  # plain text in a terminal


def test_hostile_file_name_on_a_colour_terminal() -> None:
    """A file *name* is hostile input too; it reaches the terminal through the location."""
    finding = Finding(
        rule_id="PLUGIN-X", severity=Severity.HIGH, category=Category.MALFORMED,
        location=Location(path="d/\x1b[2J\x1b[31m[blink]evil[/blink].pt"),
        message="found \x1b]0;pwned\x07", evidence="[link=https://evil.example]click[/link]",
    )
    report = Report(tool_version="0", started=datetime(2026, 1, 1, tzinfo=UTC), roots=("d",),
                    fail_on=Severity.LOW, findings=(finding,))
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system="truecolor",
                      highlight=False)
    print_report(report, RULES, console)
    out = buffer.getvalue()
    assert "\x1b[2J" not in out  # Rich's own styling escapes remain; the hostile ones do not
    assert "\x1b]" not in out  # no OSC (title, hyperlink) sequence
    assert "\\x1b[2J\\x1b[31m[blink]evil[/blink].pt" in out
    assert "[link=https://evil.example]click[/link]" in out


def test_summary_line_passed(make_report: Callable[..., Report]) -> None:
    report = make_report([UNREADABLE.finding(Location(path="a"), "x", severity=Severity.LOW)])
    line = summary_line(report).plain
    assert line.startswith(" PASSED ")
    assert "0 findings at or above medium" in line
    assert "1 low" in line
    assert "3 files (1.2 KB), 2 analysed, 0 skipped" in line


def test_render_dispatches_terminal_format(sample_report: Report) -> None:
    assert render(sample_report, Format.TERMINAL) == render_terminal(sample_report, RULES)
