"""The ``sign`` capability of ``bastion scan``: signature status of model folders.

Two halves, because a scan sees files one at a time:

* :class:`SignatureAnalyzer` claims model signatures by content (a Sigstore bundle's JSON
  head) and, when the policy has a ``[sign]`` section, verifies the folder the signature
  lies in (or, for a single-file signature, the file it names beside it) against the
  policy's trusted keys and CA certificates. Every difference is a finding; a folder that
  verifies gets one ``SIGN-VERIFIED`` finding (info) naming the key that signed it.
* :func:`required_signatures` runs once over the whole walk: every file the policy's
  ``[sign] require`` globs match must lie under a folder whose signature was met, or it is
  reported (``SIGN-MISSING``, one finding per folder). It needs the list of files walked
  and the findings so far, which an analyzer never sees, so the engine calls it after the
  per-file pass (see :data:`FOLDER_CHECKS`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.analyzer import Context, Target
from bastion.errors import UsageError
from bastion.findings import Finding, Location
from bastion.policy import Policy, path_matches
from bastion.rules import ANALYZER_ERROR, Rule
from bastion.sign import rules
from bastion.sign.formats import MAX_BUNDLE_SIZE, sniff
from bastion.sign.manifest import DEFAULT_IGNORES, DEFAULT_SIGNATURE_NAME

if TYPE_CHECKING:
    from bastion.sign.verify import Trust

#: How many file names a SIGN-MISSING message lists before "and N more".
_SHOWN = 5


class SignatureAnalyzer:
    """Verify each model signature found against the policy's trusted keys."""

    name = "model-signature"
    capability = "sign"
    rules: tuple[Rule, ...] = rules.RULES

    def claims(self, target: Target) -> bool:
        return sniff(target.head)

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        if not ctx.policy.sign.active or target.location.members:
            return  # no signing policy; or a signature inside an archive: no folder to check
        from bastion.sign.verify import verify_model

        with target.open() as handle:
            data = handle.read(MAX_BUNDLE_SIZE + 1)
        display = target.location.path
        folder = posixpath.dirname(display) or "."
        result = verify_model(Path(folder), Path(display), trust_from_policy(ctx.policy),
                              folder=folder, signature_name=display, data=data, beside=True)
        yield from result.findings


def trust_from_policy(policy: Policy) -> Trust:
    """The keys, CA certificates and identity ``[sign]`` trusts (errors name the key)."""
    from bastion.sign.certs import load_certificates
    from bastion.sign.keys import load_public_key
    from bastion.sign.verify import Trust

    settings = policy.sign
    try:
        keys = tuple(load_public_key(spec) for spec in settings.keys)
        roots = tuple(load_certificates(settings.certificates, "[sign] certificates"))
    except UsageError as exc:
        raise UsageError(f"policy [sign]: {exc.message}", hint=exc.hint) from None
    return Trust(keys=keys, roots=roots, identity=settings.identity)


def _signed_folder(finding: Finding) -> str | None:
    """The folder (or file) a finding of the signature analyzer says a signature covers."""
    folder = finding.properties.get("signed_folder")
    if isinstance(folder, str):
        return folder
    if finding.rule_id == ANALYZER_ERROR.id and \
            finding.properties.get("analyzer") == SignatureAnalyzer.name:
        return posixpath.dirname(finding.location.path) or "."
    return None


def _covers(folder: str, path: str) -> bool:
    if folder in ("", "."):
        return not path.startswith(("/", "../"))
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def required_signatures(paths: Sequence[str], findings: Sequence[Finding],
                        policy: Policy) -> list[Finding]:
    """``SIGN-MISSING`` for each folder with files ``[sign] require`` matches and no signature.

    ``paths`` are the display paths of every file walked; ``findings`` are those of the
    per-file pass, from which the folders whose signature was met are read. Uncovered files
    are grouped under the top-most folder of a chain of folders that all hold some (a model
    folder and its subfolders make one finding). Git metadata, which signatures ignore by
    default, is never required.
    """
    patterns = policy.sign.require
    if not patterns:
        return []
    signed = {f for f in map(_signed_folder, findings) if f is not None}
    signatures = {str(f.properties.get("signature", f.location.path)) for f in findings
                  if _signed_folder(f) is not None}
    uncovered: list[tuple[str, str]] = []
    for path in paths:
        if path in signatures or any(part in DEFAULT_IGNORES for part in path.split("/")):
            continue
        pattern = next((p for p in patterns if path_matches(path, p)), None)
        if pattern is None or any(_covers(folder, path) for folder in signed):
            continue
        uncovered.append((path, pattern))
    holders = {posixpath.dirname(p) or "." for p, _ in uncovered}
    missing: dict[str, list[tuple[str, str]]] = {}
    for path, pattern in uncovered:
        folder = posixpath.dirname(path) or "."
        while folder not in ("", ".", "/") and (posixpath.dirname(folder) or ".") in holders:
            folder = posixpath.dirname(folder) or "."
        missing.setdefault(folder, []).append((path, pattern))
    return [_missing(folder, items) for folder, items in sorted(missing.items())]


def _unscanned_signature(folder: str) -> str | None:
    """A ``model.sig`` in the folder or above it that the scan did not include, if any."""
    current = Path(folder)
    for _ in range(32):
        candidate = current / DEFAULT_SIGNATURE_NAME
        if candidate.is_file():
            return candidate.as_posix()
        if current.parent == current:
            break
        current = current.parent
    return None


def _missing(folder: str, items: list[tuple[str, str]]) -> Finding:
    prefix = "" if folder in ("", ".") else folder.rstrip("/") + "/"
    names = [p.removeprefix(prefix) for p, _ in items]
    shown = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more"
                                         if len(names) > _SHOWN else "")
    patterns = sorted({p for _, p in items})
    count = "1 file" if len(items) == 1 else f"{len(items)} files"
    message = (f"{count} in {folder} must be signed (policy [sign] require "
               f"{', '.join(repr(p) for p in patterns)}) but no signature covers them: {shown}")
    elsewhere = _unscanned_signature(folder)
    if elsewhere is not None:
        message += (f"; {elsewhere} was not part of this scan: scan the whole model folder "
                    "to verify it")
    return rules.MISSING.finding(Location(path=folder), message,
                                 properties={"files": [p for p, _ in items][:1000],
                                             "require": patterns})


#: Checks the engine runs once per scan, after the per-file pass, with the display paths of
#: every file walked, the findings so far and the policy.
FOLDER_CHECKS = (required_signatures,)
