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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bastion.scan.pickle.globals import RESOLVERS, Classification, classify, normalize
from bastion.scan.pickle.reader import Reader, Truncated
from bastion.scan.pickle.values import (
    Call,
    Const,
    DictV,
    Global,
    Issue,
    Malformed,
    Opaque,
    PersId,
    Seq,
    _args,
    render,
)

MAX_CALLS_KEPT = 3  # call records kept per global
MAX_NESTED = 8  # joblib object arrays: nested pickle depth

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
            st.op_offset, op = r.opcode()
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


from bastion.scan.pickle.opcodes import HANDLERS as _HANDLERS  # noqa: E402 (cycle)
