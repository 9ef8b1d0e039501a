"""What differs between a signed manifest and the folder on disk, one finding per file.

A file is identified by its digests (one, or one per shard). A path in both with other
digests was *modified*; a path only signed was *removed*; a path only on disk was *added*;
and a removed path whose exact digests reappear at an added path was *renamed* (matched one
to one, in path order). Empty files have no shard, so they are never taken for renames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from bastion.findings import Finding, Location, Severity
from bastion.records import dataclass
from bastion.sign import rules
from bastion.sign.manifest import SHARDS, LocalFile, Manifest, Resource

Fingerprint = tuple[tuple[int | None, int | None, bytes], ...]


@dataclass(frozen=True)
class Where:
    """How findings are placed: the folder as displayed, and the signature file."""

    folder: str
    signature: str

    def location(self, rel: str) -> Location:
        if rel == ".":
            return Location(path=self.folder)
        if self.folder in ("", "."):
            return Location(path=rel)
        return Location(path=f"{self.folder.rstrip('/')}/{rel}")

    def properties(self, **extra: object) -> dict[str, object]:
        return {"signature": self.signature, "signed_folder": self.folder, **extra}


def _fingerprint(resources: Sequence[Resource]) -> Fingerprint:
    return tuple((r.start, r.end, r.digest) for r in resources)


def _group(resources: Sequence[Resource], files: Sequence[LocalFile]) -> dict[str, Fingerprint]:
    grouped: dict[str, list[Resource]] = {f.rel: [] for f in files}
    for resource in resources:
        grouped.setdefault(resource.path, []).append(resource)
    return {p: _fingerprint(sorted(rs, key=lambda r: r.start or 0)) for p, rs in grouped.items()}


def compare(signed: Manifest, resources: Sequence[Resource], files: Sequence[LocalFile],
            where: Where, skip: frozenset[str] = frozenset()) -> Iterator[Finding]:
    """Findings for every difference; ``skip`` holds paths already reported as unverifiable."""
    expected = {p: _fingerprint(rs) for p, rs in signed.by_path().items() if p not in skip}
    actual = {p: fp for p, fp in _group(resources, files).items() if p not in skip}
    sizes = {f.rel: f.size for f in files}
    for path in sorted(expected.keys() & actual.keys()):
        if expected[path] != actual[path]:
            yield _modified(path, expected[path], actual[path], signed, sizes.get(path), where)
    removed = sorted(expected.keys() - actual.keys())
    added = sorted(actual.keys() - expected.keys())
    renamed = _renames(removed, added, expected, actual)
    for old, new in renamed.items():
        yield rules.FILE_RENAMED.finding(
            where.location(new), f"{new} is the signed file {old}, renamed",
            evidence=f"signed as {old}; found as {new}",
            properties=where.properties(signed_path=old, path=new))
    moved_to = set(renamed.values())
    for path in removed:
        if path not in renamed:
            yield rules.FILE_REMOVED.finding(
                where.location(path), f"{path} is signed but missing from the folder",
                properties=where.properties(path=path))
    for path in added:
        if path not in moved_to:
            yield _added(path, sizes.get(path), signed, where)


def _renames(removed: Sequence[str], added: Sequence[str], expected: Mapping[str, Fingerprint],
             actual: Mapping[str, Fingerprint]) -> dict[str, str]:
    pool: dict[Fingerprint, list[str]] = {}
    for path in added:
        if actual[path]:
            pool.setdefault(actual[path], []).append(path)
    out: dict[str, str] = {}
    for path in removed:
        candidates = pool.get(expected[path])
        if candidates:
            out[path] = candidates.pop(0)
    return out


def _modified(path: str, expected: Fingerprint, actual: Fingerprint, signed: Manifest,
              size: int | None, where: Where) -> Finding:
    signed_size = _signed_size(path, expected, signed)
    detail = ""
    if signed_size is not None and size is not None and signed_size != size:
        detail = f"; size {signed_size} → {size} bytes"
    if signed.serialization.method == SHARDS and len(expected) > 1:
        differing = [e for e in expected if e not in set(actual)]
        spans = ", ".join(f"{s}–{e}" for s, e, _ in differing[:3])
        more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
        detail = f"; {len(differing)} of {len(expected)} shards differ (bytes {spans}{more})" \
            + detail
    old = expected[0][2].hex() if len(expected) == 1 else f"{len(expected)} shard digests"
    new = actual[0][2].hex() if len(actual) == 1 else f"{len(actual)} shard digests"
    return rules.FILE_MODIFIED.finding(
        where.location(path), f"{path} differs from the signed file{detail}",
        evidence=f"signed {signed.serialization.hash_type} {old}; found {new}",
        properties=where.properties(path=path, signed_size=signed_size, size=size))


def _signed_size(path: str, expected: Fingerprint, signed: Manifest) -> int | None:
    if signed.sizes is not None and path in signed.sizes:
        return signed.sizes[path]
    if signed.serialization.method == SHARDS and expected:
        return expected[-1][1]
    return None


def _added(path: str, size: int | None, signed: Manifest, where: Where) -> Finding:
    if size == 0 and signed.serialization.method == SHARDS and signed.sizes is None:
        return rules.FILE_ADDED.finding(
            where.location(path),
            f"{path} is an empty file the signature cannot cover: shards-mode signatures "
            "without Bastion's file list record no empty files",
            severity=Severity.LOW, properties=where.properties(path=path, size=0))
    shown = f" ({size} bytes)" if size is not None else ""
    return rules.FILE_ADDED.finding(
        where.location(path), f"{path}{shown} is not covered by the signature",
        properties=where.properties(path=path, size=size))
