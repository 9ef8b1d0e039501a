"""Where the platform checks put their findings: one file's location, each finding once."""

from __future__ import annotations

from typing import Any

from bastion.findings import Finding, Location, Severity
from bastion.rules import Rule


class Sink:
    """Findings for one file (or member); a repeated (rule, line, message) is kept once, since
    one setting can be reached through several wrappers (a compose command and its shell)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, int | None, str]] = set()

    def add(self, rule: Rule, line: int | None, message: str, *, evidence: str | None = None,
            severity: Severity | None = None, **properties: Any) -> None:
        key = (rule.id, line, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(rule.finding(self.location.at(line=line), message,
                                          evidence=evidence, severity=severity,
                                          properties=properties or None))
