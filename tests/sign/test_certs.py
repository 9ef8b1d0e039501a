"""Certificate mode: chains to a trusted root, signing usage, identity pinning, attacks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import UsageError
from bastion.sign import rules
from bastion.sign.certs import load_certificates
from bastion.sign.interface import sign_model
from bastion.sign.keys import load_public_key
from bastion.sign.verify import Trust

from .conftest import Chain, issue, rule_ids, verify, write_key, write_pem

MakeChain = Callable[..., Chain]


def signed_with(model: Path, pki: Chain) -> Path:
    return sign_model(model, pki.leaf_key, certificate=pki.leaf_cert,
                      chain=[pki.intermediate]).signature


def roots(pki: Chain, identity: str | None = None) -> Trust:
    return Trust(roots=tuple(load_certificates([pki.root])), identity=identity)


def only_finding(model: Path, signature: Path, trust: Trust) -> str:
    [finding] = verify(model, signature, trust).findings
    assert finding.rule_id == rules.CERT_UNTRUSTED.id, finding
    return finding.message


def test_identity_pinning(model: Path, chain: MakeChain) -> None:
    # Technique: another certificate from the same CA signs; only the identity tells.
    pki = chain()
    signature = signed_with(model, pki)
    assert rule_ids(verify(model, signature, roots(pki, "spiffe://ml/release"))) == [
        rules.VERIFIED.id]
    message = only_finding(model, signature, roots(pki, "spiffe://ml/other"))
    assert "is for spiffe://ml/release, not spiffe://ml/other" in message


def test_leaf_without_signing_usage_is_refused(model: Path, chain: MakeChain) -> None:
    pki = chain(signing=False)
    assert "may not be used for signing" in only_finding(model, signed_with(model, pki),
                                                         roots(pki))


def test_end_entity_cannot_act_as_a_ca(model: Path, chain: MakeChain, tmp_path: Path) -> None:
    # Technique: a holder of a valid signing certificate issues themselves another one.
    pki = chain()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf_key = serialization.load_pem_private_key(pki.leaf_key.read_bytes(), None)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = issue("rogue", rogue_key, "model-release", leaf_key, ca=False)
    leaf = x509.load_pem_x509_certificate(pki.leaf_cert.read_bytes())
    inter = x509.load_pem_x509_certificate(pki.intermediate.read_bytes())
    signature = sign_model(model, write_key(tmp_path / "rogue.key", rogue_key),
                           certificate=write_pem(tmp_path / "rogue.pem", rogue),
                           chain=[write_pem(tmp_path / "chain.pem", leaf, inter)]).signature
    assert "does not lead to a trusted root" in only_finding(model, signature, roots(pki))


def test_chain_must_be_valid_when_the_certificate_was_issued(model: Path, chain: MakeChain,
                                                             tmp_path: Path) -> None:
    pki = chain()
    root_key = pki.root_key
    expired_ca_key = ec.generate_private_key(ec.SECP256R1())
    expired_ca = issue("Old CA", expired_ca_key, "Test Root CA", root_key, ca=True,
                       days=(-30, -10))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("late", leaf_key, "Old CA", expired_ca_key, ca=False)
    signature = sign_model(model, write_key(tmp_path / "late.key", leaf_key),
                           certificate=write_pem(tmp_path / "late.pem", leaf),
                           chain=[write_pem(tmp_path / "old.pem", expired_ca)]).signature
    assert "not valid" in only_finding(model, signature, roots(pki))


def test_certificate_signature_with_the_leaf_key_trusted(model: Path, chain: MakeChain,
                                                         tmp_path: Path) -> None:
    # model-signing's key verifier accepts a certificate bundle by its key; so does Bastion.
    pki = chain()
    signature = signed_with(model, pki)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pki.leaf_cert.read_bytes())
    pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    trust = Trust(keys=(load_public_key(pem.decode()),))
    assert rule_ids(verify(model, signature, trust)) == [rules.VERIFIED.id]


def test_certificate_signature_without_roots(model: Path, chain: MakeChain,
                                             keypair: Callable[..., object]) -> None:
    pki = chain()
    signature = signed_with(model, pki)
    other = keypair("ecdsa-p256")
    message = only_finding(model, signature, other.trust())  # type: ignore[attr-defined]
    assert "give the CA certificates" in message


def test_garbage_certificate_in_bundle(model: Path, chain: MakeChain) -> None:
    pki = chain()
    signature = signed_with(model, pki)
    data = json.loads(signature.read_bytes())
    data["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = \
        base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    signature.write_text(json.dumps(data), encoding="utf-8")
    assert "does not parse" in only_finding(model, signature, roots(pki))


def test_signing_certificate_must_match_the_key(model: Path, chain: MakeChain) -> None:
    pki, other = chain(), chain(name="other")
    with pytest.raises(UsageError, match="does not match the private key"):
        sign_model(model, other.leaf_key, certificate=pki.leaf_cert)
    with pytest.raises(UsageError, match="--cert-chain needs --cert"):
        sign_model(model, pki.leaf_key, chain=[pki.root])


def test_bad_certificate_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_certificates([tmp_path / "missing.pem"])
    (tmp_path / "bad.pem").write_text("not a certificate", encoding="utf-8")
    with pytest.raises(UsageError, match="not a PEM certificate"):
        load_certificates([tmp_path / "bad.pem"])
