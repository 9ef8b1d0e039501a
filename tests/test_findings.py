"""The result model: severities, locations, fingerprints, hostile text kept inert."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bastion.findings import (
    MAX_TEXT,
    Category,
    Finding,
    Location,
    Reference,
    RefKind,
    Report,
    Severity,
    Skipped,
    Suppression,
    clip,
    visible,
)
from bastion.rules import CORE_RULES, SYMLINK_LOOP, UNREADABLE, Rule


def test_severity_is_ordered() -> None:
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert Severity.MEDIUM >= Severity.MEDIUM
    assert sorted([Severity.LOW, Severity.CRITICAL, Severity.INFO])[-1] is Severity.CRITICAL


@pytest.mark.parametrize(
    ("ref", "kind", "url"),
    [
        ("ML06", RefKind.OWASP_ML, "https://owasp.org/www-project-machine-learning-security-top-10/"),
        ("AML.T0010", RefKind.ATLAS, "https://atlas.mitre.org/techniques/AML.T0010"),
        ("CWE-502", RefKind.CWE, "https://cwe.mitre.org/data/definitions/502.html"),
        ("CVE-2024-1234", RefKind.CVE, "https://www.cve.org/CVERecord?id=CVE-2024-1234"),
        ("https://example.org/x", RefKind.URL, "https://example.org/x"),
    ],
)
def test_reference_of_usual_spellings(ref: str, kind: RefKind, url: str) -> None:
    parsed = Reference.of(ref)
    assert (parsed.kind, parsed.id, parsed.url) == (kind, ref, url)


def test_reference_rejects_unknown_spelling() -> None:
    with pytest.raises(ValueError, match="unrecognised reference"):
        Reference.of("not-a-ref")


def test_rule_ids_must_be_upper_kebab() -> None:
    with pytest.raises(ValueError, match="UPPER-KEBAB"):
        Rule(id="lower-case", title="t", severity=Severity.LOW, category=Category.POLICY,
             description="d")


def test_core_rule_ids_are_unique_and_prefixed() -> None:
    ids = [rule.id for rule in CORE_RULES]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(("SCAN-", "POLICY-")) for i in ids)


def test_location_member_chain_and_offset() -> None:
    loc = Location(path="models/m.zip").child("inner.tar").child("data.pkl").at(offset=42)
    assert loc.members == ("inner.tar", "data.pkl")
    assert loc.offset == 42
    assert str(loc) == "models/m.zip » inner.tar » data.pkl @42"
    assert str(Location(path="req.txt").at(line=3)) == "req.txt:3"


def test_rule_finding_defaults_and_extra_references() -> None:
    finding = UNREADABLE.finding(Location(path="a"), "boom", references=("CWE-22",))
    assert finding.severity is UNREADABLE.severity
    assert finding.remediation == UNREADABLE.remediation
    assert Reference.of("CWE-22") in finding.references
    assert UNREADABLE.finding(Location(path="a"), "x", severity=Severity.LOW).severity is \
        Severity.LOW


def test_fingerprint_ignores_offset_and_line_only() -> None:
    base = SYMLINK_LOOP.finding(Location(path="m.pt", members=("a",)).at(offset=1), "m",
                                evidence="ev")
    moved = SYMLINK_LOOP.finding(Location(path="m.pt", members=("a",)).at(offset=999, line=7),
                                 "other message", evidence="ev")
    assert base.fingerprint == moved.fingerprint
    assert len(base.fingerprint) == 32
    for changed in (
        SYMLINK_LOOP.finding(Location(path="m.pt", members=("b",)), "m", evidence="ev"),
        SYMLINK_LOOP.finding(Location(path="n.pt", members=("a",)), "m", evidence="ev"),
        SYMLINK_LOOP.finding(Location(path="m.pt", members=("a",)), "m", evidence="other"),
        UNREADABLE.finding(Location(path="m.pt", members=("a",)), "m", evidence="ev"),
    ):
        assert changed.fingerprint != base.fingerprint


def test_clip_bounds_hostile_text() -> None:
    clipped = clip("A" * (MAX_TEXT + 500))
    assert clipped.startswith("A" * MAX_TEXT)
    assert clipped.endswith("[500 more characters]")
    finding = UNREADABLE.finding(Location(path="a"), "B" * 10 * MAX_TEXT, evidence="C" * 10**6)
    assert len(finding.message) < MAX_TEXT + 50
    assert finding.evidence is not None
    assert len(finding.evidence) < MAX_TEXT + 50


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),  # ANSI escape
        ("a\x00b", "a\\x00b"),
        ("\x9b2J", "\\x9b2J"),  # 8-bit CSI
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # bidi override
        ("name\udcff.pt", "name\\xff.pt"),  # undecodable byte of a file name
        ("tab\tand\nnewline", "tab\tand\nnewline"),  # ordinary whitespace stays
    ],
)
def test_visible_makes_control_characters_inert(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert visible(shown) == shown  # idempotent: safe to apply on every validation


def test_models_store_hostile_text_visible_however_built() -> None:
    """A plug-in may build a Finding directly, and file names come from the disk unfiltered."""
    finding = Finding(
        rule_id="PLUGIN-X", severity=Severity.HIGH, category=Category.MALFORMED,
        location=Location(path="dir/\x1b]8;;evil\x07name\udcfe", members=("m\x1b[2J",)),
        message="msg \x1b[31m", evidence="ev \x1b[0m",
        suppression=Suppression(reason="ok \x1b[5m"),
    )
    dumped = json.dumps(finding.to_dict(), ensure_ascii=False)
    assert "\x1b" not in str(finding.location) + finding.message + (finding.evidence or "")
    assert "\\u001b" not in dumped  # JSON would escape a live ESC as \u001b
    assert finding.location.path == "dir/\\x1b]8;;evil\\x07name\\xfe"
    assert Skipped(path="a\x1b", reason="r\udcff").to_dict() == {
        "path": "a\\x1b", "reason": "r\\xff"}
    dumped.encode("utf-8")  # no lone surrogate left to break encoding


def test_report_gate_counts_only_active_findings(make_report: Callable[..., Report]) -> None:
    high = UNREADABLE.finding(Location(path="a"), "high")
    low = SYMLINK_LOOP.finding(Location(path="b"), "low")
    hidden = UNREADABLE.finding(Location(path="c"), "suppressed").replace(
        suppression=Suppression(reason="accepted risk"))
    report = make_report([high, low, hidden])
    assert report.failing == (high,)
    assert not report.passed
    assert report.counts()[Severity.HIGH] == 1
    assert report.counts()[Severity.LOW] == 1
    assert list(report.counts()) == list(reversed(Severity))
    assert make_report([low, hidden]).passed
    assert not make_report([low], fail_on=Severity.LOW).passed
