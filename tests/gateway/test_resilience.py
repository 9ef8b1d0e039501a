"""The gateway under broken models, registry changes and a broken JWKS file (in-process app
over httpx's ASGI transport, real databases, real model files; the start-up failure also
through the real ``bastion serve``).

- a model version that failed to load is answered with the same error, without hashing or
  loading it again, for ``refresh-seconds``; then it is tried again;
- retired and replaced versions are unloaded, and at most ``max-loaded-models`` stay loaded;
- a JWKS *file* that cannot be used stops start-up with one line naming it.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from tests.conftest import run_cli
from tests.gateway.conftest import SCHEMA, write_onnx
from tests.gateway.live import free_port

from bastion.gateway import access, audit, keys, registry
from bastion.gateway.app import create_app
from bastion.gateway.config import ConfigError, load_config
from bastion.gateway.errors import ModelIntegrityError
from bastion.gateway.principals import Permission

BODY = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]}).encode()
ISSUER = "https://idp.test"
AUDIENCE = "bastion-gateway"


class _Client:
    """The app in-process over httpx's ASGI transport (no server, no network)."""

    def __init__(self, app: FastAPI, token: str) -> None:
        self.app = app
        self.headers = {"Authorization": f"Bearer {token}",
                        "Content-Type": "application/json"}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.request(method, url, **kwargs)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        return asyncio.run(go())

    def predict(self, model: str, version: str | None = None) -> httpx.Response:
        where = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
        return self.request("POST", f"{where}/predict", content=BODY)


@dataclass
class Gw:
    """A gateway app on a database, and a client whose key holds ``scores`` on the models
    the test grants."""

    engine: Engine
    app: FastAPI
    http: _Client

    @property
    def loaded(self) -> set[tuple[str, str]]:
        return set(self.app.state.gateway._loaded)

    def audit_reasons(self) -> list[tuple[int, str]]:
        self.app.state.gateway.audit.close()  # flushed: every answer is in the log
        stream = io.StringIO()
        audit.export_jsonl(self.engine, stream)
        entries = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [(e["status"], e["reason"]) for e in entries]


@pytest.fixture
def gateway(engine: Engine) -> Iterator[Any]:
    """``gateway(models, **settings)``: grants ``scores`` on ``models`` to a fresh key and
    builds the app with ``settings`` (closed at the end of the test)."""
    made: list[FastAPI] = []

    def make(models: tuple[str, ...], **settings: Any) -> Gw:
        token = keys.create_key(engine, "carla").secret
        for name in models:
            access.grant(engine, "user:carla", name, Permission.SCORES,
                         separation_of_duties=True)
        app = create_app(load_config(settings, environ={}), engine)
        made.append(app)
        return Gw(engine, app, _Client(app, token))

    yield make
    for app in made:
        app.state.gateway.close()


def _error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()) + 0.05)


# -- (1) a failed load is remembered for refresh-seconds ------------------------------------------


def test_integrity_failure_is_not_rehashed_within_refresh_seconds(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    path = write_onnx(tmp_path / "m.onnx")
    registry.admit(engine, "m", path, loader="onnx", input_schema=SCHEMA)
    good = path.read_bytes()
    write_onnx(path, seed=7)  # swapped after admission, before the gateway loaded it
    window = 1.5
    gw = gateway(("m",), refresh_seconds=window)

    first = _error(gw.http.predict("m"), 503, "integrity")
    failed_at = time.monotonic()
    assert "changed since admission of m@1" in first
    assert str(path) in first
    path.write_bytes(good)  # put right: a gateway that hashed again would now serve it
    # Within the window: the same answer, word for word, though the file is good again.
    for _ in range(3):
        assert _error(gw.http.predict("m"), 503, "integrity") == first
    assert time.monotonic() - failed_at < window, "the machine was too slow for this test"
    assert gw.loaded == set()

    _wait_until(failed_at + window)
    answer = gw.http.predict("m")  # the window has passed: tried again, and served
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "1"
    assert gw.loaded == {("m", "1")}
    assert gw.audit_reasons() == [(503, "integrity")] * 4 + [(200, "ok")]


def test_loader_failure_is_remembered_without_hashing_again(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    path = write_onnx(tmp_path / "m.onnx")
    # Admitted with a loader that cannot read it: the content is intact, the load fails.
    registry.admit(engine, "m", path, loader="sklearn", input_schema=SCHEMA)
    window = 1.5
    gw = gateway(("m",), refresh_seconds=window)

    first = _error(gw.http.predict("m"), 503, "unavailable")
    failed_at = time.monotonic()
    assert first.startswith("LoaderError: m.onnx: the sklearn loader reads")
    write_onnx(path, seed=7)  # now swapped too: only a new hash would notice
    assert _error(gw.http.predict("m"), 503, "unavailable") == first
    assert time.monotonic() - failed_at < window, "the machine was too slow for this test"

    _wait_until(failed_at + window)
    swapped = _error(gw.http.predict("m"), 503, "integrity")  # tried (and hashed) again
    assert "changed since admission of m@1" in swapped
    assert gw.audit_reasons() == [(503, "unavailable")] * 2 + [(503, "integrity")]


def test_no_window_tries_every_time(gateway: Any, engine: Engine, tmp_path: Path) -> None:
    path = write_onnx(tmp_path / "m.onnx")
    registry.admit(engine, "m", path, loader="onnx", input_schema=SCHEMA)
    good = path.read_bytes()
    write_onnx(path, seed=7)
    gw = gateway(("m",), refresh_seconds=0)
    _error(gw.http.predict("m"), 503, "integrity")
    path.write_bytes(good)
    assert gw.http.predict("m").status_code == 200  # refresh-seconds 0: nothing is kept


def test_a_failure_of_one_version_does_not_touch_the_others(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    bad = write_onnx(tmp_path / "bad.onnx")
    registry.admit(engine, "bad", bad, loader="onnx", input_schema=SCHEMA)
    registry.admit(engine, "good", write_onnx(tmp_path / "good.onnx"), loader="onnx",
                   input_schema=SCHEMA)
    bad.write_bytes(b"not the admitted bytes")
    gw = gateway(("bad", "good"), refresh_seconds=60)
    _error(gw.http.predict("bad"), 503, "integrity")
    assert gw.http.predict("good").status_code == 200
    assert set(gw.app.state.gateway._failed) == {("bad", "1")}


def test_remembered_failures_are_bounded(gateway: Any) -> None:
    from bastion.gateway.app import _MAX_KEPT

    gw = gateway((), refresh_seconds=60).app.state.gateway
    for i in range(_MAX_KEPT + 50):
        gw._failed_now(("m", str(i)), ModelIntegrityError(f"m@{i} changed"))
    assert len(gw._failed) == _MAX_KEPT
    assert ("m", str(_MAX_KEPT + 49)) in gw._failed  # the newest stay, the oldest go
    assert ("m", "0") not in gw._failed


# -- (2) retired and replaced versions are unloaded; loaded versions are bounded -----------------


def test_replaced_and_retired_versions_are_unloaded(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    registry.admit(engine, "m", write_onnx(tmp_path / "v1.onnx", seed=1), loader="onnx",
                   input_schema=SCHEMA)
    window = 0.3
    gw = gateway(("m",), refresh_seconds=window)
    assert gw.http.predict("m").json()["version"] == "1"
    assert gw.loaded == {("m", "1")}

    # A new version: once the registry is read again, it serves and the old one is dropped.
    registry.admit(engine, "m", write_onnx(tmp_path / "v2.onnx", seed=2), loader="onnx",
                   input_schema=SCHEMA)
    time.sleep(window + 0.05)
    answer = gw.http.predict("m")
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "2"
    assert gw.loaded == {("m", "2")}

    # Version 1 is still admitted: a request pinned to it loads it again.
    assert gw.http.predict("m", "1").json()["version"] == "1"
    assert gw.loaded == {("m", "1"), ("m", "2")}

    # Retired: unloaded on the next read of the registry, though no one asks for it again.
    registry.retire(engine, "m", "1")
    time.sleep(window + 0.05)
    assert gw.http.predict("m").json()["version"] == "2"
    assert gw.loaded == {("m", "2")}
    _error(gw.http.predict("m", "1"), 404, "not_found")
    assert gw.loaded == {("m", "2")}

    # The last version retired: nothing of the model stays loaded.
    registry.retire(engine, "m", "2")
    time.sleep(window + 0.05)
    _error(gw.http.predict("m"), 404, "not_found")
    assert gw.loaded == set()


def test_pinned_request_to_a_retired_version_unloads_it(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    for seed in (1, 2):
        registry.admit(engine, "m", write_onnx(tmp_path / f"v{seed}.onnx", seed=seed),
                       loader="onnx", input_schema=SCHEMA)
    window = 0.3
    gw = gateway(("m",), refresh_seconds=window)
    assert gw.http.predict("m", "1").json()["version"] == "1"
    assert gw.loaded == {("m", "1")}
    registry.retire(engine, "m", "1")
    time.sleep(window + 0.05)
    _error(gw.http.predict("m", "1"), 404, "not_found")
    assert gw.loaded == set()


def test_loaded_versions_are_bounded_least_recently_used_first(
        gateway: Any, engine: Engine, tmp_path: Path) -> None:
    names = ("a", "b", "c")
    for seed, name in enumerate(names):
        registry.admit(engine, name, write_onnx(tmp_path / f"{name}.onnx", seed=seed),
                       loader="onnx", input_schema=SCHEMA)
    gw = gateway(names, max_loaded_models=2)
    for name in ("a", "b", "a", "c"):  # b is the least recently used when c comes
        assert gw.http.predict(name).status_code == 200
    assert gw.loaded == {("a", "1"), ("c", "1")}
    answer = gw.http.predict("b")  # unloaded, not refused: loaded again (after its check)
    assert answer.status_code == 200, answer.text
    assert gw.loaded == {("c", "1"), ("b", "1")}


# -- (3) a JWKS file that cannot be used stops start-up ------------------------------------------


def _jwt(jwks: str | Path) -> dict[str, Any]:
    return {"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE}


def _signing_key() -> tuple[Any, dict[str, Any]]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="ec-1", use="sig", alg="ES256")
    return key, jwk


_BROKEN = {
    "missing": (None, "No such file or directory"),
    "not-json": (b"{not json", "the JWKS is not JSON"),
    "symmetric-only": (json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]})
                       .encode(), "no usable signing key"),
}


def _broken_jwks(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "idp" / "jwks.json"
    path.parent.mkdir()
    content = _BROKEN[case][0]
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_unusable_jwks_file_refuses_to_create_the_app(tmp_path: Path, case: str) -> None:
    path = _broken_jwks(tmp_path, case)
    config = load_config({"db-url": f"sqlite:///{tmp_path / 'g.db'}", "jwt": _jwt(path)},
                         environ={})
    with pytest.raises(ConfigError) as caught:
        create_app(config)
    message = str(caught.value)
    assert str(path) in message
    assert _BROKEN[case][1] in message
    assert "\n" not in message


def test_usable_jwks_file_is_loaded_at_start(tmp_path: Path) -> None:
    import jwt

    key, jwk = _signing_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    config = load_config({"db-url": f"sqlite:///{tmp_path / 'g.db'}", "jwt": _jwt(path)},
                         environ={})
    app = create_app(config)
    try:
        assert app.state.gateway.jwt.source._set is not None  # read before any token came
        now = int(time.time())
        token = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                            "exp": now + 600}, key, algorithm="ES256", headers={"kid": "ec-1"})
        answer = _Client(app, token).request("GET", "/v1/models")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"models": []}
    finally:
        app.state.gateway.close()


def test_jwks_url_is_not_fetched_at_start(tmp_path: Path) -> None:
    # Nothing listens there: a URL may be out of reach for a moment, start-up goes on.
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    config = load_config({"db-url": f"sqlite:///{tmp_path / 'g.db'}", "jwt": _jwt(url)},
                         environ={})
    app = create_app(config)
    try:
        assert app.state.gateway.jwt.source._set is None  # to be fetched on first use
    finally:
        app.state.gateway.close()


@pytest.mark.parametrize("case", ["missing", "not-json"])
def test_serve_exits_with_one_line_naming_the_jwks_file(tmp_path: Path, case: str) -> None:
    path = _broken_jwks(tmp_path, case)
    policy = tmp_path / "bastion.toml"
    policy.write_text(f'[gateway.jwt]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
                      f"jwks = {json.dumps(str(path))}\n", encoding="utf-8")
    result = run_cli("serve", "--db", f"sqlite:///{tmp_path / 'g.db'}", "--policy", policy,
                     "--port", str(free_port()), cwd=tmp_path, timeout=60)
    result.assert_clean()
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: [gateway.jwt] jwks: ")
    assert str(path) in lines[0]
    assert _BROKEN[case][1] in lines[0]
    assert "Uvicorn running" not in result.output


@pytest.mark.parametrize("content", [
    {"labels": [1, "b"], "scores": [[0.1234, 1e-07, 0.0]], "model": "m", "none": None},
    {"text": 'é 中 🙂 \u2028 \x00 " \\ NaN Infinity'},  # the words alone: still plain text
    {"big": 10**30, "neg": -1.5e300, "nested": [[[True, False]]]},
])
def test_answer_json_is_json_of_the_same_values(content: dict[str, Any]) -> None:
    from bastion.gateway.app import _json

    out = _json(content)
    assert json.loads(out) == content


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_answer_json_refuses_nan_and_infinity(bad: float) -> None:
    """A model's NaN is an error (500), never a 200 with a value no JSON parser takes."""
    from bastion.gateway.app import _json

    with pytest.raises(ValueError, match="Out of range"):
        _json({"labels": [1.0, bad]})
