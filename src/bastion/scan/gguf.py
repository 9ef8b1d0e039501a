"""GGUF (llama.cpp): a bounded header parser and chat-template injection check.

A GGUF file is a header (magic, version, tensor and key/value counts), typed key/value
metadata, tensor descriptors, then aligned tensor data. Two risk families live there:

* the parser attack surface: llama.cpp's GGUF reader has had heap overflows from huge
  counts, string lengths and dimension counts (e.g. CVE-2024-21802). Bastion walks the header
  with every count, length, nesting depth and byte total bounded, and checks tensor extents
  the way llama.cpp does (contiguous, aligned, inside the file);
* the chat template: ``tokenizer.chat_template`` is a Jinja template inference servers
  render; rendered unsandboxed it runs code (CVE-2024-34359, llama-cpp-python). Bastion
  analyses it statically with :mod:`bastion.scan.chat_template`, never rendering it.

Tensor data is never read: it is skipped by offset.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Location, Reference, Severity
from bastion.rules import Rule
from bastion.scan._binreader import BinReader, Truncated, capped, opened
from bastion.scan.chat_template import INTERNALS, analyze_template, gadgets

MAGIC = b"GGUF"
#: GGUF scalar value types: struct code and size.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
_UINT32, _STRING, _ARRAY = 4, 8, 9
#: ggml tensor types: (name, elements per block, bytes per block), from ggml's type traits.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
TEMPLATE_KEY = "tokenizer.chat_template"
ALIGNMENT_KEY = "general.alignment"
DEFAULT_ALIGNMENT = 32

# Bounds: far above any real model, far below what exhausts a loader.
MAX_KV = 65_536
MAX_TENSORS = 1_000_000
MAX_KEY_BYTES = 65_535  # the GGUF spec's key length limit
MAX_STRING_BYTES = 64 * 2**20  # a whole tokenizer.json stored as one string fits
MAX_ARRAY_LEN = 1 << 26
MAX_ELEMENTS = 1 << 25  # array elements walked in all, across the file
MAX_ARRAY_DEPTH = 8
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 63  # GGML_MAX_NAME is 64 bytes with the terminating NUL
INT64_MAX = 2**63 - 1

_REFS = ("ML06", "AML.T0010")
_REBUILD = ("Obtain the model from a trusted source, or re-convert it from the original "
            "weights with llama.cpp's own tools.")


def _rule(id_: str, title: str, severity: Severity, category: Category, description: str,
          remediation: str, *refs: str) -> Rule:
    return Rule(id=id_, title=title, severity=severity, category=category,
                description=description, remediation=remediation,
                references=tuple(Reference.of(r) for r in (*_REFS, *refs)))


HEADER_INVALID = _rule(
    "GGUF-HEADER-INVALID", "Invalid GGUF header or metadata", Severity.MEDIUM,
    Category.MALFORMED,
    "The GGUF header has an unsupported version, an unknown value type, or an invalid "
    "`general.alignment`. Loaders reject or misread such files.", _REBUILD, "CWE-20")
TRUNCATED = _rule(
    "GGUF-TRUNCATED", "GGUF file ends inside its header", Severity.MEDIUM, Category.MALFORMED,
    "The file ends before the header, metadata or tensor descriptors it declares. It is "
    "truncated or crafted to make a loader read past its buffer.", _REBUILD, "CWE-125")
LIMIT_EXCEEDED = _rule(
    "GGUF-LIMIT-EXCEEDED", "GGUF header declares absurd counts or sizes", Severity.HIGH,
    Category.RESOURCE,
    "A count, string length, array length, nesting depth or the metadata's total size is "
    "beyond any real model and beyond Bastion's bounds. Huge declared sizes are how GGUF "
    "parser heap overflows are triggered (llama.cpp, e.g. CVE-2024-21802).",
    _REBUILD, "CWE-770", "CWE-190", "CVE-2024-21802")
DUPLICATE_KEY = _rule(
    "GGUF-DUPLICATE-KEY", "Duplicate metadata key in a GGUF file", Severity.HIGH,
    Category.MALFORMED,
    "A metadata key appears twice. llama.cpp rejects this; other readers keep the first or "
    "the last value, so a reviewer and a loader can see different values (e.g. two chat "
    "templates): a parser differential.", _REBUILD, "CWE-436")
TENSOR_INVALID = _rule(
    "GGUF-TENSOR-INVALID", "Invalid GGUF tensor descriptor", Severity.MEDIUM,
    Category.MALFORMED,
    "A tensor descriptor has too many dimensions, dimensions that overflow, an unknown type, "
    "a row size that is not a whole number of blocks, a duplicate or over-long name, or an "
    "offset that breaks llama.cpp's contiguous, aligned layout.", _REBUILD, "CWE-20",
    "CVE-2024-21802")
TENSOR_OUT_OF_BOUNDS = _rule(
    "GGUF-TENSOR-OUT-OF-BOUNDS", "GGUF tensor data lies outside the file", Severity.HIGH,
    Category.MALFORMED,
    "A tensor's data extends past the end of the file; loaders that map it read out of "
    "bounds.", _REBUILD, "CWE-125")
UNCOVERED_DATA = _rule(
    "GGUF-UNCOVERED-DATA", "Bytes after the last GGUF tensor", Severity.MEDIUM,
    Category.INTEGRITY,
    "The file continues past the end of the last tensor (and its alignment padding). The "
    "extra bytes can hide a second payload: a zip appended to a GGUF is also a valid PyTorch "
    "checkpoint to `torch.load`, which runs its pickle.",
    "Inspect the trailing bytes; re-convert the model from trusted weights.")
TEMPLATE_SSTI = _rule(
    "GGUF-CHAT-TEMPLATE-SSTI", "Chat template reaches Python internals (template injection)",
    Severity.CRITICAL, Category.CODE_EXECUTION,
    "The Jinja chat template uses dunder attributes, name-mangled privates or strings that "
    "spell them (`__class__`, `__globals__`, `__subclasses__`, ...). No chat template needs "
    "them; they are how a template escapes to `os.popen` when a server renders it without a "
    "sandbox (CVE-2024-34359, llama-cpp-python).",
    "Do not serve this model. Replace the chat template with a known-good one; render chat "
    "templates only in `jinja2.sandbox.ImmutableSandboxedEnvironment`.",
    "CVE-2024-34359", "CWE-1336", "AML.T0011")
TEMPLATE_SUSPICIOUS = _rule(
    "GGUF-CHAT-TEMPLATE-SUSPICIOUS", "Chat template uses obfuscation or command execution",
    Severity.HIGH, Category.CODE_EXECUTION,
    "The Jinja chat template builds attribute names at run time (`|attr` with a computed or "
    "escaped name, `%c` formatting) or names command-running attributes (`os`, `popen`, "
    "`subprocess`). These are template-injection building blocks.",
    "Review the template by hand; render chat templates only in a sandboxed environment.",
    "CVE-2024-34359", "CWE-1336")

RULES: tuple[Rule, ...] = (
    HEADER_INVALID, TRUNCATED, LIMIT_EXCEEDED, DUPLICATE_KEY, TENSOR_INVALID,
    TENSOR_OUT_OF_BOUNDS, UNCOVERED_DATA, TEMPLATE_SSTI, TEMPLATE_SUSPICIOUS,
)


class _Stop(Exception):
    """Parsing cannot go on: report this and stop."""

    def __init__(self, rule: Rule, message: str, offset: int) -> None:
        super().__init__(message)
        self.rule, self.message, self.offset = rule, message, offset


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int
    at: int  # file offset of the descriptor


class _Parser:
    """Typed reads over a :class:`BinReader` with GGUF's byte order and version rules."""

    def __init__(self, reader: BinReader, endian: str, version: int, limit: int) -> None:
        self.r = reader
        self.endian = endian
        self.v1 = version == 1  # GGUF v1 used 32-bit counts and lengths
        self.limit = limit
        self.elements = 0

    def unpack(self, code: str, size: int) -> int:
        value: int = struct.unpack(self.endian + code, self.r.read(size))[0]
        return value

    def u32(self) -> int:
        return self.unpack("I", 4)

    def u64(self) -> int:
        return self.unpack("Q", 8)

    def count(self) -> int:
        return self.u32() if self.v1 else self.u64()

    def length(self, bound: int, what: str) -> int:
        at = self.r.pos
        size = self.count()
        if size > bound:
            raise _Stop(LIMIT_EXCEEDED, f"{what} of {size} bytes (bound {bound})", at)
        return size

    def budget(self) -> None:
        if self.r.pos > self.limit:
            raise _Stop(LIMIT_EXCEEDED, f"metadata runs past {self.limit} bytes "
                        "(`limits.max-header-size`)", self.r.pos)

    def value(self, vtype: int, want: bool) -> object:
        """Read one value (returned only when ``want``; skipped cheaply otherwise)."""
        if vtype in _SCALARS:
            code, size = _SCALARS[vtype]
            if want:
                return struct.unpack(self.endian + code, self.r.read(size))[0]
            self.r.skip(size)
            return None
        if vtype == _STRING:
            size = self.length(MAX_STRING_BYTES, "string")
            if want:
                return self.r.read(size).decode("utf-8", "replace")
            self.r.skip(size)
            return None
        if vtype == _ARRAY:
            self.array(0)
            return None
        raise _Stop(HEADER_INVALID, f"unknown value type {vtype}", self.r.pos - 4)

    def array(self, depth: int) -> None:
        at = self.r.pos
        etype = self.u32()
        count = self.count()
        if count > MAX_ARRAY_LEN:
            raise _Stop(LIMIT_EXCEEDED, f"array of {count} elements (bound {MAX_ARRAY_LEN})", at)
        self.elements += count
        if self.elements > MAX_ELEMENTS:
            raise _Stop(LIMIT_EXCEEDED, f"more than {MAX_ELEMENTS} array elements in all", at)
        if etype in _SCALARS:
            self.r.skip(count * _SCALARS[etype][1])
        elif etype == _STRING:
            self.skip_strings(count)
        elif etype == _ARRAY:
            if depth + 1 >= MAX_ARRAY_DEPTH:
                raise _Stop(LIMIT_EXCEEDED, f"arrays nested deeper than {MAX_ARRAY_DEPTH}", at)
            for _ in range(count):
                self.array(depth + 1)
        else:
            raise _Stop(HEADER_INVALID, f"array of unknown value type {etype}", at)

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` length-prefixed strings, decoding lengths in place."""
        width = 4 if self.v1 else 8
        unpack = struct.Struct(self.endian + ("I" if self.v1 else "Q")).unpack_from
        while count:
            buf, off = self.r.window(width)
            if len(buf) - off < width:
                raise Truncated(f"array of strings cut off at offset {self.r.pos}")
            base = self.r.pos - off
            while count and off + width <= len(buf):
                size = unpack(buf, off)[0]
                if size > MAX_STRING_BYTES:
                    raise _Stop(LIMIT_EXCEEDED, f"string of {size} bytes in an array", base + off)
                off += width + size
                count -= 1
                if off > len(buf):
                    break
            self.r.seek(base + off)
            self.budget()


def _pad(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


class GgufAnalyzer:
    """Bounded GGUF header walk, tensor layout checks and chat-template SSTI analysis."""

    name = "gguf"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return target.head[:4] == MAGIC

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return capped(self._analyze(target, ctx), RULES, target.location)

    def _analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        loc = target.location
        with opened(target) as stream:
            reader = BinReader(stream, target.size)
            try:
                yield from self._walk(reader, loc, ctx.policy.limits.max_header_size)
            except _Stop as stop:
                yield stop.rule.finding(loc.at(offset=stop.offset), stop.message)
            except Truncated as exc:
                yield TRUNCATED.finding(loc.at(offset=reader.pos),
                                        f"the file ends inside the GGUF header: {exc}")

    def _walk(self, r: BinReader, loc: Location, limit: int) -> Iterator[Finding]:
        r.skip(4)
        raw_version = r.read(4)
        endian = "<"
        version = struct.unpack("<I", raw_version)[0]
        if version not in (1, 2, 3) and struct.unpack(">I", raw_version)[0] in (1, 2, 3):
            endian, version = ">", struct.unpack(">I", raw_version)[0]  # big-endian GGUF
        if version not in (1, 2, 3):
            raise _Stop(HEADER_INVALID, f"unsupported GGUF version {version}", 4)
        p = _Parser(r, endian, version, limit)
        n_tensors, n_kv = p.count(), p.count()
        key_bytes = 4 if p.v1 else 8
        if n_kv > MAX_KV or n_kv * (key_bytes + 5) > r.remaining():
            raise _Stop(LIMIT_EXCEEDED, f"header declares {n_kv} metadata entries", 8)
        if n_tensors > MAX_TENSORS or n_tensors * (key_bytes + 16) > r.remaining():
            raise _Stop(LIMIT_EXCEEDED, f"header declares {n_tensors} tensors", 8)
        alignment = yield from self._metadata(p, n_kv, loc)
        infos = self._tensor_infos(p, n_tensors)
        yield from self._check_tensors(infos, r, loc, alignment)

    def _metadata(self, p: _Parser, n_kv: int,
                  loc: Location) -> Generator[Finding, None, int]:
        """Walk the key/values; analyse chat templates; return the data alignment."""
        seen: set[str] = set()
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            at = p.r.pos
            key = p.r.read(p.length(MAX_KEY_BYTES, "key")).decode("utf-8", "replace")
            if key in seen:
                yield DUPLICATE_KEY.finding(loc.at(offset=at), f"metadata key {key!r} repeats",
                                            evidence=key)
            seen.add(key)
            vtype = p.u32()
            template = key.startswith(TEMPLATE_KEY)  # also .<name> variants (tool_use, rag)
            value = p.value(vtype, want=template or key == ALIGNMENT_KEY)
            if template and isinstance(value, str):
                yield from self._template(key, value, loc.at(offset=at))
            elif key == ALIGNMENT_KEY:
                if vtype != _UINT32 or not isinstance(value, int) or value <= 0 \
                        or value & (value - 1):
                    raise _Stop(HEADER_INVALID, f"{ALIGNMENT_KEY} must be a power-of-two "
                                f"uint32, got {value!r} (type {vtype})", at)
                alignment = value
            p.budget()
        return alignment

    @staticmethod
    def _template(key: str, text: str, loc: Location) -> Iterator[Finding]:
        hits = analyze_template(text)
        if not hits:
            return
        props = {"key": key, "gadgets": gadgets(text),
                 "hits": [{"kind": h.kind, "detail": h.detail, "line": h.line} for h in hits]}
        internals = [h for h in hits if h.kind == INTERNALS]
        chosen = internals or hits
        rule = TEMPLATE_SSTI if internals else TEMPLATE_SUSPICIOUS
        details = "; ".join(f"{h.detail} (line {h.line})" for h in chosen[:8])
        yield rule.finding(loc, f"{key}: {details}", evidence=f"{key}: {chosen[0].detail}",
                           properties=props)

    @staticmethod
    def _tensor_infos(p: _Parser, count: int) -> list[_TensorInfo]:
        infos: list[_TensorInfo] = []
        for _ in range(count):
            at = p.r.pos
            name = p.r.read(p.length(MAX_KEY_BYTES, "tensor name")).decode("utf-8", "replace")
            n_dims = p.u32()
            if n_dims > MAX_DIMS:
                raise _Stop(TENSOR_INVALID, f"tensor {name!r} declares {n_dims} dimensions "
                            f"(ggml allows {MAX_DIMS}; more overflows loaders)", at)
            dims = tuple(p.count() for _ in range(n_dims))
            infos.append(_TensorInfo(name, dims, p.u32(), p.u64(), at))
            p.budget()
        return infos

    def _check_tensors(self, infos: list[_TensorInfo], r: BinReader, loc: Location,
                       alignment: int) -> Iterator[Finding]:
        """llama.cpp's layout: each tensor at the padded end of the one before, in the file."""
        data_start = _pad(r.pos, alignment) if infos else r.pos
        expected = 0
        exact = True
        names: set[str] = set()
        for info in infos:
            where = loc.at(offset=info.at)
            if info.name in names or len(info.name.encode()) > MAX_TENSOR_NAME:
                problem = "repeats" if info.name in names else "is longer than 63 bytes"
                yield TENSOR_INVALID.finding(where, f"tensor name {info.name!r} {problem}",
                                             evidence=info.name)
            names.add(info.name)
            nbytes = yield from self._tensor_size(info, where)
            if nbytes is None:
                exact = False
                continue
            if exact and info.offset != expected:
                yield TENSOR_INVALID.finding(
                    where, f"tensor {info.name!r} at data offset {info.offset}, expected "
                    f"{expected}: overlapping or gapped layout", evidence=info.name)
                exact = False
            if data_start + info.offset + nbytes > r.size:
                yield TENSOR_OUT_OF_BOUNDS.finding(
                    where, f"tensor {info.name!r} ({nbytes} bytes at data offset "
                    f"{info.offset}) ends past the end of the file", evidence=info.name)
                exact = False
            expected += _pad(nbytes, alignment)
        end = data_start + expected if infos else _pad(r.pos, alignment)
        if exact and r.size > end:
            yield UNCOVERED_DATA.finding(
                loc.at(offset=end), f"{r.size - end} bytes after the last tensor",
                evidence=f"trailing [{end}, {r.size}]", properties={"trailing_bytes": r.size - end})

    @staticmethod
    def _tensor_size(info: _TensorInfo,
                     where: Location) -> Generator[Finding, None, int | None]:
        """The tensor's byte size, or None (with a finding) when it cannot be trusted."""
        if info.type not in GGML_TYPES:
            yield TENSOR_INVALID.finding(
                where, f"tensor {info.name!r} has unknown ggml type {info.type}; its size "
                "was not checked", severity=Severity.LOW, evidence=info.name)
            return None
        type_name, block, type_size = GGML_TYPES[info.type]
        if any(d > INT64_MAX for d in info.dims) or math.prod(info.dims) > INT64_MAX:
            yield TENSOR_INVALID.finding(
                where, f"tensor {info.name!r} dimensions {list(info.dims)} overflow int64",
                severity=Severity.HIGH, evidence=info.name)
            return None
        row = info.dims[0] if info.dims else 1
        if row % block:
            yield TENSOR_INVALID.finding(
                where, f"tensor {info.name!r}: row of {row} is not a whole number of "
                f"{type_name} blocks of {block}", evidence=info.name)
            return None
        size: int = math.prod(info.dims) // block * type_size
        return size
