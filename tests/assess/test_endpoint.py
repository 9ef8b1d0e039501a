"""The endpoint client: what it sends, what it accepts, and where it stops.

A small real HTTP server on 127.0.0.1 answers from a script (the gateway's own answers are
exercised in ``test_live_endpoint.py``): batches cut to the model's limits, the key in the
header and nowhere else, labels/scores/top-k read as class indices, ``429 Retry-After``
honoured up to a bound, detector refusals kept, redirects, oversize answers and odd labels
refused with one clear error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.assess import endpoint as endpoint_module
from bastion.assess.data import Dataset
from bastion.assess.endpoint import EndpointClient, _base_url, endpoint_target
from bastion.assess.targets import QueriesRefused
from bastion.errors import InputError, UsageError

KEY = "bst_abcdefghijkl_secret"
Reply = tuple[int, dict[str, str], bytes]


def describe(max_batch: int = 4, **schema: Any) -> Reply:
    body = {"name": "m", "version": "3", "loader": "onnx", "permissions": ["predict"],
            "input_schema": {"shape": [None, 2], "dtype": "float32", "min": 0, "max": 1,
                             "max_batch": max_batch, **schema}}
    return 200, {}, json.dumps(body).encode()


def answer(payload: dict[str, Any], status: int = 200, **headers: str) -> Reply:
    return status, headers, json.dumps(payload).encode()


def error(status: int, code: str, message: str = "no", **headers: str) -> Reply:
    return answer({"error": {"code": code, "message": message}}, status, **headers)


@dataclass
class Script:
    """A server that answers each request with the next scripted reply (or a function of the
    request body), recording what it received."""

    url: str
    replies: list[Reply | Callable[[dict[str, Any]], Reply]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Script]:
    script = Script("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = {"method": self.command, "path": self.path,
                       "headers": dict(self.headers.items()),
                       "json": json.loads(body) if body else None}
            script.received.append(request)
            reply = script.replies.pop(0) if script.replies else error(500, "unscripted")
            status, headers, payload = reply(request) if callable(reply) else reply
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _reply

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield script
    httpd.shutdown()
    httpd.server_close()


def labels_for(request: dict[str, Any]) -> Reply:
    """Class 1 when the first feature is over 0.5."""
    inputs = request["json"]["inputs"]
    return answer({"model": "m", "version": "3", "labels": [int(r[0] > 0.5) for r in inputs]})


def client(server: Script, **kwargs: Any) -> tuple[EndpointClient, list[float]]:
    slept: list[float] = []
    return EndpointClient(server.url, KEY, "m", sleep=slept.append, **kwargs), slept


# -- the URL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:9",
                                 "https://gateway.example/api/"])
def test_accepted_urls(url: str) -> None:
    assert not _base_url(url).endswith("/")


@pytest.mark.parametrize(("url", "problem"), [
    ("http://gateway.example", "clear text"),
    ("http://10.0.0.1:8000", "clear text"),
    ("ftp://127.0.0.1", r"http\(s\) URL"),
    ("127.0.0.1:8000", r"http\(s\) URL"),
    ("https://user:pw@gateway.example", "credentials"),
    ("https://gateway.example/?model=x", "credentials"),
])
def test_refused_urls(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        _base_url(url)


# -- queries ---------------------------------------------------------------------------------------


def test_batches_follow_the_models_limits(server: Script) -> None:
    server.replies = [describe(max_batch=4), *[labels_for] * 3]
    http, _ = client(server)
    x = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
    labels = http(x)
    assert labels.tolist() == [int(v > 0.5) for v in x[:, 0]]
    assert [len(r["json"]["inputs"]) for r in server.received[1:]] == [4, 4, 2]
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.received)
    assert server.received[1]["path"] == "/v1/models/m/predict"
    # float32 values arrive exactly (a crafted perturbation is not rounded away)
    sent = np.array(server.received[1]["json"]["inputs"], dtype=np.float32)
    assert np.array_equal(sent, x[:4])
    assert (http.answered, http.requests) == (10, 4)
    assert KEY not in repr(http)


def test_a_body_over_the_models_limit_is_split(server: Script) -> None:
    server.replies = [describe(max_batch=64, max_body_bytes=200), *[labels_for] * 16]
    http, _ = client(server)
    x = np.random.default_rng(0).random((16, 2), dtype=np.float32)
    assert len(http(x)) == 16
    bodies = [len(json.dumps(r["json"], separators=(",", ":"))) for r in server.received[1:]]
    assert max(bodies) <= 200
    assert sum(len(r["json"]["inputs"]) for r in server.received[1:]) == 16


def test_scores_and_top_k_become_rows_by_class_index(server: Script) -> None:
    server.replies = [
        describe(),
        answer({"labels": [2], "classes": [0, 2, 1], "scores": [[0.1, 0.7, 0.2]]}),
        answer({"labels": [3], "top_k": [[{"label": 3, "score": 0.6},
                                          {"label": 0, "score": 0.3}]]}),
    ]
    http, _ = client(server)
    http.n_classes = 5
    x = np.zeros((1, 2), dtype=np.float32)
    assert http(x).tolist() == [[0.1, 0.2, 0.7]]
    top = http(x)
    assert top.shape == (1, 5)
    assert top[0].tolist() == pytest.approx([0.3, 0.1 / 3, 0.1 / 3, 0.6, 0.1 / 3])


def test_labels_must_be_class_indices(server: Script) -> None:
    server.replies = [describe(), answer({"labels": ["cat"]})]
    http, _ = client(server)
    with pytest.raises(InputError, match="not class indices"):
        http(np.zeros((1, 2), dtype=np.float32))


def test_retry_after_is_honoured_up_to_a_bound(server: Script) -> None:
    server.replies = [describe(), error(429, "rate_limited", **{"Retry-After": "2"}),
                      error(429, "rate_limited", **{"Retry-After": "2"}), labels_for,
                      error(429, "rate_limited", **{"Retry-After": "3600"})]
    http, slept = client(server, max_wait=10)
    assert len(http(np.zeros((3, 2), dtype=np.float32))) == 3
    assert slept == [2.0, 2.0]
    assert http.waited == 4.0
    with pytest.raises(QueriesRefused, match="quota is spent") as refused:
        http(np.zeros((1, 2), dtype=np.float32))
    assert refused.value.code == "rate_limited"
    assert refused.value.answered == 3
    assert slept == [2.0, 2.0]  # an hour is over the bound: no wait at all


def test_an_extraction_block_holds_an_adversarial_one_does_not(server: Script) -> None:
    server.replies = [describe(), labels_for,
                      error(403, "blocked_adversarial", "feature squeezing: 1 of 1"),
                      labels_for, error(403, "blocked_extraction", "PRADA: W=0.8")]
    http, _ = client(server)
    x = np.zeros((1, 2), dtype=np.float32)
    http(x)
    with pytest.raises(QueriesRefused) as adversarial:
        http(x)
    assert (adversarial.value.code, adversarial.value.answered) == ("blocked_adversarial", 1)
    http(x)  # refused inputs are not a lasting block
    with pytest.raises(QueriesRefused, match="PRADA") as blocked:
        http(x)
    assert blocked.value.answered == 2
    seen = len(server.received)
    with pytest.raises(QueriesRefused, match="blocked_extraction"):
        http(x)
    assert len(server.received) == seen  # a flagged principal stops asking
    assert (http.answered, http.refused) == (2, 2)


def test_other_errors_are_one_clear_line(server: Script) -> None:
    server.replies = [error(401, "auth_unknown", "unknown key")]
    with pytest.raises(InputError, match="answered 401 auth_unknown: unknown key") as failed:
        client(server)[0].describe()
    assert failed.value.hint == "check --api-key"
    server.replies = [describe(), error(422, "bad_input", "inputs[0] has 3 values")]
    http, _ = client(server)
    with pytest.raises(InputError, match="422 bad_input"):
        http(np.zeros((1, 2), dtype=np.float32))
    server.replies = [answer({"name": "m", "permissions": ["download"],
                              "input_schema": {"shape": [None, 2]}})]
    with pytest.raises(InputError, match="needs predict or scores"):
        client(server)[0].describe()


def test_redirects_are_not_followed(server: Script) -> None:
    elsewhere: list[str] = []

    class Trap(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elsewhere.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    trap = ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    try:
        server.replies = [(302, {"Location": f"http://127.0.0.1:{trap.server_address[1]}/"},
                           b"")]
        with pytest.raises(InputError, match="answered 302"):
            client(server)[0].describe()
        assert elsewhere == []  # the key went nowhere else
    finally:
        trap.shutdown()
        trap.server_close()


def test_answers_are_bounded(server: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "MAX_RESPONSE", 1000)
    server.replies = [describe(), answer({"labels": [0], "padding": "x" * 5000})]
    http, _ = client(server)
    with pytest.raises(InputError, match="5030 bytes, over 1000"):
        http(np.zeros((1, 2), dtype=np.float32))


def test_an_unreachable_gateway() -> None:
    http = EndpointClient("http://127.0.0.1:1", KEY, "m", timeout=2)
    with pytest.raises(InputError, match="cannot reach the gateway"):
        http.describe()


def test_the_target_fits_the_data_to_the_model(server: Script) -> None:
    rng = np.random.default_rng(0)
    data = Dataset(rng.random((20, 2), dtype=np.float32), np.arange(20) % 2, "eval.npz")
    server.replies = [describe(), labels_for, labels_for]
    target, evaluation = endpoint_target(server.url, KEY, "m", data)
    assert evaluation.clip_values == (0.0, 1.0)
    assert target.labels_only
    assert target.predict(data.x[:3]).tolist() == [int(v > 0.5) for v in data.x[:3, 0]]
    assert target.client.answered == 4  # the probe and three queries
    server.replies = [describe()]
    wide = Dataset(rng.random((20, 3), dtype=np.float32), np.arange(20) % 2, "wide.npz")
    with pytest.raises(InputError, match=r"shape \(2\); the data's samples have shape \(3,\)"):
        endpoint_target(server.url, KEY, "m", wide)
    server.replies = [describe()]
    loud = Dataset(data.x * 5, data.y, "loud.npz")
    with pytest.raises(InputError, match="outside the model's declared range"):
        endpoint_target(server.url, KEY, "m", loud)


# -- the command line ------------------------------------------------------------------------------


def test_cli_options_are_checked(cli: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "eval.npz"
    np.savez(data, x=np.random.default_rng(0).random((20, 2)), y=np.arange(20) % 2)
    cases = [
        (["--endpoint", "http://gateway.example", "--model", "m", "--api-key", "k", "--data",
          data], "clear text"),
        (["--endpoint", "http://127.0.0.1:1", "--api-key", "k", "--data", data],
         "--model NAME"),
        (["--endpoint", "http://127.0.0.1:1", "--model", "m", "--data", data], "--api-key"),
        (["--demo", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--api-key", "k"],
         "drop the model file, --demo"),
        (["--model", "m", "--data", data, "model.onnx"], "go with --endpoint"),
        (["--endpoint", "http://127.0.0.1:1", "--model", "m", "--api-key", "k", "--data",
          data], "cannot reach the gateway"),
    ]
    for args, message in cases:
        result = cli("assess", *args, timeout=60)
        result.assert_clean()
        assert result.returncode == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
