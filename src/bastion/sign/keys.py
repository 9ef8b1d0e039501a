"""Keys: generate, store safely, load, and sign or verify the DSSE encoding with them.

ECDSA keys sign with the hash that matches the curve (P-256 with SHA-256, P-384 with
SHA-384, P-521 with SHA-512), DER-encoded, as Sigstore and model-signing do. Ed25519 is
supported by Bastion only: model-signing 1.1 accepts elliptic-curve (ECDSA) keys alone, so an
Ed25519 signature verifies with ``bastion verify`` but not with ``model_signing``.

A key is named in the bundle by a hint, the SHA-256 of its PEM ``SubjectPublicKeyInfo``
(model-signing's convention), so a verifier tells "signed by another key" from "signed by
this key, then altered". Private keys are written 0600 and never over an existing file
unless asked to (``force``).
"""

from __future__ import annotations

import hashlib
import os
import stat

from bastion.errors import UsageError
from bastion.files import write_all
from bastion.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

    PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: ``bastion keygen --type`` values.
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519")
#: Curves model-signing accepts (and the hash each signs with).
_CURVE_HASH = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}
_CURVE_LABEL = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: A key file larger than this is not a PEM key.
MAX_KEY_FILE = 1 << 20


class TrustedKey(NamedTuple):
    """A public key the verifier trusts, and where it came from (for the report)."""

    key: PublicKey
    source: str

    @property
    def hint(self) -> str:
        return key_hint(self.key)

    @property
    def label(self) -> str:
        return f"{describe(self.key)} key {self.source} (hint {self.hint[:16]}…)"


def public_pem(key: PublicKey) -> bytes:
    # Where cryptography defines these enums: ``serialization`` re-exports them, and
    # importing it costs what _pem_loaders() avoids.
    from cryptography.hazmat.primitives._serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def key_hint(key: PublicKey) -> str:
    """model-signing's key identifier: SHA-256 of the PEM public key, in hex."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def describe(key: PublicKey | PrivateKey) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ECDSA {_CURVE_LABEL.get(key.curve.name, key.curve.name)}"
    return "Ed25519"


def check_supported(key: object, source: str) -> None:
    """Refuse a key type no model signature uses (RSA, DSA, other curves)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name not in _CURVE_HASH:
            raise UsageError(f"{source}: curve {key.curve.name} is not supported",
                             hint="use ECDSA P-256, P-384 or P-521, or Ed25519")
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return
    raise UsageError(f"{source}: {type(key).__name__.lstrip('_')} keys are not supported",
                     hint="use an ECDSA (P-256, P-384) or Ed25519 key; `bastion keygen` "
                          "makes one")


def _hash(curve: str) -> HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    algorithm: HashAlgorithm = getattr(hashes, _CURVE_HASH[curve])()
    return algorithm


def ecdsa(curve: str) -> ec.ECDSA:
    """``ec.ECDSA(hash)`` with the hash that matches ``curve``, built without calling the
    constructor: it imports cryptography's whole OpenSSL backend module (every cipher, RSA,
    padding: ~12 ms of CPU on the 2-vCPU machines, spent while ``bastion sign``/``verify``
    hash the model) only to check that deterministic signing is available, which Bastion
    never asks for. The result is checked through ECDSA's own properties; where a release
    of cryptography lays the class out otherwise, the constructor is used (the tests check
    both sign and verify alike)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    algorithm = _hash(curve)
    try:
        built = ec.ECDSA.__new__(ec.ECDSA)
        built._algorithm = algorithm
        built._deterministic_signing = False
        if built.algorithm is algorithm and built.deterministic_signing is False:
            return built
    except AttributeError:  # pragma: no cover - another cryptography layout
        pass
    return ec.ECDSA(algorithm)  # pragma: no cover - the same


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ecdsa(key.curve.name))
    return key.sign(data)


def verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ecdsa(key.curve.name))
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- loading -------------------------------------------------------------------------------------


def _pem_loaders() -> ModuleType:
    """The module whose ``load_pem_private_key``/``load_pem_public_key`` load keys.

    ``cryptography.hazmat.primitives.serialization`` re-exports these two functions from
    cryptography's Rust bindings, but importing it also loads its SSH key code, every cipher
    and bcrypt: ~20 ms of CPU on the 2-vCPU machines, spent while ``bastion sign``/``verify``
    hash the model. The bindings' module holds the very same functions (the test suite
    checks they are identical); where a release of cryptography moves them, the public
    module is used."""
    try:
        from cryptography.hazmat.bindings._rust import openssl

        loaders: ModuleType = openssl.keys
        loaders.load_pem_private_key  # noqa: B018  (present, or the public module)
        loaders.load_pem_public_key  # noqa: B018
    except (ImportError, AttributeError):  # pragma: no cover - another cryptography layout
        from cryptography.hazmat.primitives import serialization

        return serialization
    return loaders


def _read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a key file: a regular file of at most :data:`MAX_KEY_FILE` bytes
    (opened without blocking, so a FIFO given as a key is an error, not a hang)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UsageError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UsageError(f"{what} {path} is a folder")
        if not stat.S_ISREG(mode):
            raise UsageError(f"{what} {path} is not a regular file")
        chunks, size = [], 0
        while size <= MAX_KEY_FILE:
            chunk = os.read(fd, MAX_KEY_FILE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise UsageError(f"{path}: too large to be a {what}")
    return data


def load_private_key(path: str | os.PathLike[str], password: bytes | None = None) \
        -> PrivateKey:
    """A PEM private key (PKCS#8 or traditional); clear errors for every way it can fail."""
    data = _read_pem(path, "private key")
    try:
        key: object = _pem_loaders().load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise UsageError(f"{path}: the private key is encrypted",
                             hint="give its password with --password-env VAR") from None
        raise UsageError(f"{path}: the private key is not encrypted, but a password was "
                         "given") from None
    except ValueError as exc:
        text = str(exc).lower()
        if password is not None and ("password" in text or "decrypt" in text):
            raise UsageError(f"{path}: wrong password for the private key") from None
        raise UsageError(f"{path}: not a PEM private key",
                         hint="a public key (.pub) verifies; sign with the private key") \
            from None
    check_supported(key, str(path))
    return key  # type: ignore[return-value]


def load_public_key(spec: str) -> TrustedKey:
    """A trusted public key from a PEM file, or inline PEM text (e.g. from a policy)."""
    if spec.lstrip().startswith("-----BEGIN"):
        data, source = spec.encode("ascii", "replace"), "(inline PEM)"
    else:
        data, source = _read_pem(spec, "public key"), spec
    if b"PRIVATE KEY" in data:
        raise UsageError(f"{source}: is a private key; verify with the public key",
                         hint="the .pub file `bastion keygen` wrote beside it")
    try:
        key: object = _pem_loaders().load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"{source}: not a PEM public key") from None
    check_supported(key, source)
    return TrustedKey(key, source)  # type: ignore[arg-type]


# -- generating ----------------------------------------------------------------------------------


def generate(kind: str) -> PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise UsageError(f"unknown key type {kind!r}", hint=f"one of {', '.join(KEY_TYPES)}")


def public_path_for(private: Path) -> Path:
    """Where the public key goes: ``release.key`` → ``release.pub``, ``x`` → ``x.pub``."""
    if private.suffix in (".key", ".pem", ".priv"):
        return private.with_suffix(".pub")
    return private.with_name(private.name + ".pub")


def write_keypair(private: Path, kind: str, *, force: bool = False,
                  password: bytes | None = None) -> tuple[Path, Path, PrivateKey]:
    """Write a new key pair: the private key 0600, the public key beside it."""
    from cryptography.hazmat.primitives import serialization

    public = public_path_for(private)
    for path in (private, public):
        if os.path.lexists(path) and not force:
            raise UsageError(f"{path} already exists; not overwriting a key",
                             hint="choose another name, or pass --force to replace it")
        if path.is_dir():
            raise UsageError(f"{path} is a folder")
    if not private.parent.is_dir():
        raise UsageError(f"folder {private.parent} does not exist")
    key = generate(kind)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    _write(private, pem, 0o600, exclusive=not force)
    _write(public, public_pem(key.public_key()), 0o644, exclusive=not force)
    return private, public, key


def _write(path: Path, data: bytes, mode: int, *, exclusive: bool) -> None:
    """Create the file with its final mode from the first byte; replace only when asked."""
    if exclusive:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, mode)
        try:
            os.fchmod(fd, mode)  # exactly this mode, whatever the umask
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return
    import tempfile  # here: verifying loads keys while it hashes, and never writes one

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
