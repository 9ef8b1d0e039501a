"""PyTorch checkpoints in all three layouts ``torch.load`` accepts, plus TorchScript.

* zip (PyTorch >= 1.6, and TorchScript archives): read with Bastion's own zip reader, which
  sees what PyTorch's lenient reader sees and reports where readers disagree; every member that
  is a pickle is walked, whatever its name or folder, and every ``*.pkl`` member is walked even
  when it does not look like one. Tensor storages (``<prefix>/data/<key>``) are never read.
* legacy raw stream (``_use_new_zipfile_serialization=False``): a magic-number pickle, a
  protocol-version pickle, a sys-info pickle, the object pickle and the storage-key pickle,
  followed by raw storage bytes that are not read.
* legacy tar (PyTorch < 0.4): members ``sys_info``, ``pickle``, ``tensors``, ``storages``.

The zip and tar analyzers are the generic archive analyzer with PyTorch's member rules, so
bombs, traversal names and zip discrepancies are reported the same way for both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Severity
from bastion.rules import Rule
from bastion.scan.archive import ArchiveAnalyzer, Budget
from bastion.scan.pickle import looks_like_pickle, scan_pickles
from bastion.scan.tarutil import TarFormatError, TarReader, looks_like_tar
from bastion.scan.ziputil import ZipFormatError, ZipMember, read_member, read_zip

ZIP_MAGIC = b"PK\x03\x04"
#: The first pickle of the legacy raw format: protocol 2, LONG1 of torch's magic number, STOP.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
LEGACY_PICKLES = 5
_STORAGE = re.compile(r"(^|/)data/\d+$")
_LEGACY_TAR_MEMBERS = frozenset({"sys_info", "pickle", "tensors", "storages"})

TORCHSCRIPT = Rule(
    id="TORCH-TORCHSCRIPT", title="TorchScript archive (holds compiled code)",
    severity=Severity.INFO, category=Category.CODE_EXECUTION,
    description="The archive is a TorchScript program: torch.jit.load runs its code/ members as "
                "TorchScript. TorchScript cannot import Python modules, but its operators run; "
                "its pickles (constants.pkl, data.pkl) are analysed.",
    remediation="Load TorchScript only from trusted sources.")
HIDDEN_PICKLE = Rule(
    id="TORCH-HIDDEN-PICKLE", title="Pickle hidden in a tensor storage member",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="A tensor storage member (data/<key>) starts with a pickle that imports code. "
                "torch.load reads storages as raw bytes, so it does not run it, but a payload "
                "staged where scanners do not look is a sign of tampering, and any other "
                "reader that unpickles the member runs it.",
    remediation="Do not use the file; obtain the checkpoint from a trusted source.",
    references=("ML06", "AML.T0010", "CWE-502"))
NO_PICKLE = Rule(
    id="TORCH-NO-DATA-PICKLE", title="PyTorch archive without data.pkl",
    severity=Severity.LOW, category=Category.MALFORMED,
    description="The zip has PyTorch's layout but no data.pkl; torch.load will fail on it.")
RULES: tuple[Rule, ...] = (TORCHSCRIPT, HIDDEN_PICKLE, NO_PICKLE)
#: Pickle findings that make a storage member's hidden pickle worth reporting.
_CODE_RULES = frozenset({"PICKLE-DANGEROUS-GLOBAL", "PICKLE-DYNAMIC-IMPORT",
                         "PICKLE-SUSPICIOUS-GLOBAL", "PICKLE-EXTENSION-CODE",
                         "PICKLE-GLOBAL-MUTATION", "PICKLE-UNKNOWN-GLOBAL"})


def _is_torch_zip(names: list[str]) -> bool:
    return any(n == "data.pkl" or n.endswith(("/data.pkl", "/constants.pkl", "/.data/version",
                                               "/byteorder")) for n in names)


class TorchZipAnalyzer(ArchiveAnalyzer):
    """PyTorch >= 1.6 checkpoints and TorchScript archives."""

    name = "torch-zip"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        if not target.head.startswith(ZIP_MAGIC):
            return False
        with target.open() as stream:
            try:
                archive = read_zip(stream, size=target.size, max_members=100_000)
            except ZipFormatError:
                return False
        return _is_torch_zip([m.name for m in archive.members])

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        with target.open() as stream:
            try:
                names = [m.name for m in read_zip(stream, size=target.size).members]
            except ZipFormatError:
                names = []
        if any("/code/" in n or n.startswith("code/") for n in names):
            yield TORCHSCRIPT.finding(target.location, "TorchScript archive (code/ members)")
        if names and not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            yield NO_PICKLE.finding(target.location, "no data.pkl member")
        yield from super().analyze(target, ctx)

    def _wanted(self, name: str) -> bool:
        return not name.endswith("/")

    def _zip_member(self, target: Target, stream: IO[bytes], m: ZipMember, ctx: Context,
                    budget: Budget, overlap: bool) -> Iterator[Finding]:
        if _STORAGE.search(m.name):
            # Tensor bytes are never read: only the first bytes, to see if a pickle hides there.
            head = read_member(stream, m, 64, limits=ctx.policy.limits).data
            if not (head[:1] == b"\x80" and looks_like_pickle(head)):
                return
        yield from super()._zip_member(target, stream, m, ctx, budget, overlap)

    def _analyze_member(self, child: Target, ctx: Context) -> Iterator[Finding]:
        if _STORAGE.search(child.location.members[-1]):
            found = [f for f in scan_pickles(child, ctx, size=child.size)
                     if f.rule_id in _CODE_RULES]
            if found:
                yield HIDDEN_PICKLE.finding(child.location, "storage member holds a pickle "
                                            f"that imports {len(found)} name(s)")
                yield from found
        elif child.name.endswith(".pkl"):  # torch unpickles these whatever they look like
            yield from scan_pickles(child, ctx, size=child.size)
        else:
            yield from ctx.analyze_nested(child)


class TorchLegacyAnalyzer:
    """The pre-zip raw stream format: five pickles, then raw storages."""

    name = "torch-legacy"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return target.head.startswith(LEGACY_MAGIC)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        yield from scan_pickles(target, ctx, max_pickles=LEGACY_PICKLES)


class TorchTarAnalyzer(ArchiveAnalyzer):
    """The oldest format: a tar of pickles (``storages`` interleaves pickles and raw data)."""

    name = "torch-tar"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        if not looks_like_tar(target.head):
            return False
        names = set()
        with target.open() as stream:
            try:
                for _, member in zip(range(16), TarReader(stream, target.size).members(),
                                     strict=False):
                    names.add(member.name)
            except TarFormatError:
                return False
        return "pickle" in names and bool(names & {"storages", "tensors", "sys_info"})

    def _analyze_member(self, child: Target, ctx: Context) -> Iterator[Finding]:
        name = child.location.members[-1] if child.location.members else ""
        if name == "storages":  # one pickle (the count), then per storage: pickle + raw bytes
            yield from scan_pickles(child, ctx, size=child.size, max_pickles=1)
        elif name in _LEGACY_TAR_MEMBERS:
            yield from scan_pickles(child, ctx, size=child.size)
        else:
            yield from ctx.analyze_nested(child)
