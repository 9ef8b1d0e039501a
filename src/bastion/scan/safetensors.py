"""Safetensors: validate the JSON header the way the real loader does, and stricter.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON, and
a data area the header's ``data_offsets`` index into. The format holds no code, so the risks
are in the header: offsets that point outside the file (out-of-bounds reads in loaders that
trust them), overlapping tensors, bytes that no tensor covers (a place to hide a second
payload, e.g. an appended archive), and parser differentials such as duplicate JSON keys,
which one parser resolves to the first value and another to the last. Bastion reads only the
header (one small read), never the tensor data.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Location, Reference, Severity
from bastion.rules import Rule
from bastion.scan._binreader import capped, opened

#: Bits per element of every dtype the safetensors library (0.6+) knows.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}
METADATA_KEY = "__metadata__"
#: More tensors than this in one file is not a real model; stop before spending time on it.
MAX_TENSORS = 500_000
#: Dimensions per tensor; real models use at most a handful.
MAX_RANK = 64
#: Free-form ``__metadata__`` larger than this (keys and values together) is reported.
MAX_METADATA_CHARS = 16 * 2**20
#: Offsets and sizes are ``usize`` in the reference loader.
U64 = 2**64

_REFS = ("ML06", "AML.T0010")


def _rule(id_: str, title: str, severity: Severity, category: Category, description: str,
          remediation: str, *refs: str) -> Rule:
    return Rule(id=id_, title=title, severity=severity, category=category,
                description=description, remediation=remediation,
                references=tuple(Reference.of(r) for r in (*_REFS, *refs)))


# Everything the reference loader refuses is high: a file that is not what it claims to be is
# not admitted (fail closed), whatever the reason it was malformed.
_REBUILD = ("Re-export the tensors from their source with the official safetensors library, "
            "or obtain the file again from a trusted source.")

HEADER_TOO_LARGE = _rule(
    "SAFETENSORS-HEADER-TOO-LARGE", "Safetensors header larger than the limit", Severity.HIGH,
    Category.RESOURCE,
    "The declared JSON header length is larger than `limits.max-header-size` (the reference "
    "loader refuses headers over 100 MB). A huge header is a memory-exhaustion vector.",
    _REBUILD, "CWE-770")
HEADER_OUT_OF_BOUNDS = _rule(
    "SAFETENSORS-HEADER-OUT-OF-BOUNDS", "Safetensors header runs past the end of the file",
    Severity.HIGH, Category.MALFORMED,
    "The declared header length points past the end of the file. Loaders that trust it read "
    "out of bounds; the file is truncated or crafted.", _REBUILD, "CWE-125")
HEADER_INVALID = _rule(
    "SAFETENSORS-HEADER-INVALID", "Safetensors header is not a valid JSON object",
    Severity.HIGH, Category.MALFORMED,
    "The header is not UTF-8, not JSON, not a JSON object, nests too deep, or uses JSON "
    "extensions (NaN, Infinity) that the reference Rust parser rejects but Python accepts.",
    _REBUILD, "CWE-20")
DUPLICATE_KEY = _rule(
    "SAFETENSORS-DUPLICATE-KEY", "Duplicate key in the safetensors header", Severity.HIGH,
    Category.MALFORMED,
    "A JSON object in the header repeats a key. Parsers disagree on which value wins (first "
    "or last), so a scanner and a loader can see different tensors or offsets: a parser "
    "differential used to smuggle content past review. No legitimate writer emits this.",
    _REBUILD, "CWE-436")
TENSOR_INVALID = _rule(
    "SAFETENSORS-TENSOR-INVALID", "Invalid tensor entry in the safetensors header",
    Severity.HIGH, Category.MALFORMED,
    "A tensor entry has an unknown dtype, a malformed shape or data_offsets, or a byte size "
    "that does not match its shape and dtype. The reference loader rejects such files; other "
    "loaders may mis-size buffers.", _REBUILD, "CWE-20")
OFFSETS_OUT_OF_BOUNDS = _rule(
    "SAFETENSORS-OFFSETS-OUT-OF-BOUNDS", "Tensor data offsets point outside the file",
    Severity.HIGH, Category.MALFORMED,
    "A tensor's data_offsets end beyond the data area of the file. Loaders that trust the "
    "offsets read out of bounds (memory disclosure or crash).", _REBUILD, "CWE-125")
OFFSETS_OVERLAP = _rule(
    "SAFETENSORS-OFFSETS-OVERLAP", "Tensors share bytes in the data area", Severity.HIGH,
    Category.MALFORMED,
    "Two tensors' data_offsets overlap. The reference loader requires disjoint, contiguous "
    "tensors; overlapping views alias memory in loaders that accept them.", _REBUILD, "CWE-20")
UNCOVERED_DATA = _rule(
    "SAFETENSORS-UNCOVERED-DATA", "Bytes in the data area belong to no tensor", Severity.HIGH,
    Category.INTEGRITY,
    "Part of the data area (a gap between tensors, or bytes after the last one) is not "
    "covered by any tensor. The reference loader rejects this; the bytes can hide a second "
    "payload (an appended archive or pickle: a polyglot file).",
    "Inspect the uncovered bytes; re-export the tensors with the official library.")
METADATA_INVALID = _rule(
    "SAFETENSORS-METADATA-INVALID", "Invalid __metadata__ in the safetensors header",
    Severity.HIGH, Category.MALFORMED,
    "`__metadata__` must be a JSON object mapping strings to strings; the reference loader "
    "rejects anything else.", _REBUILD, "CWE-20")
LIMIT_EXCEEDED = _rule(
    "SAFETENSORS-LIMIT-EXCEEDED", "Safetensors header beyond Bastion's bounds", Severity.MEDIUM,
    Category.RESOURCE,
    "The header declares more tensors, more dimensions or more metadata than any real model "
    "uses. It was checked only up to the bound; such headers exhaust loaders' memory.",
    "Check where the file comes from; split it into shards if it is genuine.", "CWE-770")

RULES: tuple[Rule, ...] = (
    HEADER_TOO_LARGE, HEADER_OUT_OF_BOUNDS, HEADER_INVALID, DUPLICATE_KEY, TENSOR_INVALID,
    OFFSETS_OUT_OF_BOUNDS, OFFSETS_OVERLAP, UNCOVERED_DATA, METADATA_INVALID, LIMIT_EXCEEDED,
)


@dataclass
class _Header:
    """The parsed header with the duplicate keys the JSON parser met on the way."""

    data: Any = None
    duplicates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Span:
    name: str
    begin: int
    end: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SafetensorsAnalyzer:
    """Validates a safetensors header: bounds, dtypes, shapes, offsets, coverage."""

    name = "safetensors"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        """An 8-byte length, then a JSON object: ``{`` and a key quote or ``}``."""
        head = target.head
        if len(head) < 10:
            return False
        length = struct.unpack_from("<Q", head)[0]
        if length < 2:  # any larger length is claimed: an absurd one is itself the finding
            return False
        text = head[8:8 + length].lstrip(b" \t\r\n")
        if not text.startswith(b"{"):
            return False
        rest = text[1:].lstrip(b" \t\r\n")
        return not rest or rest[:1] in (b'"', b"}")

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return capped(self._analyze(target, ctx), RULES, target.location)

    def _analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        loc = target.location
        length = struct.unpack_from("<Q", target.head)[0]
        limit = ctx.policy.limits.max_header_size
        if length > limit:
            yield HEADER_TOO_LARGE.finding(
                loc.at(offset=0), f"header length {length} is over the limit of {limit} bytes",
                evidence=f"header length {length}", properties={"header_length": length})
            return
        if 8 + length > target.size:
            yield HEADER_OUT_OF_BOUNDS.finding(
                loc.at(offset=0),
                f"header length {length} runs past the end of the {target.size}-byte file",
                evidence=f"header length {length}, file size {target.size}")
            return
        raw = self._read_header(target, length)
        header = yield from self._parse(raw, loc.at(offset=8))
        if header is None:
            return
        data_size = target.size - 8 - length
        yield from self._check_header(header, loc, 8 + length, data_size)

    @staticmethod
    def _read_header(target: Target, length: int) -> bytes:
        if 8 + length <= len(target.head):
            return target.head[8:8 + length]
        with opened(target) as stream:
            stream.seek(8)
            return stream.read(length)

    @staticmethod
    def _parse(raw: bytes, loc: Location) -> Generator[Finding, None, _Header | None]:
        """Decode and parse the header, reporting what the reference parser would refuse."""
        header = _Header()

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            for key, value in items:
                if key in seen:
                    header.duplicates.append(key)
                seen[key] = value
            return seen

        def no_constants(name: str) -> Any:
            raise ValueError(f"non-standard JSON constant {name}")

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield HEADER_INVALID.finding(loc, f"header is not valid UTF-8: {exc.reason}",
                                         evidence=f"byte offset {exc.start} in the header")
            return None
        try:
            header.data = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constants)
        except RecursionError:
            yield HEADER_INVALID.finding(loc, "header JSON nests too deeply to parse")
            return None
        except ValueError as exc:
            yield HEADER_INVALID.finding(loc, f"header is not valid JSON: {exc}")
            return None
        for key in header.duplicates:
            yield DUPLICATE_KEY.finding(loc, f"key {key!r} appears more than once in the header",
                                        evidence=key)
        if not isinstance(header.data, dict):
            yield HEADER_INVALID.finding(
                loc, f"header is a JSON {type(header.data).__name__}, not an object")
            return None
        return header

    def _check_header(self, header: _Header, loc: Location, data_start: int,
                      data_size: int) -> Iterator[Finding]:
        entries: dict[str, Any] = header.data
        if METADATA_KEY in entries:
            yield from self._check_metadata(entries[METADATA_KEY], loc.at(offset=8))
        names = [name for name in entries if name != METADATA_KEY]
        if len(names) > MAX_TENSORS:
            yield LIMIT_EXCEEDED.finding(
                loc.at(offset=8), f"{len(names)} tensors declared; checked the first "
                f"{MAX_TENSORS}", properties={"tensors": len(names)})
            names = names[:MAX_TENSORS]
        spans: list[_Span] = []
        complete = True
        for name in names:
            span = yield from self._check_tensor(name, entries[name], loc.at(offset=8), data_size)
            if span is None:
                complete = False
            else:
                spans.append(span)
        yield from self._check_layout(spans, loc, data_start, data_size, complete)

    @staticmethod
    def _check_metadata(meta: Any, loc: Location) -> Iterator[Finding]:
        if meta is None:  # the reference loader accepts an explicit null
            return
        if not isinstance(meta, dict):
            yield METADATA_INVALID.finding(
                loc, f"__metadata__ is a JSON {type(meta).__name__}, not an object")
            return
        bad = [k for k, v in meta.items() if not isinstance(v, str)]
        for key in bad[:10]:
            yield METADATA_INVALID.finding(
                loc, f"__metadata__ value of {key!r} is a {type(meta[key]).__name__}, "
                "not a string", evidence=key)
        total = sum(len(k) + (len(v) if isinstance(v, str) else 0) for k, v in meta.items())
        if total > MAX_METADATA_CHARS:
            yield LIMIT_EXCEEDED.finding(
                loc, f"__metadata__ holds {total} characters (bound {MAX_METADATA_CHARS})",
                severity=Severity.LOW, properties={"metadata_chars": total})

    @staticmethod
    def _check_tensor(name: str, info: Any, loc: Location,
                      data_size: int) -> Generator[Finding, None, _Span | None]:
        """Validate one entry; return its byte span when its offsets are usable."""
        def bad(message: str, rule: Rule = TENSOR_INVALID) -> Finding:
            return rule.finding(loc, f"tensor {name!r}: {message}", evidence=name)

        if not isinstance(info, dict):
            yield bad(f"entry is a JSON {type(info).__name__}, not an object")
            return None
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(_is_int(o) and 0 <= o < U64 for o in offsets)):
            yield bad(f"data_offsets must be two unsigned integers, got {offsets!r:.200}")
            return None
        begin, end = offsets
        if begin > end:
            yield bad(f"data_offsets begin {begin} is after end {end}")
            return None
        if end > data_size:
            yield bad(f"data_offsets [{begin}, {end}] end past the {data_size}-byte data area",
                      OFFSETS_OUT_OF_BOUNDS)
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            yield bad(f"unknown dtype {dtype!r:.100}")
        elif not (isinstance(shape, list) and all(_is_int(d) and 0 <= d < U64 for d in shape)):
            yield bad(f"shape must be a list of unsigned integers, got {shape!r:.200}")
        elif len(shape) > MAX_RANK:
            yield bad(f"{len(shape)} dimensions (bound {MAX_RANK})", LIMIT_EXCEEDED)
        else:
            bits = math.prod(shape) * DTYPE_BITS[dtype]
            if bits >= U64 * 8:
                yield bad(f"shape {shape} of {dtype} overflows a 64-bit byte size")
            elif bits % 8:
                yield bad(f"shape {shape} of sub-byte dtype {dtype} does not end on a byte")
            elif bits // 8 != end - begin:
                yield bad(f"shape {shape} of {dtype} is {bits // 8} bytes but data_offsets "
                          f"span {end - begin}")
        return _Span(name, begin, end)

    @staticmethod
    def _check_layout(spans: list[_Span], loc: Location, data_start: int, data_size: int,
                      complete: bool) -> Iterator[Finding]:
        """Tensors must tile the data area exactly: no overlap, no gap, nothing after."""
        cursor = 0
        previous: _Span | None = None
        for span in sorted(spans, key=lambda s: (s.begin, s.end)):
            where = loc.at(offset=data_start + span.begin)
            if span.begin < cursor and previous is not None:
                yield OFFSETS_OVERLAP.finding(
                    where, f"tensor {span.name!r} [{span.begin}, {span.end}] overlaps "
                    f"{previous.name!r} [{previous.begin}, {previous.end}]",
                    evidence=f"{previous.name} / {span.name}")
            elif span.begin > cursor and complete:
                yield UNCOVERED_DATA.finding(
                    loc.at(offset=data_start + cursor),
                    f"{span.begin - cursor} bytes before tensor {span.name!r} belong to no "
                    "tensor", evidence=f"gap [{cursor}, {span.begin}]")
            if span.end >= cursor:
                cursor, previous = span.end, span
        if complete and cursor < data_size:
            yield UNCOVERED_DATA.finding(
                loc.at(offset=data_start + cursor),
                f"{data_size - cursor} bytes after the last tensor belong to no tensor",
                evidence=f"trailing [{cursor}, {data_size}]",
                properties={"trailing_bytes": data_size - cursor})
