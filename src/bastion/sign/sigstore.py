"""Sigstore keyless signing, delegated to the ``model-signing`` library when it is installed.

Keyless signing needs the network (an OIDC identity, Fulcio for a short-lived certificate,
Rekor for the transparency log), and the Sigstore client stack is large, so Bastion does not
carry it: ``bastion sign --sigstore`` hands the model to ``model_signing`` with the same
hashing settings, and ``bastion verify --sigstore`` lets it check the bundle against the
Sigstore trust root and the expected identity, then compares the folder itself like any
other signature (so the report says exactly what differs). Install with
``pip install 'bastion-mlsec[sign]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bastion.errors import UsageError
from bastion.sign.formats import PAYLOAD_TYPE
from bastion.sign.manifest import SHARDS
from bastion.sign.verify import SigstoreCheck

_INSTALL = "pip install 'bastion-mlsec[sign]' (model-signing and pyOpenSSL)"


def _library() -> Any:
    try:
        import model_signing.hashing
        import model_signing.signing
        from model_signing._signing import sign_sigstore
    except ImportError as exc:
        raise UsageError(f"Sigstore signing needs the model-signing library ({exc})",
                         hint=_INSTALL) from None
    return model_signing, sign_sigstore


def sign_sigstore(model: Path, output: Path, *, method: str, hash_type: str, shard_size: int,
                  ignore: tuple[str, ...], ignore_git: bool, staging: bool = False,
                  identity_token: str | None = None) -> None:
    """Sign keylessly through model-signing (opens a browser or uses the given token)."""
    library, _ = _library()
    hashing = library.hashing.Config()
    if method == SHARDS and hash_type != "blake3":
        hashing.use_shard_serialization(hashing_algorithm=hash_type, shard_size=shard_size)
    else:
        hashing.use_file_serialization(hashing_algorithm=hash_type)
    ignored = list(ignore)
    own = os.path.relpath(os.path.realpath(output), os.path.realpath(model))
    if model.is_dir() and not own.startswith(".."):
        ignored.append(own)  # model-signing takes ignored paths relative to the model
    hashing.set_ignored_paths(paths=ignored, ignore_git_paths=ignore_git)
    config = library.signing.Config().use_sigstore_signer(use_staging=staging,
                                                          identity_token=identity_token)
    try:
        config.set_hashing_config(hashing).sign(model, output)
    except Exception as exc:  # the library's network and OIDC errors, as one clear message
        raise UsageError(f"Sigstore signing failed: {type(exc).__name__}: {exc}") from None


def sigstore_check(identity: str, issuer: str, *, staging: bool = False,
                   trust_config: Path | None = None) -> SigstoreCheck:
    """A verifier of Sigstore bundles for one identity and OIDC issuer."""
    _, sign_sigstore_module = _library()

    def check(signature: Path) -> tuple[bytes, str]:
        try:
            verifier = sign_sigstore_module.Verifier(
                identity=identity, oidc_issuer=issuer, use_staging=staging,
                trust_config=trust_config)
            bundle = sign_sigstore_module.Signature.read(signature)
            payload_type, payload = verifier._verify_signed_content(bundle)
        except Exception as exc:  # network, trust root, policy: all are "not verified"
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        if payload_type != PAYLOAD_TYPE:
            raise ValueError(f"the signed payload is {payload_type!r}, not an in-toto statement")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return bytes(payload), f"Sigstore identity {identity} (issuer {issuer})"

    return check
