"""``bastion sign``, ``bastion verify`` and ``bastion keygen``: model signatures.

Signatures are OpenSSF model-signing bundles, so a model signed here verifies with
``model_signing verify`` and the reverse. ``verify`` reports through the shared renderers:
every difference between the folder and what was signed, a wrong key or an altered
signature is a finding (exit 1); a missing key file or a bad option is a usage error (exit 2).
Nothing heavy is imported until a command runs: ``cryptography`` only on the signing path.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bastion.cli.common import (
    FAIL_ON,
    FORMAT,
    OUTPUT,
    POLICY,
    QUIET,
    emit,
    exit_code,
    guarded,
    resolve_policy,
    stderr_console,
)
from bastion.cli.signing import (
    password_from_env,
    signed_lines,
    trust_from_options,
    verify_report,
)
from bastion.errors import UsageError
from bastion.findings import Severity
from bastion.report import Format
from bastion.sign.manifest import DEFAULT_SHARD_SIZE

if TYPE_CHECKING:
    from bastion.sign.interface import Options


class Method(StrEnum):
    SHARDS = "shards"
    FILES = "files"


class Hash(StrEnum):
    SHA256 = "sha256"
    BLAKE2B = "blake2b"
    BLAKE3 = "blake3"


class KeyType(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ED25519 = "ed25519"


WORKERS = typer.Option(None, "--workers", min=1, help="Hashing threads (default: one per CPU).")
PASSWORD_ENV = typer.Option(None, "--password-env", metavar="VAR",
                            help="Read the private key's password from this environment "
                                 "variable.")


def sign(
    path: Path = typer.Argument(..., help="Model folder or file to sign.", show_default=False),
    key: Path | None = typer.Option(None, "--key", "-k", dir_okay=False,
                                    help="Private key (PEM): ECDSA P-256/P-384 or Ed25519."),
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False,
                                       help="Signature file (default: FOLDER/model.sig, or "
                                            "FILE.sig for a file)."),
    cert: Path | None = typer.Option(None, "--cert", dir_okay=False,
                                     help="Certificate mode: the signing certificate (PEM)."),
    cert_chain: list[Path] = typer.Option([], "--cert-chain", dir_okay=False,
                                          help="Certificate mode: intermediate and root "
                                               "certificates to include (repeatable)."),
    sigstore: bool = typer.Option(False, "--sigstore", help="Sign keylessly with Sigstore, "
                                  "through the model-signing library (needs the network)."),
    staging: bool = typer.Option(False, "--staging", help="With --sigstore: Sigstore staging."),
    identity_token: str | None = typer.Option(None, "--identity-token",
                                              envvar="BASTION_SIGSTORE_TOKEN",
                                              help="With --sigstore: an OIDC token to use."),
    method: Method = typer.Option(Method.SHARDS, "--method", help="'shards' hashes large "
                                  "files in parallel; 'files' gives one digest per file."),
    hash_type: Hash = typer.Option(Hash.SHA256, "--hash", help="Digest algorithm."),
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, "--shard-size", min=1,
                                   help="Shard size in bytes (shards method)."),
    ignore: list[str] = typer.Option([], "--ignore", help="Path inside the folder not to "
                                     "sign (a folder ignores all inside it; repeatable)."),
    include_git: bool = typer.Option(False, "--include-git", help="Also sign .git, "
                                     ".github, .gitignore and .gitattributes."),
    workers: int | None = WORKERS,
    password_env: str | None = PASSWORD_ENV,
    quiet: bool = QUIET,
) -> None:
    """Sign a model folder or file (OpenSSF model-signing format)."""
    from bastion.sign.interface import Options, default_signature, sign_model

    with guarded():
        options = Options(method.value, hash_type.value, shard_size, tuple(ignore),
                          not include_git, workers)
        if sigstore:
            if key is not None or cert is not None:
                raise UsageError("--sigstore signs keylessly; drop --key and --cert")
            _sign_sigstore(path, output or default_signature(path), options, staging,
                           identity_token, quiet)
            return
        if key is None:
            raise UsageError("no signing key", hint="give --key PRIVATE.pem (make one with "
                             "`bastion keygen`), or --sigstore")
        done = sign_model(path, key, output=output, certificate=cert, chain=cert_chain,
                          password=password_from_env(password_env), options=options)
        if not quiet:
            console = stderr_console()
            for line in signed_lines(done):
                console.print(line, markup=False, highlight=False)


def _sign_sigstore(path: Path, output: Path, options: Options, staging: bool,
                   token: str | None, quiet: bool) -> None:
    from bastion.sign.sigstore import sign_sigstore

    options.check()
    sign_sigstore(path, output, method=options.method, hash_type=options.hash_type,
                  shard_size=options.shard_size, ignore=options.ignore,
                  ignore_git=options.ignore_git, staging=staging, identity_token=token)
    if not quiet:
        stderr_console().print(f"signed with Sigstore: {output}", markup=False)


def verify(
    path: Path = typer.Argument(..., help="Model folder or file to verify.", show_default=False),
    signature: Path | None = typer.Option(None, "--signature", "-s", dir_okay=False,
                                          help="Signature file (default: FOLDER/model.sig, "
                                               "or FILE.sig)."),
    key: list[str] = typer.Option([], "--key", "-k", help="Trusted public key (PEM file; "
                                  "repeatable). Default: the policy's [sign] keys."),
    cert_chain: list[Path] = typer.Option([], "--cert-chain", dir_okay=False,
                                          help="Certificate mode: trusted CA certificates "
                                               "(PEM; repeatable)."),
    identity: str | None = typer.Option(None, "--identity", help="The signer's identity: "
                                        "a certificate subject alternative name, or the "
                                        "Sigstore identity (e-mail, URI)."),
    sigstore: bool = typer.Option(False, "--sigstore", help="Verify a Sigstore keyless "
                                  "signature through model-signing (needs the network)."),
    issuer: str | None = typer.Option(None, "--issuer", help="With --sigstore: the OIDC "
                                      "issuer of the identity."),
    staging: bool = typer.Option(False, "--staging", help="With --sigstore: Sigstore staging."),
    workers: int | None = WORKERS,
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
) -> None:
    """Verify a signed model: exit 1 when anything differs from what was signed."""
    with guarded():
        policy, source = resolve_policy(policy_file, fail_on)
        trust = trust_from_options(key, cert_chain, identity, sigstore, issuer, staging, policy)
        report = verify_report(path, signature, trust, policy, source, workers)
        emit(report, fmt, output, quiet)
    raise typer.Exit(exit_code(report))


def keygen(
    path: Path = typer.Argument(..., help="Private key file to write; the public key goes "
                                "beside it (release.key → release.pub).", show_default=False),
    key_type: KeyType = typer.Option(KeyType.ECDSA_P256, "--type", "-t", help="Key type."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    password_env: str | None = PASSWORD_ENV,
) -> None:
    """Write a new signing key pair (private key readable by its owner only)."""
    from bastion.sign.keys import key_hint, write_keypair

    with guarded():
        private, public, key = write_keypair(path, key_type.value, force=force,
                                             password=password_from_env(password_env))
        console = stderr_console()
        console.print(f"wrote {key_type.value} private key {private} (mode 0600) and public "
                      f"key {public}; key hint {key_hint(key.public_key())}", markup=False,
                      highlight=False)
        if key_type is KeyType.ED25519:
            console.print("note: Ed25519 signatures verify with Bastion only; model-signing "
                          "accepts ECDSA keys (use --type ecdsa-p256 for interoperability)",
                          markup=False, highlight=False)
