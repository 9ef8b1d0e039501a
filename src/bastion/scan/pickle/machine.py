"""A symbolic pickle machine: it walks the opcode stream like ``pickle.load`` would, but
every value is a description, never a Python object, and nothing is imported or called.

What it records:

* every importable name the stream references (GLOBAL, STACK_GLOBAL, INST, and names that a
  known resolver such as ``numpy.core._ufunc_reconstruct`` would import), with where;
* every call the loader would make (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) and its statically
  known arguments;
* anything a loader would choke on or that cannot be resolved statically: a module or name
  computed at load time, a call of a call's result, extension codes, BUILD on an imported
  object, a truncated stream or an invalid opcode. Python executes the opcodes *before* an
  error, so a stream that fails to parse is itself reported, never called clean.

joblib writes NumPy array bytes inline after a ``NumpyArrayWrapper`` BUILD; the machine skips
them exactly as joblib's unpickler reads them (object arrays are a nested pickle, walked too).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bastion.scan.pickle.globals import RESOLVERS, Classification, classify, normalize
from bastion.scan.pickle.reader import Reader, Truncated

KEEP_BYTES = 1 << 20  # payloads up to this size are kept whole (nested pickles)
PREVIEW = 256  # bytes kept of larger payloads
LINE_LIMIT = 16 << 20  # longest protocol-0 argument line
KEEP_ITEMS = 256  # container items kept for previews and joblib state
MAX_CALLS_KEPT = 3  # call records kept per global
MAX_NESTED = 8  # joblib object arrays: nested pickle depth


class Malformed(Exception):
    """The stream is not a valid pickle at this point."""


# -- symbolic values ----------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Const:
    value: Any
    truncated: bool = False


@dataclass(eq=False, slots=True)
class Global:
    module: str
    name: str
    offset: int

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False, slots=True)
class Call:
    func: Any
    args: Any
    offset: int
    kwargs: Any = None
    state: Any = None


@dataclass(eq=False, slots=True)
class Seq:
    kind: str  # tuple, list, set, frozenset
    items: list[Any]
    length: int

    def add(self, values: Iterable[Any]) -> None:
        for value in values:
            self.length += 1
            if len(self.items) < KEEP_ITEMS:
                self.items.append(value)


@dataclass(eq=False, slots=True)
class DictV:
    items: list[tuple[Any, Any]]
    length: int

    def set(self, key: Any, value: Any) -> None:
        self.length += 1
        if len(self.items) < KEEP_ITEMS:
            self.items.append((key, value))

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if isinstance(k, Const) and k.value == key:
                return v
        return None


@dataclass(eq=False, slots=True)
class PersId:
    pid: Any


@dataclass(eq=False, slots=True)
class Opaque:
    what: str


class _Mark:
    pass


MARK = _Mark()


def _tuple(items: list[Any]) -> Seq:
    return Seq("tuple", items[:KEEP_ITEMS], len(items))


# -- results ------------------------------------------------------------------------------------


@dataclass
class CallRecord:
    offset: int
    args: str


@dataclass
class GlobalUse:
    module: str
    name: str
    classification: Classification
    offset: int
    via: str
    count: int = 0
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Issue:
    kind: str  # malformed, dynamic-global, dynamic-call, extension, global-build, too-complex,
    #           nested-pickle
    offset: int
    message: str
    evidence: str | None = None


@dataclass
class PickleResult:
    start: int
    end: int = 0
    protocol: int | None = None
    opcodes: int = 0
    complete: bool = False
    globals: dict[str, GlobalUse] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    #: (offset, bytes) of pickles nested as bytes (torch.storage._load_from_bytes).
    nested: list[tuple[int, bytes]] = field(default_factory=list)
    persistent_ids: int = 0


# -- rendering ----------------------------------------------------------------------------------


def render(value: Any, depth: int = 0, budget: list[int] | None = None) -> str:
    """A short Python-like text for a symbolic value, for evidence."""
    budget = budget if budget is not None else [40]
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        return "…"
    if isinstance(value, Const):
        text = repr(value.value)
        if len(text) > 200:
            text = text[:200] + "…"
        return text + ("…" if value.truncated else "")
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Call):
        return f"{render(value.func, depth + 1, budget)}({_args(value.args, depth, budget)})"
    if isinstance(value, Seq):
        inner = ", ".join(render(v, depth + 1, budget) for v in value.items[:8])
        more = ", …" if value.length > 8 else ""
        if value.kind == "tuple":
            return f"({inner}{more}{',' if value.length == 1 else ''})"
        if value.kind == "list":
            return f"[{inner}{more}]"
        return f"{value.kind}({{{inner}{more}}})"
    if isinstance(value, DictV):
        inner = ", ".join(f"{render(k, depth + 1, budget)}: {render(v, depth + 1, budget)}"
                          for k, v in value.items[:8])
        return "{" + inner + (", …" if value.length > 8 else "") + "}"
    if isinstance(value, PersId):
        return f"persistent_id({render(value.pid, depth + 1, budget)})"
    if isinstance(value, Opaque):
        return f"<{value.what}>"
    return "?"


def _args(args: Any, depth: int, budget: list[int]) -> str:
    if isinstance(args, Seq) and args.kind == "tuple":
        inner = ", ".join(render(v, depth + 1, budget) for v in args.items[:8])
        return inner + (", …" if args.length > 8 else "")
    return "*" + render(args, depth + 1, budget)


# -- the machine --------------------------------------------------------------------------------

_DTYPE_SIZES = {"b": 1, "?": 1, "i": 0, "u": 0, "f": 0, "c": 0, "M": 0, "m": 0, "S": 0,
                "V": 0, "a": 0}


class Machine:
    """Walks one pickle stream (and the pickles that follow it, if asked)."""

    def __init__(
        self,
        reader: Reader,
        *,
        max_opcodes: int,
        allowed: Iterable[str] = (),
        on_global: Callable[[GlobalUse], None] | None = None,
    ) -> None:
        self.r = reader
        self.max_opcodes = max_opcodes
        self.allowed = tuple(allowed)
        self.opcodes_left = max_opcodes
        self._on_global = on_global

    # public -------------------------------------------------------------------------------------

    def run(self, nested_depth: int = 0) -> PickleResult:
        """Walk from the reader's position to the STOP opcode (or the first error)."""
        result = PickleResult(start=self.r.tell())
        state = _State(result)
        try:
            self._loop(state, nested_depth)
        except Truncated as exc:
            result.issues.append(Issue("malformed", self.r.tell(),
                                       f"the pickle is truncated: {exc}"))
        except Malformed as exc:
            result.issues.append(Issue("malformed", state.op_offset, str(exc)))
        except _TooComplex:
            result.issues.append(Issue(
                "too-complex", state.op_offset,
                f"more than {self.max_opcodes} opcodes; analysis stopped (not fully checked)"))
        result.end = self.r.tell()
        result.opcodes = self.max_opcodes - self.opcodes_left
        return result

    # internals ----------------------------------------------------------------------------------

    def _loop(self, st: _State, nested_depth: int) -> None:
        r = self.r
        handlers = _HANDLERS
        while True:
            st.op_offset = r.tell()
            op = r.byte()
            self.opcodes_left -= 1
            if self.opcodes_left < 0:
                raise _TooComplex
            handler = handlers.get(op)
            if handler is None:
                raise Malformed(f"invalid opcode 0x{op:02x} at offset {st.op_offset}: Python's "
                                "loader stops here after running everything before it")
            if handler(self, st, nested_depth):
                st.result.complete = True
                return

    def use_global(self, st: _State, module: str, name: str, offset: int, via: str) -> Global:
        module, name = normalize(module, name)
        g = Global(module, name, offset)
        use = st.result.globals.get(g.full)
        if use is None:
            use = GlobalUse(module, name, classify(module, name, self.allowed), offset, via)
            st.result.globals[g.full] = use
            if self._on_global is not None:
                self._on_global(use)
        use.count += 1
        return g

    def record_call(
        self, st: _State, func: Any, args: Any, offset: int, kwargs: Any = None
    ) -> Call:
        call = Call(func, args, offset, kwargs)
        target = func
        if isinstance(func, Call):
            resolved = self._resolve(st, func)
            if resolved is None:
                st.result.issues.append(Issue(
                    "dynamic-call", offset,
                    "calls the result of another call: the callable is decided at load time",
                    render(call)))
                return call
            target = resolved
        if isinstance(target, Global):
            use = st.result.globals.get(target.full)
            if use is not None and len(use.calls) < MAX_CALLS_KEPT:
                use.calls.append(CallRecord(offset, _args(args, 0, [30])))
            if target.full == "torch.storage._load_from_bytes":
                self._nested_bytes(st, args, offset)
        elif isinstance(target, PersId | Opaque | Const | Seq | DictV):
            st.result.issues.append(Issue(
                "dynamic-call", offset, f"calls a non-importable object ({render(target)})",
                render(call)))
        return call

    def _resolve(self, st: _State, call: Call) -> Global | None:
        """The name a resolver call imports, when its arguments are constants."""
        func = call.func
        if not isinstance(func, Global) or func.full not in RESOLVERS:
            return None
        args = call.args
        if not isinstance(args, Seq) or args.length < 2:
            return None
        mod, name = args.items[0], args.items[1]
        if not (isinstance(mod, Const) and isinstance(name, Const)
                and isinstance(mod.value, str) and isinstance(name.value, str)):
            return None
        return self.use_global(st, mod.value, name.value, call.offset, f"via {func.full}")

    def _nested_bytes(self, st: _State, args: Any, offset: int) -> None:
        payload = args.items[0] if isinstance(args, Seq) and args.items else None
        if isinstance(payload, Const) and isinstance(payload.value, bytes | bytearray):
            if payload.truncated:
                st.result.issues.append(Issue(
                    "nested-pickle", offset,
                    "torch.storage._load_from_bytes loads a nested pickle too large to analyse"))
            else:
                st.result.nested.append((offset, bytes(payload.value)))

    # joblib ---------------------------------------------------------------------------------------

    def joblib_array(self, st: _State, wrapper: Call, state: Any, nested_depth: int) -> None:
        """Skip (or walk) the array data joblib writes after a NumpyArrayWrapper."""
        if not isinstance(state, DictV):
            raise Malformed("joblib NumpyArrayWrapper without a state dict")
        shape, dtype = state.get("shape"), state.get("dtype")
        count = 1
        if isinstance(shape, Seq) and shape.kind == "tuple":
            for dim in shape.items:
                if not (isinstance(dim, Const) and isinstance(dim.value, int) and dim.value >= 0):
                    raise Malformed("joblib array shape is not a tuple of non-negative ints")
                count *= dim.value
            if shape.length != len(shape.items):
                raise Malformed("joblib array shape has too many dimensions")
        else:
            raise Malformed("joblib array without a shape")
        itemsize, is_object = _dtype_size(dtype)
        if is_object:
            if nested_depth >= MAX_NESTED:
                raise Malformed("joblib object arrays nested too deep")
            inner = Machine(self.r, max_opcodes=self.opcodes_left, allowed=self.allowed,
                            on_global=self._on_global)
            sub = inner.run(nested_depth + 1)
            self.opcodes_left = inner.opcodes_left
            _merge(st.result, sub)
            if not sub.complete:
                raise Malformed("joblib object array's nested pickle is broken")
            return
        if itemsize is None:
            raise Malformed(f"joblib array with a dtype this scanner cannot size: {render(dtype)}")
        alignment = state.get("numpy_array_alignment_bytes")
        if isinstance(alignment, Const) and isinstance(alignment.value, int):
            pad = self.r.byte()
            self.r.skip(pad)
        self.r.skip(count * itemsize)


def _merge(into: PickleResult, sub: PickleResult) -> None:
    for key, use in sub.globals.items():
        mine = into.globals.get(key)
        if mine is None:
            into.globals[key] = use
        else:
            mine.count += use.count
            mine.calls.extend(use.calls[: max(0, MAX_CALLS_KEPT - len(mine.calls))])
    into.issues.extend(sub.issues)
    into.nested.extend(sub.nested)


def _dtype_size(dtype: Any) -> tuple[int | None, bool]:
    """(itemsize, is_object) of a pickled ``numpy.dtype(str, ...)`` call."""
    if not (isinstance(dtype, Call) and isinstance(dtype.func, Global)
            and dtype.func.name == "dtype" and isinstance(dtype.args, Seq) and dtype.args.items):
        return None, False
    spec = dtype.args.items[0]
    if not (isinstance(spec, Const) and isinstance(spec.value, str)):
        return None, False
    text = spec.value.lstrip("<>|=")
    if not text:
        return None, False
    kind, digits = text[0], text[1:]
    if kind == "O":
        return None, True
    if kind in ("V",) and isinstance(dtype.state, Seq) and dtype.state.length >= 6:
        elsize = dtype.state.items[5]
        if isinstance(elsize, Const) and isinstance(elsize.value, int) and elsize.value > 0:
            return elsize.value, False
    if not digits.isdigit():
        return (1, False) if kind in ("b", "?") and not digits else (None, False)
    size = int(digits)
    if kind == "U":
        return size * 4, False
    if kind in _DTYPE_SIZES or kind == "U":
        return size, False
    return None, False


class _TooComplex(Exception):
    pass


class _State:
    __slots__ = ("marks", "memo", "op_offset", "result", "stack")

    def __init__(self, result: PickleResult) -> None:
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.result = result
        self.op_offset = 0

    def pop(self) -> Any:
        if not self.stack:
            raise Malformed(f"stack underflow at offset {self.op_offset}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise Malformed(f"stack underflow at offset {self.op_offset}")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise Malformed(f"MARK expected at offset {self.op_offset}")
        items = self.stack
        self.stack = self.marks.pop()
        return items


# -- opcode handlers: each returns True on STOP -------------------------------------------------

Handler = Callable[[Machine, _State, int], bool]
_HANDLERS: dict[int, Handler] = {}


def _op(*codes: bytes) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for code in codes:
            _HANDLERS[code[0]] = fn
        return fn
    return register


def _payload(m: Machine, n: int) -> tuple[bytes, bool]:
    if n > KEEP_BYTES:
        head = m.r.read(PREVIEW)
        m.r.skip(n - PREVIEW)
        return head, True
    return m.r.read(n), False


def _uint(m: Machine, size: int) -> int:
    return int.from_bytes(m.r.read(size), "little")


@_op(b"(")
def _mark(m: Machine, st: _State, _: int) -> bool:
    st.marks.append(st.stack)
    st.stack = []
    return False


@_op(b".")
def _stop(m: Machine, st: _State, _: int) -> bool:
    st.pop()
    return True


@_op(b"0")
def _pop(m: Machine, st: _State, _: int) -> bool:
    if st.stack:
        st.stack.pop()
    else:
        st.pop_mark()
    return False


@_op(b"1")
def _pop_mark(m: Machine, st: _State, _: int) -> bool:
    st.pop_mark()
    return False


@_op(b"2")
def _dup(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(st.top())
    return False


def _decimal(m: Machine, kind: str) -> Const:
    line = m.r.readline(LINE_LIMIT)
    try:
        text = line.decode("ascii").strip()
        if kind == "float":
            return Const(float(text))
        if text in ("00", "01"):  # protocol-0 booleans
            return Const(text == "01")
        return Const(int(text.rstrip("L"), 10) if len(text) < 5000 else 0)
    except (UnicodeDecodeError, ValueError):
        raise Malformed(f"bad number literal {line[:40]!r} at offset {m.r.tell()}") from None


@_op(b"I", b"L")
def _int(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(_decimal(m, "int"))
    return False


@_op(b"F")
def _float(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(_decimal(m, "float"))
    return False


@_op(b"J")
def _binint(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(struct.unpack("<i", m.r.read(4))[0]))
    return False


@_op(b"K")
def _binint1(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(m.r.byte()))
    return False


@_op(b"M")
def _binint2(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(_uint(m, 2)))
    return False


def _long(m: Machine, st: _State, size: int) -> bool:
    if size < 0:
        raise Malformed("negative LONG4 length")
    data, truncated = _payload(m, size)
    value = int.from_bytes(data, "little", signed=True) if len(data) <= 64 else 0
    st.stack.append(Const(value, truncated or len(data) > 64))
    return False


@_op(b"\x8a")
def _long1(m: Machine, st: _State, _: int) -> bool:
    return _long(m, st, m.r.byte())


@_op(b"\x8b")
def _long4(m: Machine, st: _State, _: int) -> bool:
    return _long(m, st, struct.unpack("<i", m.r.read(4))[0])


@_op(b"G")
def _binfloat(m: Machine, st: _State, _: int) -> bool:
    value = struct.unpack(">d", m.r.read(8))[0]
    st.stack.append(Const(value if math.isfinite(value) else str(value)))
    return False


@_op(b"N")
def _none(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(None))
    return False


@_op(b"\x88")
def _true(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(True))
    return False


@_op(b"\x89")
def _false(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Const(False))
    return False


@_op(b"S")
def _string(m: Machine, st: _State, _: int) -> bool:
    line = m.r.readline(LINE_LIMIT)
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise Malformed(f"STRING argument is not quoted at offset {st.op_offset}")
    st.stack.append(Const(line[1:-1].decode("latin-1")))
    return False


@_op(b"V")
def _unicode(m: Machine, st: _State, _: int) -> bool:
    line = m.r.readline(LINE_LIMIT)
    st.stack.append(Const(line.decode("raw-unicode-escape", "replace")))
    return False


def _sized(m: Machine, st: _State, size: int, kind: str) -> None:
    if size < 0:
        raise Malformed(f"negative length at offset {st.op_offset}")
    data, truncated = _payload(m, size)
    value: Any
    if kind == "str":
        value = data.decode("utf-8", "surrogatepass" if not truncated else "replace") \
            if _utf8_ok(data, truncated) else None
        if value is None:
            raise Malformed(f"string at offset {st.op_offset} is not valid UTF-8")
    elif kind == "latin":
        value = data.decode("latin-1")
    else:
        value = data
    st.stack.append(Const(value, truncated))


def _utf8_ok(data: bytes, truncated: bool) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
        return True
    except UnicodeDecodeError:
        return truncated


@_op(b"T")
def _binstring(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, struct.unpack("<i", m.r.read(4))[0], "latin")
    return False


@_op(b"U")
def _short_binstring(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, m.r.byte(), "latin")
    return False


@_op(b"X")
def _binunicode(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, _uint(m, 4), "str")
    return False


@_op(b"\x8c")
def _short_binunicode(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, m.r.byte(), "str")
    return False


@_op(b"\x8d")
def _binunicode8(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, _uint(m, 8), "str")
    return False


@_op(b"B")
def _binbytes(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, _uint(m, 4), "bytes")
    return False


@_op(b"C")
def _short_binbytes(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, m.r.byte(), "bytes")
    return False


@_op(b"\x8e", b"\x96")
def _binbytes8(m: Machine, st: _State, _: int) -> bool:
    _sized(m, st, _uint(m, 8), "bytes")
    return False


@_op(b"\x97")
def _next_buffer(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Opaque("out-of-band buffer"))
    return False


@_op(b"\x98")
def _readonly_buffer(m: Machine, st: _State, _: int) -> bool:
    st.top()
    return False


@_op(b"]")
def _empty_list(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Seq("list", [], 0))
    return False


@_op(b")")
def _empty_tuple(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Seq("tuple", [], 0))
    return False


@_op(b"}")
def _empty_dict(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(DictV([], 0))
    return False


@_op(b"\x8f")
def _empty_set(m: Machine, st: _State, _: int) -> bool:
    st.stack.append(Seq("set", [], 0))
    return False


@_op(b"l")
def _list(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    st.stack.append(Seq("list", items[:KEEP_ITEMS], len(items)))
    return False


@_op(b"t")
def _tuple_op(m: Machine, st: _State, _: int) -> bool:
    value = _tuple(st.pop_mark())
    st.stack.append(value)
    return False


def _tuple_n(st: _State, n: int) -> bool:
    if len(st.stack) < n:
        raise Malformed(f"stack underflow at offset {st.op_offset}")
    items = st.stack[len(st.stack) - n:]
    del st.stack[len(st.stack) - n:]
    st.stack.append(_tuple(items))
    return False


@_op(b"\x85")
def _tuple1(m: Machine, st: _State, _: int) -> bool:
    return _tuple_n(st, 1)


@_op(b"\x86")
def _tuple2(m: Machine, st: _State, _: int) -> bool:
    return _tuple_n(st, 2)


@_op(b"\x87")
def _tuple3(m: Machine, st: _State, _: int) -> bool:
    return _tuple_n(st, 3)


@_op(b"\x91")
def _frozenset(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    st.stack.append(Seq("frozenset", items[:KEEP_ITEMS], len(items)))
    return False


@_op(b"d")
def _dict(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    if len(items) % 2:
        raise Malformed(f"odd number of items for DICT at offset {st.op_offset}")
    d = DictV([], 0)
    for i in range(0, len(items), 2):
        d.set(items[i], items[i + 1])
    st.stack.append(d)
    return False


def _extend(target: Any, values: list[Any], st: _State) -> None:
    if isinstance(target, Seq):
        target.add(values)
    elif isinstance(target, Call | PersId | Opaque | Global):
        pass  # appends to an object: its .append/.extend run; the object was already judged
    else:
        raise Malformed(f"APPEND to a non-list at offset {st.op_offset}")


@_op(b"a")
def _append(m: Machine, st: _State, _: int) -> bool:
    value = st.pop()
    _extend(st.top(), [value], st)
    return False


@_op(b"e")
def _appends(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    _extend(st.top(), items, st)
    return False


@_op(b"\x90")
def _additems(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    _extend(st.top(), items, st)
    return False


def _setitems(target: Any, pairs: list[Any], st: _State) -> None:
    if isinstance(target, DictV):
        for i in range(0, len(pairs) - 1, 2):
            target.set(pairs[i], pairs[i + 1])
    elif not isinstance(target, Call | PersId | Opaque | Global):
        raise Malformed(f"SETITEM on a non-dict at offset {st.op_offset}")


@_op(b"s")
def _setitem(m: Machine, st: _State, _: int) -> bool:
    value = st.pop()
    key = st.pop()
    _setitems(st.top(), [key, value], st)
    return False


@_op(b"u")
def _setitems_op(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    if len(items) % 2:
        raise Malformed(f"odd number of items for SETITEMS at offset {st.op_offset}")
    _setitems(st.top(), items, st)
    return False


def _memo_key(m: Machine, line: bytes, st: _State) -> int:
    try:
        return int(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise Malformed(f"bad memo key {line[:20]!r} at offset {st.op_offset}") from None


def _get(st: _State, key: int) -> bool:
    if key not in st.memo:
        raise Malformed(f"memo key {key} read before it was written (offset {st.op_offset})")
    st.stack.append(st.memo[key])
    return False


@_op(b"g")
def _get_op(m: Machine, st: _State, _: int) -> bool:
    return _get(st, _memo_key(m, m.r.readline(64), st))


@_op(b"h")
def _binget(m: Machine, st: _State, _: int) -> bool:
    return _get(st, m.r.byte())


@_op(b"j")
def _long_binget(m: Machine, st: _State, _: int) -> bool:
    return _get(st, _uint(m, 4))


@_op(b"p")
def _put(m: Machine, st: _State, _: int) -> bool:
    st.memo[_memo_key(m, m.r.readline(64), st)] = st.top()
    return False


@_op(b"q")
def _binput(m: Machine, st: _State, _: int) -> bool:
    st.memo[m.r.byte()] = st.top()
    return False


@_op(b"r")
def _long_binput(m: Machine, st: _State, _: int) -> bool:
    st.memo[_uint(m, 4)] = st.top()
    return False


@_op(b"\x94")
def _memoize(m: Machine, st: _State, _: int) -> bool:
    st.memo[len(st.memo)] = st.top()
    return False


def _ext(st: _State, code: int) -> bool:
    st.result.issues.append(Issue(
        "extension", st.op_offset,
        f"extension code {code}: imports whatever the loading process registered under that "
        "code with copyreg.add_extension; cannot be resolved statically"))
    st.stack.append(Opaque(f"extension {code}"))
    return False


@_op(b"\x82")
def _ext1(m: Machine, st: _State, _: int) -> bool:
    return _ext(st, m.r.byte())


@_op(b"\x83")
def _ext2(m: Machine, st: _State, _: int) -> bool:
    return _ext(st, _uint(m, 2))


@_op(b"\x84")
def _ext4(m: Machine, st: _State, _: int) -> bool:
    return _ext(st, struct.unpack("<i", m.r.read(4))[0])


def _names(m: Machine, st: _State) -> tuple[str, str]:
    module = m.r.readline(4096)
    name = m.r.readline(4096)
    try:
        return module.decode("utf-8"), name.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"import name is not UTF-8 at offset {st.op_offset}") from None


@_op(b"c")
def _global(m: Machine, st: _State, _: int) -> bool:
    module, name = _names(m, st)
    st.stack.append(m.use_global(st, module, name, st.op_offset, "GLOBAL"))
    return False


@_op(b"\x93")
def _stack_global(m: Machine, st: _State, _: int) -> bool:
    name = st.pop()
    module = st.pop()
    if (isinstance(module, Const) and isinstance(module.value, str) and not module.truncated
            and isinstance(name, Const) and isinstance(name.value, str) and not name.truncated):
        st.stack.append(m.use_global(st, module.value, name.value, st.op_offset, "STACK_GLOBAL"))
    else:
        st.result.issues.append(Issue(
            "dynamic-global", st.op_offset,
            "STACK_GLOBAL imports a name computed at load time; what it imports cannot be "
            "known without running the pickle",
            f"module={render(module)}, name={render(name)}"))
        st.stack.append(Opaque("dynamically imported object"))
    return False


@_op(b"i")
def _inst(m: Machine, st: _State, _: int) -> bool:
    module, name = _names(m, st)
    cls = m.use_global(st, module, name, st.op_offset, "INST")
    args = _tuple(st.pop_mark())
    st.stack.append(m.record_call(st, cls, args, st.op_offset))
    return False


@_op(b"o")
def _obj(m: Machine, st: _State, _: int) -> bool:
    items = st.pop_mark()
    if not items:
        raise Malformed(f"OBJ without a class at offset {st.op_offset}")
    st.stack.append(m.record_call(st, items[0], _tuple(items[1:]), st.op_offset))
    return False


@_op(b"R")
def _reduce(m: Machine, st: _State, _: int) -> bool:
    args = st.pop()
    func = st.pop()
    st.stack.append(m.record_call(st, func, args, st.op_offset))
    return False


@_op(b"\x81")
def _newobj(m: Machine, st: _State, _: int) -> bool:
    args = st.pop()
    cls = st.pop()
    st.stack.append(m.record_call(st, cls, args, st.op_offset))
    return False


@_op(b"\x92")
def _newobj_ex(m: Machine, st: _State, _: int) -> bool:
    kwargs = st.pop()
    args = st.pop()
    cls = st.pop()
    st.stack.append(m.record_call(st, cls, args, st.op_offset, kwargs))
    return False


_JOBLIB_WRAPPERS = ("joblib.numpy_pickle.NumpyArrayWrapper",
                    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper")


@_op(b"b")
def _build(m: Machine, st: _State, nested_depth: int) -> bool:
    state = st.pop()
    obj = st.top()
    if isinstance(obj, Global):
        st.result.issues.append(Issue(
            "global-build", st.op_offset,
            f"BUILD sets attributes on the imported object {obj.full} itself, changing "
            "process-wide state when loaded", render(state)))
    elif isinstance(obj, Call):
        obj.state = state
        if isinstance(obj.func, Global) and obj.func.full in _JOBLIB_WRAPPERS:
            m.joblib_array(st, obj, state, nested_depth)
    return False


@_op(b"P")
def _persid(m: Machine, st: _State, _: int) -> bool:
    line = m.r.readline(4096)
    st.result.persistent_ids += 1
    st.stack.append(PersId(Const(line.decode("ascii", "replace"))))
    return False


@_op(b"Q")
def _binpersid(m: Machine, st: _State, _: int) -> bool:
    st.result.persistent_ids += 1
    st.stack.append(PersId(st.pop()))
    return False


@_op(b"\x80")
def _proto(m: Machine, st: _State, _: int) -> bool:
    proto = m.r.byte()
    if proto > 5:
        raise Malformed(f"unsupported pickle protocol {proto} at offset {st.op_offset}")
    if st.result.protocol is None:
        st.result.protocol = proto
    return False


@_op(b"\x95")
def _frame(m: Machine, st: _State, _: int) -> bool:
    m.r.read(8)  # frame length: a hint for buffering, not a boundary the walk relies on
    return False
