"""Interoperability with OpenSSF model signing (``model_signing`` 1.1): both directions.

A Bastion signature must verify with ``model_signing``'s own API, and theirs with Bastion,
for ECDSA P-256 and P-384 keys and for the certificate mode. Facts pinned here, measured on
model-signing 1.1.1: it accepts ECDSA keys only (an Ed25519 signature is Bastion-only); its
sharded signatures write ``shard_size`` as a JSON float, which its own auto-detecting
verifier then rejects while Bastion verifies them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.sign import rules
from bastion.sign.certs import load_certificates
from bastion.sign.interface import Options, sign_model
from bastion.sign.manifest import FILES, SHARDS
from bastion.sign.verify import Trust

from .conftest import ECDSA_TYPES, Chain, KeyPair, rule_ids, verify

model_signing = pytest.importorskip("model_signing", reason="model-signing is a test extra")
from model_signing import hashing, signing, verifying  # noqa: E402

MakeKey = Callable[..., KeyPair]
CONFIGS = {  # (Bastion options, model-signing hashing config)
    "shards": (Options(SHARDS, "sha256", 4096),
               lambda: hashing.Config().use_shard_serialization(shard_size=4096)),
    "files": (Options(FILES, "sha256"), lambda: hashing.Config().use_file_serialization()),
    "blake3": (Options(FILES, "blake3"),
               lambda: hashing.Config().use_file_serialization(hashing_algorithm="blake3")),
}


def their_verify_key(model: Path, signature: Path, public: Path) -> None:
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, signature)


@pytest.mark.parametrize("kind", ECDSA_TYPES)
@pytest.mark.parametrize("config", ["shards", "files", "blake3"])
def test_bastion_signature_verifies_with_model_signing(model: Path, keypair: MakeKey,
                                                       kind: str, config: str) -> None:
    pair = keypair(kind)
    signature = sign_model(model, pair.private, options=CONFIGS[config][0]).signature
    their_verify_key(model, signature, pair.public)  # raises on any mismatch
    (model / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="Signature mismatch"):
        their_verify_key(model, signature, pair.public)


def test_bastion_default_sharded_signature_verifies_with_model_signing(
        model: Path, keypair: MakeKey) -> None:
    # Bastion writes shard_size as an integer, so model-signing's auto-detection works.
    pair = keypair("ecdsa-p256")
    signature = sign_model(model, pair.private).signature
    their_verify_key(model, signature, pair.public)


def their_sign_key(model: Path, signature: Path, private: Path, config: str) -> None:
    signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(
        CONFIGS[config][1]()).sign(model, signature)


@pytest.mark.parametrize("kind", ECDSA_TYPES)
@pytest.mark.parametrize("config", ["shards", "files", "blake3"])
def test_model_signing_signature_verifies_with_bastion(model: Path, keypair: MakeKey,
                                                       tmp_path: Path, kind: str,
                                                       config: str) -> None:
    pair = keypair(kind)
    signature = tmp_path / "theirs.sig"
    their_sign_key(model, signature, pair.private, config)
    result = verify(model, signature, pair.trust())
    if config == "shards":
        # Shards mode records no empty file; Bastion says so (low), rather than trust it.
        assert rule_ids(result) == [rules.FILE_ADDED.id]
        assert result.findings[0].location.path.endswith("/__init__.py")
        assert "cannot cover" in result.findings[0].message
        (model / "__init__.py").unlink()
        result = verify(model, signature, pair.trust())
    assert rule_ids(result) == [rules.VERIFIED.id]
    (model / "config.json").write_text("{}", encoding="utf-8")
    assert rule_ids(verify(model, signature, pair.trust())) == [rules.FILE_MODIFIED.id]


def test_model_signing_float_shard_size_breaks_their_verifier_not_ours(
        model: Path, keypair: MakeKey, tmp_path: Path) -> None:
    pair = keypair("ecdsa-p256")
    (model / "__init__.py").unlink()
    signature = tmp_path / "theirs.sig"
    their_sign_key(model, signature, pair.private, "shards")
    payload = base64.b64decode(json.loads(signature.read_bytes())["dsseEnvelope"]["payload"])
    assert b'"shard_size": 4096.0' in payload
    with pytest.raises(TypeError, match="float"):
        their_verify_key(model, signature, pair.public)
    assert rule_ids(verify(model, signature, pair.trust())) == [rules.VERIFIED.id]


def test_model_signing_single_file_signature(model: Path, keypair: MakeKey,
                                             tmp_path: Path) -> None:
    pair = keypair("ecdsa-p384")
    signature = tmp_path / "file.sig"
    their_sign_key(model / "weights.bin", signature, pair.private, "files")
    assert rule_ids(verify(model / "weights.bin", signature, pair.trust())) == [
        rules.VERIFIED.id]


def test_ed25519_is_bastion_only(model: Path, keypair: MakeKey) -> None:
    pair = keypair("ed25519")
    signature = sign_model(model, pair.private).signature
    assert rule_ids(verify(model, signature, pair.trust())) == [rules.VERIFIED.id]
    with pytest.raises(AttributeError, match="curve"):  # model-signing: ECDSA keys only
        their_verify_key(model, signature, pair.public)


# -- certificate mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_bastion_certificate_signature_verifies_with_model_signing(
        model: Path, chain: Callable[..., Chain], curve: ec.EllipticCurve) -> None:
    pki = chain(curve)
    signature = sign_model(model, pki.leaf_key, certificate=pki.leaf_cert,
                           chain=[pki.intermediate]).signature
    verifying.Config().use_certificate_verifier(certificate_chain=[pki.root]).verify(
        model, signature)
    trust = Trust(roots=tuple(load_certificates([pki.root])), identity="spiffe://ml/release")
    result = verify(model, signature, trust)
    assert rule_ids(result) == [rules.VERIFIED.id]
    assert "CN=model-release" in result.findings[0].message


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_model_signing_certificate_signature_verifies_with_bastion(
        model: Path, chain: Callable[..., Chain], tmp_path: Path,
        curve: ec.EllipticCurve) -> None:
    pki = chain(curve)
    signature = tmp_path / "theirs.sig"
    signing.Config().use_certificate_signer(
        private_key=pki.leaf_key, signing_certificate=pki.leaf_cert,
        certificate_chain=[pki.intermediate]).sign(model, signature)
    trust = Trust(roots=tuple(load_certificates([pki.root])))
    assert rule_ids(verify(model, signature, trust)) == [rules.VERIFIED.id]
    other = chain(name="other")
    untrusted = Trust(roots=tuple(load_certificates([other.root])))
    assert rule_ids(verify(model, signature, untrusted)) == [rules.CERT_UNTRUSTED.id]
