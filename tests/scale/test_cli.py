"""The bulk options of ``bastion scan`` as a user types them: a bare ``--cache`` or ``--ray``,
environment variables, ``--no-cache``, and the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import cli_env, run_cli
from tests.scale.conftest import build_corpus

from bastion.cli.fast import optional_values, run_fast


@pytest.mark.parametrize(("argv", "expected"), [
    (["scan", "m", "--cache"], ["scan", "m", "--cache=default"]),
    (["scan", "--cache", "m"], ["scan", "--cache=default", "m"]),
    (["scan", "--cache", "sqlite:///c.db", "m"], ["scan", "--cache", "sqlite:///c.db", "m"]),
    (["scan", "--cache", "--jobs", "2", "m"], ["scan", "--cache=default", "--jobs", "2", "m"]),
    (["scan", "--ray", "m"], ["scan", "--ray=default", "m"]),
    (["scan", "--ray", "auto", "m"], ["scan", "--ray", "auto", "m"]),
    (["scan", "--ray", "10.0.0.1:6379", "m"], ["scan", "--ray", "10.0.0.1:6379", "m"]),
    (["scan", "--ray", "ray://head:10001", "m"], ["scan", "--ray", "ray://head:10001", "m"]),
    (["scan", "--", "--cache"], ["scan", "--", "--cache"]),
    (["audit", "--cache"], ["audit", "--cache"]),
])
def test_bare_cache_and_ray_get_their_default(argv: list[str], expected: list[str]) -> None:
    assert optional_values(argv) == expected


def test_bulk_environment_variables_leave_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASTION_CACHE", "BASTION_JOBS", "BASTION_RAY"):
        monkeypatch.setenv(name, "1")
        assert run_fast(["scan", "x"]) is None
        monkeypatch.delenv(name)


def _scan(*args: str | Path, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-m", "bastion", "scan", *map(str, args), "-q",
                           "-f", "json"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return dict(json.loads(proc.stdout))


def test_cache_flag_environment_and_no_cache(tmp_path: Path, marker: Path) -> None:
    models = build_corpus(tmp_path / "c", marker) / "evil"
    n = len(list(models.iterdir()))
    env = cli_env()
    env["BASTION_DB_URL"] = f"sqlite:///{tmp_path / 'default.db'}"  # what a bare --cache uses
    assert _scan(models, "--cache", cwd=tmp_path, env=env)["stats"] == {
        "files": n, "bytes": sum(p.stat().st_size for p in models.iterdir()), "analyzed": n,
        "cached": 0, "seconds": pytest.approx(0, abs=60)}
    assert _scan("--cache", models, cwd=tmp_path, env=env)["stats"]["cached"] == n  # type: ignore[index]
    assert (tmp_path / "default.db").is_file()
    env["BASTION_CACHE"] = "on"  # the environment turns it on ...
    assert _scan(models, cwd=tmp_path, env=env)["stats"]["cached"] == n  # type: ignore[index]
    # ... and --no-cache off again
    assert _scan(models, "--no-cache", cwd=tmp_path, env=env)["stats"]["cached"] == 0  # type: ignore[index]
    env["BASTION_CACHE"] = f"sqlite:///{tmp_path / 'other.db'}"
    assert _scan(models, cwd=tmp_path, env=env)["stats"]["cached"] == 0  # type: ignore[index]
    assert (tmp_path / "other.db").is_file()


@pytest.mark.parametrize(("args", "words"), [
    (["--cache", "mysql://x/y"], ["--cache", "unsupported database"]),
    (["--cache=notaurl"], ["--cache", "expected a database URL"]),
])
def test_cli_cache_usage_errors(args: list[str], words: list[str], tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04N.")
    result = run_cli("scan", "m.pkl", *args, cwd=tmp_path)
    result.assert_clean()
    assert result.returncode == 2, result.output
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr


def test_terminal_summary_says_how_many_came_from_the_cache(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04N.")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {**cli_env(), "COLUMNS": "200"}
    for expected in ("1 analysed, 0 skipped", "1 analysed (1 from cache), 0 skipped"):
        proc = subprocess.run([sys.executable, "-m", "bastion", "scan", "m.pkl", "--cache",
                               url], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout + proc.stderr
    assert os.path.exists(tmp_path / "c.db")
