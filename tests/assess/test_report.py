"""From measurements to findings and documents: thresholds, mappings, one-file HTML, JSON."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bastion.assess.data import EvalData
from bastion.assess.html import render_html
from bastion.assess.report import assessment_findings, build_report, render_json, summary
from bastion.assess.run import Assessment, run_assessment
from bastion.assess.settings import AssessSettings, parse_settings
from bastion.assess.targets import SklearnTarget
from bastion.errors import PolicyError
from bastion.findings import Severity
from bastion.policy import DEFAULT, parse_policy
from bastion.report import Format, render
from bastion.report.schema import report_schema

from .conftest import FAST

#: A target name carrying HTML, terminal escapes and a bidi override.
HOSTILE = "<script>alert(1)</script> \x1b[31mRED\x1b[0m \u202efdp.exe"


@pytest.fixture(scope="module")
def assessment(logistic: SklearnTarget, digits: EvalData) -> Assessment:
    return run_assessment(logistic, digits, FAST, description="a logistic regression")


def _rules(assessment: Assessment, **settings: Any) -> list[str]:
    changed = dataclasses.replace(assessment,
                                  settings=dataclasses.replace(assessment.settings, **settings))
    return [f.rule_id for f in assessment_findings(changed)]


def test_measurements_against_thresholds(assessment: Assessment) -> None:
    assert assessment.errors == ()
    strict = _rules(assessment, min_robust_accuracy=0.99, max_membership_auc=0.5,
                    max_membership_tpr=0.0, max_extraction_fidelity=0.5)
    lenient = _rules(assessment, min_robust_accuracy=0.0, max_membership_auc=1.0,
                     max_membership_tpr=1.0, max_extraction_fidelity=1.0)
    measured = {"ASSESS-ROBUSTNESS-LOW", "ASSESS-MEMBERSHIP-LEAK", "ASSESS-EXTRACTION-EASY"}
    assert measured <= set(strict)
    assert not measured & set(lenient)
    # what was not measured is said, whatever the thresholds
    assert "ASSESS-NOT-ASSESSED" in lenient
    robustness = assessment.robustness
    assert robustness is not None
    pgd = robustness.worst(0.2)
    assert pgd is not None
    at_point_two = _rules(assessment, robustness_epsilon=0.2,
                          min_robust_accuracy=pgd.robust_accuracy + 0.01)
    assert "ASSESS-ROBUSTNESS-LOW" in at_point_two
    assert "ASSESS-ROBUSTNESS-LOW" not in _rules(
        assessment, robustness_epsilon=0.2, min_robust_accuracy=pgd.robust_accuracy)


def test_findings_carry_the_taxonomies(assessment: Assessment) -> None:
    changed = dataclasses.replace(assessment, settings=dataclasses.replace(
        assessment.settings, min_robust_accuracy=1.0, max_membership_auc=0.0,
        max_extraction_fidelity=0.0))
    by_rule = {f.rule_id: f for f in assessment_findings(changed)}
    refs = {rule: {r.id for r in f.references} for rule, f in by_rule.items()}
    assert {"ML01", "AML.T0043"} <= refs["ASSESS-ROBUSTNESS-LOW"]
    assert {"ML04", "AML.T0024.000"} <= refs["ASSESS-MEMBERSHIP-LEAK"]
    assert {"ML05", "AML.T0024.002"} <= refs["ASSESS-EXTRACTION-EASY"]
    robust = by_rule["ASSESS-ROBUSTNESS-LOW"]
    assert robust.severity is Severity.HIGH
    assert "PGD-10" in robust.message
    assert robust.properties["epsilon"] == 0.1
    extraction = by_rule["ASSESS-EXTRACTION-EASY"]
    assert extraction.properties["queries"] == 50  # the first budget already crosses 0.0


def test_policy_overrides_and_ignores_apply(assessment: Assessment) -> None:
    policy = parse_policy({
        "fail-on": "high",
        "severity": {"ASSESS-EXTRACTION-EASY": "critical"},
        "ignore": [{"rule": "ASSESS-ROBUSTNESS-LOW", "reason": "accepted for the demo"}],
        "assess": {"min-robust-accuracy": 1.0, "max-extraction-fidelity": 0.0},
    })
    settings = parse_settings(policy.assess)
    report = build_report(dataclasses.replace(assessment, settings=settings), policy)
    by_rule = {f.rule_id: f for f in report.findings}
    assert by_rule["ASSESS-EXTRACTION-EASY"].severity is Severity.CRITICAL
    assert not by_rule["ASSESS-ROBUSTNESS-LOW"].active
    assert [f.rule_id for f in report.failing] == ["ASSESS-EXTRACTION-EASY"]
    assert report.findings[0].severity is Severity.CRITICAL  # sorted, most severe first


def test_html_is_one_file_with_the_three_plots(assessment: Assessment) -> None:
    hostile = dataclasses.replace(assessment, target=HOSTILE)
    page = render_html(build_report(hostile, DEFAULT), hostile)
    assert page.count("<svg") == 3
    for title in ("Robust accuracy vs perturbation budget", "Membership inference ROC",
                  "Copycat fidelity vs queries"):
        assert title in page
    assert "<script" not in page  # the hostile name is escaped, and there is no script
    assert "&lt;script&gt;" in page
    assert "default-src 'none'" in page
    assert not re.search(r"""\s(src|href)=["'](?!https://)""", page)  # nothing to fetch
    for line in summary(assessment):
        assert line.split(":")[0] in page


def test_json_keeps_the_shared_schema_and_adds_the_measurements(
        assessment: Assessment) -> None:
    data = json.loads(render_json(build_report(assessment, DEFAULT), assessment))
    jsonschema.validate(data, report_schema())
    measured = data["assessment"]
    assert measured["robustness"]["points"][0]["attack"] == "FGSM"
    assert measured["privacy"]["attacks"][0]["name"] == "loss threshold"
    assert [p["queries"] for p in measured["extraction"]["points"]] == [50, 100, 200, 500]
    assert measured["settings"]["max-queries"] == 500
    assert measured["summary"]


def test_sarif_validates(assessment: Assessment, sarif_schema: dict[str, Any]) -> None:
    report = build_report(assessment, DEFAULT)
    sarif = json.loads(render(report, Format.SARIF))
    jsonschema.validate(sarif, sarif_schema)
    rules = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {f.rule_id for f in report.findings} <= rules


@pytest.mark.parametrize(("table", "message"), [
    ({"min-robust-acuracy": 0.5}, "assess.min-robust-acuracy: unknown key"),
    ({"min-robust-accuracy": 1.5}, "assess.min-robust-accuracy: expected a number from 0 to 1"),
    ({"epsilons": []}, "assess.epsilons: expected 1 to 16 numbers"),
    ({"epsilons": [0.1, 2]}, "assess.epsilons"),
    ({"max-queries": 5}, "assess.max-queries: expected an integer from 10"),
    ({"samples": True}, "assess.samples"),
])
def test_invalid_assess_tables_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_settings(table, "bastion.toml")
    assert message in error.value.message


def test_assess_table_from_a_policy_file(tmp_path: Path) -> None:
    from bastion.policy import load_policy

    path = tmp_path / "bastion.toml"
    path.write_text("[assess]\nepsilons = [0.05, 0.3]\nrobustness-epsilon = 0.05\n"
                    "max-membership-auc = 1\n", encoding="utf-8")
    settings = parse_settings(load_policy(path).assess)
    assert settings.sweep == (0.05, 0.3)
    assert settings.max_membership_auc == 1.0
    assert AssessSettings().sweep == (0.01, 0.02, 0.05, 0.1, 0.2)
