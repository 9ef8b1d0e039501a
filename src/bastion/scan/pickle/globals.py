"""Classifying the importable names a pickle references: an allowlist by default.

A pickle can only reach code through names it imports (GLOBAL, STACK_GLOBAL, INST). Each
name gets one verdict:

* ``SAFE``: a constructor or helper the common ML libraries pickle (exact names, plus classes
  in known class namespaces such as ``torch.nn.modules``).
* ``DANGEROUS``: reaches code execution, files, the network or the interpreter (``os.system``,
  ``builtins.eval``, ``torch.hub.load``, ``numpy.testing._private.utils.runstring``, ...),
  including through a dotted path (``torch.serialization.os.system``) or a dunder.
* ``SUSPICIOUS``: a gadget that chains calls (``functools.partial``, ``map``) or mutates state.
* ``UNKNOWN``: anything else; reported at lower severity and configurable by the policy
  allowlist (``allow.pickle-globals``).

The tables are data, kept in this one file so a reviewer sees the whole trust decision.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

#: Python 2 names that Python 3's unpickler maps (``fix_imports``) before importing.
PY2_MODULES = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    "cPickle": "pickle",
    "commands": "subprocess",
    "exceptions": "builtins",
    "UserDict": "collections",
    "UserList": "collections",
    "_socket": "socket",
    "urllib2": "urllib.request",
    "cStringIO": "io",
    "StringIO": "io",
    "posix": "posix",
}


class Verdict(Enum):
    SAFE = "safe"
    UNKNOWN = "unknown"
    SUSPICIOUS = "suspicious"
    DANGEROUS = "dangerous"


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: str


# -- dangerous --------------------------------------------------------------------------------

#: Whole modules whose callables run code, touch files or processes, or reach the network.
DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "runpy", "pty", "socket",
    "_socket", "ssl", "ctypes", "_ctypes", "cffi", "importlib", "imp", "zipimport", "pkgutil",
    "pickle", "_pickle", "pickletools", "marshal", "shelve", "dill", "cloudpickle", "joblib.load",
    "webbrowser", "shutil", "bdb", "pdb", "pydoc", "timeit", "profile", "cProfile", "trace",
    "code", "codeop", "asyncio", "multiprocessing", "concurrent", "threading", "_thread",
    "signal", "types", "inspect", "gc", "tempfile", "glob", "io", "_io", "fileinput",
    "linecache", "tokenize", "zipfile", "tarfile", "gzip", "bz2", "lzma", "logging", "urllib",
    "urllib2", "urllib3", "http", "httplib", "ftplib", "smtplib", "telnetlib", "poplib",
    "imaplib", "xmlrpc", "socketserver", "requests", "httpx", "aiohttp", "paramiko", "distutils",
    "setuptools", "pip", "venv", "ensurepip", "site", "sysconfig", "platform", "uuid.os",
    "sqlite3", "dbm", "mmap", "resource", "fcntl", "termios", "select", "selectors", "crypt",
    "spwd", "pwd", "grp", "builtins.open", "code.interact", "operator.attrgetter",
    "operator.methodcaller", "_operator.attrgetter", "_operator.methodcaller", "functools.reduce",
    "_functools.reduce", "copyreg.add_extension", "__main__.__builtins__", "IPython", "jupyter",
    "pandas.read_pickle", "pandas.io.pickle", "numpy.load", "numpy.lib.npyio.load",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.utils",
    "numpy.lib._utils_impl", "scipy.weave", "torch.load", "torch.serialization.load",
    "torch.hub", "torch.jit.load", "torch.jit._serialization", "torch.utils.cpp_extension",
    "torch.ops.load_library", "torch._ops.ops.load_library", "torch.classes.load_library",
    "torch._classes", "torch.package", "torch._dynamo", "torch._inductor", "torch.compile",
    "torch.storage._load_from_bytes", "torch.utils.data.datapipes", "torch.distributed",
    "torch.multiprocessing", "torch._C._jit", "torch.fx.experimental", "keras.models.load_model",
    "tensorflow.io", "tensorflow.keras.models.load_model", "tf_keras.models.load_model",
    "onnx.load", "transformers.modeling_utils.load", "huggingface_hub",
    "jinja2", "mako", "yaml.load", "yaml.unsafe_load", "ruamel", "jsonpickle",
})

#: Names in ``builtins`` that evaluate code, import, reach attributes or open files.
DANGEROUS_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "open", "file", "__import__", "getattr", "setattr",
    "delattr", "hasattr", "globals", "locals", "vars", "breakpoint", "input", "raw_input",
    "help", "exit", "quit", "memoryview", "__loader__", "__build_class__", "reload", "apply",
    "super", "classmethod", "staticmethod", "property", "dir", "type", "object.__subclasses__",
})

#: Modules that, met *inside* a dotted path (``torch.serialization.os.system``), mean the
#: path walks into something dangerous through a module attribute.
DANGEROUS_SEGMENTS = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtins__", "importlib", "runpy",
    "pty", "socket", "ctypes", "marshal", "shutil", "webbrowser", "io",
    "commands", "platform", "popen", "system", "eval", "exec",
})

#: Function names that are dangerous in any module (wrappers around exec/spawn/system).
DANGEROUS_NAMES = frozenset({
    "system", "popen", "popen2", "popen3", "popen4", "spawnl", "spawnle", "spawnlp", "spawnv",
    "spawnve", "spawnvp", "execl", "execle", "execlp", "execv", "execve", "execvp", "run_path",
    "run_module", "runstring", "runcode", "runsource", "exec_command", "check_output",
    "check_call", "getoutput", "getstatusoutput", "load_library", "load_inline", "_load_from_bytes",
    "unsafe_load", "full_load", "loads", "load",
})

# -- safe -------------------------------------------------------------------------------------

_SAFE_EXACT_LIST = """
builtins: set frozenset list dict tuple bytearray bytes complex int float str bool slice range
  object NoneType Ellipsis NotImplemented reversed enumerate zip
collections: OrderedDict defaultdict deque Counter namedtuple
_collections: OrderedDict defaultdict deque
copyreg: _reconstructor __newobj__ __newobj_ex__
_codecs: encode
codecs: encode
datetime: datetime date time timedelta timezone tzinfo
decimal: Decimal
fractions: Fraction
uuid: UUID
pathlib: PosixPath WindowsPath PurePosixPath PureWindowsPath Path
re: _compile
enum: Enum IntEnum
argparse: Namespace
numpy: ndarray dtype matrix bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16
  float32 float64 complex64 complex128 longdouble str_ bytes_ object_ datetime64 timedelta64
  void record recarray float_ int_ uint intc uintc bool
  abs absolute acos acosh add arccos arccosh arcsin arcsinh arctan arctan2 arctanh asin asinh
  atan atan2 atanh bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not
  bitwise_or bitwise_right_shift bitwise_xor cbrt ceil conj conjugate copysign cos cosh deg2rad
  degrees divide divmod equal exp exp2 expm1 fabs float_power floor floor_divide fmax fmin fmod
  frexp gcd greater greater_equal heaviside hypot invert isfinite isinf isnan isnat lcm ldexp
  left_shift less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not
  logical_or logical_xor matmul matvec maximum minimum mod modf multiply negative nextafter
  not_equal positive pow power rad2deg radians reciprocal remainder right_shift rint sign
  signbit sin sinh spacing sqrt square subtract tan tanh true_divide trunc vecdot vecmat
numpy.core.multiarray: _reconstruct scalar
numpy._core.multiarray: _reconstruct scalar
numpy.core.numeric: _frombuffer
numpy._core.numeric: _frombuffer
numpy.core._internal: _ctypes
numpy.ma.core: _mareconstruct MaskedArray
numpy.random._pickle: __randomstate_ctor __bit_generator_ctor __generator_ctor
numpy.random: RandomState Generator
numpy.core._multiarray_umath: _reconstruct scalar
numpy._core._multiarray_umath: _reconstruct scalar
torch: Size device dtype float32 float64 float16 bfloat16 int8 int16 int32 int64 uint8 bool
  complex64 complex128 strided sparse_coo sparse_csr channels_last contiguous_format
  preserve_format Tensor FloatStorage DoubleStorage HalfStorage BFloat16Storage LongStorage
  IntStorage ShortStorage CharStorage ByteStorage BoolStorage ComplexFloatStorage
  ComplexDoubleStorage QInt8Storage QUInt8Storage QInt32Storage UntypedStorage TypedStorage
  float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz uint16 uint32 uint64 qint8 quint8
  qint32 per_tensor_affine per_channel_affine
torch._utils: _rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter
  _rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_nested_tensor
  _rebuild_device_tensor_from_numpy _rebuild_meta_tensor_no_storage _rebuild_wrapper_subclass
  _rebuild_xla_tensor _rebuild_mtia_tensor _rebuild_device_tensor_from_cpu_tensor
  _rebuild_sparse_csr_tensor
torch._tensor: _rebuild_from_type _rebuild_from_type_v2
torch.serialization: _get_layout
torch.storage: UntypedStorage TypedStorage _TypedStorage _UntypedStorage
torch.nn.parameter: Parameter UninitializedParameter Buffer
torch.optim.lr_scheduler: LambdaLR
torch.distributions.utils: lazy_property
torch.nn.modules.container: ModuleDict ModuleList ParameterDict ParameterList Sequential
torch.cuda: FloatStorage HalfStorage
torch._C: _nn
torch.jit._pickle: build_intlist build_tensorlist build_doublelist build_boollist
  build_tensor_from_id restore_type_tag
joblib.numpy_pickle: NumpyArrayWrapper NDArrayWrapper ZNDArrayWrapper
joblib.numpy_pickle_compat: NDArrayWrapper ZNDArrayWrapper
sklearn.externals.joblib.numpy_pickle: NumpyArrayWrapper NDArrayWrapper ZNDArrayWrapper
scipy.sparse._csr: csr_matrix
scipy.sparse._csc: csc_matrix
scipy.sparse._coo: coo_matrix
scipy.sparse.csr: csr_matrix
scipy.sparse.csc: csc_matrix
sklearn.utils._bunch: Bunch
sklearn.metrics._scorer: _passthrough_scorer _PredictScorer _ProbaScorer _ThresholdScorer _Scorer
pandas.core.indexes.base: _new_Index
pandas.core.internals.managers: BlockManager SingleBlockManager
pandas.core.internals.blocks: new_block Block
pandas._libs.internals: _unpickle_block
pandas.core.frame: DataFrame
pandas.core.series: Series
pandas._libs.tslibs.timestamps: _unpickle_timestamp
pandas._libs.tslibs.timedeltas: _timedelta_unpickle
pandas.core.indexes.range: RangeIndex
pandas.core.indexes.datetimes: _new_DatetimeIndex
xgboost.core: Booster
xgboost.sklearn: XGBClassifier XGBRegressor XGBRanker
lightgbm.basic: Booster
lightgbm.sklearn: LGBMClassifier LGBMRegressor LGBMRanker
catboost.core: CatBoostClassifier CatBoostRegressor
"""


def _parse_exact(text: str) -> frozenset[str]:
    names: set[str] = set()
    module = ""
    for line in text.strip().splitlines():
        if ":" in line:
            module, rest = line.split(":", 1)
            module = module.strip()
        else:
            rest = line
        names.update(f"{module}.{name}" for name in rest.split())
    return frozenset(names)


SAFE_EXACT = _parse_exact(_SAFE_EXACT_LIST)

#: Namespaces whose *classes* (CamelCase names, no dots) are data holders or estimators that
#: the libraries themselves pickle. Their functions are not trusted by this rule.
SAFE_CLASS_NAMESPACES = (
    "torch.nn.modules.", "torch.nn.parameter", "torch.ao.nn.", "torch.nn.utils.",
    "torch.optim.", "torch.distributions.", "torch.utils.data.sampler",
    "torch.fx.graph_module", "torch.quantization.", "torch.ao.quantization.",
    "torchvision.models.", "torchvision.ops.", "torchvision.transforms.", "torchaudio.models.",
    "timm.models.", "timm.layers.", "transformers.models.", "transformers.configuration_utils",
    "transformers.tokenization_utils", "transformers.generation.configuration_utils",
    "sklearn.", "scipy.sparse.", "scipy.stats._distn_infrastructure", "numpy.", "pandas.core.",
    "pandas._libs.", "xgboost.", "lightgbm.", "catboost.", "imblearn.", "category_encoders.",
    "statsmodels.", "tokenizers.", "sentencepiece.", "collections.", "datetime.", "decimal.",
    "fractions.", "skops.", "joblib.numpy_pickle", "optuna.", "gensim.models.",
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS_NAME = re.compile(r"_*[A-Z][A-Za-z0-9_]*")
_DUNDER = re.compile(r"__\w+__")
#: Helpers Cython generates for pickling extension types: they rebuild an instance of a class
#: of the same module (``__pyx_unpickle_Tree``), or call ``cls.__new__`` (scikit-learn's
#: ``newObj``). Trusted only inside the class namespaces below.
_CYTHON_HELPER = re.compile(r"__pyx_unpickle_[A-Za-z_]\w*|newObj")


def normalize(module: str, name: str) -> tuple[str, str]:
    """Apply the unpickler's Python 2 name mapping."""
    return PY2_MODULES.get(module, module), name


def _prefix_match(full: str, entries: frozenset[str]) -> str | None:
    """The shortest dotted prefix of ``full`` (or ``full`` itself) that is in ``entries``."""
    end = full.find(".")
    while end != -1:
        if full[:end] in entries:
            return full[:end]
        end = full.find(".", end + 1)
    return full if full in entries else None


def classify(module: str, name: str, extra_allowed: Iterable[str] = ()) -> Classification:
    """The verdict for one referenced name; ``extra_allowed`` comes from the policy."""
    return _classify(module, name, tuple(extra_allowed))


@functools.lru_cache(maxsize=8192)
def _classify(module: str, name: str, extra_allowed: tuple[str, ...]) -> Classification:
    module, name = normalize(module, name)
    full = f"{module}.{name}"
    parts = full.split(".")
    if not module or not name or not all(_IDENT.fullmatch(p) for p in parts):
        return Classification(Verdict.DANGEROUS,
                              "malformed import name: not a dotted Python identifier")
    dunders = [p for p in parts[1:] if _DUNDER.fullmatch(p)]
    harmless_dunders = {"__newobj__", "__newobj_ex__", "__main__"}
    if any(d not in harmless_dunders for d in dunders):
        return Classification(Verdict.DANGEROUS,
                              f"walks through {dunders[0]}, an interpreter internal")
    for entry in extra_allowed:
        if full == entry or (entry.endswith(".*") and full.startswith(entry[:-1])):
            return Classification(Verdict.SAFE, f"allowed by the policy ({entry})")
    if full in SAFE_EXACT:
        return Classification(Verdict.SAFE, "known-safe constructor")
    if module == "__torch__" or module.startswith("__torch__."):
        # TorchScript's loader resolves these to compiled TorchScript classes, not imports.
        return Classification(Verdict.SAFE, "TorchScript class")
    hit = _prefix_match(full, DANGEROUS_MODULES)
    if hit is not None:
        return Classification(Verdict.DANGEROUS, f"{hit} can run code, touch files or processes, "
                              "or reach the network")
    if module == "builtins":
        if name in DANGEROUS_BUILTINS or name.split(".")[0] in DANGEROUS_BUILTINS:
            return Classification(Verdict.DANGEROUS, f"builtins.{name} evaluates code or reaches "
                                  "arbitrary attributes")
        return Classification(Verdict.SUSPICIOUS, f"builtins.{name} is not a plain data type")
    inner = [p for p in parts[1:-1] if p in DANGEROUS_SEGMENTS]
    if inner:
        return Classification(Verdict.DANGEROUS, f"the dotted path reaches {inner[0]!r} through "
                              "a module attribute")
    if parts[-1] in DANGEROUS_NAMES or (len(parts) > 2 and parts[-2] in DANGEROUS_SEGMENTS):
        return Classification(Verdict.DANGEROUS, f"{parts[-1]} loads or runs code")
    if full in ("functools.partial", "_functools.partial", "functools.partialmethod",
                "builtins.map", "builtins.filter", "itertools.starmap", "operator.itemgetter",
                "copyreg._reconstructor.__call__"):
        return Classification(Verdict.SUSPICIOUS, f"{full} chains calls to other callables")
    if "." not in name and (_CLASS_NAME.fullmatch(name) or _CYTHON_HELPER.fullmatch(name)):
        namespace = None
        for space in SAFE_CLASS_NAMESPACES:
            if (module + ".").startswith(space) or module == space.rstrip("."):
                namespace = space
                break
        if namespace is not None:
            return Classification(Verdict.SAFE, f"class in the {namespace.rstrip('.')} namespace")
    return Classification(Verdict.UNKNOWN, "not on the allowlist")


#: Safe functions that *return another importable object* named by their arguments. When
#: their arguments are constants, the machine classifies the name they resolve to.
RESOLVERS = {
    "numpy.core._ufunc_reconstruct": (0, 1),
    "numpy._core._ufunc_reconstruct": (0, 1),
    "numpy.core.umath._ufunc_reconstruct": (0, 1),
}
