"""SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

Each result carries a ``partialFingerprints`` entry from the finding's fingerprint (stable
across runs and unaffected by offsets), so code scanning deduplicates alerts; rules carry a
``security-severity`` so GitHub ranks them; policy ignores become SARIF suppressions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion import __version__
from bastion.findings import Finding, Report, Severity
from bastion.rules import Rule

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/bastion-mlsec/bastion"

LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
#: GitHub's scale: >= 9 critical, 7-8.9 high, 4-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def _rule(rule: Rule) -> dict[str, Any]:
    help_text = rule.description + (f"\n\nFix: {rule.remediation}" if rule.remediation else "")
    entry: dict[str, Any] = {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {"text": help_text, "markdown": help_text},
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "tags": ["security", rule.category.value, *(r.id for r in rule.refs)],
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "precision": "high",
        },
    }
    urls = [r.url for r in rule.refs if r.url]
    if urls:
        entry["helpUri"] = urls[0]
    return entry


def _uri(path: str) -> tuple[str, str | None]:
    # Paths are already POSIX (the walker converts os.sep); a backslash left in one is part
    # of a name (or an escape made visible by ``clip``), not a separator.
    posix = path
    if posix.startswith("/"):
        return Path(posix).as_uri(), None
    return quote(posix.removeprefix("./")), "%SRCROOT%"


def _result(finding: Finding, index: int) -> dict[str, Any]:
    uri, base = _uri(finding.location.path)
    artifact: dict[str, Any] = {"uri": uri}
    if base:
        artifact["uriBaseId"] = base
    region: dict[str, Any] = {"startLine": finding.location.line or 1}
    if finding.location.offset is not None:
        region["byteOffset"] = finding.location.offset
    location: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": artifact, "region": region},
    }
    if finding.location.members:
        location["logicalLocations"] = [{
            "fullyQualifiedName": " » ".join(finding.location.members),
            "kind": "member",
        }]
    text = finding.message
    if finding.evidence:
        text += f"\nEvidence: {finding.evidence}"
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": index,
        "level": LEVEL[finding.severity],
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"bastionFingerprint/v1": finding.fingerprint},
        "properties": {
            "severity": finding.severity.value,
            "category": finding.category.value,
            "security-severity": SECURITY_SEVERITY[finding.severity],
        },
    }
    if finding.suppression is not None:
        result["suppressions"] = [{
            "kind": "external",
            "status": "accepted",
            "justification": finding.suppression.reason,
        }]
    return result


def to_sarif(report: Report, rules: Mapping[str, Rule]) -> dict[str, Any]:
    used: dict[str, int] = {}
    rule_entries: list[dict[str, Any]] = []
    for finding in report.findings:
        if finding.rule_id in used:
            continue
        used[finding.rule_id] = len(rule_entries)
        known = rules.get(finding.rule_id)
        if known is None:  # a plug-in's rule that is not in the catalogue
            known = Rule(id=finding.rule_id, title=finding.rule_id, severity=finding.severity,
                         category=finding.category, description=finding.message)
        rule_entries.append(_rule(known))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "Bastion",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFO_URI,
                "rules": rule_entries,
            }},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
            "invocations": [{
                "executionSuccessful": True,
                "startTimeUtc": report.started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }],
            "results": [_result(f, used[f.rule_id]) for f in report.findings],
            "properties": {"failOn": report.fail_on.value, "passed": report.passed},
        }],
    }


def render_sarif(report: Report, rules: Mapping[str, Rule]) -> str:
    return json.dumps(to_sarif(report, rules), indent=2, ensure_ascii=False) + "\n"
