"""``bastion audit`` and ``bastion db`` end to end, in-process (offline)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .conftest import SHARED_DB

Invoke = Callable[..., object]
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def test_audit_requirements_json(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    req = tmp_path / "requirements.txt"
    req.write_text("torch==1.13.0\nctx==0.2.6\nsix==1.16.0\n")
    result = invoke("audit", req, "-f", "json", "-q")
    result.assert_clean()
    assert result.returncode == 1
    report = result.json()
    by_rule = {f["rule_id"]: f for f in report["findings"]}
    mal = by_rule["SUPPLY-MALICIOUS-PACKAGE"]
    assert mal["severity"] == "critical"
    assert mal["location"]["line"] == 2
    vuln = by_rule["SUPPLY-VULNERABLE-DEPENDENCY"]
    assert "torch==1.13.0" in vuln["message"]
    assert "CVE-2022-45907" in vuln["message"]
    assert vuln["properties"]["fix_version"] == "1.13.1"
    assert {r["id"] for r in vuln["references"]} >= {"ML06", "AML.T0010", "CVE-2022-45907",
                                                     "PYSEC-2022-43015"}
    assert any("bastion db update" in n for n in report["notes"])
    assert any(n.startswith("warning") for n in report["notes"])  # the snapshot is old


def test_audit_folder_and_clean_project_passes(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "proj"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0 --hash=sha256:00\n")
    (project / "README.md").write_text("hello\n")
    result = invoke("audit", project, "-f", "json", "-q")
    assert result.returncode == 0, result.output
    assert result.json()["findings"] == []


def test_audit_fix_rewrites_and_shows_the_diff(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    req = tmp_path / "requirements.txt"
    req.write_text("# app\nmlflow==2.8.0  # tracking\ntorch==1.13.0 \\\n    --hash=sha256:aa\n")
    dry = invoke("audit", req, "--fix", "--dry-run")
    assert "+mlflow==2.10.1  # tracking" in dry.stdout
    assert req.read_text().startswith("# app\nmlflow==2.8.0")  # dry run: untouched
    done = invoke("audit", req, "--fix", "-f", "json", "-o", tmp_path / "out.json")
    done.assert_clean()
    assert req.read_text() == "# app\nmlflow==2.10.1  # tracking\ntorch==1.13.1\n"
    assert "--hash options removed" in done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert not [f for f in report["findings"] if f["rule_id"] == "SUPPLY-VULNERABLE-DEPENDENCY"]
    assert done.returncode == 0


def test_baseline_reports_only_new_findings(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    req = tmp_path / "requirements.txt"
    req.write_text("torch==1.13.0 --hash=sha256:00\n")
    first = invoke("audit", req, "-f", "json", "-o", tmp_path / "base.json", "-q")
    assert first.returncode == 1
    again = invoke("audit", req, "--baseline", tmp_path / "base.json", "-f", "json", "-q")
    assert again.returncode == 0
    assert again.json()["findings"] == []
    req.write_text("torch==1.13.0 --hash=sha256:00\nmlflow==2.8.0 --hash=sha256:00\n")
    new = invoke("audit", req, "--baseline", tmp_path / "base.json", "-f", "json", "-q")
    assert new.returncode == 1
    assert [f["properties"]["package"] for f in new.json()["findings"]] == ["mlflow"]
    bad = invoke("audit", req, "--baseline", req)
    assert bad.returncode == 2
    assert "not a Bastion JSON report" in bad.output


def test_audit_python_environment(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    meta = site / "mlflow-2.8.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: mlflow\nVersion: 2.8.0\n")
    (tmp_path / "venv" / "bin").mkdir()
    python = tmp_path / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\necho ran > ran.txt\n")
    python.chmod(0o755)
    result = invoke("audit", "--python", python, "-f", "json", "-q")
    assert result.returncode == 1
    (finding,) = result.json()["findings"]
    assert finding["location"]["path"].endswith("mlflow-2.8.0.dist-info/METADATA")
    assert not (tmp_path / "ran.txt").exists()  # the interpreter was never run
    also = invoke("audit", site, "-f", "json", "-q")
    assert len(also.json()["findings"]) == 1


def test_usage_errors_are_exit_2(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert invoke("audit").returncode == 2
    missing = invoke("audit", tmp_path / "nope.txt")
    assert missing.returncode == 2
    assert "not found" in missing.output


def test_db_update_from_folder_and_status(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "vulns"
    src.mkdir()
    (src / "r.json").write_text(json.dumps({
        "id": "PYSEC-9999-1", "modified": "2099-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "six"}, "versions": ["1.16.0"]}]}))
    db = tmp_path / "db.sqlite"
    update = invoke("db", "update", src, "--db", db)
    update.assert_clean()
    assert update.returncode == 0
    assert "1 for 1 packages" in update.stdout
    status = invoke("db", "status", "--db", db, "--json")
    data = json.loads(status.stdout)
    assert data["count"] == 1
    assert data["stale"] is False
    assert not data["embedded"]
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n")
    audit = invoke("audit", req, "--db", db, "-f", "json", "-q")
    assert audit.json()["findings"][0]["message"].startswith("six==1.16.0 has 1")
    reset = invoke("db", "update", "--embedded", "--db", db)
    assert reset.returncode == 0
    assert "shipped snapshot" in reset.stdout
    assert invoke("db", "status", "--db", tmp_path / "none.sqlite").returncode == 2
    assert invoke("db", "update", tmp_path / "nothing-here", "--db", db).returncode == 2


def test_db_update_from_the_real_folder_is_timed(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    if not (SHARED_DB / "vulns" / "ctx").is_dir():
        pytest.skip("shared advisory-db not present")
    src = tmp_path / "vulns"
    (src / "ctx").mkdir(parents=True)
    for path in (SHARED_DB / "vulns" / "ctx").iterdir():
        (src / "ctx" / path.name).write_bytes(path.read_bytes())
    result = invoke("db", "update", src, "--db", tmp_path / "db.sqlite")
    assert result.returncode == 0
    assert "took" in result.stdout
