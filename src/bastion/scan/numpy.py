"""NumPy ``.npy`` arrays (and the members of ``.npz`` archives, dispatched here by the zip
analyzer): object arrays carry a pickle after the header, which ``numpy.load(...,
allow_pickle=True)`` runs.

The header is a Python dict literal; it is parsed with :func:`ast.literal_eval` (literals
only, nothing evaluated) after its size is bounded, as NumPy itself bounds it.
"""

from __future__ import annotations

import ast
import struct
from collections.abc import Iterator
from typing import Any

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Severity
from bastion.rules import Rule
from bastion.scan.pickle import scan_pickles

MAGIC = b"\x93NUMPY"
#: numpy.lib.format refuses headers over 10000 bytes unless told otherwise; allow more, bounded.
MAX_HEADER = 1 << 20

OBJECT_ARRAY = Rule(
    id="NUMPY-OBJECT-ARRAY", title="NumPy array of Python objects (holds a pickle)",
    severity=Severity.INFO, category=Category.CODE_EXECUTION,
    description="The array's dtype holds Python objects, stored as a pickle that "
                "numpy.load(allow_pickle=True) unpickles. The pickle is analysed; this note says "
                "that loading needs allow_pickle=True.",
    remediation="Store numeric arrays, or strings as fixed-width unicode ('U') arrays.",
    references=("CWE-502",))
BAD_HEADER = Rule(
    id="NUMPY-HEADER-INVALID", title="NumPy array header is malformed",
    severity=Severity.MEDIUM, category=Category.MALFORMED,
    description="The .npy header is not a valid dict literal with descr, fortran_order and "
                "shape, or its size is out of bounds; numpy.load will fail or misread it.",
    remediation="Regenerate the file with numpy.save.")
RULES: tuple[Rule, ...] = (OBJECT_ARRAY, BAD_HEADER)


def _has_object(descr: Any, depth: int = 0) -> bool:
    if depth > 32:
        return True
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list | tuple):
        return any(_has_object(part, depth + 1) for part in descr)
    return False


def parse_header(head: bytes) -> tuple[dict[str, Any], int] | str:
    """(header dict, data offset), or the reason it is invalid."""
    if len(head) < 10 or not head.startswith(MAGIC):
        return "not a .npy file"
    major = head[6]
    if major == 1:
        (length,) = struct.unpack("<H", head[8:10])
        start = 10
    elif major in (2, 3):
        if len(head) < 12:
            return "truncated header"
        (length,) = struct.unpack("<I", head[8:12])
        start = 12
    else:
        return f"unknown format version {major}"
    if length > MAX_HEADER:
        return f"header of {length} bytes is over the {MAX_HEADER}-byte bound"
    return {"__length__": length, "__start__": start}, start + length


def _literal(text: str) -> dict[str, Any] | str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
        return f"header is not a Python literal: {type(exc).__name__}"
    if not isinstance(value, dict) or not {"descr", "fortran_order", "shape"} <= value.keys():
        return "header lacks descr, fortran_order or shape"
    return value


class NumpyAnalyzer:
    name = "numpy"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return target.head.startswith(MAGIC)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        parsed = parse_header(target.head)
        if isinstance(parsed, str):
            yield BAD_HEADER.finding(target.location, parsed)
            return
        info, data_offset = parsed
        if data_offset > target.size:
            yield BAD_HEADER.finding(target.location, "header runs past the end of the file")
            return
        with target.open() as stream:
            stream.seek(info["__start__"])
            raw = stream.read(info["__length__"])
        try:
            text = raw.decode("latin-1" if target.head[6] < 3 else "utf-8")
        except UnicodeDecodeError:
            yield BAD_HEADER.finding(target.location, "header is not valid text")
            return
        header = _literal(text)
        if isinstance(header, str):
            yield BAD_HEADER.finding(target.location, header, evidence=text[:200])
            return
        if _has_object(header["descr"]):
            yield OBJECT_ARRAY.finding(target.location.at(offset=data_offset),
                                       f"object array (descr {header['descr']!r}) stores a pickle",
                                       evidence=text.strip()[:200])
            yield from scan_pickles(target, ctx, start=data_offset,
                                    size=target.size - data_offset, multi=False)
