"""Keras models: legacy HDF5 (``.h5``), Keras 3 archives (``.keras``) and bare JSON configs.

Every Keras format carries the model architecture as JSON: the ``model_config`` (and
``training_config``) attribute of an HDF5 file's root group, ``config.json`` inside a
``.keras`` zip, or the file itself for ``model.to_json()`` output. Loading rebuilds the
model from that JSON, so the JSON says what code loading can run: ``Lambda`` layers with
marshalled bytecode, classes and functions resolved from arbitrary modules, non-modelling
Keras APIs (CVE-2025-1550, CVE-2025-8747, CVE-2025-9906), layers that open files named in
the config (CVE-2025-12058). :mod:`bastion.scan._keras_config` finds them.

HDF5 is read by :mod:`bastion.scan._hdf5`, a bounded pure-Python reader of the root
group's attributes, never by h5py: the HDF5 C library is not something to hand a hostile
file to inside a security gate. Every HDF5 file is claimed, not only those whose first
4 KiB happen to show ``model_config``, because a crafted file can move its attributes out
of that window. Where the reader meets a layout it does not follow (attributes in dense
storage, shared messages) it falls back to a bounded raw scan for JSON configs, and says
so if that finds nothing. Zip members are read through :mod:`zipfile` with bounded reads,
never extracted; members other than the config are handed to the other analyzers.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from bastion.analyzer import HEAD_SIZE, Context, Target
from bastion.findings import Category, Finding, Location, Severity
from bastion.rules import Rule
from bastion.scan import _keras_config as kc
from bastion.scan._hdf5 import HDF5Error, HDF5Limit, read_root_attributes, superblock_offset

_REFS = ("ML06", "AML.T0010", "AML.T0011", "CWE-502")
_UNSAFE_LOAD = (
    "Do not load this model. If it is yours, rebuild it without Lambda layers or "
    "unregistered code (subclass a Layer and register it), save it again and compare."
)

LAMBDA_BYTECODE = Rule(
    id="KERAS-LAMBDA-BYTECODE", title="Keras Lambda layer with embedded Python bytecode",
    severity=Severity.CRITICAL, category=Category.CODE_EXECUTION,
    description=(
        "A Lambda layer stores its function as marshalled Python bytecode. The loader turns "
        "it back into a function and calls it while rebuilding the model: tf.keras and Keras 2 "
        "do so on every load (CVE-2024-3660), Keras 3 for legacy HDF5 files (CVE-2025-9905) "
        "and whenever safe_mode is off. The names the bytecode references are listed."
    ),
    remediation=_UNSAFE_LOAD, references=(*_REFS, "CVE-2024-3660", "CVE-2025-9905"),
)
UNSAFE_REFERENCE = Rule(
    id="KERAS-UNSAFE-REFERENCE", title="Keras config references a dangerous function or class",
    severity=Severity.CRITICAL, category=Category.CODE_EXECUTION,
    description=(
        "The config names a callable the loader resolves and calls: a module that runs "
        "processes, opens files or the network (os, subprocess, builtins.eval, ...), or a "
        "Keras API that is not modelling code (load_model, get_file, "
        "enable_unsafe_deserialization). Keras before 3.9 imports any module named in a "
        "config (CVE-2025-1550); later versions were bypassed through Keras' own APIs."
    ),
    remediation=_UNSAFE_LOAD,
    references=(*_REFS, "CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906"),
)
CUSTOM_OBJECT = Rule(
    id="KERAS-CUSTOM-OBJECT", title="Keras config needs code from outside Keras",
    severity=Severity.MEDIUM, category=Category.CODE_EXECUTION,
    description=(
        "A layer, loss, metric or function comes from a module outside Keras, or is a "
        "registered custom object. Loading runs that code: older Keras imports the named "
        "module itself, newer Keras runs whatever the loading program registered under "
        "that name. Review the module before loading."
    ),
    remediation="Check that the module is yours and pinned; list it in the policy if so.",
    references=("ML06", "AML.T0010", "CWE-502"),
)
EXTERNAL_RESOURCE = Rule(
    id="KERAS-EXTERNAL-RESOURCE", title="Keras layer opens a file or URL named in the config",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description=(
        "A lookup layer whose vocabulary is a path, or a TFSMLayer, makes the loader open a "
        "path or URL chosen by the model's author: local files end up in the model "
        "(CVE-2025-12058), remote paths make requests, and a TFSMLayer loads a whole "
        "SavedModel from outside the archive (CVE-2026-1462)."
    ),
    remediation="Ship vocabularies inside the model (as a list or asset), not as a path.",
    references=("ML06", "AML.T0010", "CWE-73", "CWE-918", "CVE-2025-12058", "CVE-2026-1462"),
)
CONFIG_MALFORMED = Rule(
    id="KERAS-CONFIG-MALFORMED", title="Keras model config or archive does not parse",
    severity=Severity.HIGH, category=Category.MALFORMED,
    description=(
        "The model config is not valid JSON, or the .keras archive is not a valid zip. "
        "Bastion cannot tell what loading it would run, so it fails closed."
    ),
    remediation="Treat the file as untrusted; re-export it from its source.",
)
CONFIG_LIMIT = Rule(
    id="KERAS-CONFIG-LIMIT", title="Keras model config exceeds a scan limit",
    severity=Severity.HIGH, category=Category.RESOURCE,
    description=(
        "The config, an archive member or the archive nesting is larger or deeper than the "
        "policy limits, or it produced more findings than are reported; the rest was not "
        "checked."
    ),
    remediation="Raise the limits in the policy if the file is expected to be this large.",
    references=("CWE-400", "CWE-409"),
)
HDF5_UNCHECKED = Rule(
    id="KERAS-HDF5-UNCHECKED", title="HDF5 root attributes could not be fully read",
    severity=Severity.MEDIUM, category=Category.COVERAGE,
    description=(
        "The HDF5 file is malformed along the path to its root attributes (medium), or keeps "
        "them in a layout Bastion does not follow and a raw scan found no Keras config in "
        "them (low). A model config there would not have been checked."
    ),
    remediation="Re-save the file with h5py defaults, or review it by other means.",
)

RULES: tuple[Rule, ...] = (
    LAMBDA_BYTECODE, UNSAFE_REFERENCE, CUSTOM_OBJECT, EXTERNAL_RESOURCE, CONFIG_MALFORMED,
    CONFIG_LIMIT, HDF5_UNCHECKED,
)
_BY_KIND = {
    "lambda": LAMBDA_BYTECODE, "unsafe": UNSAFE_REFERENCE, "custom": CUSTOM_OBJECT,
    "custom-registered": CUSTOM_OBJECT, "external": EXTERNAL_RESOURCE,
}
#: Findings reported from one config before the rest are summarised.
MAX_FINDINGS = 256
_ZIP_MAGIC = b"PK\x03\x04"
_KERAS_MEMBERS = (b"config.json", b"metadata.json", b"model.weights.h5")
_CONFIG_START = re.compile(r'\{\s*"(?:class_name|module|registered_name)"\s*:')
_MAX_RAW_CANDIDATES = 4096


def config_findings(text: bytes | str, location: Location, ctx: Context) -> Iterator[Finding]:
    """Findings for one Keras config JSON text (also used for SavedModel Keras metadata)."""
    try:
        config = kc.parse(text, ctx.policy.limits.max_header_size)
    except kc.ConfigLimit as exc:
        yield CONFIG_LIMIT.finding(location, str(exc))
        return
    except kc.ConfigError as exc:
        yield CONFIG_MALFORMED.finding(location, str(exc))
        return
    yield from parsed_findings(config, location)


def parsed_findings(config: Any, location: Location) -> Iterator[Finding]:
    count = 0
    try:
        for issue in kc.inspect(config):
            count += 1
            if count > MAX_FINDINGS:
                yield CONFIG_LIMIT.finding(
                    location, f"more than {MAX_FINDINGS} findings in one config; the rest "
                    "are not reported", severity=Severity.MEDIUM)
                return
            severity = Severity.LOW if issue.kind == "custom-registered" else None
            yield _BY_KIND[issue.kind].finding(
                location, issue.message, evidence=issue.evidence, severity=severity,
                properties={"where": issue.where, **issue.properties},
            )
    except kc.ConfigLimit as exc:
        yield CONFIG_LIMIT.finding(location, str(exc))


def _is_keras_json(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped[:1] == b"{" and b'"class_name"' in head and b'"config"' in head


class KerasAnalyzer:
    """Keras legacy HDF5, Keras 3 ``.keras`` archives and bare Keras JSON configs."""

    name = "keras"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        head = target.head
        if superblock_offset(head) is not None:
            return True
        if head.startswith(_ZIP_MAGIC):
            return any(member in head for member in _KERAS_MEMBERS)
        return _is_keras_json(head)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        base = superblock_offset(target.head)
        if base is not None:
            yield from _analyze_hdf5(target, ctx, base)
        elif target.head.startswith(_ZIP_MAGIC):
            yield from _analyze_zip(target, ctx)
        else:
            with target.open() as stream:
                text = stream.read(ctx.policy.limits.max_header_size + 1)
            yield from config_findings(text, target.location, ctx)


# -- HDF5 ------------------------------------------------------------------------------------


def _analyze_hdf5(target: Target, ctx: Context, base: int) -> Iterator[Finding]:
    limit = ctx.policy.limits.max_header_size
    with target.open() as stream:
        try:
            root = read_root_attributes(stream, target.size, base, max_string=limit)
        except HDF5Limit as exc:
            yield CONFIG_LIMIT.finding(target.location, str(exc))
            return
        except HDF5Error as exc:
            yield HDF5_UNCHECKED.finding(target.location, f"malformed HDF5: {exc}",
                                         evidence=str(exc))
            yield from _raw_scan(stream, target, limit, reason=None)
            return
        unfollowed = list(root.unfollowed)
        for attr in root.attributes:
            if attr.name not in ("model_config", "training_config"):
                continue
            if attr.opaque:
                unfollowed.append(f"the {attr.name} attribute's datatype")
            location = target.location.at(offset=attr.offset)
            for value in attr.values:
                yield from config_findings(value, location, ctx)
        if unfollowed:
            yield from _raw_scan(stream, target, limit, reason="; ".join(unfollowed))


def _raw_scan(
    stream: BinaryIO, target: Target, limit: int, *, reason: str | None
) -> Iterator[Finding]:
    """Find Keras JSON configs anywhere in the first ``limit`` bytes, without structure.

    Attribute strings are never compressed or split, so a config the loader can read is a
    contiguous JSON text somewhere in the file.
    """
    stream.seek(0)
    text = stream.read(limit).decode("latin-1")  # one char per byte: offsets stay exact
    decoder = json.JSONDecoder()
    covered, tried, found = -1, 0, 0
    for match in _CONFIG_START.finditer(text):
        if match.start() < covered:
            continue
        tried += 1
        if tried > _MAX_RAW_CANDIDATES:
            break
        try:
            config, end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        covered, found = end, found + 1
        yield from parsed_findings(config, target.location.at(offset=match.start()))
    if not found and reason is not None:
        yield HDF5_UNCHECKED.finding(
            target.location, f"root attributes not read ({reason}); a raw scan of the first "
            f"{min(limit, target.size)} bytes found no Keras config", severity=Severity.LOW,
            evidence=reason)


# -- .keras zip ------------------------------------------------------------------------------


def _analyze_zip(target: Target, ctx: Context) -> Iterator[Finding]:
    limits = ctx.policy.limits
    with target.open() as stream:
        count = _zip_entry_count(stream, target.size)
        if count is not None and count > limits.max_archive_members:
            yield CONFIG_LIMIT.finding(
                target.location, f"{count} archive members, over the limit of "
                f"{limits.max_archive_members}")
            return
        try:
            with zipfile.ZipFile(stream) as archive:
                yield from _zip_members(archive, target, ctx)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
                EOFError, ValueError) as exc:
            yield CONFIG_MALFORMED.finding(target.location, f"not a readable zip: {exc}")


def _zip_members(archive: zipfile.ZipFile, target: Target, ctx: Context) -> Iterator[Finding]:
    limits = ctx.policy.limits
    total = 0
    for info in archive.infolist()[: limits.max_archive_members]:
        if info.is_dir():
            continue
        location = target.location.child(info.filename)
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.max_decompressed_size or total > limits.max_decompressed_size \
                or (info.file_size > 2**20 and ratio > limits.max_compression_ratio):
            yield CONFIG_LIMIT.finding(
                location, f"member expands to {info.file_size} bytes (ratio {ratio:.0f}); "
                "not read")
            continue
        if info.filename == "config.json":
            if info.file_size > limits.max_header_size:
                yield CONFIG_LIMIT.finding(location, f"config.json is {info.file_size} bytes, "
                                           f"over the limit of {limits.max_header_size}")
                continue
            with archive.open(info) as member:
                text = member.read(limits.max_header_size + 1)
            yield from config_findings(text, location, ctx)
        elif info.filename != "metadata.json":
            yield from _dispatch_member(target, info, location, ctx)


def _dispatch_member(
    target: Target, info: zipfile.ZipInfo, location: Location, ctx: Context
) -> Iterator[Finding]:
    if target.depth + 1 > ctx.policy.limits.max_archive_depth:
        yield CONFIG_LIMIT.finding(location, "archive nesting is deeper than "
                                   f"{ctx.policy.limits.max_archive_depth}; member not scanned",
                                   severity=Severity.MEDIUM)
        return

    def opener() -> BinaryIO:
        archive = zipfile.ZipFile(target.open())
        return archive.open(info)  # type: ignore[return-value]

    with opener() as member:
        head = member.read(HEAD_SIZE)
    yield from ctx.analyze_nested(Target(location, info.file_size, head, opener,
                                         target.depth + 1))


def _zip_entry_count(stream: BinaryIO, size: int) -> int | None:
    """The entry count from the end-of-central-directory record, before zipfile reads it all."""
    tail_size = min(size, 65_557)
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    locator = tail.rfind(b"PK\x06\x07", 0, at)
    if count == 0xFFFF and locator >= 0 and locator + 20 <= len(tail):
        record = int.from_bytes(tail[locator + 8:locator + 16], "little")
        if 0 <= record <= size - 56:
            stream.seek(record)
            zip64 = stream.read(56)
            if zip64[:4] == b"PK\x06\x06":
                count = int.from_bytes(zip64[32:40], "little")
    stream.seek(0)
    return count
