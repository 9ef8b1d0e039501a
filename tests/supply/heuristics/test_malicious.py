"""Malicious packages are found, graded by co-occurrence, and never run while scanned."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from tests.supply.heuristics import malicious, packages

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.findings import Finding, Severity
from bastion.supply.heuristics import HeuristicsAnalyzer


def scan(*paths: Path) -> list[Finding]:
    return list(scan_paths(list(paths), registry=Registry([HeuristicsAnalyzer()])).findings)


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule_id == rule]


@pytest.fixture
def corpus(tmp_path: Path, marker: Path) -> dict[str, Path]:
    return malicious.build_corpus(tmp_path / "downloads", marker)


def test_ctx_takeover_env_exfiltration_is_critical_with_evidence_lines(
        corpus: dict[str, Path], marker: Path) -> None:
    """Technique: os.environ read wholesale and sent with requests in one method (ctx 0.2.6)."""
    found = only(scan(corpus["ctx"]), "SUPPLY-CREDENTIAL-EXFILTRATION")
    assert len(found) == 1
    finding = found[0]
    assert finding.severity is Severity.CRITICAL
    assert "in one function" in finding.message
    assert finding.location.path.endswith("ctx-0.2.6-py3-none-any.whl")
    assert finding.location.members == ("ctx.py",)
    assert finding.location.line == 17  # the requests.get line
    assert finding.evidence is not None
    assert "ctx.py:14: for _, value in environ.items():" in finding.evidence
    assert "ctx.py:17: requests.get(" in finding.evidence
    assert not marker.exists()


def test_w4sp_obfuscated_setup_is_decoded_statically_and_shown(
        corpus: dict[str, Path], marker: Path) -> None:
    """Technique: exec(zlib.decompress(base64.b64decode(...))) hidden past 300 blanks."""
    findings = scan(corpus["w4sp"])
    obfuscated = only(findings, "SUPPLY-OBFUSCATED-EXEC")
    assert obfuscated
    assert obfuscated[0].severity is Severity.CRITICAL
    assert "b64decode → decompress" in obfuscated[0].message
    assert "discord.com/api/webhooks" in obfuscated[0].message  # the decoded payload, shown
    assert obfuscated[0].location.members == ("colorsama-0.4.6/setup.py",)
    assert obfuscated[0].location.line == 3
    exfil = only(findings, "SUPPLY-CREDENTIAL-EXFILTRATION")
    assert exfil
    assert exfil[0].severity is Severity.CRITICAL
    assert "# payload: " in (exfil[0].evidence or "")
    assert "⟨300 blanks⟩ ;exec(zlib.decompress(" in (exfil[0].evidence or "")
    hidden = only(findings, "SUPPLY-HIDDEN-CODE")
    assert hidden
    assert hidden[0].severity is Severity.MEDIUM
    side = only(findings, "SUPPLY-SETUP-SIDE-EFFECT")
    assert side
    assert side[0].severity is Severity.HIGH
    squat = only(findings, "SUPPLY-TYPOSQUAT")
    assert squat
    assert squat[0].properties["imitates"] == "colorama"
    assert not marker.exists()


def test_download_and_execute_install_hook(corpus: dict[str, Path], marker: Path) -> None:
    """Technique: cmdclass install → urlopen, write, chmod +x, Popen (a dropper)."""
    findings = scan(corpus["dropper"])
    hook = only(findings, "SUPPLY-INSTALL-HOOK")
    assert len(hook) == 1
    assert hook[0].severity is Severity.HIGH
    assert hook[0].properties["command"] == "install"
    assert "PostInstall" in hook[0].message
    assert "network" in hook[0].message
    dropper = only(findings, "SUPPLY-DOWNLOAD-EXECUTE")
    assert dropper
    assert dropper[0].severity is Severity.CRITICAL
    evidence = dropper[0].evidence or ""
    for needle in ("urlopen(", "open(path, \"wb\")", "os.chmod(", "subprocess.Popen("):
        assert needle in evidence
    assert not marker.exists()


def test_pth_line_that_decodes_and_executes(corpus: dict[str, Path], marker: Path) -> None:
    """Technique: a .pth import line (run by site.py at every start) that execs base64."""
    findings = scan(corpus["pth"])
    pth = only(findings, "SUPPLY-PTH-EXEC")
    assert pth
    assert pth[0].severity is Severity.CRITICAL
    assert pth[0].location.members == ("speedups-init.pth",)
    assert pth[0].location.line == 1
    assert any(f.rule_id == "SUPPLY-OBFUSCATED-EXEC" for f in findings)
    assert not marker.exists()


def test_pth_file_on_disk_in_site_packages(tmp_path: Path, marker: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "evil.pth").write_text("/opt/plugins\n" + malicious.pth_line(marker))
    (site / "_virtualenv.pth").write_text("import _virtualenv\n")
    findings = only(scan(site), "SUPPLY-PTH-EXEC")
    by_file = {Path(f.location.path).name: f for f in findings}
    assert by_file["evil.pth"].severity is Severity.CRITICAL
    assert by_file["evil.pth"].location.line == 2
    assert by_file["_virtualenv.pth"].severity is Severity.LOW
    assert not marker.exists()


def test_dns_exfiltration_of_secret_variables(corpus: dict[str, Path], marker: Path) -> None:
    """Technique: secrets hex-encoded into host names resolved with gethostbyname."""
    findings = scan(corpus["dns"])
    exfil = only(findings, "SUPPLY-CREDENTIAL-EXFILTRATION")
    assert exfil
    assert exfil[0].severity is Severity.MEDIUM
    assert "gethostbyname" in (exfil[0].evidence or "")
    assert only(findings, "SUPPLY-IMPORT-TIME-NETWORK")  # beacon() runs on import
    assert not marker.exists()


def test_in_tree_build_backend_that_pipes_curl_to_sh(corpus: dict[str, Path],
                                                     marker: Path) -> None:
    """Technique: build-backend loaded from the sdist itself (backend-path) runs curl | sh."""
    findings = scan(corpus["backend"])
    hook = only(findings, "SUPPLY-INSTALL-HOOK")
    assert hook
    assert hook[0].severity is Severity.HIGH
    assert hook[0].location.members == ("quickbuild-0.1/pyproject.toml",)
    assert hook[0].location.line == 3
    dropper = only(findings, "SUPPLY-DOWNLOAD-EXECUTE")
    assert dropper
    assert dropper[0].severity is Severity.CRITICAL
    assert dropper[0].location.members == ("quickbuild-0.1/_build/backend.py",)
    assert not marker.exists()


def test_whole_folder_of_downloads_and_nothing_ran(corpus: dict[str, Path],
                                                   marker: Path) -> None:
    findings = scan(next(iter(corpus.values())).parent)
    critical = {Path(f.location.path).name for f in findings if f.severity is Severity.CRITICAL}
    assert critical == {p.name for k, p in corpus.items() if k != "dns"}
    assert not marker.exists()
    assert "ctx" not in sys.modules
    assert "speedups" not in sys.modules


def test_entry_point_shadowing_pip(tmp_path: Path) -> None:
    """Technique: a console script named `pip` installed by a package that is not pip."""
    wheel = packages.wheel(tmp_path, "pipx-helper", "1.0", {"helper/__init__.py": ""},
                           entry_points="[console_scripts]\npip = helper:main\nhelp3r = x:y\n")
    found = only(scan(wheel), "SUPPLY-ENTRY-POINT-SHADOW")
    assert len(found) == 1
    assert found[0].severity is Severity.HIGH
    assert found[0].properties["command"] == "pip"
    assert found[0].location.members == ("pipx_helper-1.0.dist-info/entry_points.txt",)
    assert found[0].location.line == 2


def test_pip_itself_may_install_pip(tmp_path: Path) -> None:
    wheel = packages.wheel(tmp_path, "pip", "24.0", {"pip/__init__.py": ""},
                           entry_points="[console_scripts]\npip = pip:main\npip3.12 = pip:main\n")
    assert not only(scan(wheel), "SUPPLY-ENTRY-POINT-SHADOW")


def test_setup_py_console_script_shadowing_ls(tmp_path: Path) -> None:
    sdist = packages.sdist(tmp_path, "lsplus", "1.0", {"setup.py": """
        from setuptools import setup
        setup(name="lsplus", entry_points={"console_scripts": ["ls = lsplus:main"]})
    """})
    found = only(scan(sdist), "SUPPLY-ENTRY-POINT-SHADOW")
    assert [f.properties["command"] for f in found] == ["ls"]


ELF = b"\x7fELF\x02\x01\x01" + bytes(57) + b"payload"


def test_binaries_in_an_sdist(tmp_path: Path) -> None:
    """Technique: a native executable disguised as data in a source distribution."""
    sdist = packages.sdist(tmp_path, "quiet", "1.0", {
        "setup.py": "from setuptools import setup\nsetup(name='quiet')\n",
        "quiet/data/notes.txt": ELF, "quiet/_speedups.so": ELF})
    found = {f.location.members[-1]: f for f in only(scan(sdist), "SUPPLY-SDIST-BINARY")}
    assert found["quiet-1.0/quiet/data/notes.txt"].severity is Severity.HIGH
    assert found["quiet-1.0/quiet/_speedups.so"].severity is Severity.MEDIUM


def test_binaries_in_wheels(tmp_path: Path) -> None:
    """Technique: an executable in the dist-info folder; a binary in a 'pure' wheel."""
    pure = packages.wheel(tmp_path, "purely", "1.0", {"purely/_x.so": ELF,
                                                      "purely-1.0.dist-info/helper": ELF})
    found = {f.location.members[-1]: f.severity for f in only(scan(pure),
                                                              "SUPPLY-WHEEL-BINARY")}
    assert found == {"purely/_x.so": Severity.LOW, "purely-1.0.dist-info/helper": Severity.HIGH}
    platform = packages.wheel(tmp_path, "native", "1.0", {"native/_x.so": ELF}, pure=False)
    assert not only(scan(platform), "SUPPLY-WHEEL-BINARY")


def test_encoded_blob_next_to_exec_is_high(tmp_path: Path) -> None:
    blob = base64.b64encode(bytes(range(256)) * 5).decode()
    wheel = packages.wheel(tmp_path, "blobby", "1.0", {"blobby/__init__.py": f"""
        import codecs
        PAYLOAD = "{blob}"
        def run(key):
            exec(codecs.decode(PAYLOAD, key))
    """})
    found = only(scan(wheel), "SUPPLY-ENCODED-PAYLOAD")
    assert found
    assert found[0].severity is Severity.HIGH
