"""Inspect a Keras model config (the JSON that describes layers) for code it would run.

A Keras loader rebuilds the model from this JSON: it resolves each ``module`` /
``class_name`` / ``registered_name`` to a Python object and calls it, and it turns a
``Lambda`` layer's marshalled bytecode back into a function. So the config alone says
what code loading the model can reach. This module parses it (bounded size, the JSON
decoder's own recursion guard for depth), walks it without recursion, and yields
:class:`Issue` values; the analyzers turn them into findings.

Marshalled bytecode is never passed to :func:`marshal.loads`: the strings it holds (the
names the code looks up, its constants) are picked out of the bytes by their type codes.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bastion.findings import clip

#: Packages whose classes and functions a Keras loader resolves as its own.
KERAS_PACKAGES = frozenset({
    "keras", "keras_core", "tf_keras", "keras_nlp", "keras_hub", "keras_cv", "keras_rs",
    "tensorflow",
})
#: Plain numeric libraries whose functions appear in Lambda layers of real models.
NUMERIC_PACKAGES = frozenset({"numpy", "math", "jax"})
#: Modules that read or write files, run processes, load code or reach the network.
DANGEROUS_PACKAGES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "ctypes", "cffi",
    "importlib", "imp", "runpy", "pickle", "_pickle", "cPickle", "marshal", "dill",
    "cloudpickle", "joblib", "shelve", "pty", "code", "codeop", "pdb", "bdb", "webbrowser",
    "urllib", "urllib2", "urllib3", "http", "httplib", "requests", "httpx", "ftplib",
    "smtplib", "telnetlib", "pathlib", "io", "_io", "multiprocessing", "asyncio", "signal",
    "types", "operator", "functools", "glob", "fileinput", "tempfile", "zipfile", "tarfile",
    "sqlite3", "timeit", "trace", "profile", "cProfile", "platform", "commands", "popen2",
    "posixpath", "ntpath", "gc", "inspect", "threading", "_thread", "builtins",
})
#: Python builtins that execute code or touch files; other builtin names are Keras'
#: own built-in activations, losses and metrics, which older configs record that way.
DANGEROUS_BUILTINS = frozenset({
    "exec", "eval", "compile", "open", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "exit", "quit", "help",
    "__build_class__", "__loader__", "memoryview",
})
#: Functions inside Keras or TensorFlow that are not modelling code: they load other
#: models, switch safe mode off, download or write files (CVE-2025-8747, CVE-2025-9906).
UNSAFE_FRAMEWORK_NAMES = frozenset({
    "enable_unsafe_deserialization", "set_global_attribute", "load_model", "load_weights",
    "save_model", "save_weights", "model_from_json", "model_from_yaml", "model_from_config",
    "get_file", "func_load", "deserialize_keras_object", "register_keras_serializable",
    "load_img", "save_img", "image_dataset_from_directory", "text_dataset_from_directory",
    "audio_dataset_from_directory", "load_data", "clear_session", "py_func", "py_function",
    "numpy_function", "eager_py_func", "read_file", "write_file", "load_op_library",
    "load_library", "load", "save", "savez", "savez_compressed", "fromfile", "tofile",
    "loadtxt", "savetxt", "genfromtxt", "memmap", "fromregex", "system", "GFile",
})
UNSAFE_FRAMEWORK_MODULES = (
    "keras.src.saving", "keras.saving", "keras.src.legacy.saving", "keras.src.utils.file_utils",
    "keras.utils.file_utils", "keras.src.backend.common.global_state", "keras.datasets",
    "keras.src.datasets", "keras.src.utils.python_utils", "tensorflow.io",
    "tensorflow.python.ops.io_ops", "tensorflow.python.ops.gen_io_ops",
    "tensorflow.python.lib.io", "tensorflow.python.platform", "tensorflow.python.ops.script_ops",
    "tensorflow.python.ops.gen_script_ops", "tensorflow.saved_model",
    "tensorflow.python.saved_model", "tensorflow.python.debug", "numpy.lib.npyio",
)
#: Layers that open a file or URL named in their config (CVE-2025-12058, CVE-2026-1462).
VOCABULARY_LAYERS = frozenset({
    "StringLookup", "IntegerLookup", "IndexLookup", "TextVectorization",
})
#: Names that make bytecode worth a second look when it references them.
SUSPICIOUS_NAMES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "system", "popen", "Popen", "spawn", "execv",
    "execve", "execvp", "fork", "exec", "eval", "compile", "__import__", "__builtins__",
    "builtins", "open", "getattr", "setattr", "importlib", "import_module", "socket",
    "connect", "urllib", "urlopen", "request", "requests", "http", "shutil", "rmtree",
    "remove", "unlink", "pickle", "loads", "marshal", "ctypes", "pty", "webbrowser",
    "check_output", "check_call", "run", "getoutput", "base64", "b64decode", "codecs",
    "write", "environ", "modules",
})
_CODE_TYPES = (0x63,)  # marshal TYPE_CODE ('c'), with or without FLAG_REF
_MAX_STRINGS = 512


class ConfigError(ValueError):
    """The config is not valid JSON text."""


class ConfigLimit(ValueError):
    """The config is larger or deeper than the scan bounds."""


@dataclass(frozen=True)
class Issue:
    """Something in the config a loader would act on; ``kind`` selects the rule."""

    kind: str  # "lambda", "unsafe", "custom", "custom-registered", "external"
    where: str  # a readable path to the object: "layers[3] 'lambda_1' (Lambda)"
    message: str
    evidence: str
    properties: dict[str, Any] = field(default_factory=dict)


def parse(text: bytes | str, max_size: int) -> Any:
    """Parse config JSON text within ``max_size`` bytes; raise ConfigError / ConfigLimit."""
    if len(text) > max_size:
        raise ConfigLimit(f"the config is {len(text)} bytes, over the limit of {max_size}")
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigLimit("the config nests deeper than the JSON decoder allows") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the config is not valid JSON: {exc}") from None


# -- walking -------------------------------------------------------------------------------


class _Path:
    """A cons cell: the walk stays O(1) per node however deep the config nests."""

    __slots__ = ("key", "node", "parent")

    def __init__(self, parent: _Path | None, key: str | int, node: Any) -> None:
        self.parent, self.key, self.node = parent, key, node


def _describe(path: _Path | None) -> str:
    """Up to the six innermost steps, with the nearest layer's name and class."""
    keys: list[str] = []
    layer = ""
    while path is not None and path.parent is not None:
        node = path.node
        if not layer and isinstance(node, dict) and isinstance(node.get("class_name"), str):
            cfg = node.get("config")
            name = cfg.get("name") if isinstance(cfg, dict) else node.get("name")
            if isinstance(name, str):
                layer = f" in {clip(name, 80)!r} ({clip(str(node['class_name']), 80)})"
        keys.append(f"[{path.key}]" if isinstance(path.key, int) else f".{clip(path.key, 80)}")
        path = path.parent
    shown = "".join(reversed(keys[:6]))
    return ("$" if len(keys) <= 6 else "$…") + shown + layer


def inspect(config: Any, *, max_nodes: int = 10_000_000) -> Iterator[Issue]:
    """Every issue in a parsed config. Raises ConfigLimit past ``max_nodes`` containers."""
    stack: list[_Path] = [_Path(None, "$", config)]
    seen = 0
    while stack:
        path = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise ConfigLimit(f"the config holds more than {max_nodes} objects")
        node = path.node
        children: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            if "class_name" in node:  # every object a loader resolves names its class
                yield from _inspect_object(node, path)
            children = node.items()
        else:
            children = enumerate(node)
        for key, value in children:
            if isinstance(value, (dict, list)):
                stack.append(_Path(path, key, value))


def _inspect_object(obj: dict[str, Any], path: _Path) -> Iterator[Issue]:
    cls = obj.get("class_name")
    cfg = obj.get("config")
    if cls == "__lambda__":
        code = _lambda_code(cfg)
        if code is not None:
            yield _lambda_issue(code, path)
    elif cls == "Lambda" and isinstance(cfg, dict):
        yield from _legacy_lambda(cfg, path)
    if isinstance(cls, str):
        yield from _reference(obj, cls, path)
        if isinstance(cfg, dict):
            yield from _external(cls, cfg, path)


def _lambda_code(cfg: Any) -> str | None:
    if not isinstance(cfg, dict):
        return None
    value = cfg.get("code", cfg.get("value"))
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return value if isinstance(value, str) else None


def _legacy_lambda(cfg: dict[str, Any], path: _Path) -> Iterator[Issue]:
    """Keras 2 Lambda fields: ``function`` + ``function_type`` (+ ``module``), and kin."""
    for key in ("function", "output_shape", "mask"):
        value, kind = cfg.get(key), cfg.get(f"{key}_type")
        here = _Path(path, "config", cfg)
        if isinstance(value, list) and value and isinstance(value[0], str):
            yield _lambda_issue(value[0], _Path(here, key, value))
        elif isinstance(value, str) and kind == "lambda":
            yield _lambda_issue(value, _Path(here, key, value))
        elif isinstance(value, str) and kind == "function":
            module = cfg.get("module" if key == "function" else f"{key}_module")
            yield from _classify(module if isinstance(module, str) else "", value,
                                 _Path(here, key, value), role=f"Lambda {key}")


def _reference(obj: dict[str, Any], cls: str, path: _Path) -> Iterator[Issue]:
    """A ``module`` + ``class_name`` pair (or ``config`` for functions) the loader resolves."""
    module, registered = obj.get("module"), obj.get("registered_name")
    if cls == "function":
        name = obj.get("config")
    elif cls == "__typespec__":
        name = obj.get("spec_name")
    else:
        name = cls
    if isinstance(module, str) and module and isinstance(name, str):
        issues = list(_classify(module, name, path, role="function" if cls == "function"
                                else "class"))
        yield from issues
        if issues:
            return
    for label in (registered, cls):
        if isinstance(label, str) and ">" in label:
            package = label.split(">", 1)[0]
            if package.split(".")[0] not in KERAS_PACKAGES and not (
                isinstance(module, str) and module.split(".")[0] in KERAS_PACKAGES
            ):
                yield Issue(
                    "custom-registered", _describe(path),
                    f"registered custom object {label!r}: the loader needs its code",
                    f"{_describe(path)}: registered name {label!r}",
                    {"registered_name": label},
                )
            return


_UNSAFE_PREFIXES = tuple(f"{prefix}." for prefix in UNSAFE_FRAMEWORK_MODULES)


def classify(module: str, name: str, role: str) -> tuple[str, str] | None:
    """``(kind, message)`` for a callable or class the loader resolves, None if it is fine."""
    top = module.split(".", 1)[0]
    qualified = f"{module}.{name}" if module else name
    if module == "builtins":
        if name in DANGEROUS_BUILTINS:
            return "unsafe", f"{role} resolves to the Python builtin {name!r}"
        return None
    if top in DANGEROUS_PACKAGES:
        return "unsafe", f"{role} resolves to {qualified}, outside any model code"
    if top in KERAS_PACKAGES or top in NUMERIC_PACKAGES:
        if name.rsplit(".", 1)[-1] in UNSAFE_FRAMEWORK_NAMES or \
                module in UNSAFE_FRAMEWORK_MODULES or module.startswith(_UNSAFE_PREFIXES):
            return "unsafe", (f"{role} resolves to {qualified}, a non-modelling API that loads, "
                              "downloads or writes files or turns safe mode off")
        return None
    if not module:
        return "custom", f"{role} {name!r} must come from code the loading program supplies"
    return "custom", f"{role} {qualified} comes from outside Keras: loading imports {module}"


def _classify(module: str, name: str, path: _Path, *, role: str) -> Iterator[Issue]:
    verdict = classify(module, name, role)
    if verdict is not None:
        where = _describe(path)
        qualified = f"{module}.{name}" if module else name
        yield Issue(verdict[0], where, verdict[1], f"{where}: {qualified}",
                    {"module": module, "name": name, "role": role})


def _external(cls: str, cfg: dict[str, Any], path: _Path) -> Iterator[Issue]:
    vocabulary, handle = cfg.get("vocabulary"), cfg.get("handle")
    if (cls in VOCABULARY_LAYERS or cls.endswith("Lookup")) and isinstance(vocabulary, str) \
            and vocabulary:
        key, value, what = "vocabulary", vocabulary, f"{cls} reads its vocabulary from"
    elif cls == "TFSMLayer":
        key, value, what = "filepath", str(cfg.get("filepath")), "TFSMLayer loads the SavedModel at"
    elif cls == "KerasLayer" and isinstance(handle, str):
        key, value, what = "handle", handle, "TF Hub KerasLayer loads the model at"
    else:
        return
    where = _describe(path)
    yield Issue("external", where, f"{what} {value!r} on load", f"{where}: {key}={value!r}",
                {"path": value})


# -- Lambda bytecode -------------------------------------------------------------------------


def decode_code(code: str) -> bytes:
    """The marshal bytes as Keras' ``func_load`` would decode them (base64, else raw)."""
    try:
        return binascii.a2b_base64(code.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error):
        return code.encode("raw_unicode_escape")


def marshal_strings(raw: bytes) -> list[str]:
    """Strings stored in marshalled code (names, constants), read by type code, not loaded."""
    found: list[str] = []
    i, n = 0, len(raw)
    while i < n and len(found) < _MAX_STRINGS:
        kind = raw[i] & 0x7F
        if kind in (0x7A, 0x5A) and i + 1 < n:  # short ASCII ('z', 'Z'): 1-byte length
            size, start = raw[i + 1], i + 2
        elif kind in (0x61, 0x41, 0x75, 0x74) and i + 5 <= n:  # 'a', 'A', 'u', 't': 4 bytes
            size, start = int.from_bytes(raw[i + 1:i + 5], "little"), i + 5
        else:
            i += 1
            continue
        chunk = raw[start:start + size]
        if size and len(chunk) == size and size <= 4096:
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if text and text.isprintable():
                found.append(text)
                i = start + size
                continue
        i += 1
    return found


def _lambda_issue(code: str, path: _Path) -> Issue:
    raw = decode_code(code)
    strings = marshal_strings(raw)
    names = sorted({s for s in strings if s in SUSPICIOUS_NAMES})
    texts = [s for s in strings if not s.isidentifier() and not s.startswith("<")][:8]
    where = _describe(path)
    is_code = bool(raw) and raw[0] & 0x7F in _CODE_TYPES
    detail = f"{len(raw)} bytes of marshalled {'code' if is_code else 'data'}"
    if names:
        detail += "; references " + ", ".join(names)
    if texts:
        detail += "; strings " + ", ".join(repr(t[:80]) for t in texts)
    return Issue(
        "lambda", where,
        f"Lambda function with embedded Python bytecode ({detail})",
        f"{where}: {detail}",
        {"bytecode_size": len(raw), "code_object": is_code, "suspicious_names": names,
         "strings": strings[:64]},
    )
