"""JSON output: ``Report.to_dict()`` plus a summary, versioned by ``schema_version``.

The schema is :func:`bastion.report.schema.report_schema` (``bastion schema`` prints it).
Reading a report back: ``Report.from_json(text)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from bastion.findings import Report
from bastion.report.schema import report_schema
from bastion.rules import Rule


def render_json(report: Report, rules: Mapping[str, Rule]) -> str:
    data = report.to_dict()
    data["summary"] = {
        "passed": report.passed,
        "counts": {str(k): v for k, v in report.counts().items()},
        "failing": len(report.failing),
        "suppressed": sum(1 for f in report.findings if not f.active),
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


__all__ = ["render_json", "report_schema"]
