"""Key generation and loading: safe permissions, no silent overwrite, clear errors."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bastion.errors import UsageError
from bastion.sign.keys import (
    describe,
    key_hint,
    load_private_key,
    load_public_key,
    public_path_for,
    sign_bytes,
    verify_bytes,
    write_keypair,
)

from .conftest import KEY_TYPES


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", KEY_TYPES)
def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path, kind: str) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        private, public, _ = write_keypair(tmp_path / "release.key", kind)
    finally:
        os.umask(old)
    assert (private.name, public.name) == ("release.key", "release.pub")
    assert mode(private) == 0o600
    assert mode(public) == 0o644
    loaded = load_private_key(private)
    assert key_hint(loaded.public_key()) == load_public_key(str(public)).hint
    assert describe(loaded) == {"ecdsa-p256": "ECDSA P-256", "ecdsa-p384": "ECDSA P-384",
                                "ed25519": "Ed25519"}[kind]
    message = b"DSSEv1 payload"
    assert verify_bytes(loaded.public_key(), sign_bytes(loaded, message), message)
    assert not verify_bytes(loaded.public_key(), sign_bytes(loaded, message), message + b"!")


def test_keygen_never_overwrites_without_force(tmp_path: Path) -> None:
    private, public, _ = write_keypair(tmp_path / "k.key", "ecdsa-p256")
    before = private.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        write_keypair(tmp_path / "k.key", "ed25519")
    assert private.read_bytes() == before
    public.unlink()  # a lone private key still blocks: the pair is written together
    with pytest.raises(UsageError, match="already exists"):
        write_keypair(tmp_path / "k.key", "ed25519")
    write_keypair(tmp_path / "k.key", "ed25519", force=True)
    assert private.read_bytes() != before
    assert mode(private) == 0o600


def test_keygen_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    # Technique: a link at the key's path makes the writer put the key somewhere readable.
    target = tmp_path / "world-readable"
    (tmp_path / "k.key").symlink_to(target)
    with pytest.raises(UsageError, match="already exists"):
        write_keypair(tmp_path / "k.key", "ecdsa-p256")
    assert not target.exists()


def test_public_key_name() -> None:
    assert public_path_for(Path("a/release.key")) == Path("a/release.pub")
    assert public_path_for(Path("a/release")) == Path("a/release.pub")


def test_encrypted_private_key(tmp_path: Path) -> None:
    private, _, _ = write_keypair(tmp_path / "k.key", "ecdsa-p384", password=b"s3cret")
    assert b"ENCRYPTED" in private.read_bytes()
    assert describe(load_private_key(private, b"s3cret")) == "ECDSA P-384"
    with pytest.raises(UsageError, match="encrypted"):
        load_private_key(private)
    with pytest.raises(UsageError, match="wrong password"):
        load_private_key(private, b"nope")


def test_key_hint_is_model_signings_identifier(tmp_path: Path) -> None:
    _, public, _ = write_keypair(tmp_path / "k.key", "ecdsa-p256")
    assert load_public_key(str(public)).hint == hashlib.sha256(public.read_bytes()).hexdigest()


def test_inline_pem_public_key(tmp_path: Path) -> None:
    _, public, _ = write_keypair(tmp_path / "k.key", "ed25519")
    assert load_public_key(public.read_text()).source == "(inline PEM)"


@pytest.mark.parametrize(("content", "loader", "message"), [
    (None, "private", "not found"),
    (b"garbage", "private", "not a PEM private key"),
    (b"garbage", "public", "not a PEM public key"),
    ("public", "private", "not a PEM private key"),
    ("private", "public", "is a private key"),
    ("rsa", "private", "RSAPrivateKey keys are not supported"),
    ("k1", "public", "curve secp256k1 is not supported"),
], ids=["missing", "garbage-priv", "garbage-pub", "pub-as-priv", "priv-as-pub", "rsa", "k1"])
def test_bad_key_files_give_clear_errors(tmp_path: Path, content: object, loader: str,
                                         message: str) -> None:
    private, public, _ = write_keypair(tmp_path / "ok.key", "ecdsa-p256")
    path = tmp_path / "bad.pem"
    if content == "public":
        path = public
    elif content == "private":
        path = private
    elif content == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    elif content == "k1":
        key_k1 = ec.generate_private_key(ec.SECP256K1())
        path.write_bytes(key_k1.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    load = load_private_key if loader == "private" else (lambda p: load_public_key(str(p)))
    with pytest.raises(UsageError, match=message):
        load(path)


@pytest.mark.parametrize("kind", ["folder", "fifo", "huge"])
def test_a_key_path_that_is_not_a_small_regular_file_is_refused_at_once(
        tmp_path: Path, kind: str) -> None:
    path = tmp_path / "weird.key"
    if kind == "folder":
        path.mkdir()
        message = "is a folder"
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would hang here for ever
        message = "not a regular file"
    else:
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * (1 << 20))
        message = "too large"
    for load in (load_private_key, lambda p: load_public_key(str(p))):
        with pytest.raises(UsageError, match=message):
            load(path)


def test_keys_load_through_the_very_functions_cryptography_exports() -> None:
    """bastion.sign.keys reaches cryptography's PEM loaders through its Rust bindings'
    module, which is lighter to import: they must be the public functions themselves."""
    from cryptography.hazmat.primitives import _serialization

    from bastion.sign.keys import _pem_loaders

    loaders = _pem_loaders()
    assert loaders.load_pem_private_key is serialization.load_pem_private_key
    assert loaders.load_pem_public_key is serialization.load_pem_public_key
    assert loaders is not serialization  # the light route is the one taken here
    assert _serialization.Encoding is serialization.Encoding
    assert _serialization.PublicFormat is serialization.PublicFormat


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()],
                         ids=lambda c: c.name)
def test_the_ecdsa_algorithm_built_without_its_constructor_is_cryptographys(
        curve: ec.EllipticCurve) -> None:
    from bastion.sign.keys import _hash, ecdsa

    built, standard = ecdsa(curve.name), ec.ECDSA(_hash(curve.name))
    assert type(built) is ec.ECDSA
    assert built.algorithm.name == standard.algorithm.name
    assert built.deterministic_signing is standard.deterministic_signing is False
    key = ec.generate_private_key(curve)
    message = b"payload"
    key.public_key().verify(key.sign(message, built), message, standard)
    key.public_key().verify(key.sign(message, standard), message, built)


def test_signing_and_verifying_do_not_load_the_openssl_backend_module(tmp_path: Path) -> None:
    """ec.ECDSA()'s constructor imports cryptography's backend module (~12 ms); keys.ecdsa()
    does not, and neither does anything else signing or verifying needs."""
    private, public, _ = write_keypair(tmp_path / "k.key", "ecdsa-p256")
    code = ("import sys\n"
            "from bastion.sign.keys import load_private_key, load_public_key, sign_bytes, "
            "verify_bytes, key_hint\n"
            f"key = load_private_key({str(private)!r})\n"
            f"trusted = load_public_key({str(public)!r})\n"
            "ok = verify_bytes(trusted.key, sign_bytes(key, b'm'), b'm')\n"
            "print(ok, key_hint(trusted.key) == trusted.hint, "
            "any(m.startswith('cryptography.hazmat.backends') for m in sys.modules), "
            "'cryptography.hazmat.primitives.serialization' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["True", "True", "False", "False"], done.stderr
