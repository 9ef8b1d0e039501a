"""The parts of ``bastion sign`` and ``bastion verify`` that need no CLI framework: the key's
password, what signing says, the trust the options name, and the verification report.
Shared by the Typer commands (:mod:`bastion.cli.sign`) and their fast paths
(:mod:`bastion.cli.fast`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from bastion.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # pathlib too: the sign fast path imports this before hashing starts
    from pathlib import Path

    from bastion.findings import Report
    from bastion.policy import Policy
    from bastion.sign.early import Early
    from bastion.sign.interface import Signed
    from bastion.sign.verify import Trust


def password_from_env(variable: str | None) -> bytes | None:
    """The private key's password from the variable ``--password-env`` names."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise UsageError(f"--password-env {variable}: the variable is not set")
    return value.encode("utf-8")


def signed_lines(done: Signed) -> list[str]:
    """What ``bastion sign`` says on standard error when it is done."""
    serialization = done.manifest.serialization
    return [f"signed {done.files} files ({done.bytes:,} bytes, {serialization.method}, "
            f"{serialization.hash_type}) in {done.seconds:.2f} s with {done.signer}: "
            f"{done.signature}", *(f"note: {note}" for note in done.notes)]


def trust_from_options(keys: Sequence[str], chain: Sequence[Path], identity: str | None,
                       sigstore: bool, issuer: str | None, staging: bool,
                       policy: Policy) -> Trust:
    """What ``--key``/``--cert-chain``/``--sigstore`` say to trust, else the policy's keys."""
    from bastion.sign.keys import load_public_key
    from bastion.sign.verify import Trust

    if sigstore:
        if identity is None or issuer is None:
            raise UsageError("--sigstore needs --identity and --issuer",
                             hint="e.g. --identity you@example.com --issuer "
                                  "https://accounts.google.com")
        from bastion.sign.sigstore import sigstore_check

        return Trust(sigstore=sigstore_check(identity, issuer, staging=staging))
    if not keys and not chain:
        from bastion.sign.analyzer import trust_from_policy

        trust = trust_from_policy(policy)
        if trust.empty:
            raise UsageError("nothing to verify with", hint="give --key PUBLIC.pem or "
                             "--cert-chain CA.pem, or set [sign] keys in the policy")
        return trust if identity is None else Trust(trust.keys, trust.roots, identity)
    roots: tuple[object, ...] = ()
    if chain:  # cryptography's X.509 code only when certificates are given
        from bastion.sign.certs import load_certificates

        roots = tuple(load_certificates(chain, "CA certificate"))
    return Trust(keys=tuple(load_public_key(k) for k in keys), roots=roots, identity=identity)


def verify_report(path: Path, signature: Path | None, trust: Trust, policy: Policy,
                  source: str, workers: int | None, early: Early | None = None) -> Report:
    """``bastion verify``'s report: every difference, a wrong key, a missing signature."""
    from datetime import UTC, datetime  # not on the signing path, which starts hashing first

    from bastion import __version__
    from bastion.findings import Location, Report, ScanStats
    from bastion.policy import apply_policy
    from bastion.sign import rules
    from bastion.sign.manifest import default_signature
    from bastion.sign.verify import verify_model

    started, clock = datetime.now(UTC), time.perf_counter()
    if not os.path.lexists(path):
        raise UsageError(f"path not found: {path}")
    if signature is not None and not signature.is_file():
        raise UsageError(f"signature file not found: {signature}")
    sig = signature or default_signature(path)
    if sig.is_file():
        result = verify_model(path, sig, trust, workers=workers, early=early)
        findings = result.findings
        manifest = result.manifest
        files = len(manifest.by_path()) if manifest is not None else 0
        size = sum((manifest.sizes or {}).values()) if manifest is not None else 0
    else:
        findings = [rules.MISSING.finding(Location(path=str(path)), f"{path} is not signed: "
                                          f"no signature at {sig}")]
        files = size = 0
    return Report(
        tool_version=__version__, started=started, roots=(str(path),), fail_on=policy.fail_on,
        findings=tuple(apply_policy(findings, policy, source=source)),
        stats=ScanStats(files=files, bytes=size, analyzed=1,
                        seconds=round(time.perf_counter() - clock, 3)))
