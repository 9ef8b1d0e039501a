"""The ``supply`` analyzer inside ``bastion scan``: manifests claimed by name, audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Location, Severity
from bastion.supply.advisories.store import AdvisoryStore
from bastion.supply.analyzer import SupplyAnalyzer
from bastion.supply.rules import RULES

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def target(name: str, data: bytes, members: tuple[str, ...] = ()) -> Target:
    return Target.from_bytes(data, Location(path="bundle.tar" if members else name,
                                            members=members))


@pytest.mark.parametrize(("name", "claimed"), [
    ("requirements.txt", True), ("requirements-dev.txt", True), ("constraints.txt", True),
    ("dev.in", True), ("MANIFEST.in", False), ("pyproject.toml", True), ("poetry.lock", True),
    ("uv.lock", True), ("Pipfile.lock", True), ("pylock.toml", True), ("pylock.gpu.toml", True),
    ("environment.yml", True), ("environment.yaml", True), ("notes.txt", False),
    ("setup.py", False), ("model.pkl", False),
])
def test_claims_manifests_by_name(name: str, claimed: bool, store: AdvisoryStore) -> None:
    assert SupplyAnalyzer(store).claims(target(name, b"six==1.16.0\n")) is claimed


def test_a_setuptools_manifest_by_another_name_is_not_claimed(store: AdvisoryStore) -> None:
    assert not SupplyAnalyzer(store).claims(target("extra.in", b"include README.md\n"))


def test_scan_of_the_demo_folder_reports_real_advisories(store: AdvisoryStore) -> None:
    analyzer = SupplyAnalyzer(store)
    report = scan_paths([DEMO], registry=Registry([analyzer]))
    vulnerable = {f.properties["package"]: f for f in report.findings
                  if f.rule_id == "SUPPLY-VULNERABLE-DEPENDENCY"}
    assert set(vulnerable) == {"torch", "mlflow"}
    assert vulnerable["torch"].location.line == 2
    assert vulnerable["mlflow"].severity is Severity.HIGH  # CVSS 3.1 vectors of its records
    assert vulnerable["mlflow"].remediation
    assert "mlflow==2.10.1" in vulnerable["mlflow"].remediation
    assert any(f.rule_id == "SUPPLY-UNPINNED" for f in report.findings)  # numpy>=1.26
    assert "2024-10-10" in analyzer.notes()[0]


def test_default_registry_includes_the_supply_analyzer() -> None:
    report = scan_paths([DEMO / "requirements.txt"])
    assert any(f.rule_id == "SUPPLY-VULNERABLE-DEPENDENCY" for f in report.findings)


def test_manifest_inside_an_archive_points_at_the_member(store: AdvisoryStore) -> None:
    found = list(SupplyAnalyzer(store).analyze(
        target("requirements.txt", b"ctx==0.2.6\n-r base.txt\n",
               members=("pkg-1.0/requirements.txt",)), Context()))
    malicious = next(f for f in found if f.rule_id == "SUPPLY-MALICIOUS-PACKAGE")
    assert malicious.location.members == ("pkg-1.0/requirements.txt",)
    assert malicious.location.line == 1
    assert malicious.severity is Severity.CRITICAL
    assert any(f.rule_id == "SUPPLY-INCLUDE-SKIPPED" for f in found)


def test_broken_lock_file_is_a_finding_not_a_crash(store: AdvisoryStore) -> None:
    found = list(SupplyAnalyzer(store).analyze(target("uv.lock", b"[[package]\n"), Context()))
    assert [f.rule_id for f in found] == ["SUPPLY-MANIFEST-INVALID"]
    assert found[0].severity is Severity.MEDIUM


def test_unreadable_database_fails_closed(tmp_path: Path) -> None:
    bad = tmp_path / "db.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    found = list(SupplyAnalyzer(db_path=bad).analyze(target("requirements.txt", b"six==1\n"),
                                                     Context()))
    assert found[0].rule_id == "SUPPLY-DB-UNAVAILABLE"
    assert found[0].severity is Severity.HIGH


def test_rules_are_in_the_catalogue() -> None:
    from bastion.catalogue import rule_ids

    assert {r.id for r in RULES} <= rule_ids()
    assert all(r.id.startswith("SUPPLY-") for r in RULES)


def test_typosquatted_pins_in_a_requirements_file_are_flagged(tmp_path: Path) -> None:
    """A requirements file pinning `reqeusts` imitates `requests`: flagged at its line."""
    from bastion.engine import scan_paths

    (tmp_path / "requirements.txt").write_text("reqeusts==2.31.0\nnumpy==1.26.4\n")
    findings = scan_paths([tmp_path]).findings
    squats = [f for f in findings if f.rule_id == "SUPPLY-TYPOSQUAT"]
    assert [(f.location.line, f.severity.value) for f in squats] == [(1, "high")]
    assert "requests" in squats[0].message
