"""Every analyzer sits behind a cheap pre-filter that must never refuse content the analyzer
itself claims (that would make the file invisible to the scan). Pinned on real files of every
format and on the hostile fixtures."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tests.scan import payloads

from bastion.analyzer import Target
from bastion.catalogue import _package_like
from bastion.findings import Location
from bastion.scan import MODEL_ANALYZERS


def _files(tmp: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, (make, _) in payloads.TECHNIQUES.items():
        out[name] = make(str(tmp / "marker"))
    for protocol in range(6):
        out[f"pickle-p{protocol}"] = pickle.dumps({"a": [1, 2]}, protocol=protocol)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6))
    out["npy"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.savez(buffer, a=np.arange(3))
    out["npz"] = buffer.getvalue()
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    out["safetensors"] = struct.pack("<Q", len(header)) + header + b"\0" * 4
    out["gguf"] = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    out["gzip"] = gzip.compress(b"hello")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": 1}, protocol=2))
        archive.writestr("archive/version", "3\n")
    out["torch-zip"] = zipped.getvalue()
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for member in ("pickle", "storages", "sys_info"):
            data = pickle.dumps(0, protocol=2)
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    out["torch-tar"] = tarred.getvalue()
    out["keras-json"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}}
                                   ).encode()
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    out["onnx"] = helper.make_model(graph).SerializeToString()
    h5py = pytest.importorskip("h5py")
    path = tmp / "m.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {}})
    out["hdf5"] = path.read_bytes()
    del onnx
    return out


def test_prefilters_never_refuse_what_analyzers_claim(tmp_path: Path) -> None:
    files = _files(tmp_path)
    claimed: dict[str, list[str]] = {}
    for name, data in files.items():
        target = Target.from_bytes(data, Location(path=name))
        for lazy in MODEL_ANALYZERS:
            prefilter = getattr(lazy, "prefilter", None)
            real = lazy.load() if hasattr(lazy, "load") else lazy
            if real.claims(target):
                claimed.setdefault(name, []).append(real.name)
                if prefilter is not None:
                    assert prefilter(target), f"{lazy.name} pre-filter refuses {name}"
    # Every file was claimed by somebody: the fixtures exercise the analyzers for real.
    assert set(claimed) == set(files), sorted(set(files) - set(claimed))


def test_package_prefilter_passes_wheels_sdists_and_pth_files() -> None:
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/__init__.py", "x = 1\n" * 50_000)  # pushes metadata far back
        archive.writestr("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        archive.writestr("pkg-1.0.dist-info/RECORD", "")
    sdist = io.BytesIO()
    with tarfile.open(fileobj=sdist, mode="w:gz") as archive:
        info = tarfile.TarInfo("pkg-1.0/PKG-INFO")
        archive.addfile(info, io.BytesIO(b""))
    cases = {"pkg-1.0-py3-none-any.whl": wheel.getvalue(), "pkg-1.0.tar.gz": sdist.getvalue(),
             "evil.pth": b"import os; os.system('x')\n"}
    for name, data in cases.items():
        assert _package_like(Target.from_bytes(data, Location(path=name))), name
    checkpoint = Target.from_bytes(b"PK\x03\x04" + bytes(100) + b"archive/data.pkl",
                                   Location(path="model.pth"))
    assert not _package_like(checkpoint)
