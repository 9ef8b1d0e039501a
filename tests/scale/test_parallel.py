"""``--jobs N``: worker processes give the serial report (same findings, order, skips, notes),
with and without the cache, and survive a worker that dies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.scale.conftest import comparable, sqlite_url
from tests.scale.plugins import Crasher, Marked

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.scale import scan
from bastion.scale.runner import start_method


def test_two_workers_give_the_serial_report(corpus: Path, tmp_path: Path) -> None:
    serial = scan_paths([corpus])
    parallel = scan([corpus], jobs=2)
    assert comparable(parallel) == comparable(serial)
    assert parallel.notes  # the advisory database's age
    assert parallel.notes == serial.notes
    db = sqlite_url(tmp_path / "cache.db")
    cold = scan([corpus], jobs=2, cache=db)
    warm = scan([corpus], jobs=2, cache=db)
    assert comparable(cold) == comparable(warm) == comparable(serial)
    assert warm.stats.cached == serial.stats.analyzed - 1  # all but the requirements file


def test_many_small_files_are_batched_and_reported_in_walk_order(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(300):
        (root / f"f{i:03d}.bin").write_bytes(b"MARK" + b"EVIL" * (i % 3) + b"x" * i)
    registry = Registry([Marked()])
    serial = scan_paths([root], registry=registry)
    progress: list[int] = []
    parallel = scan([root], registry=registry, jobs=2,
                    progress=lambda path, done, total: progress.append(done))
    assert comparable(parallel) == comparable(serial)
    assert len(serial.findings) == 300
    assert progress == list(range(1, 301))


def test_a_worker_that_dies_costs_one_finding_not_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    root.mkdir()
    for i in range(20):
        (root / f"ok{i:02d}.bin").write_bytes(b"MARK EVIL")
    (root / "killer.bin").write_bytes(b"CRASH")
    report = scan([root], registry=Registry([Marked(), Crasher()]), jobs=2)
    errors = [f for f in report.findings if f.rule_id == "SCAN-ANALYZER-ERROR"]
    assert [f.location.path for f in errors] == [f"{root}/killer.bin"]
    assert "worker" in errors[0].message
    assert sum(f.rule_id == "TEST-SCALE-EVIL" for f in report.findings) == 20
    assert report.stats.files == 21


def test_workers_start_from_a_fork_server() -> None:
    assert start_method() == "forkserver"  # never plain fork: the driver has threads


def test_cli_jobs_matches_the_serial_cli(corpus: Path, tmp_path: Path) -> None:
    serial = run_cli("scan", corpus, "-q", "-f", "json", cwd=tmp_path, timeout=120)
    parallel = run_cli("scan", corpus, "-q", "-f", "json", "--jobs", "2", cwd=tmp_path,
                       timeout=120)
    zero = run_cli("scan", corpus, "-q", "-f", "json", "-j", "0", cwd=tmp_path, timeout=120)
    for result in (serial, parallel, zero):
        result.assert_clean()
        assert result.returncode == 1

    def stable(text: str) -> dict[str, object]:
        data = json.loads(text)
        data.pop("started")
        data["stats"].pop("seconds")
        return dict(data)

    assert stable(parallel.stdout) == stable(serial.stdout) == stable(zero.stdout)


@pytest.mark.parametrize("jobs", ["-1", "two"])
def test_cli_rejects_bad_job_counts(jobs: str, tmp_path: Path, corpus: Path) -> None:
    result = run_cli("scan", corpus, "--jobs", jobs, cwd=tmp_path)
    result.assert_clean()
    assert result.returncode == 2
    assert "--jobs" in result.stderr
