"""What a cached result is keyed by, and why each part is there.

A file's raw findings (before the policy's severity overrides and ignores) are a function of
its bytes and of four more things, which together make the cache key:

* the **content digest** (SHA-256 of the bytes);
* the **scanner version** (:data:`SCANNER_VERSION`): the release, a digest of the scanning
  code itself (so a development checkout invalidates when an analyzer changes, not only at
  the next release) and the optional format libraries present (``lz4`` decides whether LZ4
  archives are read or reported as undecodable);
* the **policy digest** (:func:`policy_digest`): only the policy parts analyzers read
  (:data:`ANALYZER_POLICY`: allow-lists and limits); what is applied after the analyzers
  (fail-on, severity overrides, ignores, excludes) or only by whole-scan checks (signing)
  does not invalidate anything;
* the **analyzers**: a digest of the registry (which analyzers exist, in dispatch order:
  nested members are dispatched through it) and the names of those that claimed the file (a
  claim may depend on the file's name: ``requirements.txt`` is a manifest, the same bytes
  under another name are not).

This module imports nothing heavy: worker processes use it too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path

from bastion import __version__
from bastion.analyzer import Analyzer, LazyAnalyzer, Registry
from bastion.policy import Policy
from bastion.records import as_dict

#: Version of the cached payload's layout; bump it when :mod:`bastion.scale.work` changes it.
PAYLOAD_FORMAT = 1

#: Policy fields whose values analyzers read: part of the key.
ANALYZER_POLICY = ("allow", "limits")
#: Limits that are checked before any analyzer runs (the file is then not analysed, and not
#: cached), so they are left out of the digest.
PRE_ANALYSIS_LIMITS = ("max_file_size",)
#: Policy fields applied after the analyzers (or by the walk, the whole-scan checks, other
#: commands): changing them never invalidates a cached result. A test checks that every
#: field of :class:`~bastion.policy.Policy` is in one list or the other.
NOT_ANALYZER_POLICY = ("fail_on", "severity", "ignore", "exclude", "sign", "gateway", "assess")

#: Subpackages that cannot change a scan's raw findings: left out of the code digest so that
#: editing them does not throw the cache away.
_NOT_SCANNING = frozenset({"gateway", "cli", "report", "sbom"})


@functools.cache
def release() -> str:
    """The release and the optional format libraries present: what a worker of a cluster
    must share with the driver (checked on every batch; see :mod:`bastion.scale.runner`)."""
    lz4 = "+lz4" if find_spec("lz4") is not None else ""
    return f"{__version__}{lz4}.p{PAYLOAD_FORMAT}"


@functools.cache
def code_version() -> str:
    """The scanner's identity: :func:`release` and a digest of the scanning code."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    try:
        files = sorted(
            p for p in package.rglob("*")
            if p.suffix in (".py", ".txt") and p.is_file()
            and p.relative_to(package).parts[0] not in _NOT_SCANNING
        )
        for path in files:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
        code = digest.hexdigest()[:16]
    except OSError:  # an unusual install (zipped): the release alone
        code = "unknown"
    return f"{release()}+{code}"


#: The scanner version the cache key uses (tests replace it to simulate an upgrade).
SCANNER_VERSION = code_version()


def policy_digest(policy: Policy) -> str:
    """SHA-256 of the policy parts analyzers read (:data:`ANALYZER_POLICY`)."""
    parts: dict[str, object] = {}
    for name in ANALYZER_POLICY:
        value = as_dict(getattr(policy, name))
        if name == "limits":
            value = {k: v for k, v in value.items() if k not in PRE_ANALYSIS_LIMITS}
        parts[name] = value
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _identity(analyzer: Analyzer) -> str:
    if isinstance(analyzer, LazyAnalyzer):
        return f"{analyzer.name}={analyzer.spec}"
    cls = type(analyzer)
    return f"{analyzer.name}={cls.__module__}:{cls.__qualname__}"


def registry_digest(registry: Registry, scanner: str) -> str:
    """SHA-256 of the analyzers (names and implementations, in order) and the scanner."""
    text = "\n".join((scanner, *(_identity(a) for a in registry)))
    return hashlib.sha256(text.encode()).hexdigest()


def result_key(digest: str, scanner: str, policy: str, registry: str,
               claimants: Iterable[str]) -> str:
    """The key of one file's cached result (the file name is a separate column: see
    :mod:`bastion.scale.work` for when a result depends on it)."""
    text = "\0".join((digest, scanner, policy, registry, ",".join(claimants)))
    return hashlib.sha256(text.encode()).hexdigest()


def stat_signature(st: os.stat_result) -> str:
    """What says a file is unchanged without reading it: size, times, inode and device.

    The change time is in on purpose: ``touch -d`` can put a modification time back after
    rewriting a file, but nothing short of the system clock sets the change time, so a
    rewritten file is always hashed again.
    """
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
