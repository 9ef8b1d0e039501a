"""The JSON Schema (draft 2020-12) of ``--format json`` reports, version 1.0.

Written out by hand, next to the code that emits the JSON (``Report.to_dict``), so a change to
one is a visible change to the other; a test validates real reports against it.
"""

from __future__ import annotations

from typing import Any

_SEVERITY = {"enum": ["critical", "high", "medium", "low", "info"]}
_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 0}

_LOCATION = {
    "type": "object",
    "required": ["path", "members", "offset", "line"],
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "description": "File as scanned (control characters escaped)."},
        "members": {"type": "array", "items": {"type": "string"},
                    "description": "Chain of archive members from the file inwards."},
        "offset": {**_NULLABLE_INT, "description": "Byte offset inside the innermost member."},
        "line": {**_NULLABLE_INT, "description": "1-based line, for text files."},
    },
}
_REFERENCE = {
    "type": "object",
    "required": ["kind", "id"],
    "additionalProperties": False,
    "properties": {
        "kind": {"enum": ["owasp-ml", "mitre-atlas", "cve", "ghsa", "pysec", "cwe", "url"]},
        "id": {"type": "string"},
        "url": _NULLABLE_STR,
    },
}
_FINDING = {
    "type": "object",
    "required": ["rule_id", "severity", "category", "location", "message", "fingerprint"],
    "additionalProperties": False,
    "properties": {
        "rule_id": {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9-]*$"},
        "severity": _SEVERITY,
        "category": {"type": "string"},
        "location": _LOCATION,
        "message": {"type": "string"},
        "evidence": _NULLABLE_STR,
        "remediation": _NULLABLE_STR,
        "references": {"type": "array", "items": _REFERENCE},
        "suppression": {
            "type": ["object", "null"],
            "required": ["reason"],
            "properties": {"reason": {"type": "string"}, "expires": _NULLABLE_STR,
                           "source": {"type": "string"}},
        },
        "properties": {"type": "object", "description": "Rule-specific machine-readable detail."},
        "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                        "description": "Stable across runs; ignores offsets and lines."},
    },
}


def report_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bastion.dev/schemas/report-1.0.json",
        "title": "Bastion report",
        "type": "object",
        "required": ["schema_version", "tool_version", "started", "roots", "fail_on",
                     "findings", "skipped", "stats", "notes"],
        "properties": {
            "schema_version": {"const": "1.0"},
            "tool_version": {"type": "string"},
            "started": {"type": "string", "format": "date-time"},
            "roots": {"type": "array", "items": {"type": "string"}},
            "fail_on": _SEVERITY,
            "findings": {"type": "array", "items": _FINDING},
            "skipped": {"type": "array", "items": {
                "type": "object", "required": ["path", "reason"],
                "properties": {"path": {"type": "string"}, "reason": {"type": "string"}}}},
            "stats": {"type": "object", "properties": {
                "files": {"type": "integer"}, "bytes": {"type": "integer"},
                "analyzed": {"type": "integer"}, "seconds": {"type": "number"},
                "cached": {"type": "integer", "minimum": 0,
                           "description": "Of the analysed files, those whose findings came "
                                          "from the result cache (optional; 0 without one)."}}},
            "notes": {"type": "array", "items": {"type": "string"}},
            "summary": {"type": "object", "properties": {
                "passed": {"type": "boolean"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "failing": {"type": "integer"}, "suppressed": {"type": "integer"}}},
        },
    }
