"""Benign look-alikes stay at low or below: real-world-shaped packages and real installed ones.

A heuristic that flags ``requests`` or a C extension's ``build_ext`` as malicious would be
switched off by its users; these tests pin that it does not.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from tests.supply.heuristics import benign

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.supply.heuristics import HeuristicsAnalyzer
from bastion.supply.heuristics.analyzer import package_findings
from bastion.supply.heuristics.sources import read_installed


def scan(*paths: Path) -> list[Finding]:
    return list(scan_paths(list(paths), registry=Registry([HeuristicsAnalyzer()])).findings)


def above_low(findings: list[Finding]) -> list[str]:
    return [f"{f.rule_id} {f.severity} {f.location}: {f.message}" for f in findings
            if f.severity > Severity.LOW]


def test_benign_corpus_has_no_finding_above_low(tmp_path: Path) -> None:
    built = benign.build_corpus(tmp_path / "downloads")
    findings = scan(tmp_path / "downloads")
    assert above_low(findings) == []
    # Every package was read (each is a package to the analyzer, not skipped).
    assert len(built) == 7


def test_c_extension_build_ext_is_not_an_install_hook(tmp_path: Path) -> None:
    """A cmdclass that compiles an extension (build_ext + pkg-config) is how C code is built."""
    benign.build_corpus(tmp_path)
    findings = scan(tmp_path / "fastcrc-2.1.0.tar.gz")
    assert [f for f in findings if f.rule_id == "SUPPLY-INSTALL-HOOK"] == []
    assert [f for f in findings if f.rule_id == "SUPPLY-SETUP-SIDE-EFFECT"] == []


def test_numpy_style_setup_is_low_at_most_and_says_why(tmp_path: Path) -> None:
    benign.build_corpus(tmp_path)
    findings = scan(tmp_path / "numlite-1.26.0.zip")
    effects = {f.message for f in findings if f.rule_id == "SUPPLY-SETUP-SIDE-EFFECT"}
    assert effects == {"setup.py writes files when it is executed",
                       "setup.py runs programs named at run time when it is executed"}
    assert all(f.severity <= Severity.LOW for f in findings)


def test_data_package_with_base64_icons_is_low(tmp_path: Path) -> None:
    benign.build_corpus(tmp_path)
    findings = scan(tmp_path / "iconpack-1.0.0-py3-none-any.whl")
    blobs = [f for f in findings if f.rule_id == "SUPPLY-ENCODED-PAYLOAD"]
    assert len(blobs) == 1
    assert blobs[0].severity is Severity.LOW
    pth = [f for f in findings if f.rule_id == "SUPPLY-PTH-EXEC"]
    assert len(pth) == 1
    assert pth[0].severity is Severity.LOW


# Real packages installed beside Bastion: an HTTP client (requests, urllib3), a CLI toolkit
# (click), a CA bundle (certifi). Whatever is installed is checked.
REAL = ("requests", "urllib3", "click", "certifi")


@pytest.mark.parametrize("name", REAL)
def test_real_installed_packages_have_no_finding_above_low(name: str) -> None:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed")
    record = Path(str(dist.locate_file(""))) / f"{dist._path.name}/RECORD"  # type: ignore[attr-defined]
    if not record.is_file():
        pytest.skip(f"{name} has no RECORD")
    package = read_installed(record)
    assert package.members, "the RECORD's files were read"
    findings = list(package_findings(package, Location(path=str(record.parent.parent))))
    assert above_low(findings) == []
