"""Fixtures for model signing: small model folders, key pairs of every type, a CA chain.

Keys and certificates are made with ``cryptography`` (what a real signer uses); model
folders are a few small files with nested folders, an empty file and git metadata, so
every path rule (ignores, empty files, ordering) is exercised by every test.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.sign.interface import Options, sign_model
from bastion.sign.keys import load_public_key, write_keypair
from bastion.sign.verify import Result, Trust, verify_model

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519")
ECDSA_TYPES = ("ecdsa-p256", "ecdsa-p384")


def make_model(root: Path) -> Path:
    """A model folder: weights, config, a nested tokenizer folder, an empty file, git files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"hidden": 8}\n', encoding="utf-8")
    (root / "weights.bin").write_bytes(bytes(range(256)) * 40)  # 10 KiB
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (root / "tokenizer" / "merges.txt").write_text("a b\n", encoding="utf-8")
    (root / "__init__.py").write_bytes(b"")
    (root / ".gitattributes").write_text("*.bin filter=lfs\n", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


@dataclass(frozen=True)
class KeyPair:
    kind: str
    private: Path
    public: Path

    def trust(self) -> Trust:
        return Trust(keys=(load_public_key(str(self.public)),))


@pytest.fixture
def keypair(tmp_path: Path) -> Callable[[str], KeyPair]:
    """``keypair("ecdsa-p256")``: a fresh key pair written by Bastion's keygen."""
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    made: dict[str, KeyPair] = {}

    def make(kind: str = "ecdsa-p256", name: str | None = None) -> KeyPair:
        name = name or kind
        if name not in made:
            private, public, _ = write_keypair(folder / f"{name}.key", kind)
            made[name] = KeyPair(kind, private, public)
        return made[name]

    return make


def sign(model: Path, pair: KeyPair, **options: object) -> Path:
    return sign_model(model, pair.private, options=Options(**options)).signature  # type: ignore[arg-type]


def verify(model: Path, signature: Path, trust: Trust) -> Result:
    return verify_model(model, signature, trust, workers=2)


def rule_ids(result: Result) -> list[str]:
    return sorted(f.rule_id for f in result.findings)


# -- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A root CA, an intermediate CA and a leaf signing certificate, as PEM files."""

    root: Path
    intermediate: Path
    leaf_cert: Path
    leaf_key: Path
    root_key: ec.EllipticCurvePrivateKey


_NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
          signing: bool = True, san: str | None = None,
          days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(_NOW + datetime.timedelta(days=days[1])))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    elif signing:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture
def chain(tmp_path: Path) -> Callable[..., Chain]:
    """``chain(curve=ec.SECP256R1(), san=..., signing=True)``: a fresh CA chain and leaf."""

    def make(curve: ec.EllipticCurve | None = None, *, san: str | None = "spiffe://ml/release",
             signing: bool = True, name: str = "pki") -> Chain:
        folder = tmp_path / name
        folder.mkdir()
        root_key = ec.generate_private_key(ec.SECP384R1())
        inter_key = ec.generate_private_key(ec.SECP256R1())
        leaf_key = ec.generate_private_key(curve or ec.SECP256R1())
        root = issue("Test Root CA", root_key, "Test Root CA", root_key, ca=True)
        inter = issue("Test Intermediate CA", inter_key, "Test Root CA", root_key, ca=True)
        leaf = issue("model-release", leaf_key, "Test Intermediate CA", inter_key, ca=False,
                     signing=signing, san=san)
        return Chain(write_pem(folder / "root.pem", root),
                     write_pem(folder / "intermediate.pem", inter),
                     write_pem(folder / "leaf.pem", leaf),
                     write_key(folder / "leaf.key", leaf_key), root_key)

    return make
