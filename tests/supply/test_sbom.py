"""``bastion sbom`` and ``--format cyclonedx``: CycloneDX 1.6 with VEX and ML-BOM, offline.

Every document is checked with cyclonedx-python-lib's own strict JSON validator. The mixed
project holds a requirements file (a vulnerable ``torch==1.13.0``, real advisories in the
shipped database), a ``uv.lock`` hand-written to uv's documented layout, a safetensors model
made by the safetensors library and a pickle with an ``os.system`` call (never loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion.findings import Category, Location, Report, Severity, Suppression
from bastion.sbom.values import Digest, purl
from bastion.supply import rules as supply_rules

pytest.importorskip("cyclonedx")

Invoke = Callable[..., Any]
H = {n: hashlib.sha256(n.encode()).hexdigest() for n in
     ("certifi-sdist", "certifi-whl", "idna-whl", "requests-sdist", "requests-whl", "torch-whl",
      "numpy-a", "numpy-b")}
PYPI = "https://files.pythonhosted.org/packages"
TORCH = "https://download.pytorch.org/whl/cpu"


def _file(name: str, key: str, base: str = PYPI) -> str:
    """A uv.lock artifact table: ``{ url = ..., hash = "sha256:..." }``."""
    return f'{{ url = "{base}/{name}", hash = "sha256:{H[key]}" }}'


UV_LOCK = f"""\
version = 1
revision = 2
requires-python = ">=3.11"

[[package]]
name = "certifi"
version = "2024.8.30"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {_file("certifi-2024.8.30.tar.gz", "certifi-sdist")}
wheels = [
    {_file("certifi-2024.8.30-py3-none-any.whl", "certifi-whl")},
]

[[package]]
name = "idna"
version = "3.10"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {_file("idna-3.10-py3-none-any.whl", "idna-whl")},
]

[[package]]
name = "mlproj"
version = "0.1.0"
source = {{ virtual = "." }}
dependencies = [
    {{ name = "requests" }},
    {{ name = "torch" }},
]

[package.metadata]
requires-dist = [{{ name = "requests", specifier = ">=2" }}, {{ name = "torch" }}]

[[package]]
name = "requests"
version = "2.32.3"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [
    {{ name = "certifi" }},
    {{ name = "idna" }},
]
sdist = {_file("requests-2.32.3.tar.gz", "requests-sdist")}
wheels = [
    {_file("requests-2.32.3-py3-none-any.whl", "requests-whl")},
]

[[package]]
name = "torch"
version = "1.13.0"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {_file("torch-1.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl", "torch-whl", TORCH)},
]
"""
REQUIREMENTS = f"""\
# pinned by hand
torch==1.13.0
numpy==1.26.4 \\
    --hash=sha256:{H['numpy-a']} \\
    --hash=sha256:{H['numpy-b']}
requests>=2.0
"""


class _Reduce:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


@pytest.fixture(scope="session")
def validate() -> Callable[[str], None]:
    """The library's strict JSON validator for CycloneDX 1.6 (slow to import: once)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.V1_6)

    def check(text: str) -> None:
        error = validator.validate_str(text)
        assert error is None, f"not valid CycloneDX 1.6: {error}"

    return check


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """requirements.txt + uv.lock + a safetensors model + a malicious pickle."""
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("safetensors.numpy")
    root = tmp_path / "mlproj"
    (root / "models").mkdir(parents=True)
    (root / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    (root / "uv.lock").write_text(UV_LOCK, encoding="utf-8")
    st.save_file({"weight": np.arange(16, dtype=np.float32)}, str(root / "models" / "w.st"))
    (root / "models" / "evil.bin").write_bytes(pickle.dumps(_Reduce(), protocol=2))
    return root


def _components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in doc["components"]}


def _props(component: dict[str, Any], name: str) -> list[str]:
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def _graph(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}


@pytest.fixture
def sbom_of(invoke: Invoke, validate: Callable[[str], None]) -> Callable[..., dict[str, Any]]:
    """Run ``bastion sbom`` on paths; validate the document and return it parsed."""

    def run(*args: str | Path, code: int = 0, cwd: Path | None = None) -> dict[str, Any]:
        kwargs = {"cwd": cwd} if cwd else {}
        result = invoke("sbom", *args, **kwargs)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        assert result.returncode == code, result.output
        validate(result.stdout)
        doc: dict[str, Any] = json.loads(result.stdout)
        doc["_stderr"] = result.stderr
        return doc

    return run


def test_mixed_project_is_valid_cyclonedx_16(sbom_of: Callable[..., dict[str, Any]],
                                              project: Path) -> None:
    doc = sbom_of(project)
    assert doc["specVersion"] == "1.6"
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["metadata"]["tools"]["components"][0]["name"] == "bastion"
    assert doc["metadata"]["component"]["name"] == "mlproj"
    refs = set(_components(doc))
    assert refs == {"pkg:pypi/certifi@2024.8.30", "pkg:pypi/idna@3.10",
                    "pkg:pypi/requests@2.32.3", "pkg:pypi/torch@1.13.0",
                    "pkg:pypi/numpy@1.26.4", f"file:{project}/models/w.st",
                    f"file:{project}/models/evil.bin"}
    assert "SBOM: 5 packages, 2 models" in doc["_stderr"]


def test_purls_and_lock_and_requirements_hashes(sbom_of: Callable[..., dict[str, Any]],
                                                 project: Path) -> None:
    parts = _components(sbom_of(project))
    torch = parts["pkg:pypi/torch@1.13.0"]
    assert torch["purl"] == "pkg:pypi/torch@1.13.0"
    assert torch["version"] == "1.13.0"
    # one component, named by both manifests that pin it
    assert sorted(_props(torch, "bastion:source")) == [f"{project}/requirements.txt",
                                                        f"{project}/uv.lock"]
    assert [h["content"] for h in torch["hashes"]] == [H["torch-whl"]]
    numpy = parts["pkg:pypi/numpy@1.26.4"]
    assert {h["content"] for h in numpy["hashes"]} == {H["numpy-a"], H["numpy-b"]}
    assert {h["alg"] for h in numpy["hashes"]} == {"SHA-256"}
    requests = parts["pkg:pypi/requests@2.32.3"]
    assert {h["content"] for h in requests["hashes"]} == {H["requests-sdist"], H["requests-whl"]}
    dist = {r["url"]: r["hashes"][0]["content"] for r in requests["externalReferences"]}
    assert dist[f"{PYPI}/requests-2.32.3-py3-none-any.whl"] == H["requests-whl"]
    assert dist[f"{PYPI}/requests-2.32.3.tar.gz"] == H["requests-sdist"]
    # the loose `requests>=2.0` is the locked requests, not a second, version-less component
    assert "pkg:pypi/requests" not in parts
    assert f"{project}/requirements.txt" in _props(requests, "bastion:source")
    assert _props(requests, "bastion:specifier") == [">=2.0"]


def test_loose_requirement_nobody_pins_is_versionless(
        sbom_of: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\ndependencies = ["scikit-learn>=1.4,<2"]\n',
        encoding="utf-8")
    parts = _components(sbom_of(tmp_path))
    sklearn = parts["pkg:pypi/scikit-learn"]
    assert "version" not in sklearn
    assert _props(sklearn, "bastion:specifier") == ["<2,>=1.4"]


@pytest.mark.parametrize(("ecosystem", "name", "version"), [
    ("pypi", "Foo_Bar.baz", "1.0+cpu"), ("pypi", "torch", "1!2.0.post1"),
    ("pypi", "zope.interface", "6.0"), ("conda", "pytorch", "2.1.0"),
    ("pypi", "Pillow", "10.0.0rc1+local_build.7"), ("pypi", "ruamel.yaml.clib", "0.2.8"),
])
def test_purl_matches_packageurl(ecosystem: str, name: str, version: str) -> None:
    """Written by hand so collection needs no library; must equal packageurl's text for
    every valid name and PEP 440 version."""
    from packageurl import PackageURL

    assert purl(ecosystem, name, version) == PackageURL(
        type=ecosystem, name=name, version=version).to_string()


def test_dependency_edges_from_uv_lock(sbom_of: Callable[..., dict[str, Any]],
                                       project: Path) -> None:
    doc = sbom_of(project)
    graph = _graph(doc)
    assert graph["pkg:pypi/requests@2.32.3"] == ["pkg:pypi/certifi@2024.8.30",
                                                 "pkg:pypi/idna@3.10"]
    assert graph["pkg:pypi/certifi@2024.8.30"] == []
    # the root: packages nothing requires (the virtual project's own deps; requirements pins)
    # and the model files
    assert sorted(graph["root"]) == sorted([
        "pkg:pypi/numpy@1.26.4", "pkg:pypi/requests@2.32.3", "pkg:pypi/torch@1.13.0",
        f"file:{project}/models/evil.bin", f"file:{project}/models/w.st"])
    assert _props(doc["metadata"], "bastion:dependency-graph") == ["uv.lock"]


def test_poetry_and_pylock_edges(sbom_of: Callable[..., dict[str, Any]],
                                 tmp_path: Path) -> None:
    (tmp_path / "poetry").mkdir()
    (tmp_path / "poetry" / "poetry.lock").write_text(f"""\
[[package]]
name = "Requests"
version = "2.32.3"
optional = false
python-versions = ">=3.8"
files = [
    {{file = "requests-2.32.3-py3-none-any.whl", hash = "sha256:{H['requests-whl']}"}},
]

[package.dependencies]
certifi = ">=2017.4.17"
urllib3 = {{version = ">=1.21.1,<3", markers = "python_version >= '3.8'"}}

[[package]]
name = "certifi"
version = "2024.8.30"
optional = false
python-versions = ">=3.6"
files = []

[metadata]
lock-version = "2.0"
python-versions = "^3.11"
content-hash = "0"
""", encoding="utf-8")
    (tmp_path / "pylock").mkdir()
    (tmp_path / "pylock" / "pylock.toml").write_text(f"""\
lock-version = "1.0"
created-by = "hand"

[[packages]]
name = "attrs"
version = "25.1.0"
[[packages.wheels]]
name = "attrs-25.1.0-py3-none-any.whl"
url = "https://files.pythonhosted.org/packages/fc/30/attrs-25.1.0-py3-none-any.whl"
hashes = {{sha256 = "{H['idna-whl']}"}}

[[packages]]
name = "cattrs"
version = "24.1.2"
dependencies = [{{name = "attrs"}}]
[packages.sdist]
name = "cattrs-24.1.2.tar.gz"
hashes = {{sha512 = "{'ab' * 64}"}}
""", encoding="utf-8")
    doc = sbom_of(tmp_path)
    graph = _graph(doc)
    # urllib3 is required but not locked here: no dangling edge
    assert graph["pkg:pypi/requests@2.32.3"] == ["pkg:pypi/certifi@2024.8.30"]
    assert graph["pkg:pypi/cattrs@24.1.2"] == ["pkg:pypi/attrs@25.1.0"]
    parts = _components(doc)
    assert parts["pkg:pypi/cattrs@24.1.2"]["hashes"] == [{"alg": "SHA-512",
                                                          "content": "ab" * 64}]
    assert parts["pkg:pypi/requests@2.32.3"]["hashes"][0]["content"] == H["requests-whl"]
    assert sorted(_props(doc["metadata"], "bastion:dependency-graph")) == ["poetry.lock",
                                                                           "pylock"]


def test_vex_for_vulnerable_torch_pin(sbom_of: Callable[..., dict[str, Any]],
                                      project: Path) -> None:
    """torch 1.13.0: PYSEC-2022-43015 (CVE-2022-45907, eval in parse_type_line), fixed 1.13.1."""
    vulns = {v["id"]: v for v in sbom_of(project)["vulnerabilities"]}
    vuln = vulns["PYSEC-2022-43015"]
    assert vuln["affects"] == [{"ref": "pkg:pypi/torch@1.13.0",
                                "versions": [{"status": "affected", "version": "1.13.0"}]}]
    assert vuln["recommendation"] == "upgrade torch 1.13.0 to 1.13.1"
    assert {r["id"] for r in vuln["references"]} == {"CVE-2022-45907"}
    assert vuln["source"]["url"] == "https://osv.dev/vulnerability/PYSEC-2022-43015"
    assert vuln["ratings"][0]["severity"] in {"low", "medium", "high", "critical"}
    assert vuln["analysis"]["state"] == "in_triage"
    assert vuln["analysis"]["response"] == ["update"]
    # only the vulnerable pin is affected
    assert {a["ref"] for v in vulns.values() for a in v["affects"]} == {"pkg:pypi/torch@1.13.0"}


def test_model_files_are_ml_model_components(sbom_of: Callable[..., dict[str, Any]],
                                             project: Path) -> None:
    parts = _components(sbom_of(project))
    weights = parts[f"file:{project}/models/w.st"]
    assert weights["type"] == "machine-learning-model"
    expected = hashlib.sha256((project / "models" / "w.st").read_bytes()).hexdigest()
    assert weights["hashes"] == [{"alg": "SHA-256", "content": expected}]
    assert _props(weights, "bastion:model:format") == ["safetensors"]
    assert _props(weights, "bastion:scan:verdict") == ["pass"]
    evil = parts[f"file:{project}/models/evil.bin"]  # a pickle by content, not by name
    assert _props(evil, "bastion:model:format") == ["pickle"]
    assert _props(evil, "bastion:scan:verdict") == ["fail"]
    assert _props(evil, "bastion:scan:max-severity") == ["critical"]
    assert any(r.startswith("PICKLE-") for r in _props(evil, "bastion:scan:rule"))


def test_no_scan_hashes_without_verdict(sbom_of: Callable[..., dict[str, Any]],
                                        project: Path) -> None:
    parts = _components(sbom_of(project, "--no-scan"))
    evil = parts[f"file:{project}/models/evil.bin"]
    assert _props(evil, "bastion:scan:verdict") == ["not-scanned"]
    assert evil["hashes"][0]["content"] == hashlib.sha256(
        (project / "models" / "evil.bin").read_bytes()).hexdigest()


def _dist(site: Path, name: str, version: str, *headers: str) -> None:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers, "",
             "Long description: License: not a header"]
    (folder / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_installed_environment_licenses_and_edges(sbom_of: Callable[..., dict[str, Any]],
                                                  tmp_path: Path) -> None:
    env = tmp_path / "venv"
    site = env / "lib" / "python3.11" / "site-packages"
    (env / "pyvenv.cfg").parent.mkdir(parents=True)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    _dist(site, "Flask", "3.0.3", "License-Expression: BSD-3-Clause OR MIT", "Summary: A framework",
          "Requires-Dist: Werkzeug>=3.0.0", "Requires-Dist: asgiref>=3.2; extra == \"async\"")
    _dist(site, "werkzeug", "3.0.6", "Classifier: License :: OSI Approved :: BSD License",
          "Classifier: Programming Language :: Python")
    _dist(site, "asgiref", "3.8.1", "License: Apache Software License 2.0 with a long name "
          "that is still a name")
    _dist(site, "six", "1.16.0", "License: MIT", "Classifier: License :: OSI Approved :: MIT "
          "License")
    doc = sbom_of(env)
    parts = _components(doc)
    flask = parts["pkg:pypi/flask@3.0.3"]
    assert flask["licenses"] == [{"expression": "BSD-3-Clause OR MIT"}]  # PEP 639
    assert flask["description"] == "A framework"
    assert parts["pkg:pypi/werkzeug@3.0.6"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert parts["pkg:pypi/six@1.16.0"]["licenses"] == [{"license": {"id": "MIT"}}]
    assert parts["pkg:pypi/asgiref@3.8.1"]["licenses"][0]["license"]["name"].startswith(
        "Apache Software License")
    graph = _graph(doc)
    # Requires-Dist: an edge to the installed werkzeug; none to asgiref (only with an extra)
    assert graph["pkg:pypi/flask@3.0.3"] == ["pkg:pypi/werkzeug@3.0.6"]
    assert "pkg:pypi/werkzeug@3.0.6" not in graph["root"]
    assert _props(doc["metadata"], "bastion:dependency-graph") == ["installed metadata"]


def test_reproducible_output_is_byte_identical(invoke: Invoke, project: Path,
                                               validate: Callable[[str], None]) -> None:
    first = invoke("sbom", project, "--reproducible", "-q")
    second = invoke("sbom", project, "--reproducible", "-q")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    validate(first.stdout)
    doc = json.loads(first.stdout)
    assert "timestamp" not in doc["metadata"]
    assert doc["serialNumber"].startswith("urn:uuid:")
    dated = invoke("sbom", project, "--reproducible", "-q", env={"SOURCE_DATE_EPOCH": "0"})
    assert json.loads(dated.stdout)["metadata"]["timestamp"].startswith("1970-01-01T00:00:00")


def test_component_order_is_stable_without_reproducible(invoke: Invoke, project: Path) -> None:
    runs = [json.loads(invoke("sbom", project, "-q").stdout) for _ in range(2)]
    assert runs[0]["serialNumber"] != runs[1]["serialNumber"]
    for key in ("components", "dependencies", "vulnerabilities"):
        assert runs[0][key] == runs[1][key]


def test_scan_format_cyclonedx_carries_verdicts(invoke: Invoke, project: Path,
                                                validate: Callable[[str], None]) -> None:
    result = invoke("scan", project, "--format", "cyclonedx", "-q")
    assert result.returncode == 1  # the pickle fails the scan; the SBOM is still written
    validate(result.stdout)
    doc = json.loads(result.stdout)
    parts = _components(doc)
    assert _props(parts[f"file:{project}/models/evil.bin"], "bastion:scan:verdict") == ["fail"]
    assert _props(parts[f"file:{project}/models/w.st"], "bastion:scan:verdict") == ["pass"]
    assert "PYSEC-2022-43015" in {v["id"] for v in doc["vulnerabilities"]}
    assert _graph(doc)["pkg:pypi/requests@2.32.3"]


def test_audit_format_cyclonedx_lists_models_not_scanned(invoke: Invoke, project: Path,
                                                         validate: Callable[[str], None]) -> None:
    out = project.parent / "audit.cdx.json"
    result = invoke("audit", project, "--format", "cyclonedx", "-o", out, "-q")
    assert result.returncode == 1  # torch 1.13.0
    text = out.read_text(encoding="utf-8")
    validate(text)
    parts = _components(json.loads(text))
    evil = parts[f"file:{project}/models/evil.bin"]
    assert _props(evil, "bastion:scan:verdict") == ["not-scanned"]  # an audit reads no models
    assert "pkg:pypi/torch@1.13.0" in parts


def _report(*findings: Any) -> Report:
    return Report(tool_version="0", started=datetime(2025, 1, 1, tzinfo=UTC), roots=(),
                  fail_on=Severity.MEDIUM, findings=findings)


def _vulnerable(props: dict[str, Any], **changes: Any) -> Any:
    finding = supply_rules.VULNERABLE.finding(Location(path="requirements.txt", line=1), "x",
                                              properties=props)
    return finding.replace(**changes)


def test_cvss_vectors_become_scored_ratings(validate: Callable[[str], None]) -> None:
    """When the report carries OSV severity entries, the rating is CVSS with its score."""
    from bastion.report.cyclonedx import to_cyclonedx
    from bastion.sbom.collect import assemble

    props = {"package": "pillow", "version": "9.0.0", "ecosystem": "pypi", "fix_version": "9.0.1",
             "vulnerabilities": [{"id": "GHSA-xxxx-yyyy-zzzz", "aliases": ["CVE-2022-22817"],
                                  "severity": "critical", "summary": "eval", "fixed_in": [],
                                  "modified": "not a date",
                                  "cvss": [{"type": "CVSS_V3", "score":
                                            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}]}
    sbom = assemble(_report(_vulnerable(props)), [], [], root="p")
    text = to_cyclonedx(sbom)
    validate(text)
    vuln = json.loads(text)["vulnerabilities"][0]
    assert vuln["ratings"] == [{"method": "CVSSv31", "score": 9.8, "severity": "critical",
                                "source": {"name": "GitHub", "url":
                                           "https://github.com/advisories/GHSA-xxxx-yyyy-zzzz"},
                                "vector": "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]
    assert "updated" not in vuln  # a bad date is left out, not a crash
    # a component is made for a vulnerable package no manifest listed, so the ref resolves
    assert [c["bom-ref"] for c in json.loads(text)["components"]] == ["pkg:pypi/pillow@9.0.0"]


def test_suppressed_vulnerability_is_will_not_fix() -> None:
    from bastion.report.cyclonedx import to_cyclonedx
    from bastion.sbom.collect import assemble

    props = {"package": "torch", "version": "1.13.0", "fix_version": None,
             "fix_note": "no release fixes it",
             "vulnerabilities": [{"id": "PYSEC-1", "severity": "high"}]}
    finding = _vulnerable(props, suppression=Suppression("sandboxed; reviewed 2025-01"))
    vuln = json.loads(to_cyclonedx(assemble(_report(finding), [], [], root="p")))[
        "vulnerabilities"][0]
    assert vuln["analysis"] == {"detail": "accepted in the policy: sandboxed; reviewed 2025-01",
                                "response": ["will_not_fix"]}
    assert vuln["recommendation"] == "torch 1.13.0: no fixed version (no release fixes it)"


def test_hostile_lock_values_never_break_the_document(
        sbom_of: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """Malformed hashes, URLs with spaces or quotes, and non-string fields are dropped."""
    (tmp_path / "uv.lock").write_text("""\
version = 1
[[package]]
name = "evil"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://x.test/a b\\"<script>.tar.gz", hash = "sha256:nothex" }
wheels = [ { url = 42, hash = "md5:00" }, "not a table", { url = "javascript:alert(1)" } ]
dependencies = [ { name = 7 }, { name = "evil" }, "x" ]
[[package]]
name = "other"
version = "\\u001b[31m2.0"
source = { registry = "https://pypi.org/simple" }
""", encoding="utf-8")
    parts = _components(sbom_of(tmp_path))
    evil = parts["pkg:pypi/evil@1.0"]
    assert "hashes" not in evil
    assert "externalReferences" not in evil
    assert any(ref.startswith("pkg:pypi/other@") for ref in parts)


@pytest.mark.parametrize(("text", "expected"), [
    ("sha256:" + "AB" * 32, Digest("SHA-256", "ab" * 32)),
    ("sha384:" + "0" * 96, Digest("SHA-384", "0" * 96)),
    ("sha256:" + "0" * 63, None), ("sha256:" + "g" * 64, None), ("crc32:00000000", None),
    ("no-colon", None),
])
def test_digest_parsing_is_strict(text: str, expected: Digest | None) -> None:
    assert Digest.from_text(text) == expected


def test_missing_path_is_a_clear_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("sbom", tmp_path / "nope")
    assert result.returncode == 2
    assert "path not found" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Make one folder unlistable (tests run as root, where chmod 000 does not stop reads)."""
    blocked: list[str] = []
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if str(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return lambda p: blocked.append(str(p))


def test_unreadable_folder_is_named_and_exit_1(sbom_of: Callable[..., dict[str, Any]],
                                               project: Path,
                                               unreadable: Callable[[Path], None]) -> None:
    secret = project / "secret"
    secret.mkdir()
    (secret / "requirements.txt").write_text("six==1.16.0\n", encoding="utf-8")
    unreadable(secret)
    doc = sbom_of(project, code=1)
    assert f"warning: incomplete: {secret}: cannot list folder: Permission denied" \
        in doc["_stderr"]
    assert any("cannot list folder" in v
               for v in _props(doc["metadata"], "bastion:incomplete"))
    assert "pkg:pypi/six@1.16.0" not in _components(doc)
    assert "pkg:pypi/torch@1.13.0" in _components(doc)  # the rest is still there


def test_model_over_size_limit_is_listed_unhashed(sbom_of: Callable[..., dict[str, Any]],
                                                  project: Path) -> None:
    (project / "bastion.toml").write_text('[limits]\nmax-file-size = 64\n', encoding="utf-8")
    doc = sbom_of(project, "--policy", project / "bastion.toml", code=1)
    weights = _components(doc)[f"file:{project}/models/w.st"]
    assert "hashes" not in weights
    assert _props(weights, "bastion:incomplete") == [
        f"not hashed: {(project / 'models' / 'w.st').stat().st_size} bytes is over the "
        "max-file-size limit of 64"]
    assert "over the max-file-size limit" in doc["_stderr"]


def test_huge_requirements_file_is_cut_with_a_warning(sbom_of: Callable[..., dict[str, Any]],
                                                      tmp_path: Path) -> None:
    """17 MiB (sparse) of requirements: read to the 16 MiB limit, reported, never a hang."""
    big = tmp_path / "requirements.txt"
    with big.open("wb") as handle:
        handle.write(b"six==1.16.0\n")
        handle.truncate(17 * 2**20)
    doc = sbom_of(tmp_path, code=1)
    assert "pkg:pypi/six@1.16.0" in _components(doc)
    assert "warning: incomplete:" in doc["_stderr"]
    assert "bytes were read" in doc["_stderr"]


def test_missing_library_is_a_clear_error(invoke: Invoke, project: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cyclonedx.output.json", None)
    result = invoke("sbom", project)
    assert result.returncode == 2
    assert "needs cyclonedx-python-lib" in result.stderr
    assert "bastion-mlsec[sbom]" in result.stderr


def test_coverage_findings_mark_the_sbom_incomplete() -> None:
    from bastion.rules import UNREADABLE
    from bastion.sbom.collect import assemble

    finding = UNREADABLE.finding(Location(path="x/y"), "cannot list folder: denied")
    assert finding.category is Category.COVERAGE
    sbom = assemble(_report(finding), [], [], root="p")
    assert not sbom.complete
    assert sbom.problems == ("x/y: cannot list folder: denied",)
