"""``bastion probe`` against real Jupyter Servers on 127.0.0.1: one with authentication
disabled (empty token), one with a token."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.exposure.probe import ProbeOptions, probe_targets
from bastion.findings import Report, Severity

from .servers import Process, free_port, http, started

TOKEN = "probe-test-token-7f3a9c"
OPTIONS = ProbeOptions(timeout=5, deadline=30)


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Process]]:
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "notebooks"
    root.mkdir()
    (root / "train.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, '
                                      '"nbformat_minor": 5}', encoding="utf-8")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_DATA_DIR": str(base / "data"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("JUPYTER_TOKEN", None)
    servers: dict[str, Process] = {}

    def argv(port: int, token: str) -> list[str]:
        return [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
                f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
                "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
                f"--IdentityProvider.token={token}"]

    open_port, token_port = free_port(), free_port()
    with started(argv(open_port, ""), f"http://127.0.0.1:{open_port}/api",
                 base / "open.log", env=env, base_url=f"http://127.0.0.1:{open_port}"
                 ) as open_server, \
            started(argv(token_port, TOKEN), f"http://127.0.0.1:{token_port}/api",
                    base / "token.log", env=env, base_url=f"http://127.0.0.1:{token_port}"
                    ) as token_server:
        servers["open"] = open_server
        servers["token"] = token_server
        yield servers


def by_rule(report: Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for finding in report.findings:
        out.setdefault(finding.rule_id, []).append(finding.location.path)
    return out


def test_open_jupyter_is_identified_and_critical(jupyter: dict[str, Process]) -> None:
    url = jupyter["open"].url
    report = probe_targets([url], OPTIONS)
    found = by_rule(report)
    assert sorted(found) == ["PROBE-IDENTIFIED", "PROBE-OPEN-MANAGEMENT-API"]
    assert sorted(found["PROBE-OPEN-MANAGEMENT-API"]) == [f"{url}/api/contents",
                                                           f"{url}/api/kernels"]
    identified = next(f for f in report.findings if f.rule_id == "PROBE-IDENTIFIED")
    assert identified.properties["kind"] == "Jupyter Server"
    assert identified.properties["version"]
    contents = next(f for f in report.findings if f.location.path.endswith("/api/contents"))
    assert "train.ipynb" in contents.message
    assert contents.severity is Severity.CRITICAL
    assert not report.passed


def test_token_jupyter_is_identified_and_clean(jupyter: dict[str, Process]) -> None:
    url = jupyter["token"].url
    report = probe_targets([url], OPTIONS)
    assert [f.rule_id for f in report.findings] == ["PROBE-IDENTIFIED"]
    assert report.passed


def test_probing_changes_nothing_on_the_server(jupyter: dict[str, Process]) -> None:
    """No kernel started, no session, no file: the probe only read."""
    url = jupyter["token"].url
    auth = {"Authorization": f"token {TOKEN}"}
    before = http("GET", f"{url}/api/contents", headers=auth)[1]
    probe_targets([url, jupyter["open"].url], OPTIONS)
    assert json.loads(http("GET", f"{url}/api/kernels", headers=auth)[1]) == []
    assert json.loads(http("GET", f"{url}/api/sessions", headers=auth)[1]) == []
    after = http("GET", f"{url}/api/contents", headers=auth)[1]
    names = sorted(item["name"] for item in json.loads(after)["content"])
    assert names == sorted(item["name"] for item in json.loads(before)["content"])


def test_cli_exit_codes_follow_the_findings(jupyter: dict[str, Process],
                                            cli: Callable[..., Any]) -> None:
    bad = cli("probe", jupyter["open"].url, "-f", "json", "-q")
    good = cli("probe", jupyter["token"].url, "-q", "--fail-on", "high")
    assert (bad.returncode, good.returncode) == (1, 0), bad.output + good.output
    bad.assert_clean()
    good.assert_clean()
    assert {f["rule_id"] for f in bad.json()["findings"]} == {"PROBE-IDENTIFIED",
                                                             "PROBE-OPEN-MANAGEMENT-API"}
    assert "Jupyter Server" in good.stdout


def test_report_lists_each_target_once_as_a_root(jupyter: dict[str, Process],
                                                 tmp_path: Path) -> None:
    report = probe_targets([jupyter["open"].url, jupyter["token"].url], OPTIONS)
    assert report.roots == (jupyter["open"].url, jupyter["token"].url)
    assert report.stats.files == report.stats.analyzed == 2
