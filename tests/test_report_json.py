"""JSON output: it reads back into the same report, and it follows ``bastion schema``."""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema

from bastion.catalogue import all_rules
from bastion.findings import SCHEMA_VERSION, Report
from bastion.report.json import render_json, report_schema

RULES = {rule.id: rule for rule in all_rules()}


def test_round_trip(sample_report: Report) -> None:
    text = render_json(sample_report, RULES)
    back = Report.from_json(text)
    assert back == sample_report
    assert back.findings[0].fingerprint == sample_report.findings[0].fingerprint
    assert back.findings[2].suppression == sample_report.findings[2].suppression


def test_summary_block(sample_report: Report) -> None:
    data = json.loads(render_json(sample_report, RULES))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["summary"] == {
        "passed": False,
        "counts": {"critical": 1, "high": 1, "medium": 0, "low": 0, "info": 0},
        "failing": 2,
        "suppressed": 1,
    }
    nested = data["findings"][1]
    assert nested["location"] == {"path": "models/bundle.zip",
                                  "members": ["inner.tar", "data.pkl"], "offset": 1234,
                                  "line": None}
    assert [r["id"] for r in nested["references"]] == ["CWE-502", "ML06"]


def test_hostile_text_stays_data(sample_report: Report) -> None:
    text = render_json(sample_report, RULES)
    assert "\x1b" not in text
    data = json.loads(text)
    assert "[bold red]x[/]" in data["findings"][1]["evidence"]
    assert "\\x1b[31m" in data["findings"][1]["evidence"]


def test_validates_against_the_published_schema(sample_report: Report,
                                                 make_report: Callable[..., Report]) -> None:
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for report in (sample_report, make_report()):
        errors = list(validator.iter_errors(json.loads(render_json(report, RULES))))
        assert errors == [], [e.message for e in errors]


def test_schema_rejects_a_broken_report(sample_report: Report) -> None:
    """The schema is not vacuous: a wrong severity or a missing field fails it."""
    validator = jsonschema.Draft202012Validator(report_schema())
    data = json.loads(render_json(sample_report, RULES))
    data["findings"][0]["severity"] = "catastrophic"
    assert not validator.is_valid(data)
    data = json.loads(render_json(sample_report, RULES))
    del data["findings"][0]["rule_id"]
    assert not validator.is_valid(data)
