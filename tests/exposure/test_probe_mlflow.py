"""``bastion probe`` against real MLflow tracking servers on 127.0.0.1: one without
authentication holding a registered model and a model artifact, one with ``--app-name
basic-auth`` (its admin password from a temporary ``MLFLOW_AUTH_CONFIG_PATH`` file and the
``MLFLOW_FLASK_SERVER_SECRET_KEY`` it requires, as MLflow's auth documentation says).

MLflow takes many seconds to start, so each server is shared by the module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.exposure.probe import ProbeOptions, probe_targets
from bastion.findings import Severity

from .servers import Process, free_port, http, started

pytestmark = pytest.mark.slow
OPTIONS = ProbeOptions(timeout=10, deadline=60)
ADMIN_PASSWORD = "Pr0be-Test-Adm1n-Passw0rd"
MODEL_FILE = "0/5f1c0ffee/artifacts/model/model.pkl"


def _argv(port: int, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"), *extra]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["HOME"] = str(folder)  # nothing written to the user's home
    return env


@pytest.fixture(scope="module")
def open_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("mlflow-open")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(_argv(port, folder), f"{url}/health", folder / "server.log",
                 env=_env(folder), base_url=url) as server:
        # The test (not the probe) stores a model: a registered name and an artifact file.
        status, _ = http("POST", f"{url}/api/2.0/mlflow/registered-models/create",
                         json.dumps({"name": "fraud-detector"}).encode(),
                         {"Content-Type": "application/json"})
        assert status == 200
        status, _ = http("PUT", f"{url}/api/2.0/mlflow-artifacts/artifacts/{MODEL_FILE}",
                         b"not really a pickle")
        assert status == 200
        yield server


@pytest.fixture(scope="module")
def auth_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.skip("MLflow's basic-auth app needs Flask-WTF (the `mlflow[auth]` extra), "
                    "which this environment does not have")
    folder = tmp_path_factory.mktemp("mlflow-auth")
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        f"admin_username = admin\nadmin_password = {ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        encoding="utf-8")
    env = _env(folder)
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "probe-test-secret-key"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(_argv(port, folder, "--app-name", "basic-auth"), f"{url}/health",
                 folder / "server.log", env=env, base_url=url) as server:
        yield server


def test_open_mlflow_gives_away_models_and_artifacts(open_mlflow: Process) -> None:
    url = open_mlflow.url
    report = probe_targets([url], OPTIONS)
    found = {f.rule_id: f for f in report.findings}
    assert set(found) == {"PROBE-IDENTIFIED", "PROBE-OPEN-MANAGEMENT-API",
                          "PROBE-OPEN-MODEL-LISTING", "PROBE-MODEL-DOWNLOAD"}
    assert found["PROBE-IDENTIFIED"].properties["kind"] == "MLflow tracking server"
    assert found["PROBE-IDENTIFIED"].properties["version"][:1].isdigit()
    assert "fraud-detector" in found["PROBE-OPEN-MODEL-LISTING"].message
    download = found["PROBE-MODEL-DOWNLOAD"]
    assert download.severity is Severity.CRITICAL
    assert download.location.path == f"{url}/api/2.0/mlflow-artifacts/artifacts/{MODEL_FILE}"
    assert found["PROBE-OPEN-MANAGEMENT-API"].severity is Severity.CRITICAL


def test_probe_of_open_mlflow_changes_nothing(open_mlflow: Process) -> None:
    url = open_mlflow.url
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=100"
    before = json.loads(http("GET", search)[1])
    models_before = json.loads(http("GET", f"{url}/api/2.0/mlflow/registered-models/search")[1])
    probe_targets([url], OPTIONS)
    assert json.loads(http("GET", search)[1]) == before
    assert json.loads(http("GET", f"{url}/api/2.0/mlflow/registered-models/search")[1]) == \
        models_before


def test_basic_auth_mlflow_is_identified_and_holds(auth_mlflow: Process) -> None:
    report = probe_targets([auth_mlflow.url], OPTIONS)
    assert [f.rule_id for f in report.findings] == ["PROBE-IDENTIFIED"]
    assert "basic-auth on" in report.findings[0].message
    # and the credentials it was configured with do work: the probe's refusal was real
    import base64

    auth = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    status, _ = http("GET", f"{auth_mlflow.url}/api/2.0/mlflow/experiments/search?max_results=1",
                     headers={"Authorization": f"Basic {auth}"})
    assert status == 200
