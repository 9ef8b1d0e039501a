"""``bastion probe`` against Bastion's own gateway: the real ``bastion serve`` on 127.0.0.1.

The gateway names itself on ``/healthz`` and refuses ``/v1/models`` without a valid API key;
the probe identifies it, finds nothing open, and its invalid token is refused. A real key
opens the same endpoint, so the refusal the probe saw was authentication at work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.exposure.probe import ProbeOptions, probe_targets

from .servers import Process, free_port, http, started

OPTIONS = ProbeOptions(timeout=5, deadline=30)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, str]]:
    pytest.importorskip("uvicorn", reason="the gateway extra is not installed")
    folder = tmp_path_factory.mktemp("gateway")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["HOME"] = str(folder)
    db = f"sqlite:///{folder / 'gateway.db'}"
    created = subprocess.run(
        [sys.executable, "-m", "bastion", "keys", "create", "--principal", "probe-test",
         "--db", db, "--json"], cwd=folder, env=env, capture_output=True, text=True,
        timeout=120, check=True)
    key = json.loads(created.stdout)
    secret = str(key["secret"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bastion", "serve", "--host", "127.0.0.1", "--port",
            str(port), "--db", db]
    with started(argv, f"{url}/readyz", folder / "gateway.log", env=env, base_url=url,
                 cwd=folder) as server:
        yield server, secret


def test_gateway_is_identified_and_nothing_is_open(gateway: tuple[Process, str]) -> None:
    server, secret = gateway
    report = probe_targets([server.url], OPTIONS)
    assert [f.rule_id for f in report.findings] == ["PROBE-IDENTIFIED"]
    assert report.findings[0].properties["kind"] == "Bastion gateway"
    assert report.passed
    status, _ = http("GET", f"{server.url}/v1/models",
                     headers={"Authorization": f"Bearer {secret}"})
    assert status == 200


def test_gateway_log_shows_only_read_only_requests(gateway: tuple[Process, str]) -> None:
    server, _ = gateway
    probe_targets([server.url], OPTIONS)
    log = Path(server.log).read_text(encoding="utf-8", errors="replace")
    methods = {line.split('"')[1].split()[0] for line in log.splitlines()
               if '" ' in line and "HTTP/1.1" in line and line.count('"') >= 2}
    assert methods
    assert methods <= {"GET", "HEAD", "OPTIONS"}
