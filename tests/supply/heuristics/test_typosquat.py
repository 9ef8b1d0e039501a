"""Typosquats of popular packages, measured against the shipped list; real names pass."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
from tests.supply.heuristics import packages

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.findings import Location, Severity
from bastion.supply.heuristics import HeuristicsAnalyzer, typosquat_findings
from bastion.supply.heuristics.popular import TOP_N, build, popular
from bastion.supply.heuristics.typosquat import Index, check, osa_distance, skeleton


@pytest.mark.parametrize(("name", "target", "technique", "severity"), [
    ("reqeusts", "requests", "transposition", Severity.HIGH),
    ("numpyy", "numpy", "one edit: a character duplicated", Severity.HIGH),
    ("scikit_learm", "scikit-learn", "one edit: a neighbouring key typed", Severity.HIGH),
    ("t0rch", "torch", "homoglyph", Severity.HIGH),
    ("pytorch-dev", "torch", "affix: 'py+-dev' added", Severity.MEDIUM),
    ("urlib3", "urllib3", "one edit: a doubled character omitted", Severity.HIGH),
    ("pandsa", "pandas", "transposition", Severity.HIGH),
    ("tensorfow", "tensorflow", "one edit: a character omitted", Severity.MEDIUM),
    ("scikitlearn", "scikit-learn", "separator", Severity.MEDIUM),
    ("rеquests", "requests", "homoglyph", Severity.HIGH),  # Cyrillic е
    ("transfomers", "transformers", "one edit: a character omitted", Severity.MEDIUM),
    ("python-numpy", "numpy", "affix: 'python-' added", Severity.LOW),
    ("matplotlib-dev", "matplotlib", "affix: '-dev' added", Severity.MEDIUM),
    ("huggingfase-hib", "huggingface-hub", "two edits", Severity.LOW),
])
def test_typosquat_techniques(name: str, target: str, technique: str,
                              severity: Severity) -> None:
    squat = check(name)
    assert squat is not None
    assert (squat.target, squat.technique, squat.severity) == (target, technique, severity)


@pytest.mark.parametrize("name", [
    "torch", "torchvision", "torchaudio", "requests", "numpy", "scikit-learn", "Scikit_Learn",
    "sklearn", "tensorflow", "pandas", "six", "pip", "my-internal-tool", "bastion-mlsec",
])
def test_popular_and_unrelated_names_are_not_squats(name: str) -> None:
    """A popular package is not a squat of another popular one (torch vs torchvision)."""
    assert check(name) is None


def test_distance_and_skeleton_helpers() -> None:
    assert osa_distance("requests", "reqeusts") == 1  # a swap is one edit (Damerau)
    assert osa_distance("abcdef", "badcfe", cap=5) == 3
    assert osa_distance("numpy", "numpyyyy") == 3  # capped
    assert skeleton("T0-rch") == skeleton("torch")
    assert skeleton("rnatplotlib") == skeleton("matplotlib")


def test_index_on_a_custom_list() -> None:
    index = Index(["alpha-beta", "gammaray"])
    assert index.check("alphabeta") is not None
    assert index.check("gamrnaray") is not None
    assert index.check("alpha-beta") is None


def test_inventory_hook_reports_each_squat_where_it_was_written() -> None:
    """typosquat_findings: the function the supply audit calls for every dependency name."""
    where = Location(path="requirements.txt")
    names = [("reqeusts", where.at(line=1)), ("numpy", where.at(line=2)),
             ("t0rch", where.at(line=3)), ("reqeusts", where.at(line=1))]
    findings = typosquat_findings(names)
    assert [(f.location.line, f.properties["imitates"]) for f in findings] == [
        (1, "requests"), (3, "torch")]
    assert findings[0].evidence == "reqeusts ~ requests"
    assert "download rank" in findings[0].message


def test_checking_a_500_name_inventory_is_fast() -> None:
    names = [(f"internal-package-{i}", Location(path="r.txt", line=i)) for i in range(250)]
    names += [(name, Location(path="r.txt")) for name in popular()[:250]]
    check("warm-up")
    started = time.perf_counter()
    assert typosquat_findings(names) == []
    assert time.perf_counter() - started < 2.0


def test_sdist_named_like_a_popular_package(tmp_path: Path) -> None:
    sdist = packages.sdist(tmp_path, "reqeusts", "2.31.0", {"setup.py": """
        from setuptools import setup
        setup(name="reqeusts", version="2.31.0")
    """})
    report = scan_paths([sdist], registry=Registry([HeuristicsAnalyzer()]))
    squats = [f for f in report.findings if f.rule_id == "SUPPLY-TYPOSQUAT"]
    assert len(squats) == 1
    assert squats[0].location.members == ("reqeusts-2.31.0/PKG-INFO",)
    assert squats[0].location.line == 2
    assert squats[0].properties["imitates"] == "requests"


def test_dependency_of_a_wheel_named_like_a_popular_package(tmp_path: Path) -> None:
    """A package's own Requires-Dist pinning a squat is reported at that header line."""
    wheel = packages.wheel(tmp_path, "helper", "1.0", {"helper/__init__.py": ""})
    path = tmp_path / "helper2-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("METADATA"):
                data = data.replace(b"Summary: test\n", b"Summary: test\nRequires-Dist: numpy"
                                    b">=1.26\nRequires-Dist: reqeusts>=2; extra == 'http'\n")
            dst.writestr(item, data)
    report = scan_paths([path], registry=Registry([HeuristicsAnalyzer()]))
    squats = [f for f in report.findings if f.rule_id == "SUPPLY-TYPOSQUAT"]
    assert [(f.properties["package"], f.location.line) for f in squats] == [("reqeusts", 6)]


def test_shipped_list_is_top_n_normalized_and_ranked() -> None:
    names = popular()
    assert len(names) == TOP_N == len(set(names))
    assert names.index("requests") < names.index("torch")
    assert all(name == name.lower() and "_" not in name for name in names)
    assert {"torch", "tensorflow", "transformers", "scikit-learn", "pandas"} <= set(names)


def test_list_builder_normalizes_and_ranks() -> None:
    rows = [{"name": "Foo_Bar", "rank_among_15000_most_downloaded": "2"},
            {"name": "zeta", "rank_among_15000_most_downloaded": "1"},
            {"name": "unranked", "rank_among_15000_most_downloaded": ""},
            {"name": "foo.bar", "rank_among_15000_most_downloaded": "3"}]
    assert build(rows, top=5) == ["zeta", "foo-bar"]
