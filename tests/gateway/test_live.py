"""The gateway as it runs: real ``bastion serve`` processes on 127.0.0.1, real HTTP.

One gateway per backend (a SQLite file, then PostgreSQL in a schema of its own) serves most
tests: every permission level allowed and denied, API keys and OIDC tokens good and bad,
separation of duties, body and schema limits, a model swapped on disk, retirement, a quota
under 50 concurrent clients and the audit chain after that load (and a tampered row). The
tests that stop gateways or need several get their own: two replicas sharing one Redis
budget, ``kill -9`` during load, ``SIGTERM`` with requests in flight. Schemathesis fuzzes
the gateway's own OpenAPI document and must find no 5xx.

Models are written by the real libraries, keys are issued by the real key store and grants
go through the real access module; the admin side (admission, revocation, refused grants,
``access check``, ``audit-log verify``/``export``) goes through the real CLI where a test is
about it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.conftest import CliResult, run_cli
from tests.gateway.conftest import PG_URL, Db, write_onnx, write_skops
from tests.gateway.live import Gateway, start

from bastion.db import drop_schema
from bastion.gateway import access, audit, keys, registry
from bastion.gateway.tables import open_db

pytestmark = pytest.mark.slow

SCHEMA = {"shape": [None, 4], "dtype": "float32", "min": 0, "max": 1, "max_batch": 8}
ROW = [0.1, 0.2, 0.3, 0.4]
BODY = json.dumps({"inputs": [ROW]}).encode()
MAX_BODY = 65536
REFRESH = 0.5
PRECISION = 2
BUDGET = 120
ISSUER = "https://idp.example.test"
AUDIENCE = "bastion-gateway"
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# -- databases, tokens, CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Db]]:
    """Open databases for a module; PostgreSQL schemas are dropped at its end."""
    opened: list[Db] = []

    def make(backend: str) -> Db:
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
        else:
            url, schema = PG_URL, f"t_{uuid.uuid4().hex[:20]}"
        opened.append(Db(backend, url, schema, open_db(url, schema=schema)))
        return opened[-1]

    yield make
    for db in opened:
        if db.schema is not None:
            drop_schema(db.engine, db.schema)
        db.engine.dispose()


def _cli(db: Db, cwd: Path, *args: str | Path) -> CliResult:
    result = run_cli(*args, *db.cli_args(), cwd=cwd, timeout=60)
    result.assert_clean()
    return result


def _serve_args(db: Db, policy: Path) -> list[str]:
    return ["--db", db.url, *(["--db-schema", db.schema] if db.schema else []),
            "--policy", str(policy)]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                     _b64(signature)))


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HMAC-signed token crafted by hand (PyJWT refuses to use a PEM key as an HMAC
    secret, which is exactly what a key-confusion attacker does)."""
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


@dataclass(frozen=True)
class Issuer:
    """A test identity provider: an RSA and an EC signing key, published as a JWKS file."""

    rsa: Any
    ec: Any
    jwks: Path
    rsa_public_pem: bytes
    rsa_jwk: str

    def claims(self, sub: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                                  "nbf": now, "exp": now + 600}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, sub: str, *, alg: str = "RS256", **changes: Any) -> str:
        import jwt

        key, kid = (self.rsa, "rsa-1") if alg.startswith("RS") else (self.ec, "ec-1")
        return jwt.encode(self.claims(sub, **changes), key, algorithm=alg,
                          headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig", alg="RS256")
    ec_jwk.update(kid="ec-1", use="sig", alg="ES256")
    path = tmp_path_factory.mktemp("idp") / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}), encoding="utf-8")
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return Issuer(rsa_key, ec_key, path, pem, json.dumps(rsa_jwk))


# -- the shared gateway ---------------------------------------------------------------------------

#: principal -> (groups, [(model, permission), ...]) for the keys of the shared gateway.
PRINCIPALS: dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]] = {
    "p-predict": ((), [("iris", "predict")]),
    "p-scores": ((), [("iris", "scores"), ("sk", "scores"), ("swapped", "scores"),
                      ("retiring", "scores")]),
    "p-explain": ((), [("iris", "explain")]),
    "p-download": ((), [("iris", "download"), ("swapped", "download")]),
    "p-admin": ((), [("*", "admin")]),
    "p-none": ((), []),
    "p-other": ((), [("sk", "scores")]),
    "p-sod": (("g-query", "g-weights"), []),
    "p-revoked": ((), [("iris", "scores")]),
    "p-fuzz": ((), [("iris", "scores"), ("*", "admin")]),
}
GROUP_GRANTS = [("group:g-query", "iris", "scores"), ("group:g-weights", "iris", "download"),
                ("group:jwt-team", "iris", "predict"), ("user:oidc:carol", "iris", "scores")]


@dataclass
class World:
    """A running gateway, its database, and the credentials the tests use."""

    db: Db
    gateway: Gateway
    folder: Path
    models: dict[str, Path]
    tokens: dict[str, str]
    key_ids: dict[str, str]
    issuer: Issuer
    http: httpx.Client

    def auth(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens.get(who, who)}"}

    def predict(self, model: str, who: str | None, body: bytes = BODY,
                **kwargs: Any) -> httpx.Response:
        return self.http.post(f"/v1/models/{model}/predict", content=body,
                              headers={**self.auth(who), "Content-Type": "application/json",
                                       **kwargs.pop("headers", {})}, **kwargs)

    def get(self, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.auth(who), **kwargs)

    def cli(self, *args: str | Path) -> CliResult:
        return _cli(self.db, self.folder, *args)

    def user(self, principal: str, grants: list[tuple[str, str]], *,
             groups: tuple[str, ...] = ()) -> str:
        """A fresh key (and grants) for ``principal``; returns the token."""
        issued = keys.create_key(self.db.engine, principal, groups=groups)
        for model, permission in grants:
            access.grant(self.db.engine, f"user:{principal}", model, permission,
                         separation_of_duties=True)
        self.tokens[principal] = issued.secret
        self.key_ids[principal] = issued.key_id
        return issued.secret


def _policy(folder: Path, issuer: Issuer, *, log_level: str = "info") -> Path:
    path = folder / "bastion.toml"
    path.write_text(f"""
[gateway]
log-level = "{log_level}"
max-body-bytes = {MAX_BODY}
refresh-seconds = {REFRESH}
score-precision = {PRECISION}

[gateway.quota]
rate = 100000.0
burst = 100000
per-day = 1000000

[gateway.quotas.budget]
rate = 100000.0
burst = 100000
per-day = {BUDGET}

[gateway.jwt]
jwks = "{issuer.jwks}"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         databases: Callable[[str], Db], issuer: Issuer) -> Iterator[World]:
    db = databases(request.param)
    folder = tmp_path_factory.mktemp(f"live-{request.param}")
    schema_file = folder / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA), encoding="utf-8")
    models = {"iris": write_onnx(folder / "iris.onnx"), "sk": write_skops(folder / "sk.skops"),
              "swapped": write_onnx(folder / "swapped.onnx", seed=1)}
    models["retiring"] = models["budget"] = models["iris"]
    # One admission through the real CLI; the rest through the registry (the same code).
    added = _cli(db, folder, "models", "add", "iris", models["iris"], "--schema", schema_file)
    assert added.returncode == 0, added.output
    for name in ("sk", "swapped", "retiring", "budget"):
        registry.admit(db.engine, name, models[name], loader=_loader(models[name]),
                       input_schema=SCHEMA)
    tokens: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for principal, (groups, grants) in PRINCIPALS.items():
        issued = keys.create_key(db.engine, principal, groups=groups)
        tokens[principal], key_ids[principal] = issued.secret, issued.key_id
        for model, permission in grants:
            access.grant(db.engine, f"user:{principal}", model, permission,
                         separation_of_duties=True)
    for subject, model, permission in GROUP_GRANTS:
        access.grant(db.engine, subject, model, permission, separation_of_duties=True)
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    expired = keys.create_key(db.engine, "p-expired", expires=timedelta(hours=1), now=long_ago)
    access.grant(db.engine, "user:p-expired", "iris", "scores", separation_of_duties=True)
    tokens["p-expired"] = expired.secret

    # The schema through the environment here (the other gateways take --db-schema).
    env = {"BASTION_GATEWAY_DB_SCHEMA": db.schema} if db.schema else {}
    gateway = start(["--db", db.url, "--policy", str(_policy(folder, issuer))],
                    log=folder / "gateway.log", cwd=folder, env=env)
    http = gateway.client()
    try:
        yield World(db, gateway, folder, models, tokens, key_ids, issuer, http)
    finally:
        http.close()
        gateway.close()
    output = gateway.output()
    assert "Traceback" not in output, output[-5000:]
    assert gateway.stopped == 0, output[-3000:]  # SIGTERM is a clean stop


def _loader(path: Path) -> str:
    return "onnx" if path.suffix == ".onnx" else "sklearn"


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


# -- permission levels ----------------------------------------------------------------------------


def test_predict_gives_labels_only(live: World) -> None:
    answer = live.predict("iris", "p-predict",
                          json.dumps({"inputs": [ROW, [0.9, 0.8, 0.7, 0.6]]}).encode())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"model", "version", "labels"}
    assert body["model"] == "iris"
    assert body["version"] == "1"
    assert len(body["labels"]) == 2
    # predict alone opens nothing else
    _error(live.get("/v1/models/iris/download", "p-predict"), 403, "forbidden")
    _error(live.http.post("/v1/models/iris/explain", content=BODY,
                          headers=live.auth("p-predict")), 403, "forbidden")


def test_scores_are_rounded_probabilities(live: World) -> None:
    for model in ("iris", "sk"):
        answer = live.predict(model, "p-scores")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["classes"] == [0, 1]
        (row,) = body["scores"]
        assert len(row) == 2
        assert abs(sum(row) - 1) <= 10 ** -PRECISION
        assert all(round(v, PRECISION) == v for v in row), row
        assert body["labels"] == [row.index(max(row))]
    pinned = live.predict("sk/versions/1", "p-scores")
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["version"] == "1"
    _error(live.predict("sk/versions/9", "p-scores"), 404, "not_found")


def test_explain_is_501_for_onnx(live: World) -> None:
    url = "/v1/models/iris/explain"
    headers = {"Content-Type": "application/json"}
    answer = live.http.post(url, content=BODY, headers={**live.auth("p-explain"), **headers})
    assert "cannot explain" in _error(answer, 501, "not_implemented")
    answer = live.http.post(url, content=BODY, headers={**live.auth("p-scores"), **headers})
    _error(answer, 403, "forbidden")
    _error(live.predict("iris", "p-explain"), 403, "forbidden")


def test_download_sends_the_admitted_bytes(live: World) -> None:
    answer = live.get("/v1/models/iris/download", "p-download")
    assert answer.status_code == 200, answer.text
    assert answer.content == live.models["iris"].read_bytes()
    assert answer.headers["content-type"] == "application/octet-stream"
    assert "iris.onnx" in answer.headers["content-disposition"]
    _error(live.get("/v1/models/iris/download", "p-scores"), 403, "forbidden")
    _error(live.predict("iris", "p-download"), 403, "forbidden")
    described = live.get("/v1/models/iris", "p-download").json()
    assert described["permissions"] == ["download"]


def test_metrics_need_admin(live: World) -> None:
    before = len(_in_process_export(live.db))
    _error(live.get("/metrics", None), 401, "missing")
    _error(live.get("/metrics", "p-scores"), 403, "forbidden")
    answer = live.get("/metrics", "p-admin")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert "bastion_gateway_requests_total" in answer.text
    assert "bastion_gateway_denials_total" in answer.text
    # Scrapes are requests like any other: the refused ones above all, in the audit log.
    scrapes = [(e["principal"], e["status"], e["reason"])
               for e in _in_process_export(live.db)[before:] if e["permission"] == "metrics"]
    assert scrapes == [("-", 401, "missing"), ("p-scores", 403, "forbidden"),
                       ("p-admin", 200, "ok")]
    # admin on every model is not a right to query one
    _error(live.predict("iris", "p-admin"), 403, "forbidden")


def test_models_without_a_grant_are_invisible(live: World) -> None:
    missing = _error(live.predict("no-such-model", "p-none"), 404, "not_found")
    hidden = _error(live.predict("iris", "p-none"), 404, "not_found")
    assert hidden == missing.replace("no-such-model", "iris")  # nothing tells them apart
    _error(live.get("/v1/models/iris/download", "p-none"), 404, "not_found")
    _error(live.get("/v1/models/iris", "p-none"), 404, "not_found")
    assert live.get("/v1/models", "p-none").json() == {"models": []}
    _error(live.predict("iris", "p-other"), 404, "not_found")
    assert live.predict("sk", "p-other").status_code == 200
    listed = live.get("/v1/models", "p-other").json()["models"]
    assert [(m["name"], m["permissions"]) for m in listed] == [("sk", ["scores"])]


def test_separation_of_duties(live: World) -> None:
    refused = live.cli("access", "grant", "user:p-download", "iris", "predict")
    assert refused.returncode == 2, refused.output
    assert "separation of duties" in refused.stderr
    assert live.predict("iris", "p-download").status_code == 403  # still not granted
    # Each group's grant is fine alone; a key in both groups holds both kinds of access.
    for request in (lambda: live.predict("iris", "p-sod"),
                    lambda: live.get("/v1/models/iris/download", "p-sod")):
        assert "white-box" in _error(request(), 403, "separation_of_duties")
    shown = live.cli("access", "check", "p-sod", "iris")
    assert shown.returncode == 0, shown.output
    assert "CONFLICT" in shown.stdout
    assert "group:g-query" in shown.stdout
    assert "group:g-weights" in shown.stdout


# -- authentication -------------------------------------------------------------------------------


def test_bad_api_keys_are_refused(live: World) -> None:
    good = live.tokens["p-scores"]
    key_id = live.key_ids["p-scores"]
    forged = f"bst_{key_id}_{'A' * 43}"
    unknown = f"bst_{'a' * 12}_{good[-43:]}"
    for token, code in ((good[:-1], "auth_malformed"), (good + "x", "auth_malformed"),
                        ("bst_", "auth_malformed"), (forged, "auth_invalid"),
                        (unknown, "auth_unknown"), (live.tokens["p-expired"], "auth_expired")):
        answer = live.predict("iris", token)
        _error(answer, 401, code)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    _error(live.predict("iris", None), 401, "missing")
    _error(live.predict("iris", None, headers={"Authorization": f"Basic {good}"}), 401,
           "malformed")
    # the key also works from X-API-Key
    assert live.http.post("/v1/models/iris/predict", content=BODY,
                          headers={"X-API-Key": good}).status_code == 200


def test_revocation_takes_effect_at_once(live: World) -> None:
    assert live.predict("iris", "p-revoked").status_code == 200
    revoked = live.cli("keys", "revoke", live.key_ids["p-revoked"])
    assert revoked.returncode == 0, revoked.output
    _error(live.predict("iris", "p-revoked"), 401, "auth_revoked")


def test_jwt_tokens_map_to_principals_and_groups(live: World) -> None:
    carol = live.predict("iris", live.issuer.token("carol"))
    assert carol.status_code == 200, carol.text
    assert "scores" in carol.json()
    dave = live.predict("iris", live.issuer.token("dave", alg="ES256", groups=["jwt-team"]))
    assert dave.status_code == 200, dave.text
    assert set(dave.json()) == {"model", "version", "labels"}  # predict via the group
    # the token's subject is oidc:<sub>: no grant for "eve", and never an API-key user's
    _error(live.predict("iris", live.issuer.token("eve")), 404, "not_found")
    _error(live.predict("iris", live.issuer.token("p-scores")), 404, "not_found")


@pytest.mark.parametrize("case", ["alg-none", "hs256-public-pem", "hs256-jwk", "expired",
                                  "wrong-audience", "wrong-issuer", "unknown-kid",
                                  "foreign-key", "no-expiry", "not-a-jwt"])
def test_bad_tokens_are_refused(live: World, case: str) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    idp = live.issuer
    claims = idp.claims("carol")
    token = {
        "alg-none": lambda: _compact({"alg": "none", "typ": "JWT"}, claims, b""),
        "hs256-public-pem": lambda: _hs256({"alg": "HS256", "kid": "rsa-1"}, claims,
                                           idp.rsa_public_pem),
        "hs256-jwk": lambda: _hs256({"alg": "HS256", "kid": "rsa-1"}, claims,
                                    idp.rsa_jwk.encode()),
        "expired": lambda: idp.token("carol", exp=int(time.time()) - 3600,
                                     iat=int(time.time()) - 7200, nbf=None),
        "wrong-audience": lambda: idp.token("carol", aud="someone-else"),
        "wrong-issuer": lambda: idp.token("carol", iss="https://evil.example.test"),
        "unknown-kid": lambda: jwt.encode(claims, idp.rsa, algorithm="RS256",
                                          headers={"kid": "rsa-9"}),
        "foreign-key": lambda: jwt.encode(
            claims, rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256", headers={"kid": "rsa-1"}),
        "no-expiry": lambda: idp.token("carol", exp=None),
        "not-a-jwt": lambda: "eyJhbGciOi.not-base64!.x",
    }[case]()
    expected = {"alg-none": "auth_bad_algorithm", "hs256-public-pem": "auth_bad_algorithm",
                "hs256-jwk": "auth_bad_algorithm", "expired": "auth_expired",
                "wrong-audience": "auth_bad_audience", "wrong-issuer": "auth_bad_issuer",
                "unknown-kid": "auth_unknown_key", "foreign-key": "auth_bad_signature",
                "no-expiry": "auth_malformed", "not-a-jwt": "auth_malformed"}[case]
    answer = live.predict("iris", token)
    _error(answer, 401, expected)
    assert token not in live.gateway.output()  # no token is ever logged


# -- inputs ---------------------------------------------------------------------------------------


def test_body_limits(live: World) -> None:
    big = b'{"inputs": [' + b"0.5, " * (MAX_BODY // 5) + b"0.5]}"
    assert len(big) > MAX_BODY
    _error(live.predict("iris", "p-scores", big), 413, "too_large")
    _error(live.predict("iris", None, big), 413, "too_large")  # before authentication

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"0.5, " * 819 + b"0.5,"
        yield b"0.5]}"

    answer = live.http.post("/v1/models/iris/predict", content=chunks(),
                            headers=live.auth("p-scores"))
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in answer.request.headers
    _error(answer, 413, "too_large")
    batch = json.dumps({"inputs": [ROW] * 9}).encode()
    assert "at most 8" in _error(live.predict("iris", "p-scores", batch), 413, "bad_input")
    assert live.predict("iris", "p-scores", json.dumps({"inputs": [ROW] * 8}).encode()) \
        .status_code == 200


def test_client_leaving_mid_body_is_audited(live: World) -> None:
    """A client that declares more body than it sends and hangs up: no traceback in the
    gateway's log (checked at teardown), an audit entry all the same."""
    import socket

    before = _entries(live.db)
    head = (f"POST /v1/models/iris/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {live.tokens['p-scores']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", live.gateway.port), timeout=10) as sock:
        sock.sendall(head + BODY)
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while _entries(live.db) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    last = _in_process_export(live.db)[-1]
    assert last["seq"] == before + 1
    assert (last["decision"], last["status"], last["reason"]) \
        == ("deny", 400, "client_disconnected")


def test_a_body_with_a_byte_order_mark_is_read(live: World) -> None:
    body = b"\xef\xbb\xbf" + b'{"inputs": [[0.1, 0.2, 0.3, 0.4]]}'
    assert live.predict("iris", "p-scores", body).status_code == 200


@pytest.mark.parametrize(("body", "says"), [
    (b"not json at all", "not valid JSON"),
    (b'{"inputs": [[0.1, 0.2, 0.3', "not valid JSON"),
    (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not valid JSON"),  # too deep
    (b'{"inputs": [[0.1, 0.2, 0.3, 0.4]], "note": "\xff"}', "not valid JSON"),  # not UTF-8
    (b"[[0.1, 0.2, 0.3, 0.4]]", "expected a JSON object"),
    (b'{"rows": [[0.1, 0.2, 0.3, 0.4]]}', "expected a JSON object"),
    (b'{"inputs": [[0.1, 0.2, 0.3]]}', "must have 4"),
    (b'{"inputs": [[0.1, 0.2, 0.3, 1.5]]}', "above the maximum 1"),
    (b'{"inputs": [[0.1, 0.2, 0.3, -1]]}', "below the minimum 0"),
    (b'{"inputs": [[0.1, 0.2, 0.3, "0.4"]]}', "is a string"),
    (b'{"inputs": [[0.1, 0.2, 0.3, NaN]]}', "NaN"),
    (b'{"inputs": [0.1, 0.2, 0.3, 0.4]}', "must be a list"),
    (b'{"inputs": []}', "empty batch"),
])
def test_schema_violations_are_422(live: World, body: bytes, says: str) -> None:
    assert says in _error(live.predict("iris", "p-scores", body), 422, "bad_input")


# -- the registry ---------------------------------------------------------------------------------


def test_swapped_model_file_is_refused(live: World) -> None:
    path = live.models["swapped"]
    write_onnx(path, seed=7)  # after admission, before the gateway ever loaded it
    message = _error(live.predict("swapped", "p-scores"), 503, "integrity")
    assert str(path) in message
    assert "changed since admission" in message
    message = _error(live.get("/v1/models/swapped/download", "p-download"), 503, "integrity")
    assert str(path) in message
    assert "changed since admission of swapped@1" in live.gateway.output()
    assert live.predict("iris", "p-scores").status_code == 200  # the others still serve


def test_retired_model_is_gone_within_refresh_seconds(live: World) -> None:
    assert live.predict("retiring", "p-scores").status_code == 200
    registry.retire(live.db.engine, "retiring", "1")
    # The gateway may answer from what it read before for up to refresh-seconds, not longer.
    time.sleep(REFRESH + 0.05)
    _error(live.predict("retiring", "p-scores"), 404, "not_found")
    assert "retiring" not in {m["name"] for m in live.get("/v1/models", "p-scores")
                              .json()["models"]}


# -- quotas and the audit log ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    url: str  # the gateway that answered
    status: int
    retry_after: str | None
    digest: str  # sha256 of the body sent


def _load(jobs: list[tuple[str, str, bytes]], clients: int) -> list[Reply]:
    """POST each (gateway URL, token, body) job to the gateway's ``budget`` model from
    ``clients`` threads that start together, each with connections of its own."""
    slices = [jobs[i::clients] for i in range(clients)]
    replies: list[Reply] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(mine: list[tuple[str, str, bytes]]) -> None:
        try:
            with httpx.Client(timeout=60) as http:
                barrier.wait(timeout=60)
                for url, token, body in mine:
                    answer = http.post(f"{url}/v1/models/budget/predict", content=body,
                                       headers={"Authorization": f"Bearer {token}"})
                    with lock:
                        replies.append(Reply(url, answer.status_code,
                                             answer.headers.get("retry-after"),
                                             hashlib.sha256(body).hexdigest()))
        except BaseException as exc:  # reported below, never lost in a thread
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(s,)) for s in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert len(replies) == len(jobs)
    return replies


def _verify(db: Db, cwd: Path) -> dict[str, Any]:
    """``bastion audit-log verify --json``: exit 0 with ok, 1 without."""
    result = _cli(db, cwd, "audit-log", "verify", "--json")
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1), result.output
    return report


def _export(db: Db, cwd: Path) -> list[dict[str, Any]]:
    """``bastion audit-log export -o FILE``, read back."""
    out = cwd / f"audit-{uuid.uuid4().hex[:8]}.jsonl"
    result = _cli(db, cwd, "audit-log", "export", "-o", out)
    assert result.returncode == 0, result.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _entries(db: Db) -> int:
    """How many entries the log holds, the chain checked in-process (cheaper than the CLI
    where the count is only a starting point)."""
    report = audit.verify(db.engine)
    assert report.ok, report
    return report.entries


def test_quota_is_exact_under_50_clients_and_every_request_is_audited(live: World) -> None:
    before = _entries(live.db)
    who = f"q-{uuid.uuid4().hex[:8]}"
    token = live.user(who, [("budget", "scores")])
    url = live.gateway.url
    jobs = [(url, token, json.dumps({"inputs": [[i / 1000, 0.5, 0.5, 0.5]]}).encode())
            for i in range(BUDGET + 80)]
    denied = [(url, live.tokens["p-none"], BODY)] * 10 \
        + [(url, f"bst_{'b' * 12}_{'c' * 43}", BODY)] * 10
    replies = _load(jobs + denied, clients=50)
    plain = hashlib.sha256(BODY).hexdigest()
    mine = [r for r in replies if r.digest != plain]
    statuses = Counter(r.status for r in mine)
    assert statuses == {200: BUDGET, 429: 80}, statuses
    assert all(r.retry_after is not None and int(r.retry_after) >= 1
               for r in mine if r.status == 429)
    others = Counter(r.status for r in replies if r.digest == plain)
    assert others == {404: 10, 401: 10}, others

    after = _verify(live.db, live.folder)
    assert after["ok"], after
    assert after["entries"] == before + len(jobs) + len(denied)
    entries = _export(live.db, live.folder)[before:]
    assert Counter((e["principal"], e["decision"], e["status"]) for e in entries
                   if e["principal"] == who) == {(who, "allow", 200): BUDGET,
                                                 (who, "rate_limited", 429): 80}
    assert Counter((e["decision"], e["status"]) for e in entries if e["principal"] != who) \
        == {("deny", 404): 10, ("deny", 401): 10}
    assert {e["input_digest"] for e in entries if e["status"] == 200} \
        == {r.digest for r in mine if r.status == 200}


def test_audit_verify_detects_a_tampered_row(live: World) -> None:
    assert live.predict("iris", "p-scores").status_code == 200
    seq = _entries(live.db) // 2
    table = f'"{live.db.schema}".bastion_audit_log' if live.db.schema else "bastion_audit_log"
    with live.db.engine.begin() as conn:
        original = conn.execute(text(f"SELECT status FROM {table} WHERE seq = :s"),
                                {"s": seq}).scalar_one()
        conn.execute(text(f"UPDATE {table} SET status = :n WHERE seq = :s"),
                     {"s": seq, "n": original + 1})
    try:
        broken = live.cli("audit-log", "verify")
        assert broken.returncode == 1, broken.output
        assert f"BROKEN at entry {seq}:" in broken.stdout
    finally:
        with live.db.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET status = :o WHERE seq = :s"),
                         {"s": seq, "o": original})
    assert _verify(live.db, live.folder)["ok"]  # put back, it verifies again


def test_the_log_holds_no_key_and_no_input(live: World) -> None:
    """After all of the above: the access log is on (the policy's log-level, info) and
    names requests, never a key, a token or an input."""
    assert live.predict("iris", "p-scores").status_code == 200
    output = live.gateway.output()
    assert '"POST /v1/models/iris/predict HTTP/1.1" 200' in output
    assert not [who for who, token in live.tokens.items() if token in output]
    assert "0.1, 0.2, 0.3, 0.4" not in output
    assert "eyJ" not in output  # no JWT either


# -- schemathesis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("live", ["sqlite"], indirect=True)
def test_schemathesis_finds_no_server_error(live: World) -> None:
    """The gateway's own OpenAPI document, fuzzed with a key that may query ``iris`` and read
    the metrics: no 5xx. The path's model name is pinned to ``iris`` and the document's
    generic ``inputs`` array is narrowed to that model's input schema, so that the valid
    cases reach the model itself (the invalid ones are generated all the same)."""
    import subprocess
    import sys

    document = live.http.get("/openapi.json").json()
    row = {"type": "array", "minItems": 4, "maxItems": 4,
           "items": {"type": "number", "minimum": 0, "maximum": 1}}
    narrowed = 0
    for path, operations in document["paths"].items():
        if path.endswith(("/predict", "/explain")):
            body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
            body["properties"]["inputs"] = {"type": "array", "minItems": 1, "maxItems": 8,
                                            "items": row}
            narrowed += 1
    assert narrowed == 3
    spec = live.folder / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    config = live.folder / "schemathesis.toml"
    config.write_text('[parameters]\n"path.name" = "iris"\n"path.version" = "1"\n',
                      encoding="utf-8")
    before = _entries(live.db)
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         str(spec), "--url", live.gateway.url, "--checks", "not_a_server_error",
         "--max-examples", "50", "--seed", "20260101", "--no-color",
         "--request-timeout", "30",
         "--header", f"Authorization: Bearer {live.tokens['p-fuzz']}"],
        cwd=live.folder, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_COLOR": "1"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "passed" in output, output[-3000:]
    fuzzed = [e for e in _in_process_export(live.db)[before:] if e["principal"] == "p-fuzz"]
    statuses = Counter(e["status"] for e in fuzzed)
    assert len(fuzzed) > 100, statuses  # it did reach the gateway
    assert statuses[200] > 10, statuses  # and the model
    assert statuses[422] > 10, statuses  # and the input checks
    assert not [s for s in statuses if s >= 500], statuses


# -- several gateways, and gateways that stop -----------------------------------------------------


def _own_world(tmp_path: Path, db: Db, issuer: Issuer, model: str) -> tuple[Path, str]:
    """``model`` admitted, with a grant for a fresh principal; (policy, token). The policy
    gives ``budget`` a day's budget of ``BUDGET``; other models have room to spare."""
    path = write_onnx(tmp_path / f"{model}.onnx")
    registry.admit(db.engine, model, path, loader="onnx", input_schema=SCHEMA)
    who = f"r-{uuid.uuid4().hex[:8]}"
    issued = keys.create_key(db.engine, who)
    access.grant(db.engine, f"user:{who}", model, "scores", separation_of_duties=True)
    return _policy(tmp_path, issuer, log_level="warning"), issued.secret


def test_two_gateways_share_one_redis_budget(tmp_path: Path, databases: Callable[[str], Db],
                                             issuer: Issuer) -> None:
    import redis

    db = databases("postgresql")
    policy, token = _own_world(tmp_path, db, issuer, "budget")
    prefix = f"bastion-test-{uuid.uuid4().hex[:12]}"
    env = {"BASTION_GATEWAY_REDIS_PREFIX": prefix}
    args = [*_serve_args(db, policy), "--redis-url", REDIS_URL]
    first = start(args, log=tmp_path / "one.log", cwd=tmp_path, env=env)
    try:
        second = start(args, log=tmp_path / "two.log", cwd=tmp_path, env=env)
        try:
            # Job i goes to client i % 20: each client alternates between the gateways,
            # and half the clients start on each, so both serve from the first moment.
            urls = (first.url, second.url)
            jobs = [(urls[(i + i // 20) % 2], token,
                     json.dumps({"inputs": [[i / 1000, 0.1, 0.2, 0.3]]}).encode())
                    for i in range(2 * BUDGET)]
            replies = _load(jobs, clients=20)
        finally:
            second.close()
    finally:
        first.close()
        client = redis.Redis.from_url(REDIS_URL)
        stale = list(client.scan_iter(match=f"{prefix}*"))
        if stale:
            client.delete(*stale)
        client.close()
    assert stale, "the gateways kept no quota state in Redis"
    counts = Counter((r.url, r.status) for r in replies)
    assert counts[first.url, 200] + counts[second.url, 200] == BUDGET, counts
    assert counts[first.url, 429] + counts[second.url, 429] == BUDGET, counts
    assert counts[first.url, 200] > 0, counts  # both served, from one budget
    assert counts[second.url, 200] > 0, counts
    assert _entries(db) == 2 * BUDGET  # two processes, one chain
    for gateway in (first, second):
        assert gateway.stopped == 0
        assert "Traceback" not in gateway.output()


def _hammer(gateway: Gateway, token: str, stop: threading.Event, threads: int,
            ok: list[str], lock: threading.Lock) -> list[threading.Thread]:
    """Client threads sending distinct bodies until ``stop`` or the gateway goes away;
    ``ok`` receives the sha256 of each body answered 200."""

    def client(number: int) -> None:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            sent = 0
            while not stop.is_set():
                body = json.dumps({"inputs": [[number / 100, (sent % 1000) / 1000,
                                               (sent // 1000) / 1000, 0.5]]}).encode()
                sent += 1
                try:
                    answer = http.post("/v1/models/served/predict", content=body,
                                       headers={"Authorization": f"Bearer {token}"})
                except httpx.TransportError:
                    return  # the gateway is gone
                if answer.status_code == 200:
                    with lock:
                        ok.append(hashlib.sha256(body).hexdigest())

    started = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
    for thread in started:
        thread.start()
    return started


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_during_load_loses_no_answered_request(tmp_path: Path, backend: str,
                                                      databases: Callable[[str], Db],
                                                      issuer: Issuer) -> None:
    db = databases(backend)
    policy, token = _own_world(tmp_path, db, issuer, "served")
    args = _serve_args(db, policy)
    gateway = start(args, log=tmp_path / "gateway.log", cwd=tmp_path)
    ok: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        threads = _hammer(gateway, token, stop, 6, ok, lock)
        deadline = time.monotonic() + 30
        while len(ok) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        gateway.kill()  # kill -9, in the middle of the load
        assert gateway.stopped == -signal.SIGKILL
    finally:
        stop.set()
        gateway.close()
    for thread in threads:
        thread.join(30)
    answered = set(ok)
    assert len(answered) == len(ok) >= 60
    report = _verify(db, tmp_path)
    assert report["ok"], report
    entries = _export(db, tmp_path)
    logged = {e["input_digest"] for e in entries if e["status"] == 200}
    assert answered <= logged, f"{len(answered - logged)} answered requests are not in the log"
    assert len(entries) >= len(answered)

    # A new gateway on the same database continues the same chain.
    again = start(args, log=tmp_path / "again.log", cwd=tmp_path)
    try:
        with again.client() as http:
            answer = http.post("/v1/models/served/predict", content=BODY,
                               headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
    finally:
        again.close()
    assert _entries(db) == report["entries"] + 1


def test_sigterm_drains_requests_in_flight(tmp_path: Path, databases: Callable[[str], Db],
                                           issuer: Issuer) -> None:
    db = databases("sqlite")
    policy, token = _own_world(tmp_path, db, issuer, "served")
    # The port and host from the environment, the log level from the policy.
    gateway = start(_serve_args(db, policy), log=tmp_path / "gateway.log", cwd=tmp_path,
                    port_from_env=True)
    ok: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    halfway = threading.Event()
    slow: dict[str, Any] = {}
    body = json.dumps({"inputs": [[0.25, 0.25, 0.25, 0.25]]}).encode()

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        halfway.set()
        time.sleep(2.0)  # SIGTERM arrives now, with this request half received
        yield body[10:]

    def slow_client() -> None:
        try:
            with gateway.client() as http:
                slow["answer"] = http.post("/v1/models/served/predict", content=slow_body(),
                                           headers={"Authorization": f"Bearer {token}"})
        except BaseException as exc:
            slow["error"] = exc

    try:
        threads = _hammer(gateway, token, stop, 3, ok, lock)
        deadline = time.monotonic() + 30
        while len(ok) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        waiter = threading.Thread(target=slow_client)
        waiter.start()
        assert halfway.wait(30)
        time.sleep(0.8)  # the gateway has read the headers: the request is in flight
        gateway.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = gateway.wait(15)
        took = time.monotonic() - signalled
    finally:
        stop.set()
        gateway.close()
    waiter.join(30)
    for thread in threads:
        thread.join(30)
    assert code == 0, gateway.output()[-3000:]
    assert took < 10 + 2  # the graceful timeout of `bastion serve`, and some slack
    assert "error" not in slow, slow.get("error")
    assert slow["answer"].status_code == 200, slow["answer"].text  # drained, not dropped
    assert "Traceback" not in gateway.output()
    assert "POST /v1/models" not in gateway.output()  # the policy's log-level: warning
    assert _entries(db) >= len(ok) + 1
    logged = {e["input_digest"] for e in _in_process_export(db) if e["status"] == 200}
    assert set(ok) | {hashlib.sha256(body).hexdigest()} <= logged


def _in_process_export(db: Db) -> list[dict[str, Any]]:
    import io

    stream = io.StringIO()
    audit.export_jsonl(db.engine, stream)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


_JWKS_FILE = 'jwks = "jwks.json"'


@pytest.mark.parametrize(("args", "jwt", "says"), [
    # In-process quotas are per process: several workers need Redis to share one budget.
    (["--workers", "2"], _JWKS_FILE, "--workers 2 without --redis-url"),
    (["--redis-url", "localhost:6379"], _JWKS_FILE, "redis-url: Value error, a redis://"),
    ([], f'{_JWKS_FILE}\nalgorithms = ["HS256"]', "algorithms HS256 are not allowed"),
    ([], 'jwks = "http://idp.example.test/jwks.json"', "must use https"),
])
def test_serve_refuses_bad_settings_in_one_message(tmp_path: Path, args: list[str], jwt: str,
                                                    says: str) -> None:
    policy = tmp_path / "bastion.toml"
    policy.write_text(f'[gateway.jwt]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n{jwt}\n',
                      encoding="utf-8")
    result = run_cli("serve", "--db", f"sqlite:///{tmp_path / 'g.db'}", "--policy", policy,
                     *args, cwd=tmp_path, timeout=60)
    result.assert_clean()
    assert result.returncode == 2, result.output
    assert says in result.stderr
    assert "internal error" not in result.stderr
