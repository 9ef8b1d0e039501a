"""SARIF 2.1.0: valid against the OASIS schema, and what GitHub code scanning relies on.

Rules with ``ruleIndex``, locations (member chain, byte offset), ``partialFingerprints`` that
do not move when an offset does, and policy ignores as SARIF suppressions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bastion.catalogue import all_rules
from bastion.findings import Location, Report
from bastion.report.sarif import render_sarif
from bastion.rules import UNREADABLE

RULES = {rule.id: rule for rule in all_rules()}


def _sarif(report: Report) -> dict[str, Any]:
    return dict(json.loads(render_sarif(report, RULES)))


def _validate(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert errors == [], [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_valid_against_sarif_2_1_0(sample_report: Report, sarif_schema: dict[str, Any],
                                   make_report: Callable[..., Report]) -> None:
    _validate(_sarif(sample_report), sarif_schema)
    _validate(_sarif(make_report()), sarif_schema)  # no findings is valid too


def test_the_validation_is_not_vacuous(sample_report: Report,
                                       sarif_schema: dict[str, Any]) -> None:
    doc = _sarif(sample_report)
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert not jsonschema.Draft7Validator(sarif_schema).is_valid(doc)


def test_rules_and_rule_index(sample_report: Report) -> None:
    run = _sarif(sample_report)["runs"][0]
    assert run["tool"]["driver"]["name"] == "Bastion"
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["PLUGIN-EVIL", "SCAN-UNREADABLE", "SCAN-SYMLINK-LOOP"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    unreadable = rules[1]
    assert unreadable["properties"]["security-severity"] == "8.0"
    assert unreadable["defaultConfiguration"]["level"] == "error"
    assert unreadable["fullDescription"]["text"] == RULES["SCAN-UNREADABLE"].description
    assert "CWE-502" not in unreadable["properties"]["tags"]  # rule tags are the rule's own


def test_locations(sample_report: Report) -> None:
    results = _sarif(sample_report)["runs"][0]["results"]
    plugin, nested, _ = results
    physical = plugin["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": Path("/abs/path/evil model.bin").as_uri()}
    assert physical["region"]["startLine"] == 7
    physical = nested["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "models/bundle.zip",
                                            "uriBaseId": "%SRCROOT%"}
    assert physical["region"]["byteOffset"] == 1234
    assert nested["locations"][0]["logicalLocations"] == [
        {"fullyQualifiedName": "inner.tar » data.pkl", "kind": "member"}]
    assert "Evidence: " in nested["message"]["text"]


def test_levels_and_suppressions(sample_report: Report) -> None:
    results = _sarif(sample_report)["runs"][0]["results"]
    assert [r["level"] for r in results] == ["error", "error", "note"]
    assert "suppressions" not in results[0]
    assert results[2]["suppressions"] == [{"kind": "external", "status": "accepted",
                                           "justification": "known loop, harmless"}]
    run = _sarif(sample_report)["runs"][0]
    assert run["properties"] == {"failOn": "medium", "passed": False}


def test_fingerprint_is_stable_when_only_the_offset_changes(
    make_report: Callable[..., Report]
) -> None:
    def fingerprint(offset: int) -> str:
        loc = Location(path="m.zip", members=("a.pkl",)).at(offset=offset)
        report = make_report([UNREADABLE.finding(loc, "x", evidence="os.system")])
        result = _sarif(report)["runs"][0]["results"][0]
        return str(result["partialFingerprints"]["bastionFingerprint/v1"])

    assert fingerprint(10) == fingerprint(99_999)
    loc = Location(path="m.zip", members=("b.pkl",)).at(offset=10)
    other = _sarif(make_report([UNREADABLE.finding(loc, "x", evidence="os.system")]))
    assert other["runs"][0]["results"][0]["partialFingerprints"]["bastionFingerprint/v1"] != \
        fingerprint(10)


@pytest.mark.parametrize("name", ["dir with space/ü.bin", "a#b?c%d.pt", "weird\udcff.pt"])
def test_awkward_paths_make_valid_uris(name: str, make_report: Callable[..., Report],
                                       sarif_schema: dict[str, Any]) -> None:
    report = make_report([UNREADABLE.finding(Location(path=name), "x")])
    doc = _sarif(report)  # a lone surrogate (undecodable file name) must not crash it
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert " " not in uri["uri"]
    assert "#" not in uri["uri"]
    assert "?" not in uri["uri"]
    _validate(doc, sarif_schema)
