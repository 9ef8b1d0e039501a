"""``--ray``: the same work as Ray tasks on a local Ray instance (2 CPUs) gives the local
report. Few tests: a Ray start costs seconds."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import cli_env
from tests.scale.conftest import comparable, sqlite_url
from tests.scale.plugins import Marked

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.scale import scan

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_report_and_fills_the_cache(local_ray: None, corpus: Path,
                                                         tmp_path: Path) -> None:
    local = scan([corpus], jobs=2)
    db = sqlite_url(tmp_path / "cache.db")
    seen: list[int] = []
    on_ray = scan([corpus], ray="default", cache=db,
                  progress=lambda path, done, total: seen.append(done))
    assert comparable(on_ray) == comparable(local) == comparable(scan_paths([corpus]))
    assert seen == list(range(1, local.stats.files + 1))  # streamed back file by file
    warm = scan([corpus], ray="default", cache=db)
    assert warm.stats.cached == local.stats.analyzed - 1  # all but the requirements file
    assert comparable(warm) == comparable(local)


@pytest.mark.slow
def test_ray_batches_small_files_and_ships_plug_ins(local_ray: None, tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(200):
        (root / f"f{i:03d}.bin").write_bytes(b"MARK" + b"EVIL" * (i % 4))
    registry = Registry([Marked()])
    serial = scan_paths([root], registry=registry)
    on_ray = scan([root], registry=registry, ray="default", jobs=2)
    assert comparable(on_ray) == comparable(serial)
    assert len(on_ray.findings) == sum(i % 4 for i in range(200))


def test_without_ray_installed_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    (tmp_path / "m.bin").write_bytes(b"\x80\x04N.")
    env = cli_env()
    env["PYTHONPATH"] = str(tmp_path / "shadow")
    proc = subprocess.run([sys.executable, "-m", "bastion", "scan", "m.bin", "--ray"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: --ray needs Ray: pip install 'bastion-mlsec[ray]'"]


@pytest.mark.slow
def test_cli_bare_ray_starts_and_stops_its_own_instance(corpus: Path, tmp_path: Path) -> None:
    """No Ray session in the process: ``--ray`` starts a local instance and shuts it down."""
    from tests.conftest import run_cli

    serial = run_cli("scan", corpus, "-q", "-f", "json", cwd=tmp_path, timeout=120)
    on_ray = run_cli("scan", corpus, "--ray", "-q", "-f", "json", cwd=tmp_path, timeout=300)
    on_ray.assert_clean()
    assert on_ray.returncode == serial.returncode == 1
    assert on_ray.stderr == ""

    def stable(text: str) -> dict[str, object]:
        data = dict(json.loads(text))
        data.pop("started")
        data["stats"].pop("seconds")  # type: ignore[attr-defined]
        return data

    assert stable(on_ray.stdout) == stable(serial.stdout)
