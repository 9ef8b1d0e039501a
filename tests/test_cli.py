"""The ``bastion`` command for real: exit codes, formats, ``--output``, rules and schema.

Exit codes are the contract with CI: 0 nothing at or above the threshold, 1 findings at or
above it, 2 a usage or input error. Only core rules are used here (a too-large file, a
symlink loop), so these tests do not depend on which format analyzers ship.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.cli.common import write_atomic
from bastion.findings import Report

#: ``cli`` runs ``python -m bastion`` in a subprocess; ``invoke`` runs the app in-process.
Cli = Callable[..., Any]

TOO_SMALL = '[limits]\nmax-file-size = 4\n'  # every file is SCAN-FILE-TOO-LARGE (medium)


@pytest.fixture
def failing_tree(text_tree: Path) -> Path:
    """A tree whose policy (discovered from the cwd) makes one medium finding."""
    (text_tree / "bastion.toml").write_text(TOO_SMALL, encoding="utf-8")
    return text_tree


# -- exit codes --------------------------------------------------------------------------------


def test_exit_0_when_nothing_reaches_the_threshold(cli: Cli, text_tree: Path) -> None:
    result = cli("scan", text_tree)
    result.assert_clean()
    assert result.returncode == 0, result.output
    assert "PASSED" in result.stdout


def test_exit_1_at_the_threshold_and_fail_on_moves_it(cli: Cli, invoke: Cli,
                                                      failing_tree: Path) -> None:
    result = cli("scan", ".", cwd=failing_tree)  # policy discovered from the cwd
    result.assert_clean()
    assert result.returncode == 1, result.output
    assert "SCAN-FILE-TOO-LARGE" in result.stdout
    assert "FAILED" in result.stdout
    result = invoke("scan", ".", "--fail-on", "high", cwd=failing_tree)
    assert result.returncode == 0, result.output
    result = invoke("scan", ".", "--fail-on", "HIGH", cwd=failing_tree)  # case-insensitive
    assert result.returncode == 0, result.output
    result = invoke("scan", ".", "--fail-on", "medium", cwd=failing_tree)
    assert result.returncode == 1, result.output


def test_fail_on_low_fails_a_symlink_loop(invoke: Cli, text_tree: Path) -> None:
    (text_tree / "up").symlink_to(".")
    assert invoke("scan", text_tree).returncode == 0
    result = invoke("scan", text_tree, "--fail-on", "low")
    assert result.returncode == 1, result.output
    assert "SCAN-SYMLINK-LOOP" in result.stdout


def test_explicit_policy_file(invoke: Cli, text_tree: Path, tmp_path: Path) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text(TOO_SMALL, encoding="utf-8")
    assert invoke("scan", text_tree, "--policy", policy).returncode == 1
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.bastion]\nfail-on = "critical"\n' + TOO_SMALL.replace(
        "[limits]", "[tool.bastion.limits]"), encoding="utf-8")
    assert invoke("scan", text_tree, "--policy", pyproject).returncode == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["scan", "no/such/path"], ["path not found", "'no/such/path'", "hint:"]),
        (["scan", "project", "--format", "pdf"], ["Invalid value", "--format", "pdf"]),
        (["scan", "project", "--fail-on", "severe"], ["Invalid value", "--fail-on"]),
        (["scan", "project", "--policy", "missing.toml"], ["missing.toml", "not found"]),
        (["scan"], ["Missing argument"]),
        (["scan", "project", "--bogus"], ["No such option"]),
        (["rules", "NO-SUCH-RULE"], ["no rule 'NO-SUCH-RULE'"]),
    ],
    ids=["missing path", "bad format", "bad fail-on", "missing policy", "no path",
         "unknown option", "unknown rule"],
)
def test_exit_2_on_usage_errors(invoke: Cli, text_tree: Path, args: list[str],
                                words: list[str]) -> None:
    result = invoke(*args, cwd=text_tree.parent)
    result.assert_clean()
    assert result.returncode == 2, result.output
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr, result.stderr


def test_real_process_usage_errors(cli: Cli, text_tree: Path) -> None:
    for args in (["scan", "no/such/path"], ["scan", text_tree, "--format", "pdf"]):
        result = cli(*args)
        result.assert_clean()
        assert result.returncode == 2, result.output
        assert result.stdout == ""


def test_exit_2_on_a_bad_policy_file(cli: Cli, invoke: Cli, text_tree: Path) -> None:
    (text_tree / "bastion.toml").write_text(
        '[[ignore]]\nrule = "SCAN-UNREADABLE"\n', encoding="utf-8")
    result = cli("scan", ".", cwd=text_tree)
    result.assert_clean()
    assert result.returncode == 2
    assert "bastion.toml: invalid policy" in result.stderr
    assert "ignore[0].reason: required key is missing" in result.stderr
    (text_tree / "bastion.toml").write_text("fail-on = [", encoding="utf-8")
    result = invoke("scan", ".", cwd=text_tree)
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr


# -- formats and --output ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["terminal", "json", "sarif", "html"])
def test_every_format_from_the_cli(invoke: Cli, failing_tree: Path, fmt: str,
                                   sarif_schema: dict[str, Any]) -> None:
    result = invoke("scan", ".", "--format", fmt, cwd=failing_tree)
    result.assert_clean()
    assert result.returncode == 1
    out = result.stdout
    if fmt == "terminal":
        assert "SCAN-FILE-TOO-LARGE" in out
    elif fmt == "json":
        report = Report.from_json(out)
        assert {(f.rule_id, f.location.path) for f in report.findings} == {
            ("SCAN-FILE-TOO-LARGE", "README.txt"), ("SCAN-FILE-TOO-LARGE", "bastion.toml")}
    elif fmt == "sarif":
        doc = json.loads(out)
        errors = list(jsonschema.Draft7Validator(sarif_schema).iter_errors(doc))
        assert errors == []
        assert doc["runs"][0]["results"][0]["ruleId"] == "SCAN-FILE-TOO-LARGE"
    else:
        assert out.startswith("<!DOCTYPE html>")
        assert "SCAN-FILE-TOO-LARGE" in out
    if fmt != "terminal":
        assert "FAILED" in result.stderr  # the summary goes to stderr, not into the report


def test_format_and_threshold_from_the_environment(failing_tree: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(failing_tree)
    env = {"BASTION_FORMAT": "json", "BASTION_FAIL_ON": "critical", "BASTION_QUIET": "1"}
    result = CliRunner().invoke(app, ["scan", "."], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["failing"] == 0
    assert result.stderr == ""  # quiet: no summary line


@pytest.mark.parametrize("fmt", ["json", "sarif", "html", "terminal"])
def test_output_file(invoke: Cli, failing_tree: Path, fmt: str) -> None:
    out = failing_tree.parent / f"report.{fmt}"
    out.write_text("old content", encoding="utf-8")
    result = invoke("scan", "README.txt", "-f", fmt, "-o", out, cwd=failing_tree)
    result.assert_clean()
    assert result.returncode == 1
    assert result.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert "old content" not in text
    assert "SCAN-FILE-TOO-LARGE" in text
    if fmt == "json":
        json.loads(text)
    assert sorted(p.name for p in out.parent.iterdir()) == ["project", out.name]  # no temp


def test_output_errors(invoke: Cli, text_tree: Path) -> None:
    result = invoke("scan", ".", "-f", "json", "-o", "no/such/dir/r.json", cwd=text_tree)
    result.assert_clean()
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    (text_tree / "adir").mkdir()
    result = invoke("scan", ".", "-f", "json", "-o", "adir", cwd=text_tree)
    assert result.returncode == 2


def test_write_atomic_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous report", encoding="utf-8")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new report")
    assert target.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # temp file cleaned up


def test_write_atomic_gives_the_usual_file_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.html", "<html>")
    finally:
        os.umask(old)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o644


# -- rules, schema, version --------------------------------------------------------------------


def test_rules_table(invoke: Cli) -> None:
    result = invoke("rules")
    assert result.returncode == 0
    for rule_id in ("SCAN-ANALYZER-ERROR", "SCAN-SYMLINK-LOOP", "POLICY-IGNORE-EXPIRED"):
        assert rule_id in result.stdout


def test_rules_json_parses(invoke: Cli) -> None:
    from bastion.catalogue import all_rules

    result = invoke("rules", "--json")
    assert result.returncode == 0
    rules = json.loads(result.stdout)
    assert [r["id"] for r in rules] == [r.id for r in all_rules()]
    first = rules[0]
    assert {"id", "title", "severity", "category", "description"} <= set(first)


def test_one_rule_in_full() -> None:
    result = CliRunner().invoke(app, ["rules", "scan-empty-file"])
    assert result.exit_code == 0
    assert "SCAN-EMPTY-FILE  (info, coverage)" in result.stdout
    assert "fix: Fetch the real file" in result.stdout


def test_schema_command_prints_the_report_schema(invoke: Cli, text_tree: Path) -> None:
    result = invoke("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Bastion report"
    report = invoke("scan", text_tree, "-f", "json").json()
    jsonschema.Draft202012Validator(schema).validate(report)


def test_version_and_help(invoke: Cli) -> None:
    result = invoke("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("bastion ")
    result = CliRunner().invoke(app, ["scan", "--help"])
    assert result.exit_code == 0
    assert "--fail-on" in result.stdout
