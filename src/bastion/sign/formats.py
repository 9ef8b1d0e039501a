"""The OpenSSF model-signing format, written and read without the library.

A signature is a Sigstore bundle (JSON, media type ``…bundle.v0.3+json``) holding a DSSE
envelope whose payload is an in-toto v1 statement: the subject is the model's name with a
SHA-256 over every listed digest in order, the predicate (type
``https://model_signing/signature/v1.0``) lists the serialization parameters and every
resource (``name``, ``algorithm``, hex ``digest``). The envelope is signed over its DSSE
pre-authentication encoding (PAE). The bundle's verification material says how to check
it: a public-key hint (SHA-256 of the key's PEM), an X.509 chain, or a Sigstore certificate
with transparency-log entries (keyless).

Every byte of a signature file is hostile until verified, and the statement is parsed just
as strictly after: duplicate JSON keys, wrong types, bad base64, a root digest that does not
add up or a path that cannot name a file in the folder are errors, never guesses.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
from collections.abc import Sequence

from bastion.records import NamedTuple
from bastion.sign.manifest import (
    FILES,
    HASH_TYPES,
    SHARDS,
    Manifest,
    ManifestError,
    Resource,
    Serialization,
    normalise_ignore,
    parse_resource_name,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from typing import Any

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PREDICATE_TYPE_V01 = "https://model_signing/Digests/v0.1"
#: Bastion's extension field in the predicate (file sizes); other verifiers ignore it.
EXTENSION = "bastion"
#: A signature larger than this is refused unread: 100 MiB lists millions of files.
MAX_BUNDLE_SIZE = 100 * 2**20
MAX_SIGNATURES = 16
MAX_CERTIFICATES = 16
_DIGEST_SIZES = {"sha256": 32, "blake2b": 64, "blake3": 32}


class FormatError(ValueError):
    """The signature file is not a well-formed bundle."""


class UnsupportedError(ValueError):
    """A well-formed signature of a kind Bastion does not check (here)."""


class Bundle(NamedTuple):
    """What a signature file holds, decoded but not yet verified."""

    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]
    #: "key" (public-key hint), "chain" (X.509 chain) or "sigstore" (keyless, with a log).
    kind: str
    key_hint: str | None = None
    certificates: tuple[bytes, ...] = ()  # DER, the signing certificate first


# -- encoding ------------------------------------------------------------------------------------


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is computed over."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def root_digest(resources: Sequence[Resource]) -> bytes:
    """SHA-256 over every resource digest, in the order listed: the subject's digest."""
    hasher = hashlib.sha256()
    for resource in resources:
        hasher.update(resource.digest)
    return hasher.digest()


def statement(manifest: Manifest) -> bytes:
    """The in-toto statement of a manifest, as the DSSE payload (compact UTF-8 JSON)."""
    resources = sorted(manifest.resources, key=Resource.sort_key)
    predicate: dict[str, Any] = {
        "serialization": manifest.serialization.to_json(),
        "resources": [{"name": r.name, "algorithm": r.algorithm, "digest": r.digest.hex()}
                      for r in resources],
    }
    if manifest.sizes is not None:
        predicate[EXTENSION] = {"version": 1, "files": dict(sorted(manifest.sizes.items()))}
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name,
                     "digest": {"sha256": root_digest(resources).hex()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_bundle(payload: bytes, signature: bytes, *, key_hint: str | None = None,
                  certificates: Sequence[bytes] = ()) -> bytes:
    """A bundle model-signing reads: a key hint, or the DER chain (signing certificate first)."""
    material: dict[str, Any]
    if certificates:
        chain = [{"rawBytes": _b64encode(c)} for c in certificates]
        material = {"x509CertificateChain": {"certificates": chain}, "tlogEntries": []}
    else:
        material = {"publicKey": {"hint": key_hint}, "tlogEntries": []}
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64encode(payload),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": _b64encode(signature), "keyid": ""}],
        },
    }
    return (json.dumps(bundle, indent=1) + "\n").encode("utf-8")


# -- decoding ------------------------------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """Whether the first bytes look like a Sigstore bundle (JSON naming the media type)."""
    text = head.lstrip()[:4096]
    return text.startswith(b"{") and b'"mediaType"' in text and \
        b"application/vnd.dev.sigstore.bundle" in text


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, what: str, error: type[ValueError]) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str,
         error: type[ValueError]) -> Any:
    if not isinstance(obj, dict):
        raise error(f"{where} is not an object")
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise error(f"{where}.{key} is missing or not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "object", list: "list", str: "string", int: "integer", bool: "boolean",
             float: "number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64(value: str, where: str) -> bytes:
    """Strict base64, as ``base64.b64decode(value, validate=True)`` decodes it (checked on
    20,000 random texts), without importing ``base64`` (and ``struct``): ``bastion verify``
    reads the signature before its hashing starts."""
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, or a text that is not ASCII
        raise FormatError(f"{where} is not valid base64") from None


def parse_bundle(data: bytes) -> Bundle:
    """Decode a signature file; :class:`FormatError` says what is malformed."""
    if len(data) > MAX_BUNDLE_SIZE:
        raise FormatError(f"signature is {len(data)} bytes, over the {MAX_BUNDLE_SIZE} limit")
    top = load_json(data, "signature", FormatError)
    media = _get(top, "mediaType", str, "bundle", FormatError)
    if not media.startswith("application/vnd.dev.sigstore.bundle"):
        raise FormatError(f"media type {media!r} is not a Sigstore bundle")
    if "dsseEnvelope" not in top:
        raise UnsupportedError("the bundle holds no DSSE envelope (a plain message signature "
                               "is not a model signature)")
    envelope = _get(top, "dsseEnvelope", dict, "bundle", FormatError)
    payload = _b64(_get(envelope, "payload", str, "dsseEnvelope", FormatError), "payload")
    payload_type = _get(envelope, "payloadType", str, "dsseEnvelope", FormatError)
    raw_sigs = _get(envelope, "signatures", list, "dsseEnvelope", FormatError)
    if not 1 <= len(raw_sigs) <= MAX_SIGNATURES:
        raise FormatError(f"the envelope has {len(raw_sigs)} signatures (1 to "
                          f"{MAX_SIGNATURES} expected)")
    signatures = tuple(_b64(_get(s, "sig", str, f"signatures[{i}]", FormatError),
                            f"signatures[{i}].sig") for i, s in enumerate(raw_sigs))
    material = _get(top, "verificationMaterial", dict, "bundle", FormatError)
    kind, hint, certs = _material(material)
    return Bundle(payload, payload_type, signatures, kind, hint, certs)


def _material(material: dict[str, Any]) -> tuple[str, str | None, tuple[bytes, ...]]:
    logs = material.get("tlogEntries") or []
    if not isinstance(logs, list):
        raise FormatError("verificationMaterial.tlogEntries is not a list")
    if "publicKey" in material:
        key = _get(material, "publicKey", dict, "verificationMaterial", FormatError)
        hint = key.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise FormatError("verificationMaterial.publicKey.hint is not a string")
        return "key", hint or None, ()
    if "x509CertificateChain" in material:
        chain = _get(material, "x509CertificateChain", dict, "verificationMaterial",
                     FormatError)
        certs = _get(chain, "certificates", list, "x509CertificateChain", FormatError)
        if not 1 <= len(certs) <= MAX_CERTIFICATES:
            raise FormatError(f"the chain has {len(certs)} certificates (1 to "
                              f"{MAX_CERTIFICATES} expected)")
        der = tuple(_b64(_get(c, "rawBytes", str, f"certificates[{i}]", FormatError),
                         f"certificates[{i}].rawBytes") for i, c in enumerate(certs))
        return ("sigstore" if logs else "chain"), None, der
    if "certificate" in material:
        cert = _get(material, "certificate", dict, "verificationMaterial", FormatError)
        leaf = _b64(_get(cert, "rawBytes", str, "certificate", FormatError), "certificate")
        return "sigstore", None, (leaf,)
    raise FormatError("verificationMaterial has no public key, certificate or chain")


def parse_statement(payload: bytes) -> Manifest:
    """The manifest a verified payload signs; :class:`ManifestError` when it is not valid."""
    body = load_json(payload, "signed payload", ManifestError)
    if _get(body, "_type", str, "statement", ManifestError) != STATEMENT_TYPE:
        raise ManifestError(f"statement type is not {STATEMENT_TYPE}")
    predicate_type = _get(body, "predicateType", str, "statement", ManifestError)
    if predicate_type == PREDICATE_TYPE_V01:
        raise UnsupportedError("pre-1.0 model-signing format (predicate Digests/v0.1), which "
                               "cannot show that no file is missing; sign the model again")
    if predicate_type != PREDICATE_TYPE:
        raise ManifestError(f"predicate type {predicate_type!r} is not {PREDICATE_TYPE}")
    subjects = _get(body, "subject", list, "statement", ManifestError)
    if len(subjects) != 1:
        raise ManifestError(f"expected one subject, found {len(subjects)}")
    name = _get(subjects[0], "name", str, "subject", ManifestError)
    digest = _get(_get(subjects[0], "digest", dict, "subject", ManifestError), "sha256", str,
                  "subject.digest", ManifestError)
    predicate = _get(body, "predicate", dict, "statement", ManifestError)
    serialization = _serialization(_get(predicate, "serialization", dict, "predicate",
                                        ManifestError))
    raw = _get(predicate, "resources", list, "predicate", ManifestError)
    resources = tuple(_resource(r, i, serialization) for i, r in enumerate(raw))
    names = [r.name for r in resources]
    if len(set(names)) != len(names):
        raise ManifestError("the same resource is listed twice")
    if root_digest(resources).hex() != digest.lower():
        raise ManifestError("the subject digest does not match the listed digests (the "
                            "resource list was edited)")
    sizes = _sizes(predicate.get(EXTENSION), resources, serialization)
    return Manifest(name, serialization, resources, sizes)


def statement_serialization(payload: bytes) -> Serialization:
    """Only the hashing settings a payload names, unchecked otherwise (no resource is
    parsed): what :func:`bastion.sign.early.start_early` needs to start hashing. Nothing
    is trusted from it until :func:`parse_statement` has read the verified payload whole."""
    body = load_json(payload, "signed payload", ManifestError)
    predicate = _get(body, "predicate", dict, "statement", ManifestError)
    return _serialization(_get(predicate, "serialization", dict, "predicate", ManifestError))


def _serialization(raw: dict[str, Any]) -> Serialization:
    method = _get(raw, "method", str, "serialization", ManifestError)
    hash_type = _get(raw, "hash_type", str, "serialization", ManifestError)
    if method not in (FILES, SHARDS):
        raise UnsupportedError(f"unknown serialization method {method!r}")
    if hash_type not in HASH_TYPES:
        raise UnsupportedError(f"unknown hash type {hash_type!r}")
    shard_size = None
    if method == SHARDS:
        value = _get(raw, "shard_size", (int, float), "serialization", ManifestError)
        # model-signing writes it as a float (1000000000.0); its own verifier then fails.
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise ManifestError(f"shard_size {value!r} is not a whole number")
        shard_size = int(value)
        if shard_size <= 0:
            raise ManifestError(f"shard_size must be positive, got {shard_size}")
    allow = raw.get("allow_symlinks", False)
    if not isinstance(allow, bool):
        raise ManifestError("serialization.allow_symlinks is not a boolean")
    ignores = raw.get("ignore_paths", [])
    if not isinstance(ignores, list) or not all(isinstance(p, str) for p in ignores):
        raise ManifestError("serialization.ignore_paths is not a list of strings")
    normal = tuple(sorted({normalise_ignore(p) for p in ignores}))
    return Serialization(method, hash_type, shard_size, allow, normal)


_NOT_NAMES = frozenset(("", ".", ".."))


def check_path(path: str) -> str:
    """A manifest path must name a file inside the folder: relative, normal, POSIX."""
    if path == ".":
        return path
    # String checks, not PurePosixPath (the same verdicts, a tenth of the time: a manifest
    # has a path a resource). Normal: no empty part (a//b, a/, /a), no "." or "..".
    if "\x00" in path or any(part in _NOT_NAMES for part in path.split("/")):
        raise ManifestError(f"path {path!r} cannot name a file inside the model folder")
    return path


def _resource(raw: Any, i: int, serialization: Serialization) -> Resource:
    where = f"resources[{i}]"
    name = _get(raw, "name", str, where, ManifestError)
    algorithm = _get(raw, "algorithm", str, where, ManifestError)
    digest_hex = _get(raw, "digest", str, where, ManifestError)
    if algorithm != serialization.algorithm:
        raise ManifestError(f"{where} uses {algorithm!r}, but the serialization says "
                            f"{serialization.algorithm!r}")
    try:
        digest = bytes.fromhex(digest_hex)
    except ValueError:
        raise ManifestError(f"{where}.digest is not hexadecimal") from None
    if len(digest) != _DIGEST_SIZES[serialization.hash_type]:
        raise ManifestError(f"{where}.digest has {len(digest)} bytes, not "
                            f"{_DIGEST_SIZES[serialization.hash_type]}")
    path, start, end = parse_resource_name(name, serialization.method)
    return Resource(check_path(path), digest, algorithm, start, end)


def _sizes(raw: Any, resources: Sequence[Resource],
           serialization: Serialization) -> dict[str, int] | None:
    """Bastion's file-size list, checked against the resources it must agree with."""
    if raw is None:
        return None
    files = _get(raw, "files", dict, EXTENSION, ManifestError)
    sizes: dict[str, int] = {}
    for path, size in files.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{EXTENSION}.files[{path!r}] is not a size")
        sizes[check_path(path)] = size
    ends: dict[str, int] = {}
    for r in resources:
        if r.path not in sizes:
            raise ManifestError(f"{r.path!r} has a digest but no size")
        ends[r.path] = max(ends.get(r.path, 0), r.end or 0)
    for path, size in sizes.items():
        covered = path in ends
        if serialization.method == SHARDS and (ends.get(path, 0) != size or
                                               (size > 0) != covered):
            raise ManifestError(f"the shards of {path!r} do not add up to its size {size}")
        if serialization.method == FILES and not covered:
            raise ManifestError(f"{path!r} has a size but no digest")
    return sizes
