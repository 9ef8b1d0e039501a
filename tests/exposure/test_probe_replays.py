"""``bastion probe`` identification and checks for servers that do not install here.

TorchServe (Java) and Triton (C++) cannot run on this machine, and KServe's model server is
not installed, so these tests serve the documented answers of their APIs from loopback
stand-ins: the response bodies follow each project's API reference (TorchServe's management
API ``GET /models``, Triton's server metadata, statistics and logging extensions, KServe's V1
model list). What is tested is the prober's reading of those answers; the live tests
(Jupyter, MLflow, Ray) cover real servers.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bastion.exposure.probe import ProbeOptions, probe_targets
from bastion.findings import Report, Severity

from .servers import SocketServer, routes

FAST = ProbeOptions(timeout=2.0, deadline=10.0)
Table = Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]
JSON = {"Content-Type": "application/json"}
TS_404 = json.dumps({"code": 404, "type": "ResourceNotFoundException",
                     "message": "Requested resource is not found, please refer to API "
                                "document."}).encode()


def serve(table: Table) -> SocketServer:
    server = SocketServer(lambda conn: None)
    server.handler = routes(server, table)
    return server


def run(table: Table) -> tuple[Report, str]:
    with serve(table) as server:
        return probe_targets([server.url], FAST), server.url


def rules_of(report: Report) -> dict[str, str]:
    return {f.rule_id: f.message for f in report.findings}


def torchserve_management(token: str | None) -> Table:
    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/models":
            if token is not None and headers.get("authorization") != f"Bearer {token}":
                return 400, JSON, json.dumps({
                    "code": 400, "type": "InvalidKeyException",
                    "message": "Token Authorization failed. Token either incorrect, expired, "
                               "or not provided correctly"}).encode()
            return 200, JSON, json.dumps({"models": [
                {"modelName": "densenet161", "modelUrl": "densenet161.mar"},
                {"modelName": "bert-sentiment", "modelUrl": "bert.mar"}]}).encode()
        return 404, JSON, TS_404

    return table


def test_torchserve_management_without_token_is_shelltorch_territory() -> None:
    report, _ = run(torchserve_management(token=None))
    found = rules_of(report)
    assert set(found) == {"PROBE-IDENTIFIED", "PROBE-OPEN-MANAGEMENT-API",
                          "PROBE-OPEN-MODEL-LISTING"}
    assert "TorchServe" in found["PROBE-IDENTIFIED"]
    assert "densenet161" in found["PROBE-OPEN-MODEL-LISTING"]
    assert "bert-sentiment" in found["PROBE-OPEN-MODEL-LISTING"]


def test_torchserve_management_with_token_authorization_holds() -> None:
    report, _ = run(torchserve_management(token="mgmt-key"))
    assert [f.rule_id for f in report.findings] == ["PROBE-IDENTIFIED"]
    assert "TorchServe" in report.findings[0].message


def test_torchserve_inference_and_metrics() -> None:
    metrics = (b'# HELP ts_inference_requests_total Total number of inference requests.\n'
               b'# TYPE ts_inference_requests_total counter\n'
               b'ts_inference_requests_total{model_name="densenet161",model_version="default",'
               b'hostname="ip-10-0-0-5"} 12.0\n')

    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/ping":
            return 200, JSON, b'{\n  "status": "Healthy"\n}'
        if path == "/api-description":
            return 200, JSON, json.dumps({"openapi": "3.0.1", "info": {
                "title": "TorchServe APIs", "description": "TorchServe is a flexible and easy "
                "to use tool for serving deep learning models"}, "paths": {
                "/predictions/{model_name}": {"post": {"operationId": "predictions",
                                                       "description": "Predictions entry "
                                                       "point to get inference"}}}}).encode()
        if path == "/metrics":
            return 200, {"Content-Type": "text/plain; version=0.0.4"}, metrics
        return 404, JSON, TS_404

    report, url = run(table)
    found = {f.rule_id: f for f in report.findings}
    assert set(found) == {"PROBE-IDENTIFIED", "PROBE-OPEN-INFERENCE-API",
                          "PROBE-METRICS-MODEL-NAMES"}
    assert found["PROBE-OPEN-INFERENCE-API"].severity is Severity.HIGH
    assert "densenet161" in found["PROBE-METRICS-MODEL-NAMES"].message
    assert found["PROBE-METRICS-MODEL-NAMES"].location.path == f"{url}/metrics"


def triton(restricted: bool) -> Table:
    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        admin = headers.get("admin-key") == "secret"
        if path == "/v2":
            return 200, JSON, json.dumps({"name": "triton", "version": "2.49.0", "extensions": [
                "classification", "sequence", "model_repository", "model_repository(unload_"
                "dependents)", "schedule_policy", "model_configuration", "system_shared_memory",
                "cuda_shared_memory", "binary_tensor_data", "parameters", "statistics",
                "trace", "logging"]}).encode()
        if path in ("/v2/models/stats", "/v2/logging", "/v2/trace/setting") and restricted \
                and not admin:
            return 403, JSON, b'{"error":"This API is restricted, expecting header \'admin-key\'"}'
        if path == "/v2/models/stats":
            return 200, JSON, json.dumps({"model_stats": [
                {"name": "densenet_onnx", "version": "1", "inference_count": 7}]}).encode()
        if path == "/v2/logging":
            return 200, JSON, json.dumps({"log_file": "", "log_info": True,
                                          "log_verbose_level": 0}).encode()
        if path == "/v2/trace/setting":
            return 200, JSON, json.dumps({"trace_level": ["OFF"], "trace_rate": "1000"}).encode()
        if path == "/v2/models/densenet_onnx":
            return 200, JSON, json.dumps({"name": "densenet_onnx", "versions": ["1"],
                                          "platform": "onnxruntime_onnx"}).encode()
        return 400, JSON, b'{"error":"Not Found"}'

    return table


def test_triton_without_restricted_apis() -> None:
    report, url = run(triton(restricted=False))
    found = {(f.rule_id, f.location.path) for f in report.findings}
    assert found == {
        ("PROBE-IDENTIFIED", url),
        ("PROBE-OPEN-MODEL-LISTING", f"{url}/v2/models/stats"),
        ("PROBE-OPEN-MANAGEMENT-API", f"{url}/v2/logging"),
        ("PROBE-OPEN-MANAGEMENT-API", f"{url}/v2/trace/setting"),
        ("PROBE-OPEN-INFERENCE-API", f"{url}/v2/models/densenet_onnx"),
    }
    assert "Triton Inference Server 2.49.0" in rules_of(report)["PROBE-IDENTIFIED"]


def test_triton_with_restricted_apis_only_shows_itself() -> None:
    report, _ = run(triton(restricted=True))
    assert [f.rule_id for f in report.findings] == ["PROBE-IDENTIFIED"]


def test_kserve_v1_model_server() -> None:
    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/v1/models":
            return 200, JSON, b'{"models": ["sklearn-iris"]}'
        if path == "/v2/models/sklearn-iris":
            return 200, JSON, json.dumps({"name": "sklearn-iris", "platform": "",
                                          "inputs": [], "outputs": []}).encode()
        return 404, JSON, b'{"detail": "Not Found"}'

    report, _ = run(table)
    found = rules_of(report)
    assert set(found) == {"PROBE-IDENTIFIED", "PROBE-OPEN-MODEL-LISTING",
                          "PROBE-OPEN-INFERENCE-API"}
    assert "sklearn-iris" in found["PROBE-OPEN-MODEL-LISTING"]
    assert "KServe" in found["PROBE-IDENTIFIED"]


def test_triton_metrics_port() -> None:
    metrics = (b"# HELP nv_inference_request_success Number of successful inference requests\n"
               b"# TYPE nv_inference_request_success counter\n"
               b'nv_inference_request_success{model="densenet_onnx",version="1"} 7\n'
               b'nv_inference_request_success{model="yolo-private",version="3"} 2\n')

    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/metrics":
            return 200, {"Content-Type": "text/plain"}, metrics
        return 404, {}, b""

    report, _ = run(table)
    found = rules_of(report)
    assert "Triton metrics endpoint" in found["PROBE-IDENTIFIED"]
    assert "densenet_onnx" in found["PROBE-METRICS-MODEL-NAMES"]
    assert "yolo-private" in found["PROBE-METRICS-MODEL-NAMES"]
