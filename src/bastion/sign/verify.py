"""Verifying a signed model: who signed it, what they signed, and whether the folder matches.

Three steps, each of which can only narrow trust: (1) the bundle is decoded and its DSSE
signature checked against the trusted keys, the trusted CA certificates, or (delegated)
Sigstore; (2) only then is the signed statement parsed into a manifest; (3) the folder is
walked and hashed exactly as the manifest's serialization says, and compared. A problem at
one step is reported and the later steps are skipped: a manifest nobody trusted says
nothing about the folder. Every problem is a :class:`~bastion.findings.Finding`; when there
is none, one ``SIGN-VERIFIED`` finding (severity info) records the signature's status.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bastion.findings import Finding, Location
from bastion.records import dataclass, field
from bastion.rules import UNREADABLE
from bastion.sign import rules
from bastion.sign.diff import Where, compare
from bastion.sign.early import Early, read_signature, start_hashing_as
from bastion.sign.formats import (
    PAYLOAD_TYPE,
    Bundle,
    FormatError,
    UnsupportedError,
    pae,
    parse_bundle,
    parse_statement,
)
from bastion.sign.hashing import HashingError
from bastion.sign.keys import TrustedKey, verify_bytes
from bastion.sign.manifest import (
    Manifest,
    ManifestError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

#: Verifies a Sigstore (keyless) bundle file; returns the signed payload and who signed it.
SigstoreCheck = Callable[[Path], tuple[bytes, str]]


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts: public keys, CA certificates (with an identity), Sigstore."""

    keys: tuple[TrustedKey, ...] = ()
    roots: tuple[Any, ...] = ()  # cryptography x509.Certificate
    identity: str | None = None
    sigstore: SigstoreCheck | None = None

    @property
    def empty(self) -> bool:
        return not (self.keys or self.roots or self.sigstore)


class _Refused(Exception):
    """A verification step failed; the finding says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass
class Result:
    """The findings of one verification, and what was learnt on the way."""

    findings: list[Finding] = field(default_factory=list)
    signer: str | None = None
    manifest: Manifest | None = None

    @property
    def verified(self) -> bool:
        return any(f.rule_id == rules.VERIFIED.id for f in self.findings)


def verify_model(model: Path, signature: Path, trust: Trust, *, folder: str | None = None,
                 signature_name: str | None = None, workers: int | None = None,
                 data: bytes | None = None, beside: bool = False,
                 early: Early | None = None) -> Result:
    """Verify ``model`` (a folder or file) against ``signature``; never raises on hostile input.

    ``beside``: ``model`` is the folder the signature lies in, and a single-file signature
    is for the file it names there (how ``bastion scan`` finds what a signature covers).
    ``early``: hashing :func:`bastion.sign.early.start_early` began before the keys were
    loaded; used when the verified manifest asks for exactly that hashing, else cancelled.
    """
    if early is not None and (Path(early.signature) != signature or Path(early.model) != model):
        early.cancel()  # started for another pair: of no use here
        early = None
    if early is not None:
        data = early.data  # the very bytes the hashing settings were read from
    try:
        return _verify(model, signature, trust, folder, signature_name, workers, data,
                       beside, early)
    finally:
        if early is not None:
            early.cancel()  # a no-op when its hashing was used


def _verify(model: Path, signature: Path, trust: Trust, folder: str | None,
            signature_name: str | None, workers: int | None, data: bytes | None,
            beside: bool, early: Early | None) -> Result:
    where = Where(folder if folder is not None else str(model),
                  signature_name if signature_name is not None else str(signature))
    result = Result()
    try:
        if data is None:
            data = read_signature(signature)
        bundle = _decode(data, where)
        unverified = _parse(bundle.payload)
        if beside and isinstance(unverified, Manifest) and _single_file(unverified):
            # What the signature claims to cover decides where its findings go, even when it
            # then fails to verify; the claim is checked like everything else below.
            model, where = _file_beside(model, unverified, where)
        payload, result.signer = _authenticate(bundle, signature, trust, where)
        result.manifest = _manifest(unverified if payload == bundle.payload else
                                    _parse(payload), where)
    except OSError as exc:
        result.findings.append(UNREADABLE.finding(
            Location(path=where.signature), f"cannot read the signature: {exc.strerror or exc}"))
        return result
    except _Refused as refused:
        result.findings.append(refused.finding)
        return result
    result.findings.extend(_check_folder(model, signature, result.manifest, where, workers,
                                         early))
    if not result.findings:
        count = len(result.manifest.by_path())
        result.findings.append(rules.VERIFIED.finding(
            Location(path=where.signature),
            f"signature verified: {_files(count)} of {where.folder} match, signed by "
            f"{result.signer}",
            properties=where.properties(signer=result.signer, files=count,
                                        method=result.manifest.serialization.method,
                                        hash=result.manifest.serialization.hash_type)))
    return result


def _decode(data: bytes, where: Where) -> Bundle:
    location = Location(path=where.signature)
    try:
        return parse_bundle(data)
    except UnsupportedError as exc:
        raise _Refused(rules.UNSUPPORTED.finding(location, str(exc),
                                                 properties=where.properties())) from None
    except FormatError as exc:
        raise _Refused(rules.SIGNATURE_MALFORMED.finding(
            location, f"the signature file is corrupt: {exc}",
            properties=where.properties())) from None


def _authenticate(bundle: Bundle, signature: Path, trust: Trust,
                  where: Where) -> tuple[bytes, str]:
    """The signed payload and who signed it, or a refusal saying exactly why not."""
    location = Location(path=where.signature)
    props = where.properties(kind=bundle.kind)
    if bundle.kind == "sigstore":
        if trust.sigstore is None:
            raise _Refused(rules.UNSUPPORTED.finding(
                location, "Sigstore keyless signature: verify it with `bastion verify "
                "--sigstore --identity ... --issuer ...` (needs the network)", properties=props))
        try:
            return trust.sigstore(signature)
        except ValueError as exc:
            raise _Refused(rules.CERT_UNTRUSTED.finding(
                location, f"Sigstore verification failed: {exc}", properties=props)) from None
    message = pae(bundle.payload, bundle.payload_type)
    for key in trust.keys:
        if any(verify_bytes(key.key, sig, message) for sig in bundle.signatures):
            return _payload(bundle, location, props), key.label
    if bundle.kind == "chain" and trust.roots:
        return _payload(bundle, location, props), _by_certificate(bundle, message, trust,
                                                                  location, props)
    raise _Refused(_untrusted(bundle, trust, location, props))


def _payload(bundle: Bundle, location: Location, props: dict[str, object]) -> bytes:
    if bundle.payload_type != PAYLOAD_TYPE:
        raise _Refused(rules.MANIFEST_INVALID.finding(
            location, f"the signed payload is {bundle.payload_type!r}, not an in-toto "
            "statement", properties=props))
    return bundle.payload


def _by_certificate(bundle: Bundle, message: bytes, trust: Trust, location: Location,
                    props: dict[str, object]) -> str:
    from bastion.sign.certs import CertError, verify_chain

    try:
        key, subject = verify_chain(bundle.certificates, trust.roots, trust.identity)
    except CertError as exc:
        raise _Refused(rules.CERT_UNTRUSTED.finding(location, str(exc), properties=props)) \
            from None
    if not any(verify_bytes(key, sig, message) for sig in bundle.signatures):
        raise _Refused(rules.SIGNATURE_INVALID.finding(
            location, f"the signature does not verify with the key of its certificate "
            f"({subject}): the signed manifest or the signature was altered", properties=props))
    return f"certificate {subject}"


def _untrusted(bundle: Bundle, trust: Trust, location: Location,
               props: dict[str, object]) -> Finding:
    if trust.empty:
        return rules.UNSUPPORTED.finding(
            location, "no trusted key or certificate to verify the signature with",
            properties=props)
    if bundle.kind == "chain" and not trust.roots:
        return rules.CERT_UNTRUSTED.finding(
            location, "signed with a certificate that no trusted key matches; give the CA "
            "certificates to verify it (--cert-chain, or [sign] certificates)",
            properties=props)
    if not trust.keys:
        return rules.WRONG_KEY.finding(
            location, "signed with a bare key, but only CA certificates are trusted (give "
            "the signer's public key: --key, or [sign] keys)", properties=props)
    hints = {k.hint: k for k in trust.keys}
    if bundle.key_hint and bundle.key_hint.lower() in hints:
        key = hints[bundle.key_hint.lower()]
        return rules.SIGNATURE_INVALID.finding(
            location, f"the signature names the trusted {key.label} but does not verify: "
            "the signed manifest or the signature was altered", properties=props)
    trusted = "; ".join(k.label for k in trust.keys)
    if bundle.key_hint:
        return rules.WRONG_KEY.finding(
            location, f"signed by another key (hint {bundle.key_hint[:16]}…), not a trusted "
            f"one ({trusted})", evidence=f"key hint {bundle.key_hint}", properties=props)
    return rules.WRONG_KEY.finding(
        location, f"the signature does not verify with any trusted key ({trusted}); it names "
        "no key, so another key and an altered signature cannot be told apart",
        properties=props)


def _parse(payload: bytes) -> Manifest | ValueError:
    try:
        return parse_statement(payload)
    except (ManifestError, UnsupportedError) as exc:
        return exc


def _manifest(parsed: Manifest | ValueError, where: Where) -> Manifest:
    """The signed manifest, or a refusal saying why the signed statement is not valid."""
    location = Location(path=where.signature)
    if isinstance(parsed, UnsupportedError):
        raise _Refused(rules.UNSUPPORTED.finding(location, str(parsed),
                                                 properties=where.properties()))
    if isinstance(parsed, ValueError):
        raise _Refused(rules.MANIFEST_INVALID.finding(
            location, f"the signed manifest is invalid: {parsed}",
            properties=where.properties()))
    return parsed


def _single_file(manifest: Manifest) -> bool:
    paths = set(manifest.by_path())
    return paths == {"."}


def _file_beside(folder: Path, manifest: Manifest, where: Where) -> tuple[Path, Where]:
    """The file a single-file signature names, in the signature's folder."""
    name = manifest.model_name
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise _Refused(rules.MANIFEST_INVALID.finding(
            Location(path=where.signature), f"the single-file signature names {name!r}, "
            "which is not a file name", properties=where.properties()))
    shown = name if where.folder in ("", ".") else f"{where.folder.rstrip('/')}/{name}"
    return folder / name, Where(shown, where.signature)


def _check_folder(model: Path, signature: Path, manifest: Manifest, where: Where,
                  workers: int | None, early: Early | None = None) -> list[Finding]:
    serialization = manifest.serialization
    if (early is not None and Path(early.model) == model
            and early.serialization == serialization):
        started = early.hashing
    else:
        if early is not None:
            early.cancel()
        try:
            started = start_hashing_as(model, signature, serialization, workers)
        except (OSError, ManifestError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            return [UNREADABLE.finding(Location(path=where.folder),
                                       f"cannot read the model: {reason}")]
        except HashingError as exc:
            return [rules.UNSUPPORTED.finding(Location(path=where.signature), exc.reason,
                                              properties=where.properties())]
    walk, files = started.walk, started.files
    findings = [rules.FILE_UNVERIFIABLE.finding(where.location(p.rel), f"{p.rel}: {p.reason}",
                                                properties=where.properties(path=p.rel))
                for p in walk.problems]
    for f in (f for f in walk.files if f.link and f not in files):
        findings.append(rules.FILE_UNVERIFIABLE.finding(
            where.location(f.rel), f"{f.rel} is a symbolic link, and the signature was "
            "made without links", properties=where.properties(path=f.rel)))
    hashed = started.pending.result()
    findings.extend(rules.FILE_UNVERIFIABLE.finding(
        where.location(e.rel), f"{e.rel}: {e.reason}", properties=where.properties(path=e.rel))
        for e in hashed.errors)
    skip = frozenset({p.rel for p in walk.problems} | {e.rel for e in hashed.errors}
                     | {f.rel for f in walk.files if f.link and f not in files})
    findings.extend(compare(manifest, hashed.resources, [f for f in files if f.rel not in skip],
                            where, skip))
    return findings


def _files(count: int) -> str:
    return "1 file" if count == 1 else f"{count} files"
