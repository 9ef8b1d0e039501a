"""``bastion probe`` against a real Ray head's dashboard (the Jobs API of ShadowRay).

The head runs as ``ray start --head --block`` in its own session with every port chosen free,
its own temporary folder and ``HOME`` (Ray keeps its token in ``~/.ray``), and is stopped by
killing its process group: never ``ray stop``, which would stop every Ray on the machine.
Once with token authentication disabled, once with ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.exposure.probe import ProbeOptions, probe_targets
from bastion.findings import Severity

from .servers import Process, free_port, http, started

pytestmark = pytest.mark.slow
OPTIONS = ProbeOptions(timeout=10, deadline=60)
TOKEN = "probe-test-ray-token-5b2e9d41c7"


@pytest.fixture(scope="module", params=["disabled", "token"])
def ray_head(request: pytest.FixtureRequest) -> Iterator[tuple[str, Process]]:
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        pytest.skip("the ray command is not installed")
    # Ray puts unix sockets under its temp folder: keep the path short.
    folder = Path(tempfile.mkdtemp(prefix="bray", dir="/tmp"))
    try:
        ports = {name: free_port() for name in (
            "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
            "node-manager-port", "object-manager-port")}
        low = free_port()
        argv = [str(ray), "start", "--head", "--block", "--disable-usage-stats",
                "--num-cpus=1", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                "--node-ip-address=127.0.0.1", f"--temp-dir={folder / 't'}",
                f"--min-worker-port={low}", f"--max-worker-port={low + 20}",
                *(f"--{name}={port}" for name, port in ports.items())]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(HOME=str(folder), RAY_AUTH_MODE=request.param)
        if request.param == "token":
            env["RAY_AUTH_TOKEN"] = TOKEN
        url = f"http://127.0.0.1:{ports['dashboard-port']}"
        with started(argv, f"{url}/api/version", folder / "ray.log", env=env,
                     deadline=150, base_url=url) as head:
            yield request.param, head
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_ray_dashboard(ray_head: tuple[str, Process]) -> None:
    mode, head = ray_head
    report = probe_targets([head.url], OPTIONS)
    found = {f.rule_id: f for f in report.findings}
    if mode == "disabled":
        assert set(found) == {"PROBE-IDENTIFIED", "PROBE-OPEN-MANAGEMENT-API"}
        assert found["PROBE-IDENTIFIED"].properties["kind"] == "Ray dashboard"
        jobs = found["PROBE-OPEN-MANAGEMENT-API"]
        assert jobs.location.path == f"{head.url}/api/jobs/"
        assert jobs.severity is Severity.CRITICAL
        assert "AML.CS0023" in {r.id for r in jobs.references}
    else:
        assert set(found) == {"PROBE-IDENTIFIED"}
        assert "token authentication on" in found["PROBE-IDENTIFIED"].message
        # the refusal was authentication: the real token opens the same API
        status, _ = http("GET", f"{head.url}/api/jobs/",
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
    # nothing was submitted by the probe
    headers = {"Authorization": f"Bearer {TOKEN}"} if mode == "token" else {}
    assert http("GET", f"{head.url}/api/jobs/", headers=headers)[1].strip() == b"[]"
