"""A bulk scan killed half-way (``kill -9``) and started again does not analyse what it had
finished: each batch's results were committed as it came back."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.scale.conftest import comparable, sqlite_url
from tests.scale.plugins import Marked

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.findings import Report

ROOT = Path(__file__).resolve().parents[2]
FILES = 60
SCRIPT = """
import json, sys
from bastion.analyzer import Registry
from bastion.scale import scan
from tests.scale.plugins import Marked
report = scan([sys.argv[1]], registry=Registry([Marked()]), cache=sys.argv[2], jobs=2)
print(json.dumps(report.to_dict()))
"""


def _run(root: Path, db: str, log: Path, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "TEST_SCALE_DELAY": str(delay), "TEST_SCALE_LOG": str(log)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), db], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: workers die with it


def _results(db_file: Path) -> int:
    try:
        with sqlite3.connect(db_file, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM bastion_scan_results").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_a_killed_scan_resumes_without_rescanning_finished_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    for i in range(FILES):
        (root / f"m{i:03d}.bin").write_bytes(b"MARK %d" % i + b" EVIL" * (i % 3))
    db_file = tmp_path / "cache.db"
    db = sqlite_url(db_file)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    first = _run(root, db, first_log, delay=0.05)
    deadline = time.monotonic() + 120
    while _results(db_file) < 16:
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the scan made no progress"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    finished = _results(db_file)  # what was committed before the kill
    assert 16 <= finished < FILES

    second = _run(root, db, second_log, delay=0)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    report = Report.from_dict(json.loads(out))
    again = second_log.read_text(encoding="utf-8").splitlines()
    assert report.stats.cached == finished  # every committed file came from the cache ...
    assert len(again) == len(set(again)) == FILES - finished  # ... and only the rest was analysed
    done_before = set(first_log.read_text(encoding="utf-8").splitlines())
    assert done_before | set(again) == {f"{root}/m{i:03d}.bin" for i in range(FILES)}
    clean = scan_paths([root], registry=Registry([Marked()]))
    assert comparable(report) == comparable(clean)
    assert _results(db_file) == FILES
