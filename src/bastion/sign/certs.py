"""Certificate mode: a signature whose key comes with an X.509 chain to a trusted root.

Path validation uses ``cryptography``'s verifier (no OpenSSL bindings): the bundle's first
certificate signs, the rest are untrusted intermediates, and the roots are the PEM files the
verifier trusts. As in model-signing, the chain is checked as of the signing certificate's
``notBefore`` (a model signature has no trusted timestamp, and must stay valid after a
short-lived certificate expires), and the signing certificate must allow signing (key usage
``digitalSignature`` or extended key usage ``codeSigning``). CA certificates must say they
are CAs (basic constraints) and, when they carry a key usage, allow ``keyCertSign``; unlike
the Web PKI profile, a key usage is not required of a private CA.

``--identity`` pins the signer: one of the signing certificate's subject alternative names
(URI, e-mail or DNS) must equal it. Without it, any certificate from the trusted CAs passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import UsageError
from bastion.sign.keys import MAX_KEY_FILE, check_supported

if TYPE_CHECKING:
    from cryptography import x509

    from bastion.sign.keys import PublicKey

#: The longest chain accepted: leaf, a few intermediates, root.
MAX_CHAIN_DEPTH = 8


class CertError(ValueError):
    """The chain does not lead to a trusted root, or its leaf may not sign."""


def load_certificates(paths: Sequence[str | Path], what: str = "certificate") \
        -> list[x509.Certificate]:
    """Every certificate in the PEM files given; a clear error for each way it can fail."""
    if not paths:
        return []  # and x509 (~0.2 s to import) stays unloaded
    from cryptography import x509

    out: list[x509.Certificate] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.stat().st_size > MAX_KEY_FILE * 16:
                raise UsageError(f"{path}: too large to be a {what} file")
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{what} file {path} not found") from None
        except OSError as exc:
            raise UsageError(f"cannot read {what} file {path}: {exc.strerror}") from None
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise UsageError(f"{path}: not a PEM certificate") from None
        out.extend(certs)
    return out


def signing_chain(certificate: Path, chain: Sequence[Path], key: Any) -> list[bytes]:
    """The DER chain a signer puts in the bundle; the certificate must match the key."""
    from cryptography.hazmat.primitives import serialization

    leaf = load_certificates([certificate])
    if len(leaf) != 1:
        raise UsageError(f"{certificate}: expected one certificate, found {len(leaf)}")
    if leaf[0].public_key() != key.public_key():
        raise UsageError(f"{certificate}: the certificate's public key does not match the "
                         "private key")
    rest = load_certificates(chain)
    return [c.public_bytes(serialization.Encoding.DER) for c in (*leaf, *rest)]


def _is_ca(policy: Any, cert: Any, ext: Any) -> None:
    if ext is None or not ext.ca:
        raise ValueError("not a CA certificate (basic constraints)")


def _may_sign_certificates(policy: Any, cert: Any, ext: Any) -> None:
    if ext is not None and not ext.key_cert_sign:
        raise ValueError("CA key usage does not allow keyCertSign")


def verify_chain(chain_der: Sequence[bytes], roots: Sequence[x509.Certificate],
                 identity: str | None = None) -> tuple[PublicKey, str]:
    """The signing key of a chain that validates to a root; :class:`CertError` otherwise."""
    from cryptography import x509
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
        VerificationError,
    )

    if not roots:
        raise CertError("no trusted root certificate to verify the chain against")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        raise CertError(f"a certificate in the signature does not parse: {exc}") from None
    leaf = certs[0]
    ca_policy = (ExtensionPolicy.permit_all()
                 .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _is_ca)
                 .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _may_sign_certificates))
    verifier = (PolicyBuilder().store(Store(list(roots))).time(leaf.not_valid_before_utc)
                .max_chain_depth(MAX_CHAIN_DEPTH)
                .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
                .build_client_verifier())
    try:
        verifier.verify(leaf, certs[1:])
    except VerificationError as exc:
        raise CertError(f"the certificate chain does not lead to a trusted root: {exc}") \
            from None
    _check_can_sign(leaf)
    names = identities(leaf)
    if identity is not None and identity not in names:
        shown = ", ".join(names) or "none"
        raise CertError(f"the signing certificate is for {shown}, not {identity}")
    key = leaf.public_key()
    try:
        check_supported(key, "the signing certificate")
    except UsageError as exc:
        raise CertError(exc.message) from None
    subject = leaf.subject.rfc4514_string() or "(no subject)"
    return key, subject + (f" [{', '.join(names)}]" if names else "")  # type: ignore[return-value]


def _check_can_sign(leaf: x509.Certificate) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        if leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return
    except x509.ExtensionNotFound:
        pass
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING in usages:
            return
    except x509.ExtensionNotFound:
        pass
    raise CertError("the signing certificate may not be used for signing (no digitalSignature "
                    "key usage and no codeSigning extended key usage)")


def identities(cert: x509.Certificate) -> list[str]:
    """The certificate's subject alternative names: URIs, e-mail addresses, DNS names."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for kind in (x509.UniformResourceIdentifier, x509.RFC822Name, x509.DNSName):
        names.extend(str(v) for v in san.get_values_for_type(kind))
    return names
