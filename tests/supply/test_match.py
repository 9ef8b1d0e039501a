"""OSV matching edge cases, each built as a small record, plus severity from CVSS vectors."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.findings import Severity
from bastion.supply.advisories.cvss import cvss3_base_score, cvss4_severity
from bastion.supply.advisories.osv import Advisory, parse_record
from bastion.supply.fix import smallest_fix
from bastion.supply.match import advisory_affects, match, merge


def record(ident: str = "PYSEC-0000-1", *, events: list[dict[str, str]] | None = None,
           versions: list[str] | None = None, kind: str = "ECOSYSTEM", name: str = "demo",
           **extra: Any) -> Advisory:
    affected: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": kind, "events": events}]
    if versions is not None:
        affected["versions"] = versions
    advisory = parse_record({"id": ident, "affected": [affected], **extra})
    assert advisory is not None
    return advisory


def hit(advisory: Advisory, version: str) -> bool | None:
    return advisory_affects(advisory, "demo", version)


def test_introduced_fixed_is_half_open() -> None:
    adv = record(events=[{"introduced": "1.0"}, {"fixed": "1.5"}])
    assert [hit(adv, v) for v in ("0.9", "1.0", "1.4.9", "1.5", "2.0")] == [
        False, True, True, False, False]


def test_last_affected_is_inclusive() -> None:
    adv = record(events=[{"introduced": "0"}, {"last_affected": "2.0.1"}])
    assert [hit(adv, v) for v in ("0.1", "2.0.1", "2.0.1.post1", "2.0.2")] == [
        True, True, False, False]


def test_unsorted_events_with_two_spans() -> None:
    """Events in any order: sorted by version before evaluation."""
    adv = record(events=[{"fixed": "3.1"}, {"introduced": "3.0"}, {"fixed": "1.2"},
                         {"introduced": "0"}])
    assert [hit(adv, v) for v in ("1.1", "1.2", "2.5", "3.0", "3.0.5", "3.1")] == [
        True, False, False, True, True, False]


def test_limit_caps_the_range() -> None:
    adv = record(events=[{"introduced": "1.0"}, {"limit": "1.8"}])
    assert [hit(adv, v) for v in ("1.0", "1.7", "1.8", "9.0")] == [True, True, False, False]
    star = record(events=[{"introduced": "1.0"}, {"limit": "*"}])
    assert hit(star, "9.0") is True


def test_pep440_ordering_not_string_ordering() -> None:
    adv = record(events=[{"introduced": "1.9"}, {"fixed": "1.10"}])
    assert hit(adv, "1.9.5") is True
    assert hit(adv, "1.10") is False
    pre = record(events=[{"introduced": "0"}, {"fixed": "2.0"}])
    assert hit(pre, "2.0rc1") is True  # a pre-release sorts before its release


def test_semver_range() -> None:
    adv = record(kind="SEMVER", events=[{"introduced": "1.2.0-beta.2"}, {"fixed": "1.2.3"}])
    assert [hit(adv, v) for v in ("1.2.0-beta.1", "1.2.0-beta.10", "1.2.0", "1.2.3")] == [
        False, True, True, False]


def test_versions_list_matches_exactly_and_normalized() -> None:
    adv = record(versions=["0.1.2-1", "0.2.6"])
    assert hit(adv, "0.2.6")
    assert hit(adv, "0.1.2.post1")
    assert hit(adv, "0.2.5") is False


def test_unparseable_versions_never_crash() -> None:
    adv = record(events=[{"introduced": "0"}, {"fixed": "not a version"}])
    assert hit(adv, "1.0") is None  # undetermined, reported as such
    fine = record(events=[{"introduced": "0"}, {"fixed": "2.0"}])
    assert hit(fine, "1.1.1w") is None
    assert match("demo", "1.1.1w", [fine]).undetermined == ("PYSEC-0000-1",)
    listed = record(events=[{"introduced": "0"}, {"fixed": "???"}], versions=["1.0"])
    assert hit(listed, "1.0") is True
    assert hit(listed, "1.1") is False


def test_withdrawn_records_are_ignored() -> None:
    adv = record(events=[{"introduced": "0"}], withdrawn="2023-06-06T10:37:00Z")
    assert hit(adv, "1.0") is False
    assert match("demo", "1.0", [adv]).vulnerabilities == ()


def test_aliases_merge_into_one_vulnerability() -> None:
    pysec = record("PYSEC-2023-1", events=[{"introduced": "0"}, {"fixed": "2.0"}],
                   aliases=["CVE-2023-9", "GHSA-aaaa-bbbb-cccc"])
    ghsa = record("GHSA-aaaa-bbbb-cccc", events=[{"introduced": "0"}, {"fixed": "2.0"}],
                  aliases=["CVE-2023-9"], database_specific={"severity": "HIGH"})
    other = record("PYSEC-2023-2", events=[{"introduced": "0"}])
    vulns = match("demo", "1.0", [pysec, ghsa, other]).vulnerabilities
    assert len(vulns) == 2
    merged = next(v for v in vulns if len(v.advisories) == 2)
    assert merged.ids == ("PYSEC-2023-1", "GHSA-aaaa-bbbb-cccc", "CVE-2023-9")
    assert merged.severity is Severity.HIGH  # from the GHSA copy's database severity
    assert len(merge([pysec, ghsa])) == 1


def test_other_ecosystems_and_packages_do_not_match() -> None:
    adv = parse_record({"id": "X-1", "affected": [
        {"package": {"ecosystem": "npm", "name": "demo"}, "ranges": [
            {"type": "SEMVER", "events": [{"introduced": "0"}]}]}]})
    assert adv is not None
    assert hit(adv, "1.0") is False
    assert advisory_affects(record(events=[{"introduced": "0"}]), "other", "1.0") is False


@pytest.mark.parametrize("junk", [None, [], "x", {"id": 3}, {"id": "A", "affected": "nope"},
                                  {"id": "A", "affected": [{"ranges": [{"events": 5}]}]}])
def test_malformed_records_are_handled(junk: Any) -> None:
    advisory = parse_record(junk)
    assert advisory is None or advisory.affected == ()


@pytest.mark.parametrize(("vector", "score"), [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
    ("CVSS:3.0/AV:L/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N", 2.8),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
])
def test_cvss3_base_score_from_vector(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


def test_cvss_severity_of_a_record() -> None:
    critical = record(severity=[{"type": "CVSS_V3",
                                 "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}])
    assert critical.severity is Severity.CRITICAL
    assert record().severity is Severity.MEDIUM
    assert not record().rated
    assert cvss3_base_score("CVSS:3.1/AV:X") is None
    v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    assert cvss4_severity(v4) is Severity.CRITICAL
    assert cvss4_severity(v4.replace("PR:N", "PR:H")) is Severity.HIGH
    assert record(severity=[{"type": "CVSS_V4", "score": v4}]).severity is Severity.CRITICAL


def test_malicious_records() -> None:
    assert record("MAL-2024-1").malicious
    assert record(details="Malicious package. Exfiltrated secrets.").malicious
    assert record(details="The ctx project was taken over via user account compromise and "
                          "replaced with a malicious project").malicious
    # A vulnerability that mentions a malicious *user* is not malware.
    assert not record(details="allows a malicious user to read files; a malicious package "
                              "could override macros").malicious


def test_smallest_fix_clears_every_advisory() -> None:
    a = record("A", events=[{"introduced": "0"}, {"fixed": "1.5"}])
    b = record("B", events=[{"introduced": "1.4"}, {"fixed": "1.7"}])
    c = record("C", events=[{"introduced": "1.7"}, {"last_affected": "1.7"}],
               versions=["1.7", "1.7.1"])
    assert smallest_fix("demo", "1.0", [a, b]).version == "1.7"
    # 1.7 is itself affected by C; the next known version (1.7.1) is listed as affected too.
    assert smallest_fix("demo", "1.0", [a, b, c]).version is None
    assert "no released version" in smallest_fix("demo", "1.0", [a, b, c]).reason
    rc = record("R", events=[{"introduced": "0"}, {"fixed": "2.0rc1"}, {"fixed": "2.0"}])
    assert smallest_fix("demo", "1.0", [rc]).version == "2.0"  # no pre-release suggested
