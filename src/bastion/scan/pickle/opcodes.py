"""The opcode handlers of the symbolic pickle machine, one small function per opcode.

Each handler reads its argument from the stream, updates the symbolic stack and returns True
on STOP. Semantics follow CPython's ``_pickle.c`` (marks are a separate stack; ``POP`` with an
empty stack pops a mark).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bastion.scan.pickle.values import (
    KEEP_BYTES,
    KEEP_ITEMS,
    LINE_LIMIT,
    PREVIEW,
    Call,
    Const,
    DictV,
    Global,
    Issue,
    Malformed,
    Opaque,
    PersId,
    Seq,
    _tuple,
    render,
)

if TYPE_CHECKING:
    from bastion.scan.pickle.machine import Machine, _State

# -- opcode handlers: each returns True on STOP -------------------------------------------------

Handler = Callable[["Machine", "_State", int], bool]
HANDLERS: dict[int, Handler] = {}


def _op(*codes: bytes) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for code in codes:
            HANDLERS[code[0]] = fn
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
