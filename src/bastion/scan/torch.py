"""PyTorch checkpoints in all three layouts ``torch.load`` accepts, plus TorchScript.

* zip (PyTorch >= 1.6, and TorchScript archives): every member that is a pickle, whatever its
  name or folder, is walked; tensor storages (``<prefix>/data/<key>``) are never read.
* legacy raw stream (``_use_new_zipfile_serialization=False``): a magic-number pickle, a
  protocol-version pickle, a sys-info pickle, the object pickle and the storage-key pickle,
  followed by raw storage bytes that are not read.
* legacy tar (PyTorch < 0.4): members ``sys_info``, ``pickle``, ``tensors``, ``storages``.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Iterator
from typing import IO

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Severity
from bastion.rules import Rule
from bastion.scan.pickle import looks_like_pickle, scan_pickles

ZIP_MAGIC = b"PK\x03\x04"
#: The first pickle of the legacy raw format: protocol 2, LONG1 of torch's magic number, STOP.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
LEGACY_PICKLES = 5
_STORAGE = re.compile(r"(^|/)data/\d+$")
_LEGACY_TAR_MEMBERS = {"sys_info", "pickle", "tensors", "storages"}

TORCHSCRIPT = Rule(
    id="TORCH-TORCHSCRIPT", title="TorchScript archive (holds compiled code)",
    severity=Severity.INFO, category=Category.CODE_EXECUTION,
    description="The archive is a TorchScript program: torch.jit.load runs its code/ members as "
                "TorchScript. TorchScript cannot import Python modules, but its operators run; "
                "its pickles (constants.pkl, data.pkl) are analysed.",
    remediation="Load TorchScript only from trusted sources.")
BAD_ARCHIVE = Rule(
    id="TORCH-ARCHIVE-INVALID", title="PyTorch archive cannot be read",
    severity=Severity.HIGH, category=Category.MALFORMED,
    description="The file looks like a PyTorch zip or tar checkpoint but its structure cannot be "
                "read; its pickles could not all be checked, so it fails closed.",
    remediation="Obtain an intact copy from a trusted source.")
NO_PICKLE = Rule(
    id="TORCH-NO-DATA-PICKLE", title="PyTorch archive without data.pkl",
    severity=Severity.LOW, category=Category.MALFORMED,
    description="The zip has PyTorch's layout but no data.pkl; torch.load will fail on it.")
RULES: tuple[Rule, ...] = (TORCHSCRIPT, BAD_ARCHIVE, NO_PICKLE)


def _is_torch_zip(names: list[str]) -> bool:
    return any(n == "data.pkl" or n.endswith("/data.pkl") or n.endswith("/constants.pkl")
               or n.endswith("/.data/version") or n.endswith("/byteorder") for n in names)


def _zip_names(target: Target) -> list[str] | None:
    try:
        with target.open() as stream, zipfile.ZipFile(stream) as archive:
            return archive.namelist()[:100_000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None


class TorchZipAnalyzer:
    """PyTorch >= 1.6 checkpoints and TorchScript archives."""

    name = "torch-zip"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        if not target.head.startswith(ZIP_MAGIC):
            return False
        names = _zip_names(target)
        return names is not None and _is_torch_zip(names)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        limits = ctx.policy.limits
        try:
            handle = target.open()
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            yield BAD_ARCHIVE.finding(target.location, f"zip structure unreadable: {exc}")
            return
        with handle, archive:
            infos = archive.infolist()
            if len(infos) > limits.max_archive_members:
                yield BAD_ARCHIVE.finding(target.location,
                                          f"{len(infos)} members, over the limit")
                infos = infos[: limits.max_archive_members]
            names = [i.filename for i in infos]
            if any("/code/" in n or n.startswith("code/") for n in names):
                yield TORCHSCRIPT.finding(target.location, "TorchScript archive (code/ members)")
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                yield NO_PICKLE.finding(target.location, "no data.pkl member")
            for info in infos:
                if info.is_dir() or _STORAGE.search(info.filename):
                    continue
                yield from self._member(archive, info, target, ctx)

    def _member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Target,
                ctx: Context) -> Iterator[Finding]:
        location = target.location.child(info.filename)
        try:
            with archive.open(info) as member:
                head = member.read(4096)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                RuntimeError) as exc:
            yield BAD_ARCHIVE.finding(location, f"member unreadable: {exc}")
            return
        named_pickle = info.filename.endswith(".pkl")
        if not (named_pickle or looks_like_pickle(head)):
            return

        def opener(info: zipfile.ZipInfo = info) -> IO[bytes]:
            return archive.open(info)

        inner = Target(location, info.file_size, head, opener, target.depth + 1)
        yield from scan_pickles(inner, ctx, size=info.file_size)


class TorchLegacyAnalyzer:
    """The pre-zip raw stream format: five pickles, then raw storages."""

    name = "torch-legacy"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return target.head.startswith(LEGACY_MAGIC)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        yield from scan_pickles(target, ctx, max_pickles=LEGACY_PICKLES)


class TorchTarAnalyzer:
    """The oldest format: a tar of pickles."""

    name = "torch-tar"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        if len(target.head) < 512 or target.head[257:262] != b"ustar":
            return False
        try:
            with target.open() as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
                names = set()
                for _, member in zip(range(16), archive, strict=False):
                    names.add(member.name)
            return "pickle" in names and bool(names & {"storages", "tensors", "sys_info"})
        except (tarfile.TarError, OSError, ValueError, EOFError):
            return False

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        try:
            handle = target.open()
            archive = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
            yield BAD_ARCHIVE.finding(target.location, f"tar structure unreadable: {exc}")
            return
        with handle, archive:
            for count, member in enumerate(archive):
                if count >= ctx.policy.limits.max_archive_members:
                    yield BAD_ARCHIVE.finding(target.location, "too many tar members")
                    return
                if not member.isfile():
                    continue
                yield from self._member(archive, member, target, ctx)

    def _member(self, archive: tarfile.TarFile, member: tarfile.TarInfo, target: Target,
                ctx: Context) -> Iterator[Finding]:
        def opener(member: tarfile.TarInfo = member) -> IO[bytes]:
            extracted = archive.extractfile(member)
            if extracted is None:
                raise OSError("member has no data")
            return extracted

        with opener() as stream:
            head = stream.read(4096)
        inner = Target(target.location.child(member.name), member.size, head, opener,
                       target.depth + 1)
        if member.name in _LEGACY_TAR_MEMBERS:
            # storages holds pickles interleaved with raw bytes: only the first is a pickle
            # torch reads before raw data; the others are fully pickles.
            yield from scan_pickles(inner, ctx, size=member.size,
                                    max_pickles=1 if member.name == "storages" else 256)
        elif looks_like_pickle(head):
            yield from scan_pickles(inner, ctx, size=member.size)
