"""``bastion probe`` against endpoints that misbehave, and the prober's own guarantees.

Every target ends with a clear result within its time bound: unreachable, timeout, TLS error,
not HTTP, an offsite redirect not followed. Only GET/HEAD/OPTIONS leave the prober, only to the
named origin; targets run concurrently within a bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from bastion.exposure._http import Client, Origin, ProbeError
from bastion.exposure.probe import ProbeOptions, probe_targets
from bastion.findings import Report, Severity

from .servers import (
    SocketServer,
    dripping,
    free_port,
    garbage,
    gateway_contract,
    redirecting,
    routes,
    silent,
)

FAST = ProbeOptions(timeout=1.0, deadline=4.0, concurrency=4)


def rule_ids(report: Report) -> list[str]:
    return sorted(f.rule_id for f in report.findings)


def test_closed_port_is_unreachable() -> None:
    port = free_port()
    report = probe_targets([f"http://127.0.0.1:{port}"], FAST)
    assert rule_ids(report) == ["PROBE-UNREACHABLE"]
    assert "refused" in report.findings[0].message.lower()
    assert report.stats.analyzed == 0


def test_silent_server_times_out_within_the_request_timeout() -> None:
    server = SocketServer(lambda conn: None)
    server.handler = silent(server)
    with server:
        started = time.monotonic()
        report = probe_targets([server.url], FAST)
        elapsed = time.monotonic() - started
    assert rule_ids(report) == ["PROBE-TIMEOUT"]
    assert 0.9 <= elapsed < 3
    assert len(server.requests) == 1  # gave up on the target after the first silence


def test_dripping_server_is_cut_at_the_deadline() -> None:
    """Bytes keep coming (each recv within the timeout): only the deadline ends it."""
    server = SocketServer(lambda conn: None)
    server.handler = dripping(server, delay=0.2)
    with server:
        started = time.monotonic()
        report = probe_targets([server.url], ProbeOptions(timeout=1.5, deadline=2.5))
        elapsed = time.monotonic() - started
    assert rule_ids(report) == ["PROBE-TIMEOUT"]
    assert elapsed < 4


def test_garbage_answer_is_not_http() -> None:
    server = SocketServer(lambda conn: None)
    server.handler = garbage(server)
    with server:
        report = probe_targets([server.url], FAST)
    assert rule_ids(report) == ["PROBE-NOT-HTTP"]
    assert "not an HTTP response" in report.findings[0].message
    assert "\\x" in report.findings[0].message  # control bytes shown escaped, never raw


def test_tls_to_a_plain_http_port_is_a_tls_error() -> None:
    server = SocketServer(lambda conn: None)
    server.handler = routes(server, lambda m, p, h: (200, {}, b"plain"))
    with server:
        report = probe_targets([f"https://127.0.0.1:{server.port}"], FAST)
    assert rule_ids(report) == ["PROBE-TLS-ERROR"]


def test_redirect_to_another_host_is_not_followed() -> None:
    target = SocketServer(lambda conn: None)  # the redirect's target must see nothing
    target.handler = routes(target, lambda m, p, h: (200, {}, b"{}"))
    with target:
        server = SocketServer(lambda conn: None)
        server.handler = redirecting(server, f"http://localhost:{target.port}/login")
        with server:
            report = probe_targets([server.url], FAST)
        assert target.requests == []
    assert rule_ids(report) == ["PROBE-REDIRECT-OFFSITE", "PROBE-UNKNOWN-SERVER"]
    offsite = next(f for f in report.findings if f.rule_id == "PROBE-REDIRECT-OFFSITE")
    assert f"localhost:{target.port}" in offsite.message


def test_only_read_only_methods_reach_the_server() -> None:
    seen: list[str] = []

    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        seen.append(method)
        return 404, {}, b"not found"

    server = SocketServer(lambda conn: None)
    server.handler = routes(server, table)
    with server:
        report = probe_targets([server.url], FAST)
        client = Client(Origin.parse(server.url), timeout=1, deadline=time.monotonic() + 5)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with pytest.raises(ValueError, match="never sends"):
                client.request(method, server.url + "/v2/repository/index")
        with pytest.raises(ValueError, match="outside the probed origin"):
            client.request("GET", "http://127.0.0.1:1/")
    assert rule_ids(report) == ["PROBE-UNKNOWN-SERVER"]
    assert set(seen) <= {"GET", "HEAD", "OPTIONS"}
    assert len(seen) <= ProbeOptions().max_requests


def test_bastion_gateway_contract_is_identified_and_holds() -> None:
    """A stand-in speaking the gateway's contract (``/healthz`` names the service,
    ``/v1/models`` answers 401 without a valid token; ``test_probe_gateway`` runs the real
    one): the probe's invalid token is visibly sent, and refused."""
    server = SocketServer(lambda conn: None)
    server.handler = routes(server, gateway_contract("real-token"))
    with server:
        report = probe_targets([server.url], FAST)
        sent = list(server.requests)
    assert rule_ids(report) == ["PROBE-IDENTIFIED"]
    assert "Bastion gateway 0.1.0" in report.findings[0].message
    assert any(b"Authorization: Bearer bastion-probe-invalid-" in r for r in sent)


def test_gateway_accepting_any_token_is_critical() -> None:
    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/healthz":
            return 200, {}, b'{"service": "bastion-gateway"}'
        if path == "/v1/models":
            if "authorization" in headers:  # checks presence only
                return 200, {}, b'{"models": [{"name": "fraud-detector"}]}'
            return 401, {}, b"{}"
        return 404, {}, b""

    server = SocketServer(lambda conn: None)
    server.handler = routes(server, table)
    with server:
        report = probe_targets([server.url], FAST)
    accepted = next(f for f in report.findings if f.rule_id == "PROBE-INVALID-TOKEN-ACCEPTED")
    assert accepted.severity is Severity.CRITICAL
    assert accepted.location.path == f"{server.url}/v1/models"


def test_targets_run_concurrently_within_the_bound() -> None:
    servers = [SocketServer(lambda conn: None) for _ in range(4)]
    for server in servers:
        server.handler = silent(server)
    for server in servers:
        server.__enter__()
    try:
        started = time.monotonic()
        report = probe_targets([s.url for s in servers] + [f"http://127.0.0.1:{free_port()}"],
                               ProbeOptions(timeout=1.0, deadline=3.0, concurrency=2))
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.__exit__()
    # two at a time: four silent targets take two rounds of ~1 s, not four
    assert 1.9 <= elapsed < 3.5
    assert sorted(rule_ids(report)) == ["PROBE-TIMEOUT"] * 4 + ["PROBE-UNREACHABLE"]
    assert report.stats.files == 5


def test_client_reads_chunked_and_bounded_bodies() -> None:
    big = b"x" * 100_000

    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        return 200, {}, big

    server = SocketServer(lambda conn: None)
    server.handler = routes(server, table)
    with server:
        client = Client(Origin.parse(server.url), timeout=2, deadline=time.monotonic() + 5,
                        max_body=1000)
        response = client.get("/")
    assert response.truncated
    assert len(response.body) == 1000
    assert response.json() is None


def test_probe_error_kinds_are_the_clients() -> None:
    with pytest.raises(ProbeError) as info:
        Client(Origin.parse(f"http://127.0.0.1:{free_port()}"), timeout=1,
               deadline=time.monotonic() + 2).get("/")
    assert info.value.kind == "unreachable"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://", "http://h:x/",
                                 "http://user:pw@127.0.0.1/"])
def test_cli_refuses_bad_urls_with_one_line(cli: Callable[..., Any], url: str) -> None:
    result = cli("probe", url)
    assert result.returncode == 2
    result.assert_clean()
    assert result.stderr.startswith("error: ")


def test_cli_formats_and_exit_code(cli: Callable[..., Any]) -> None:
    server = SocketServer(lambda conn: None)
    server.handler = routes(server, gateway_contract("t"))
    port = free_port()
    with server:
        result = cli("probe", server.url, f"http://127.0.0.1:{port}", "-f", "json", "-q",
                     "--timeout", "1", "--deadline", "3")
        sarif = cli("probe", f"http://127.0.0.1:{port}", "-f", "sarif", "--fail-on", "low",
                     "-q", "--timeout", "1")
    assert result.returncode == 0, result.output
    result.assert_clean()
    data = json.loads(result.stdout)
    assert {f["rule_id"] for f in data["findings"]} == {"PROBE-IDENTIFIED", "PROBE-UNREACHABLE"}
    assert data["roots"] == [server.url, f"http://127.0.0.1:{port}"]
    assert sarif.returncode == 1  # unreachable is low; --fail-on low fails the gate
    run = json.loads(sarif.stdout)["runs"][0]
    assert run["results"][0]["ruleId"] == "PROBE-UNREACHABLE"


def _self_signed(folder: Any) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_self_signed_tls_is_refused_unless_insecure(tmp_path: Any) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = SocketServer(lambda conn: None)
    plain = routes(server, gateway_contract("t"))

    def handle(conn: Any) -> None:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        plain(tls)

    server.handler = handle
    url = f"https://127.0.0.1:{server.port}"
    with server:
        strict = probe_targets([url], FAST)
        relaxed = probe_targets([url], ProbeOptions(timeout=2, deadline=6, verify_tls=False))
    assert rule_ids(strict) == ["PROBE-TLS-ERROR"]
    assert "certificate" in strict.findings[0].message
    assert rule_ids(relaxed) == ["PROBE-IDENTIFIED"]
    assert "Bastion gateway" in relaxed.findings[0].message


def test_every_probe_rule_is_exercised() -> None:
    from pathlib import Path

    from bastion.exposure import rules

    folder = Path(__file__).parent
    source = "".join(p.read_text(encoding="utf-8") for p in folder.glob("test_probe_*.py"))
    assert [r.id for r in rules.PROBE_RULES if r.id not in source] == []
