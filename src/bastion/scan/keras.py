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
file to inside a security gate. Every HDF5 file is claimed (superblock at offset 0, 512,
1024 or 2048), not only those whose first 4 KiB happen to show ``model_config``, because a
crafted file can move its attributes out of that window. Where the reader meets a layout
it does not follow (attributes in dense storage, shared messages) it falls back to a
bounded raw scan for JSON configs, and says so if that finds nothing. A ``.keras`` zip is
read by the shared archive reader (bounded, never extracted, every zip discrepancy
reported); its ``config.json`` is checked here and its other members go to the analyzers
that claim them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Location, Reference, Severity, clip
from bastion.rules import Rule
from bastion.scan import _keras_config as kc
from bastion.scan import archive
from bastion.scan._hdf5 import (
    SIGNATURE,
    HDF5Error,
    HDF5Limit,
    read_root_attributes,
    superblock_offset,
)

_REF_IDS = ("ML06", "AML.T0010", "AML.T0011", "CWE-502")


def _refs(*ids: str) -> tuple[Reference, ...]:
    return tuple(Reference.of(ref) for ref in ids)


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
    remediation=_UNSAFE_LOAD, references=_refs(*_REF_IDS, "CVE-2024-3660", "CVE-2025-9905"),
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
    references=_refs(*_REF_IDS, "CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906"),
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
    references=_refs("ML06", "AML.T0010", "CWE-502"),
)
EXTERNAL_RESOURCE = Rule(
    id="KERAS-EXTERNAL-RESOURCE", title="Keras layer opens a file or URL named in the config",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description=(
        "A lookup layer whose vocabulary is a path, a TFSMLayer or a TF Hub KerasLayer makes "
        "the loader open a path or URL chosen by the model's author: local files end up in "
        "the model (CVE-2025-12058), remote paths make requests, and a TFSMLayer or "
        "KerasLayer loads a whole SavedModel from outside the archive (CVE-2026-1462)."
    ),
    remediation="Ship vocabularies inside the model (as a list or asset), not as a path.",
    references=_refs("ML06", "AML.T0010", "CWE-73", "CWE-918", "CVE-2025-12058", "CVE-2026-1462"),
)
CONFIG_MALFORMED = Rule(
    id="KERAS-CONFIG-MALFORMED", title="Keras model config does not parse",
    severity=Severity.HIGH, category=Category.MALFORMED,
    description=(
        "The model config is not valid JSON. Bastion cannot tell what loading it would run, "
        "so it fails closed."
    ),
    remediation="Treat the file as untrusted; re-export it from its source.",
)
CONFIG_LIMIT = Rule(
    id="KERAS-CONFIG-LIMIT", title="Keras model config exceeds a scan limit",
    severity=Severity.HIGH, category=Category.RESOURCE,
    description=(
        "The config is larger or deeper than the policy limits, or it produced more findings "
        "than are reported; the rest was not checked."
    ),
    remediation="Raise the limits in the policy if the file is expected to be this large.",
    references=_refs("CWE-400"),
)
HDF5_UNCHECKED = Rule(
    id="KERAS-HDF5-UNCHECKED", title="HDF5 root attributes could not be fully read",
    severity=Severity.MEDIUM, category=Category.COVERAGE,
    description=(
        "The HDF5 file is malformed along the path to its root attributes, or keeps them in a "
        "layout Bastion does not follow (dense storage) and a bounded raw scan found no Keras "
        "config: medium when the file has Keras' model_weights group, low otherwise. A model "
        "config there would not have been checked."
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
ZIP_MAGIC = b"PK\x03\x04"
_KERAS_MEMBERS = frozenset({b"config.json", b"metadata.json", b"model.weights.h5"})
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
    yield from parsed_findings(config, location, ctx.policy.allow.keras_modules)


def _allowed(module: object, allowed: tuple[str, ...]) -> bool:
    if not isinstance(module, str) or not module:
        return False
    return any(module == entry or module.startswith(entry.removesuffix("*").rstrip(".") + ".")
               for entry in allowed)


def parsed_findings(config: Any, location: Location, allowed: tuple[str, ...] = ()
                    ) -> Iterator[Finding]:
    """Findings for a parsed config, at most :data:`MAX_FINDINGS` and a note past that.

    Custom objects from modules in ``allow.keras-modules`` are trusted; Lambda bytecode and
    unsafe references never are."""
    count = 0
    try:
        for issue in kc.inspect(config):
            if issue.kind == "custom" and _allowed(issue.properties.get("module"), allowed):
                continue
            count += 1
            if count > MAX_FINDINGS:
                yield CONFIG_LIMIT.finding(
                    location, f"more than {MAX_FINDINGS} findings in one config; the rest "
                    "are not reported", severity=Severity.MEDIUM)
                return
            severity = Severity.LOW if issue.kind == "custom-registered" else None
            yield _BY_KIND[issue.kind].finding(
                location, issue.message, evidence=issue.evidence, severity=severity,
                properties=safe_properties({"where": issue.where, **issue.properties}),
            )
    except kc.ConfigLimit as exc:
        yield CONFIG_LIMIT.finding(location, str(exc))


def safe_properties(value: Any) -> Any:
    """Texts from the artifact, bounded and with control characters made visible."""
    if isinstance(value, str):
        return clip(value, 256)
    if isinstance(value, list):
        return [safe_properties(item) for item in value[:64]]
    if isinstance(value, dict):
        return {clip(str(k), 64): safe_properties(v) for k, v in value.items()}
    return value


def local_names(head: bytes) -> Iterator[bytes]:
    """Member names of the zip local file headers that lie whole within ``head``."""
    pos = 0
    for _ in range(64):
        if head[pos:pos + 4] != ZIP_MAGIC or pos + 30 > len(head):
            return
        flags = int.from_bytes(head[pos + 6:pos + 8], "little")
        size = int.from_bytes(head[pos + 18:pos + 22], "little")
        name_len = int.from_bytes(head[pos + 26:pos + 28], "little")
        extra_len = int.from_bytes(head[pos + 28:pos + 30], "little")
        if pos + 30 + name_len > len(head):
            return
        yield head[pos + 30:pos + 30 + name_len]
        if flags & 0x08:  # sizes follow the data: the next header cannot be found cheaply
            return
        pos += 30 + name_len + extra_len + size


def _is_keras_json(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped[:1] == b"{" and b'"class_name"' in head and b'"config"' in head


def _superblock(target: Target) -> int | None:
    """The HDF5 superblock: in the head, or after a user block of 4 KiB, 8 KiB, ... (HDF5 puts
    it at 0 or a power of two from 512), so a large user block cannot hide the file."""
    found = superblock_offset(target.head)
    if found is not None or target.size <= len(target.head):
        return found
    offset = 4096
    with target.open() as stream:
        while offset + len(SIGNATURE) <= target.size:
            stream.seek(offset)
            if stream.read(len(SIGNATURE)) == SIGNATURE:
                return offset
            offset *= 2
    return None


class KerasAnalyzer(archive.ArchiveAnalyzer):
    """Keras legacy HDF5, Keras 3 ``.keras`` archives and bare Keras JSON configs.

    A ``.keras`` archive is read by :class:`~bastion.scan.archive.ArchiveAnalyzer`, so it
    gets every zip check (bombs, traversal, reader discrepancies); this class only takes
    over its ``config.json`` and hands the other members on by content.
    """

    name = "keras"
    capability = "model"
    rules = (*RULES, *archive.RULES)

    def claims(self, target: Target) -> bool:
        head = target.head
        if _superblock(target) is not None:
            return True
        if head.startswith(ZIP_MAGIC):
            return any(name in _KERAS_MEMBERS for name in local_names(head))
        return _is_keras_json(head)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        base = _superblock(target)
        if base is not None:
            yield from _analyze_hdf5(target, ctx, base)
        elif target.head.startswith(ZIP_MAGIC):
            yield from super().analyze(target, ctx)
        else:
            with target.open() as stream:
                text = stream.read(ctx.policy.limits.max_header_size + 1)
            yield from config_findings(text, target.location, ctx)

    def _analyze_member(self, child: Target, ctx: Context) -> Iterator[Finding]:
        """``config.json`` at the archive root is the model; the rest goes by content."""
        if child.location.members[-1:] != ("config.json",):
            yield from ctx.analyze_nested(child)
            return
        limit = ctx.policy.limits.max_header_size
        if child.size > limit:
            yield CONFIG_LIMIT.finding(child.location, f"config.json is {child.size} bytes, "
                                       f"over the limit of {limit}")
            return
        with child.open() as stream:
            text = stream.read(limit + 1)
        yield from config_findings(text, child.location, ctx)


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
            yield from _raw_scan(stream, target, limit, reason=None,
                                 allowed=ctx.policy.allow.keras_modules)
            return
        unfollowed = list(root.unfollowed)
        done: set[bytes] = set()
        for attr in root.attributes:
            if attr.name not in ("model_config", "training_config"):
                continue
            if attr.opaque:
                unfollowed.append(f"the {attr.name} attribute's datatype")
            location = target.location.at(offset=attr.offset)
            for value in attr.values:
                done.add(value.strip(b"\0 \t\r\n"))
                yield from config_findings(value, location, ctx)
        if unfollowed:
            # A Keras model keeps its weights under /model_weights: then an unread config
            # is a gap in a model, not in some data file.
            keras_like = "model_weights" in root.links
            yield from _raw_scan(stream, target, limit, reason="; ".join(unfollowed), done=done,
                                 severity=Severity.MEDIUM if keras_like else Severity.LOW,
                                 allowed=ctx.policy.allow.keras_modules)


def _raw_scan(
    stream: IO[bytes], target: Target, limit: int, *, reason: str | None,
    done: frozenset[bytes] | set[bytes] = frozenset(), severity: Severity = Severity.LOW,
    allowed: tuple[str, ...] = (),
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
        if text[match.start():end].encode("latin-1") not in done:
            yield from parsed_findings(config, target.location.at(offset=match.start()), allowed)
    if not found and reason is not None:
        yield HDF5_UNCHECKED.finding(
            target.location, f"root attributes not read ({reason}); a raw scan of the first "
            f"{min(limit, target.size)} bytes found no Keras config", severity=severity,
            evidence=reason)
