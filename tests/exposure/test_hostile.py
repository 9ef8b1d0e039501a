"""Hostile and broken configuration files end with a finding or a clear skip, never a crash,
a hang or unbounded memory; and ``bastion scan`` only loads the infra analyzer when needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.analyzer import HEAD_SIZE
from bastion.engine import scan_paths
from bastion.exposure._yaml import MAX_BYTES, YamlBomb, load_documents
from bastion.findings import Severity

from .conftest import DATA, ids, one, scan, write

BILLION_LAUGHS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: yaml-bomb
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_bomb_is_a_finding_and_stays_small(tmp_path: Path) -> None:
    """The CVE-2019-11253 payload: 9^9 strings if built; the reader stops at its budget."""
    path = write(tmp_path, "bomb.yaml", BILLION_LAUGHS)
    started = time.monotonic()
    found = one(scan(path).findings, "INFRA-CONFIG-TOO-COMPLEX")
    assert time.monotonic() - started < 10
    assert found.severity is Severity.MEDIUM
    assert "aliases expand" in found.message
    with pytest.raises(YamlBomb):
        load_documents(BILLION_LAUGHS)


def test_deeply_nested_flow_yaml_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.yaml", "apiVersion: v1\nkind: x\ndata: " + "[" * 100_000
                 + "]" * 100_000 + "\n")
    found = one(scan(path).findings, "INFRA-CONFIG-UNCHECKED")
    assert "nested" in found.message


def test_deeply_nested_block_yaml_is_refused(tmp_path: Path) -> None:
    lines = ["apiVersion: v1", "kind: Deep"] + [" " * i + f"k{i}:" for i in range(200)]
    found = one(scan(write(tmp_path, "deep.yaml", "\n".join(lines) + "\n")).findings,
                "INFRA-CONFIG-UNCHECKED")
    assert "deeper than" in found.message


def test_too_many_documents(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\n" + "---\nkind: ConfigMap\n" * 400
    found = one(scan(write(tmp_path, "many.yaml", text)).findings, "INFRA-CONFIG-UNCHECKED")
    assert "documents" in found.message


def test_huge_manifest_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("apiVersion: v1\nkind: ConfigMap\ndata:\n")
        line = "  k: " + "x" * 1000 + "\n"
        for _ in range(MAX_BYTES // len(line) + 10):
            handle.write(line)
    found = one(scan(path).findings, "INFRA-CONFIG-UNCHECKED")
    assert found.severity is Severity.LOW
    assert "limit" in found.message


def test_binary_garbage_named_config_properties_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "config.properties"
    path.write_bytes(os.urandom(64 << 10))
    report = scan(path)
    assert report.findings == ()
    assert [s.reason for s in report.skipped] == ["no analyzer claims this content"]


def test_binary_after_a_plausible_head_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "config.properties"
    path.write_bytes(b"inference_address=http://0.0.0.0:8080\n" + b"x" * HEAD_SIZE
                     + b"\0\xff\xfe" * 100)
    found = one(scan(path).findings, "INFRA-CONFIG-UNCHECKED")
    assert "binary" in found.message


def test_garbage_text_properties_and_yaml_syntax_errors(tmp_path: Path) -> None:
    props = write(tmp_path, "config.properties",
                  "management_address=\\\n" + "\\\n" * 5000 + "unicode=\\uZZZZ\\\n")
    assert scan(props).findings == ()  # parsed: an empty management address, nothing wrong
    broken = write(tmp_path, "deployment.yaml",
                   "apiVersion: apps/v1\nkind: Deployment\nspec: [unclosed\n")
    found = one(scan(broken).findings, "INFRA-CONFIG-UNCHECKED")
    assert found.severity is Severity.INFO


def test_python_config_that_does_not_parse(tmp_path: Path) -> None:
    path = write(tmp_path, "jupyter_server_config.py", "c.ServerApp.token = (\n" * 3)
    assert ids(scan(path).findings) == {"INFRA-CONFIG-UNCHECKED"}
    deep = write(tmp_path / "b", "jupyter_server_config.py",
                 "c.ServerApp.token = " + "(" * 5000 + "''" + ")" * 5000 + "\n")
    assert ids(scan(deep).findings) <= {"INFRA-CONFIG-UNCHECKED", "INFRA-JUPYTER-NO-AUTH"}


def test_hostile_shell_script(tmp_path: Path) -> None:
    """Unclosed quotes, a huge line, NUL-free binary noise, escapes: read, never run."""
    marker = tmp_path / "ran"
    text = (f"touch {marker}\n"
            "tritonserver --model-control-mode='explicit\n"
            + "a" * 200_000 + "\n"
            + "ray start --head --dashboard-host=0.0.0.0  # \x1b[31m \u202e\n")
    path = write(tmp_path, "entrypoint.sh", text)
    findings = scan(path).findings
    assert not marker.exists()
    assert "INFRA-RAY-DASHBOARD-EXPOSED" in ids(findings)


def test_invalid_ini_and_json(tmp_path: Path) -> None:
    ini = write(tmp_path, "basic_auth.ini", "admin_password = password1234\n[mlflow\n")
    assert ids(scan(ini).findings) == {"INFRA-CONFIG-UNCHECKED"}
    json_file = write(tmp_path, "jupyter_server_config.json", '{"ServerApp": {"token": ')
    assert ids(scan(json_file).findings) == {"INFRA-CONFIG-UNCHECKED"}


def test_scan_startup_does_not_load_the_infra_analyzer(tmp_path: Path) -> None:
    """``bastion scan`` of a folder without configuration never imports the module."""
    (tmp_path / "model.txt").write_text("weights\n", encoding="utf-8")
    code = ("import sys; from bastion.engine import scan_paths; "
            f"scan_paths([{str(tmp_path)!r}]); "
            "print('bastion.exposure.analyzer' in sys.modules, 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]


def test_default_scan_reports_infra_findings_with_other_capabilities() -> None:
    report = scan_paths([str(DATA / "mlflow")])
    assert "INFRA-MLFLOW-DEFAULT-ADMIN-PASSWORD" in ids(report.findings)
    assert "INFRA-MLFLOW-NO-AUTH" in ids(report.findings)


def test_bastion_scan_cli_fails_on_infra_findings(cli: object, tmp_path: Path) -> None:
    from collections.abc import Callable
    from typing import cast

    run = cast(Callable[..., object], cli)
    result = run("scan", str(DATA / "torchserve/llm"), "-f", "json", "-q")
    assert getattr(result, "returncode") == 1
    getattr(result, "assert_clean")()
    findings = getattr(result, "json")()["findings"]
    assert {f["rule_id"] for f in findings} >= {"INFRA-TORCHSERVE-TOKEN-AUTH-DISABLED"}
    assert all(f["location"]["line"] for f in findings)
