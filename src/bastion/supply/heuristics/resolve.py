"""Names and constants of one parsed module: what a call refers to, what a value is.

:class:`Resolver` follows import aliases and simple assignments so a call is matched by
its qualified name, however it was spelled: ``from base64 import b64decode as d``,
``__import__('os').system``, ``getattr(builtins, 'ex' + 'ec')``, ``globals()['__builtins__']``.
:meth:`Resolver.static` folds constant expressions and *decodes* constant payloads (base64,
hex, zlib, bz2, lzma, rot13, reversal, ``chr`` joins), bounded in size and depth, so a
finding can show what an obfuscated payload says. Nothing is ever executed: ``marshal``
and pickle data are never decoded (loading them is unsafe in itself).
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import bz2
import codecs
import lzma
import zlib
from collections.abc import Callable, Iterable

#: Largest value a constant expression may fold or decode to.
MAX_STATIC = 1 << 20
#: Deepest expression folded.
MAX_DEPTH = 40
_BUILTINS = frozenset(dir(builtins))
_IMPORTERS = frozenset({"builtins.__import__", "importlib.import_module", "importlib.__import__"})
_NAMESPACES = frozenset({"builtins", "<globals>"})

Static = str | bytes | int | list["Static"]
_BINDERS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_ASSIGNERS = (ast.Assign, ast.AnnAssign, ast.NamedExpr, ast.withitem)


class Resolver:
    """Import aliases and simple assignments of one module, and the names it binds itself."""

    def __init__(self, nodes: Iterable[ast.AST]) -> None:
        """From every node of the module (in any order)."""
        self.aliases: dict[str, str] = {}
        self.bound: set[str] = set()
        self.classes: set[str] = set()
        assignments = []
        for node in nodes:
            if isinstance(node, _BINDERS):
                self._bind(node)
            elif isinstance(node, _ASSIGNERS):
                assignments.append(node)
        for _ in range(2):  # a second pass resolves chains (``a = os; b = a.system``)
            for node in assignments:
                self._assign(node)

    # -- collecting --------------------------------------------------------------------------

    def _bind(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".", 1)[0]
                    self.aliases[root] = root
        elif isinstance(node, ast.ImportFrom):
            # Relative imports keep their dots: they never match a known API's name.
            base = "." * node.level + (f"{node.module}." if node.module else "")
            for alias in node.names:
                if alias.name != "*":
                    self.aliases[alias.asname or alias.name] = base + alias.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.bound.add(node.name)
            self.bound.update(a.arg for a in (*node.args.posonlyargs, *node.args.args,
                                              *node.args.kwonlyargs))
        elif isinstance(node, ast.ClassDef):
            self.bound.add(node.name)
            self.classes.add(node.name)

    def _assign(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            target, value = node.optional_vars, node.context_expr
        else:
            return
        if not isinstance(target, ast.Name):
            return
        resolved = self.qual(value)
        if resolved is not None and not resolved.startswith(target.id + "."):
            self.aliases[target.id] = resolved
        elif target.id not in self.aliases:
            self.bound.add(target.id)

    # -- resolving ---------------------------------------------------------------------------

    def qual(self, node: ast.AST, depth: int = 0) -> str | None:
        """The qualified name an expression refers to, or None when it cannot be known."""
        if depth > MAX_DEPTH:
            return None
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id == "__builtins__":
                return "builtins"
            if node.id in _BUILTINS and node.id not in self.bound:
                return f"builtins.{node.id}"
            return node.id
        if isinstance(node, ast.Attribute):
            base = self.qual(node.value, depth + 1)
            if base is None:
                return None
            if node.attr == "__dict__" and base in _NAMESPACES:
                return base
            if base.startswith("builtins.") and base.count(".") == 1 and base != "builtins.":
                base = base[len("builtins."):]  # bytes.fromhex, str.maketrans: the type's name
            return f"{base}.{node.attr}"
        if isinstance(node, ast.Call):
            return self._call_value(node, depth)
        if isinstance(node, ast.Subscript):
            base = self.qual(node.value, depth + 1)
            key = self.static(node.slice, depth + 1)
            if base in _NAMESPACES and isinstance(key, str):
                return "builtins" if key == "__builtins__" else f"builtins.{key}"
        return None

    def _call_value(self, node: ast.Call, depth: int) -> str | None:
        """What calling ``node`` returns, as a name: a module, an attribute, or ``f()``."""
        func = self.qual(node.func, depth + 1)
        if func is None:
            return None
        first = node.args[0] if node.args else None
        if func in _IMPORTERS and first is not None:
            name = self.static(first, depth + 1)
            return name if isinstance(name, str) else None
        if func == "builtins.getattr" and len(node.args) >= 2:
            base = self.qual(node.args[0], depth + 1)
            attr = self.static(node.args[1], depth + 1)
            if base is not None and isinstance(attr, str):
                return "builtins" if attr == "__builtins__" else f"{base}.{attr}"
            return None
        if func in ("builtins.globals", "builtins.locals"):
            return "<globals>"
        if func == "builtins.vars" and first is not None:
            return self.qual(first, depth + 1)
        return f"{func}()"

    def is_class(self, name: str) -> bool:
        return name in self.classes

    # -- constant folding and decoding -------------------------------------------------------

    def static(self, node: ast.AST, depth: int = 0) -> Static | None:
        """The value of a constant expression, decoded where it is a decoding; else None."""
        if depth > MAX_DEPTH:
            return None
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str | bytes) or (isinstance(value, int)
                                                  and not isinstance(value, bool)):
                return value
            return None
        if isinstance(node, ast.JoinedStr):
            parts = [self.static(v.value if isinstance(v, ast.FormattedValue) else v, depth + 1)
                     for v in node.values]
            return "".join(str(p) for p in parts) if all(
                isinstance(p, str | int) for p in parts) else None
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self.static(node.operand, depth + 1)
            return -operand if isinstance(operand, int) else None
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.static(e, depth + 1) for e in node.elts[:4096]]
            return None if any(i is None for i in items) else [i for i in items if i is not None]
        if isinstance(node, ast.Subscript):
            return self._slice(node, depth)
        if isinstance(node, ast.Call):
            return self._static_call(node, depth)
        return None

    def _binop(self, node: ast.BinOp, depth: int) -> Static | None:
        if isinstance(node.op, ast.Mult):
            left, right = self.static(node.left, depth + 1), self.static(node.right, depth + 1)
            if isinstance(left, str | bytes) and isinstance(right, int) and right >= 0 and \
                    len(left) * right <= MAX_STATIC:
                return left * right
            return None
        if not isinstance(node.op, ast.Add):
            return None
        operands: list[ast.AST] = []
        current: ast.AST = node
        while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Add):
            operands.append(current.right)
            current = current.left
            if len(operands) > 10_000:
                return None
        operands.append(current)
        values = [self.static(o, depth + 1) for o in reversed(operands)]
        if all(isinstance(v, str) for v in values):
            text = "".join(v for v in values if isinstance(v, str))
            return text if len(text) <= MAX_STATIC else None
        if all(isinstance(v, bytes) for v in values):
            data = b"".join(v for v in values if isinstance(v, bytes))
            return data if len(data) <= MAX_STATIC else None
        if all(isinstance(v, int) for v in values):
            return sum(v for v in values if isinstance(v, int))
        return None

    def _slice(self, node: ast.Subscript, depth: int) -> Static | None:
        value = self.static(node.value, depth + 1)
        if not isinstance(value, str | bytes) or not isinstance(node.slice, ast.Slice):
            return None
        bounds = [self.static(b, depth + 1) if b is not None else None
                  for b in (node.slice.lower, node.slice.upper, node.slice.step)]
        if not all(b is None or isinstance(b, int) for b in bounds):
            return None
        lower, upper, step = (b if isinstance(b, int) else None for b in bounds)
        if step == 0:
            return None
        return value[lower:upper:step]

    def _static_call(self, node: ast.Call, depth: int) -> Static | None:
        args = [self.static(a, depth + 1) for a in node.args[:3]]
        func = node.func
        if isinstance(func, ast.Attribute):
            receiver = self.static(func.value, depth + 1)
            if receiver is not None:
                return _method(receiver, func.attr, args)
        name = self.qual(func, depth + 1)
        if name is None or not args or args[0] is None:
            return None
        decoder = DECODERS.get(name)
        if decoder is not None and isinstance(args[0], str | bytes):
            extra = args[1] if len(args) > 1 else None
            return decoder(_bytes(args[0]), extra)
        if name == "builtins.chr" and isinstance(args[0], int) and 0 <= args[0] < 0x110000:
            return chr(args[0])
        if name in ("builtins.bytes", "builtins.bytearray") and isinstance(args[0], list) and \
                all(isinstance(i, int) and 0 <= i < 256 for i in args[0]):
            return bytes(i for i in args[0] if isinstance(i, int))
        if name == "builtins.str" and isinstance(args[0], str | int):
            return str(args[0])
        return None


def _bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1", "replace") if isinstance(value, str) else value


def _method(receiver: Static, method: str, args: list[Static | None]) -> Static | None:
    """A few str/bytes methods that obfuscators chain (``.decode()``, ``''.join``...)."""
    first = args[0] if args else None
    if method == "decode" and isinstance(receiver, bytes):
        codec = first if isinstance(first, str) else "utf-8"
        if codec.replace("-", "_").lower() in ("rot13", "rot_13", "hex", "base64", "zlib"):
            return codec_decode(receiver, codec)
        try:
            return receiver.decode(codec, "replace")
        except LookupError:
            return None
    if method == "encode" and isinstance(receiver, str):
        try:
            return receiver.encode(first if isinstance(first, str) else "utf-8", "replace")
        except LookupError:
            return None
    if method == "join" and isinstance(receiver, str) and isinstance(first, list):
        parts = [p if isinstance(p, str) else None for p in first]
        if all(p is not None for p in parts):
            text = receiver.join(p for p in parts if p is not None)
            return text if len(text) <= MAX_STATIC else None
        return None
    if method == "replace" and isinstance(receiver, str) and len(args) >= 2 and \
            isinstance(first, str) and isinstance(args[1], str) and first:
        result = receiver.replace(first, args[1])
        return result if len(result) <= MAX_STATIC else None
    if method in ("strip", "lower", "upper") and isinstance(receiver, str | bytes) and not args:
        return getattr(receiver, method)()  # type: ignore[no-any-return]
    if method == "fromhex" and isinstance(first, str):
        return _unhex(first.encode("latin-1", "replace"), None)
    return None


def _cap(data: bytes | None) -> bytes | None:
    return data if data is not None and len(data) <= MAX_STATIC else None


def _b64(decode: Callable[[bytes], bytes]) -> Callable[[bytes, Static | None], bytes | None]:
    def run(data: bytes, _extra: Static | None) -> bytes | None:
        try:
            return _cap(decode(data))
        except (binascii.Error, ValueError):
            return None
    return run


def _unhex(data: bytes, _extra: Static | None) -> bytes | None:
    try:
        return _cap(bytes.fromhex(data.decode("ascii").replace("\\x", "")))
    except (ValueError, UnicodeDecodeError):
        return None


def _inflate(wbits: int) -> Callable[[bytes, Static | None], bytes | None]:
    def run(data: bytes, _extra: Static | None) -> bytes | None:
        try:
            return zlib.decompressobj(wbits).decompress(data, MAX_STATIC) or None
        except zlib.error:
            return None
    return run


def _bunzip(data: bytes, _extra: Static | None) -> bytes | None:
    try:
        return bz2.BZ2Decompressor().decompress(data, MAX_STATIC) or None
    except (OSError, ValueError, EOFError):
        return None


def _unlzma(data: bytes, _extra: Static | None) -> bytes | None:
    try:
        return lzma.LZMADecompressor(memlimit=64 << 20).decompress(data, MAX_STATIC) or None
    except (lzma.LZMAError, EOFError):
        return None


def codec_decode(data: bytes | str, codec: str) -> bytes | str | None:
    """``codecs.decode`` for the codecs obfuscators use; bounded, never ``marshal``."""
    name = codec.replace("-", "_").lower()
    if name in ("rot13", "rot_13"):
        text = data.decode("latin-1") if isinstance(data, bytes) else data
        return codecs.encode(text, "rot13")
    raw = _bytes(data)
    if name in ("hex", "hex_codec"):
        return _unhex(raw, None)
    if name in ("base64", "base_64", "base64_codec"):
        return _b64(base64.b64decode)(raw, None)
    if name in ("zlib", "zip", "zlib_codec"):
        return _inflate(15)(raw, None)
    if name in ("bz2", "bz2_codec"):
        return _bunzip(raw, None)
    return None


def _codecs(data: bytes, extra: Static | None) -> bytes | str | None:
    return codec_decode(data, extra) if isinstance(extra, str) else None


DECODERS: dict[str, Callable[[bytes, Static | None], bytes | str | None]] = {
    **{f"base64.{n}": _b64(base64.b64decode) for n in ("b64decode", "standard_b64decode",
                                                        "decodebytes", "decodestring")},
    "base64.urlsafe_b64decode": _b64(base64.urlsafe_b64decode),
    "base64.b32decode": _b64(base64.b32decode), "base64.b16decode": _b64(base64.b16decode),
    "base64.a85decode": _b64(base64.a85decode), "base64.b85decode": _b64(base64.b85decode),
    "binascii.a2b_base64": _b64(binascii.a2b_base64),
    "binascii.unhexlify": _unhex, "binascii.a2b_hex": _unhex, "bytes.fromhex": _unhex,
    "bytearray.fromhex": _unhex,
    "zlib.decompress": _inflate(47), "gzip.decompress": _inflate(31),
    "bz2.decompress": _bunzip, "lzma.decompress": _unlzma, "codecs.decode": _codecs,
}
