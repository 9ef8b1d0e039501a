"""Helpers for the infra capability's tests: scan files with the real analyzer, read results.

Static tests scan real-looking configuration files (``data/``, written in the style of the
projects' own examples) and small variants written in the test; every rule has a case that
fires and one that does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.exposure.analyzer import ExposureAnalyzer
from bastion.findings import Finding, Report

DATA = Path(__file__).resolve().parent / "data"


def scan(*paths: Path | str) -> Report:
    """``bastion scan`` with only the infra analyzer (what the default registry adds)."""
    return scan_paths([str(p) for p in paths], registry=Registry([ExposureAnalyzer()]))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ids(findings: Iterable[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def of(findings: Iterable[Finding], rule_id: str) -> list[Finding]:
    return [f for f in findings if f.rule_id == rule_id]


def one(findings: Iterable[Finding], rule_id: str) -> Finding:
    found = of(findings, rule_id)
    assert len(found) == 1, (rule_id, [(f.rule_id, f.message) for f in findings])
    return found[0]
