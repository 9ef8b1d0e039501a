"""JSON output: the :class:`~bastion.findings.Report` model, versioned by ``schema_version``.

The schema is the report model's JSON Schema (``bastion schema`` prints it; it is kept in
``docs/report.schema.json``). Reading a report back: ``Report.model_validate_json(text)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bastion.findings import Report
from bastion.rules import Rule


def render_json(report: Report, rules: Mapping[str, Rule]) -> str:
    data = report.model_dump(mode="json")
    data["summary"] = {
        "passed": report.passed,
        "counts": {str(k): v for k, v in report.counts().items()},
        "failing": len(report.failing),
        "suppressed": sum(1 for f in report.findings if not f.active),
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def report_schema() -> dict[str, Any]:
    schema = Report.model_json_schema(mode="serialization")
    schema["$id"] = "https://bastion.dev/schemas/report-1.0.json"
    schema["title"] = "Bastion report"
    return schema
