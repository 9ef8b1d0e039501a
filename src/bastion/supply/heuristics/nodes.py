"""Small helpers over AST nodes and source lines, shared by the file analysis.

Child iteration without ``Load``/``Store`` markers, the ``__main__`` guard, the hand-made
decodings obfuscators use (rot13, ``chr`` joins, reversal), encoded blobs, code hidden past
the screen's edge, and the one line-based check kept for files that do not parse.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from bastion.supply.heuristics import patterns as P
from bastion.supply.heuristics.interface import MODULE, Sig, Signal
from bastion.supply.heuristics.resolve import Resolver, Static

_FALLBACK = re.compile(r"\b(?:exec|eval)\s*\(.*\b(?:b64decode|decompress|unhexlify|fromhex|"
                       r"rot13|marshal\.loads)")


def fallback(lines: list[str]) -> Iterator[Signal]:
    """For files that do not parse (Python 2): only the unmistakable decode-and-exec line."""
    for number, text in enumerate(lines[:200_000], 1):
        if _FALLBACK.search(text[:10_000]):
            yield Signal(Sig.EXEC_DECODED, number, MODULE, "exec of decoded data (unparsed file)")


def hidden(lines: list[str]) -> Iterator[Signal]:
    """Lines that go on with code after a long run of blanks (W4SP's off-screen trick)."""
    for number, text in enumerate(lines[:200_000], 1):
        match = P.HIDDEN_CODE.search(text[:20_000])
        if match and P.looks_like_code(match.group(1)):
            yield Signal(Sig.HIDDEN, number, MODULE,
                         f"code after {len(match.group(0)) - len(match.group(1)) - 1} blanks: "
                         f"{match.group(1)[:80]}")


def main_guard(test: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(
            test.ops[0], ast.Eq)):
        return False
    sides = [test.left, *test.comparators]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


BULK_METHODS = frozenset({"items", "values", "keys", "copy", "__iter__", "__repr__", "__str__",
                           "__dict__", "_data"})
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
INTERESTING = (ast.Call, ast.Constant, ast.Name, ast.Attribute, ast.Assign)
_FIELDS: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({"ctx", "id", "attr", "arg", "name", "names", "module", "level", "value",
                      "kind", "type_comment", "lineno", "col_offset", "end_lineno",
                      "end_col_offset", "conversion", "is_async", "asname", "tag"})


def children(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.iter_child_nodes`` without the ``Load``/``Store`` markers (a third of a tree)."""
    kind = type(node)
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = tuple(f for f in kind._fields if f not in _SCALARS or (f == "value" and
                       kind is not ast.Constant))
        _FIELDS[kind] = fields
    for name in fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST):
                    yield item


def keyword_node(node: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def keyword(resolver: Resolver, node: ast.Call, name: str) -> Static | None:
    value = keyword_node(node, name)
    return resolver.static(value) if value is not None else None


def tricks(resolver: Resolver, nodes: list[ast.AST]) -> list[str]:
    """Hand-made decodings among the nodes: ``.decode('rot13')``, ``chr`` joins, reversal."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "decode" and node.args:
                codec = resolver.static(node.args[0])
                if isinstance(codec, str) and codec.replace("-", "_").lower() in P.CODEC_NAMES:
                    found.append(f"decode({codec!r})")
            elif resolver.qual(node.func) == "builtins.chr":
                found.append("chr")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice) and \
                node.slice.step is not None and resolver.static(node.slice.step) == -1:
            found.append("reversal")
    return found


def preview(value: Static | None) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    flat = " ".join(value.split())
    return f"; decodes to: {flat[:400]!r}"


_B64_CHARS = re.compile(r"[A-Za-z0-9+/=_\-\s]+")
_HEX_CHARS = re.compile(r"(?:\\x|0x)?[0-9a-fA-F\s]+")


def blob_kind(text: str) -> str | None:
    sample = text[:1 << 16]
    if _HEX_CHARS.fullmatch(sample) and sum(c in "0123456789abcdefABCDEF" for c in sample[:512]) \
            > 400:
        return "hex"
    if _B64_CHARS.fullmatch(sample) and any(c.isupper() for c in sample[:256]) and any(
            c.islower() for c in sample[:256]) and any(c.isdigit() for c in sample[:256]) and \
            " " not in sample.strip()[:256]:
        return "base64"
    return None
