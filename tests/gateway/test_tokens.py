"""OIDC/JWT bearer tokens: real keys (RSA, EC, Ed25519), real signatures, a real JWKS
server on 127.0.0.1, and every way a token can be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from bastion.gateway.errors import AuthError
from bastion.gateway.tokens import JWKSError, JWTAuthenticator, fetch_url

ISSUER = "https://idp.example.test/realms/ml"
AUDIENCE = "bastion-gateway"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}[self.kty]
        data = dict(algorithm.to_jwk(public, as_dict=True))
        data.update(kid=self.kid, use="sig", **extra)
        return data

    @property
    def kty(self) -> str:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return "RSA"
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return "EC"
        return "OKP"

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any] | None = None, *, kid: str | None = "same",
             alg: str | None = None, **overrides: Any) -> str:
        headers = {} if kid is None else {"kid": self.kid if kid == "same" else kid}
        payload = claims if claims is not None else good_claims(**overrides)
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=headers)


def good_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now,
                              "exp": now + 300, "groups": ["ml-team", "readers"]}
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return SigningKey("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def other_rsa() -> SigningKey:
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    """Write a JWKS and make sure its mtime moves even on a coarse-grained file system."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(json.dumps({"keys": list(keys)}))
    after = max(before + 1_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(after, after))
    return path


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey,
              ed_key: SigningKey) -> Path:
    return write_jwks(tmp_path / "jwks.json", rsa_key.jwk(), ec_key.jwk(), ed_key.jwk())


@pytest.fixture
def auth(jwks_file: Path) -> JWTAuthenticator:
    return JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE)


def reason(auth: JWTAuthenticator, token: str) -> str:
    with pytest.raises(AuthError) as info:
        auth.authenticate(token)
    if len(token) > 8:
        assert token not in info.value.message  # the credential never echoes back
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()),
                     b64(signature)])


# -- valid tokens ------------------------------------------------------------------------------

@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key", "ed_key"])
def test_valid_token_maps_to_principal(auth: JWTAuthenticator, key_name: str,
                                       request: pytest.FixtureRequest) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    principal = auth.authenticate(key.sign())
    assert principal.name == "oidc:alice"
    assert principal.groups == frozenset({"ml-team", "readers"})
    assert principal.via == "jwt"
    assert principal.key_id is None


def test_groups_claim_forms(jwks_file: Path, rsa_key: SigningKey) -> None:
    plain = JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE)
    assert plain.authenticate(rsa_key.sign(groups="a b  c")).groups == {"a", "b", "c"}
    assert plain.authenticate(rsa_key.sign(groups=None)).groups == frozenset()
    nested = JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE,
                              groups_claim="realm_access.roles", principal_prefix="")
    token = rsa_key.sign(realm_access={"roles": ["admins"]}, groups=None)
    principal = nested.authenticate(token)
    assert principal.name == "alice"
    assert principal.groups == {"admins"}
    assert reason(plain, rsa_key.sign(groups=[f"g{i}" for i in range(300)])) == "malformed"
    assert reason(plain, rsa_key.sign(groups=["ok", 7])) == "malformed"
    assert reason(plain, rsa_key.sign(groups={"a": 1})) == "malformed"


def test_audience_list_and_custom_principal_claim(jwks_file: Path, ec_key: SigningKey) -> None:
    auth = JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE,
                            principal_claim="email")
    token = ec_key.sign(aud=["other", AUDIENCE], email="bob@example.test")
    assert auth.authenticate(token).name == "oidc:bob@example.test"
    assert reason(auth, ec_key.sign()) == "malformed"  # no email claim


def test_leeway_is_honoured(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    now = int(time.time())
    assert auth.authenticate(rsa_key.sign(exp=now - 10)).name == "oidc:alice"  # within 30 s
    assert auth.authenticate(rsa_key.sign(nbf=now + 10)).name == "oidc:alice"


# -- refused tokens --------------------------------------------------------------------------

def test_expired(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    assert reason(auth, rsa_key.sign(exp=int(time.time()) - 120)) == "expired"


def test_not_yet_valid(auth: JWTAuthenticator, ed_key: SigningKey) -> None:
    assert reason(auth, ed_key.sign(nbf=int(time.time()) + 600)) == "not_yet_valid"


def test_wrong_issuer_and_audience(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    assert reason(auth, rsa_key.sign(iss="https://evil.example.test")) == "bad_issuer"
    assert reason(auth, rsa_key.sign(aud="someone-else")) == "bad_audience"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
def test_required_claims(auth: JWTAuthenticator, rsa_key: SigningKey, missing: str) -> None:
    assert reason(auth, rsa_key.sign(**{missing: None})) == "malformed"


def test_alg_none_refused(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT", "kid": rsa_key.kid}, good_claims())
        assert reason(auth, token) == "bad_algorithm"
    assert reason(auth, forge({"typ": "JWT"}, good_claims())) == "bad_algorithm"


def test_hs256_key_confusion_refused(jwks_file: Path, rsa_key: SigningKey) -> None:
    """The classic attack: HMAC-sign with the issuer's *public* key as the secret."""
    secret = rsa_key.public_pem()
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    signing_input = ".".join([b64(json.dumps(header).encode()),
                              b64(json.dumps(good_claims()).encode())])
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + b64(signature)
    auth = JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE)
    assert reason(auth, token) == "bad_algorithm"
    # Even a JWKS that also holds a symmetric key, with HS256 asked for, cannot be fooled.
    with pytest.raises(ValueError, match="not allowed"):
        JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE,
                         algorithms=("RS256", "HS256"))
    with pytest.raises(ValueError, match="not allowed"):
        JWTAuthenticator(jwks_file, issuer=ISSUER, audience=AUDIENCE, algorithms=("none",))


def test_symmetric_jwks_key_is_ignored(tmp_path: Path, rsa_key: SigningKey) -> None:
    oct_key = {"kty": "oct", "kid": "hmac", "k": b64(b"s" * 32), "alg": "HS256"}
    path = write_jwks(tmp_path / "jwks.json", oct_key, rsa_key.jwk())
    auth = JWTAuthenticator(path, issuer=ISSUER, audience=AUDIENCE)
    header = {"alg": "HS256", "kid": "hmac"}
    signing_input = ".".join([b64(json.dumps(header).encode()),
                              b64(json.dumps(good_claims()).encode())])
    signature = hmac.new(b"s" * 32, signing_input.encode(), hashlib.sha256).digest()
    assert reason(auth, signing_input + "." + b64(signature)) == "bad_algorithm"
    assert auth.authenticate(rsa_key.sign()).name == "oidc:alice"


def test_algorithm_must_fit_the_key(tmp_path: Path, rsa_key: SigningKey,
                                    ec_key: SigningKey) -> None:
    path = write_jwks(tmp_path / "jwks.json", rsa_key.jwk(alg="RS256"), ec_key.jwk())
    auth = JWTAuthenticator(path, issuer=ISSUER, audience=AUDIENCE,
                            algorithms=("RS256", "PS256", "ES256"))
    # PS256 with an RSA key that declares RS256 only.
    assert reason(auth, rsa_key.sign(alg="PS256")) == "bad_algorithm"
    # An RS256 token naming the EC key.
    assert reason(auth, rsa_key.sign(kid=ec_key.kid)) == "bad_algorithm"


def test_unknown_kid_and_missing_kid(auth: JWTAuthenticator, rsa_key: SigningKey,
                                     tmp_path: Path) -> None:
    assert reason(auth, rsa_key.sign(kid="nope")) == "unknown_key"
    assert reason(auth, rsa_key.sign(kid=None)) == "unknown_key"  # three keys: kid needed
    single = write_jwks(tmp_path / "single.json", rsa_key.jwk())
    one = JWTAuthenticator(single, issuer=ISSUER, audience=AUDIENCE)
    assert one.authenticate(rsa_key.sign(kid=None)).name == "oidc:alice"


def test_tampered_payload(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    header, _payload, signature = rsa_key.sign().split(".")
    evil = b64(json.dumps(good_claims(sub="admin", groups=["admins"])).encode())
    assert reason(auth, f"{header}.{evil}.{signature}") == "bad_signature"


def test_signed_by_another_key_with_the_same_kid(auth: JWTAuthenticator,
                                                 other_rsa: SigningKey) -> None:
    assert reason(auth, other_rsa.sign()) == "bad_signature"


def test_signature_checked_before_claims(auth: JWTAuthenticator, other_rsa: SigningKey) -> None:
    """A forged token learns nothing about which claim would have been wrong."""
    assert reason(auth, other_rsa.sign(exp=int(time.time()) - 999)) == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "x" * 20_000, "..."])
def test_malformed(auth: JWTAuthenticator, token: str) -> None:
    assert reason(auth, token) == "malformed"


def test_bad_subjects(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    assert reason(auth, rsa_key.sign(sub="")) == "malformed"
    assert reason(auth, rsa_key.sign(sub="al\x1bice")) == "malformed"
    assert reason(auth, rsa_key.sign(sub=42)) == "malformed"
    assert reason(auth, rsa_key.sign(sub="a" * 300)) == "malformed"


def test_crit_header_refused(auth: JWTAuthenticator, rsa_key: SigningKey) -> None:
    token = jwt.encode(good_claims(), rsa_key.private, algorithm="RS256",
                       headers={"kid": rsa_key.kid, "crit": ["exp"]})
    assert reason(auth, token) == "malformed"


# -- the JWKS file ---------------------------------------------------------------------------

def test_jwks_file_reread_when_changed(tmp_path: Path, rsa_key: SigningKey,
                                       ec_key: SigningKey) -> None:
    path = write_jwks(tmp_path / "jwks.json", rsa_key.jwk())
    auth = JWTAuthenticator(path, issuer=ISSUER, audience=AUDIENCE)
    assert reason(auth, ec_key.sign()) == "unknown_key"
    write_jwks(path, rsa_key.jwk(), ec_key.jwk())
    assert auth.authenticate(ec_key.sign()).name == "oidc:alice"
    # Key removed (say, compromised): refused at once.
    write_jwks(path, ec_key.jwk())
    assert reason(auth, rsa_key.sign()) == "unknown_key"
    # A file broken by an edit fails closed, then recovers when fixed.
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    assert reason(auth, ec_key.sign()) == "jwks_unavailable"
    write_jwks(path, ec_key.jwk())
    assert auth.authenticate(ec_key.sign()).name == "oidc:alice"
    path.unlink()
    assert reason(auth, ec_key.sign()) == "jwks_unavailable"


def test_jwks_weak_or_useless_keys(tmp_path: Path) -> None:
    weak = SigningKey("weak", "RS256", rsa.generate_private_key(65537, 1024))
    path = write_jwks(tmp_path / "jwks.json", weak.jwk())
    auth = JWTAuthenticator(path, issuer=ISSUER, audience=AUDIENCE)
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = weak.sign()
    with pytest.raises(AuthError) as info:
        auth.authenticate(token)
    assert info.value.reason == "jwks_unavailable"
    assert "no usable signing key" in info.value.message
    with pytest.raises(JWKSError, match="no usable"):
        auth.refresh()


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="https"):
        JWTAuthenticator("http://idp.example.test/jwks", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="file path or an http"):
        JWTAuthenticator("ftp://idp.example.test/jwks", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="issuer"):
        JWTAuthenticator(tmp_path / "j.json", issuer="", audience=AUDIENCE)
    with pytest.raises(ValueError, match="audience"):
        JWTAuthenticator(tmp_path / "j.json", issuer=ISSUER, audience=[])


# -- the JWKS URL: a real server on the loopback ---------------------------------------------

@dataclass
class JWKSServer:
    """A JWKS endpoint whose answer a test controls: body, status, delay, drip."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    drip: float = 0.0
    header_drip: float = 0.0
    requests: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def set_keys(self, *keys: dict[str, Any]) -> None:
        self.body = json.dumps({"keys": list(keys)}).encode()


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    state = JWKSServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.delay:
                state.stop.wait(state.delay)
            if state.header_drip:  # a header that never ends, one byte at a time
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not state.stop.wait(state.header_drip):
                    self.wfile.write(b"a")
                    self.wfile.flush()
                return
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            if not state.drip:
                self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            if state.drip:
                for byte in state.body:
                    if state.stop.wait(state.drip):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            else:
                self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()


def url_auth(server: JWKSServer, **kwargs: Any) -> JWTAuthenticator:
    return JWTAuthenticator(server.url, issuer=ISSUER, audience=AUDIENCE, **kwargs)


def test_jwks_url_cached(server: JWKSServer, rsa_key: SigningKey, ec_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk(), ec_key.jwk())
    auth = url_auth(server)
    for _ in range(20):
        assert auth.authenticate(rsa_key.sign()).name == "oidc:alice"
    assert auth.authenticate(ec_key.sign()).groups == {"ml-team", "readers"}
    assert server.requests == 1


def test_unknown_kid_refetches_at_most_once_per_interval(
        server: JWKSServer, rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    auth = url_auth(server, refetch_interval=60)
    assert auth.authenticate(rsa_key.sign()).name == "oidc:alice"
    assert server.requests == 1
    server.set_keys(rsa_key.jwk(), ec_key.jwk())  # the issuer rotates in a new key
    assert auth.authenticate(ec_key.sign()).name == "oidc:alice"
    assert server.requests == 2
    # A flood of made-up kids does not turn into a flood of fetches.
    for i in range(10):
        assert reason(auth, rsa_key.sign(kid=f"bogus-{i}")) == "unknown_key"
    server.set_keys(rsa_key.jwk(), ec_key.jwk(), ed_key.jwk())
    assert reason(auth, ed_key.sign()) == "unknown_key"  # within the interval: no refetch
    assert server.requests == 2


def test_jwks_url_ttl_expiry_refetches(server: JWKSServer, rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    auth = url_auth(server, cache_ttl=0.2)
    auth.authenticate(rsa_key.sign())
    time.sleep(0.3)
    auth.authenticate(rsa_key.sign())
    assert server.requests == 2


def test_stale_keys_serve_through_an_outage_then_expire(server: JWKSServer,
                                                        rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    patient = url_auth(server, cache_ttl=0.1, max_stale=60, failure_retry=0)
    strict = url_auth(server, cache_ttl=0.1, max_stale=0, failure_retry=0)
    patient.authenticate(rsa_key.sign())
    strict.authenticate(rsa_key.sign())
    server.status, server.body = 503, b"down"
    time.sleep(0.2)
    assert patient.authenticate(rsa_key.sign()).name == "oidc:alice"
    assert reason(strict, rsa_key.sign()) == "jwks_unavailable"


@pytest.mark.parametrize(("setup", "words"), [
    ({"body": b"<html>garbage</html>"}, "not JSON"),
    ({"body": b'{"keys": 5}'}, '"keys" list'),
    ({"body": b"[" * 300_000}, "bytes"),
    ({"status": 500, "body": b"{}"}, "HTTP 500"),
])
def test_bad_jwks_server(server: JWKSServer, rsa_key: SigningKey, setup: dict[str, Any],
                         words: str) -> None:
    for name, value in setup.items():
        setattr(server, name, value)
    auth = url_auth(server)
    with pytest.raises(AuthError) as info:
        auth.authenticate(rsa_key.sign())
    assert info.value.reason == "jwks_unavailable"
    assert words in info.value.message


@pytest.mark.parametrize("mode", ["delay", "drip"])
def test_slow_jwks_server_is_bounded(server: JWKSServer, rsa_key: SigningKey,
                                     mode: str) -> None:
    server.set_keys(rsa_key.jwk())
    if mode == "delay":
        server.delay = 30
    else:
        server.drip = 0.05  # ~600 bytes at 20 bytes/s: half a minute
    auth = url_auth(server, fetch_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        auth.authenticate(rsa_key.sign())
    assert time.monotonic() - started < 2.0
    assert info.value.reason == "jwks_unavailable"
    assert "did not answer within 0.5 s" in info.value.message
    # Failed fetches back off: the next request fails fast without a new fetch.
    seen = server.requests
    started = time.monotonic()
    assert reason(auth, rsa_key.sign()) == "jwks_unavailable"
    assert time.monotonic() - started < 0.2
    assert server.requests == seen


def test_hanging_server_holds_at_most_one_fetch(server: JWKSServer,
                                                rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    server.header_drip = 0.05  # each byte within the socket timeout: only a deadline helps
    auth = url_auth(server, fetch_timeout=0.3, failure_retry=0)
    started = time.monotonic()
    assert reason(auth, rsa_key.sign()) == "jwks_unavailable"
    assert time.monotonic() - started < 1.0
    time.sleep(0.5)  # the stuck fetch is still receiving header bytes
    with pytest.raises(AuthError, match="still waiting"):
        auth.authenticate(rsa_key.sign())
    alive = [t for t in threading.enumerate() if t.name == "bastion-jwks-fetch"]
    assert len(alive) <= 1
    assert server.requests == 1


def test_unreachable_jwks_url(rsa_key: SigningKey) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = JWTAuthenticator(f"http://127.0.0.1:{port}/jwks", issuer=ISSUER, audience=AUDIENCE)
    assert reason(auth, rsa_key.sign()) == "jwks_unavailable"
    with pytest.raises(JWKSError, match="cannot be reached"):
        fetch_url(f"http://127.0.0.1:{port}/jwks", timeout=1)


def test_refresh_at_startup(server: JWKSServer, rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    auth = url_auth(server)
    auth.refresh()
    assert server.requests == 1
    auth.authenticate(rsa_key.sign())
    assert server.requests == 1


def test_concurrent_first_use_fetches_once(server: JWKSServer, rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    server.delay = 0.2
    auth = url_auth(server)
    token = rsa_key.sign()
    names: list[str] = []

    def work() -> None:
        names.append(auth.authenticate(token).name)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert names == ["oidc:alice"] * 16
    assert server.requests == 1


def test_concurrent_first_use_against_a_dead_server_waits_once(server: JWKSServer,
                                                               rsa_key: SigningKey) -> None:
    server.set_keys(rsa_key.jwk())
    server.delay = 30
    auth = url_auth(server, fetch_timeout=0.3)
    token = rsa_key.sign()
    reasons: list[str] = []

    def work() -> None:
        try:
            auth.authenticate(token)
        except AuthError as exc:
            reasons.append(exc.reason)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reasons == ["jwks_unavailable"] * 8
    assert time.monotonic() - started < 1.0  # not 8 x 0.3 s one after the other
    assert server.requests == 1
