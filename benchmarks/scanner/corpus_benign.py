"""Benign corpus: real models written by the real libraries, plus the timing inputs
(a ~2 GB PyTorch checkpoint and a folder of ~300 small model files).

The benign files are the false-positive test: each is what a user downloads or saves every
day (state dicts, whole modules, optimizer checkpoints, TorchScript, scikit-learn estimators,
NumPy arrays, safetensors, ONNX, HDF5/Keras, GGUF with a normal chat template).
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import formats as F

Entry = tuple[str, str, str]  # relative path, family, format


def _torch_models() -> dict[str, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return {
        "mlp": nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)),
        "cnn": nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)),
        "lstm": nn.LSTM(8, 16, num_layers=2, batch_first=True),
        "transformer": nn.TransformerEncoder(
            nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), num_layers=2),
        "embedding": nn.Sequential(nn.Embedding(100, 16), nn.LayerNorm(16)),
    }


def _torch_files(root: Path) -> list[Entry]:
    import torch

    d = root / "torch"
    d.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    models = _torch_models()
    for name, model in models.items():
        torch.save(model.state_dict(), d / f"{name}-state-dict.pt")
        out.append((f"torch/{name}-state-dict.pt", "torch-state-dict", "torch-zip"))
    for name in ("mlp", "cnn", "lstm"):
        torch.save(models[name], d / f"{name}-whole-module.pth")
        out.append((f"torch/{name}-whole-module.pth", "torch-whole-module", "torch-zip"))
    for opt_name, opt_cls in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
                              ("adamw", torch.optim.AdamW)):
        model = models["mlp"]
        opt = opt_cls(model.parameters(), lr=0.01)
        model(torch.randn(2, 16)).sum().backward()
        opt.step()
        ckpt = {"epoch": 3, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": opt.state_dict(), "loss": 0.25,
                "config": {"lr": 0.01, "layers": [16, 32, 4]}}
        torch.save(ckpt, d / f"checkpoint-{opt_name}.pt")
        out.append((f"torch/checkpoint-{opt_name}.pt", "torch-optimizer-checkpoint",
                    "torch-zip"))
    sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(models["mlp"].parameters(), 0.1), 5)
    torch.save({"scheduler": sched.state_dict(), "rng": torch.get_rng_state()},
               d / "scheduler-rng.pt")
    out.append(("torch/scheduler-rng.pt", "torch-optimizer-checkpoint", "torch-zip"))
    torch.jit.script(models["mlp"]).save(str(d / "mlp-scripted.pt"))
    traced = torch.jit.trace(models["cnn"].eval(), torch.randn(1, 3, 8, 8))  # type: ignore[no-untyped-call]
    traced.save(str(d / "cnn-traced.pt"))
    out += [("torch/mlp-scripted.pt", "torchscript", "torchscript"),
            ("torch/cnn-traced.pt", "torchscript", "torchscript")]
    torch.save(models["mlp"].state_dict(), d / "mlp-legacy.pt",
               _use_new_zipfile_serialization=False)
    out.append(("torch/mlp-legacy.pt", "torch-legacy", "torch-legacy"))
    half = {k: v.half() for k, v in models["transformer"].state_dict().items()}
    torch.save(half, d / "pytorch_model.bin")
    out.append(("torch/pytorch_model.bin", "torch-state-dict", "torch-zip"))
    torch.save(torch.arange(10, dtype=torch.bfloat16), d / "tensor-bf16.pt")
    out.append(("torch/tensor-bf16.pt", "torch-state-dict", "torch-zip"))
    return out


def sklearn_models(seed: int = 0) -> dict[str, Any]:
    """A dozen fitted estimator kinds (fitted on iris: fast)."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    X, y = load_iris(return_X_y=True)
    models: dict[str, Any] = {
        "logreg": LogisticRegression(max_iter=300),
        "random-forest": RandomForestClassifier(n_estimators=5, random_state=seed),
        "gradient-boosting": GradientBoostingClassifier(n_estimators=5, random_state=seed),
        "hist-gradient-boosting": HistGradientBoostingClassifier(max_iter=5),
        "svc": SVC(probability=True, random_state=seed),
        "pipeline-pca": make_pipeline(StandardScaler(), PCA(2), LogisticRegression()),
        "kmeans": KMeans(3, n_init=2, random_state=seed),
        "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=seed),
        "decision-tree": DecisionTreeRegressor(random_state=seed),
        "isolation-forest": IsolationForest(n_estimators=5, random_state=seed),
        "knn": KNeighborsClassifier(),
        "ufunc-transformer": make_pipeline(FunctionTransformer(np.log1p),
                                           LogisticRegression(max_iter=300)),
        "grid-search": GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1]}, cv=2),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in models.values():
            model.fit(X, y)
    return models


def _sklearn_files(root: Path) -> list[Entry]:
    import joblib

    d = root / "sklearn"
    d.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    models = sklearn_models()
    for name, model in models.items():
        (d / f"{name}.pkl").write_bytes(pickle.dumps(model, protocol=4))
        joblib.dump(model, d / f"{name}.joblib")
        out += [(f"sklearn/{name}.pkl", "sklearn-pickle", "pickle"),
                (f"sklearn/{name}.joblib", "sklearn-joblib", "joblib-plain")]
    for comp in ("zlib", "gzip", "bz2", "xz", "lzma"):
        joblib.dump(models["random-forest"], d / f"random-forest-{comp}.joblib",
                    compress=(comp, 3))
        out.append((f"sklearn/random-forest-{comp}.joblib", "sklearn-joblib-compressed",
                    f"joblib-{comp}"))
    raw = io.BytesIO()
    joblib.dump(models["logreg"], raw)
    (d / "logreg-lz4.joblib").write_bytes(F.lz4_frame(raw.getvalue()))
    out.append(("sklearn/logreg-lz4.joblib", "sklearn-joblib-compressed", "joblib-lz4"))
    (d / "svc-protocol2.pkl").write_bytes(pickle.dumps(models["svc"], protocol=2))
    out.append(("sklearn/svc-protocol2.pkl", "sklearn-pickle", "pickle"))
    return out


def _array_files(root: Path) -> list[Entry]:
    import numpy as np
    import torch
    from safetensors.numpy import save_file as np_save_file
    from safetensors.torch import save_file as torch_save_file

    rng = np.random.default_rng(0)
    d = root / "arrays"
    d.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    np.save(d / "float32.npy", rng.standard_normal((64, 64)).astype("f4"))
    np.save(d / "int64.npy", np.arange(1000))
    np.save(d / "fortran.npy", np.asfortranarray(rng.standard_normal((16, 8))))
    np.save(d / "structured.npy", np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"),
                                                                         ("b", "f8")]))
    np.savez(d / "weights.npz", w=rng.standard_normal((8, 8)), b=np.zeros(8))
    np.savez_compressed(d / "weights-compressed.npz", w=rng.standard_normal((32, 32)))
    out += [(f"arrays/{n}", "numpy", n.rsplit(".", 1)[1]) for n in (
        "float32.npy", "int64.npy", "fortran.npy", "structured.npy", "weights.npz",
        "weights-compressed.npz")]
    models = _torch_models()
    torch_save_file(models["mlp"].state_dict(), str(d / "mlp.safetensors"))
    torch_save_file({k: v.contiguous() for k, v in models["transformer"].state_dict().items()},
                    str(d / "transformer.safetensors"), metadata={"format": "pt"})
    np_save_file({"a": rng.standard_normal((4, 4)).astype("f4"),
                  "b": np.arange(6, dtype="i8")}, str(d / "numpy.safetensors"))
    torch_save_file({"emb": torch.zeros(100, 16, dtype=torch.bfloat16)},
                    str(d / "bf16.safetensors"))
    out += [(f"arrays/{n}", "safetensors", "safetensors") for n in (
        "mlp.safetensors", "transformer.safetensors", "numpy.safetensors", "bf16.safetensors")]
    return out


def onnx_model(seed: int, kind: str = "mlp") -> Any:
    """A small valid ONNX model built with onnx.helper."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    f = TensorProto.FLOAT
    if kind == "conv":
        w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype("f4"), "W")
        nodes = [helper.make_node("Conv", ["X", "W"], ["C"]),
                 helper.make_node("Relu", ["C"], ["Y"])]
        inputs = [helper.make_tensor_value_info("X", f, [1, 3, 8, 8])]
        outputs = [helper.make_tensor_value_info("Y", f, [1, 4, 6, 6])]
        inits = [w]
    else:
        w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype("f4"), "W")
        b = numpy_helper.from_array(np.zeros(8, "f4"), "B")
        nodes = [helper.make_node("MatMul", ["X", "W"], ["M"]),
                 helper.make_node("Add", ["M", "B"], ["A"]),
                 helper.make_node("Softmax" if kind == "softmax" else "Relu", ["A"], ["Y"])]
        inputs = [helper.make_tensor_value_info("X", f, [1, 16])]
        outputs = [helper.make_tensor_value_info("Y", f, [1, 8])]
        inits = [w, b]
    graph = helper.make_graph(nodes, f"g{seed}", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="bench")


def _onnx_h5_files(root: Path) -> list[Entry]:
    import h5py
    import numpy as np
    import onnx

    d = root / "onnx"
    d.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    for i, kind in enumerate(("mlp", "softmax", "conv")):
        onnx.save_model(onnx_model(i, kind), str(d / f"{kind}.onnx"))
        out.append((f"onnx/{kind}.onnx", "onnx", "onnx"))
    big = onnx_model(7, "conv")
    onnx.save_model(big, str(d / "conv-external.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="conv-external.onnx.data",
                    size_threshold=0)
    out.append(("onnx/conv-external.onnx", "onnx", "onnx-external"))

    d = root / "hdf5"
    d.mkdir(parents=True, exist_ok=True)
    with h5py.File(d / "arrays.h5", "w") as f:
        f.create_dataset("weights", data=np.ones((32, 32), "f4"))
        f.create_group("meta").attrs["epochs"] = 3
    F.keras2_h5(d / "keras2-dense.h5", None)
    F.keras3_archive(d / "keras3-dense.keras", None)
    out += [("hdf5/arrays.h5", "hdf5", "hdf5"), ("hdf5/keras2-dense.h5", "keras", "keras-h5"),
            ("hdf5/keras3-dense.keras", "keras", "keras-v3")]

    d = root / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    (d / "chatml.gguf").write_bytes(F.tiny_llama_gguf(F.CHATML_TEMPLATE))
    llama2 = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
              "{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}{% else %}"
              "{{ message['content'] | trim + eos_token }}{% endif %}{% endfor %}")
    (d / "llama2-template.gguf").write_bytes(F.tiny_llama_gguf(llama2))
    out += [("gguf/chatml.gguf", "gguf", "gguf"), ("gguf/llama2-template.gguf", "gguf", "gguf")]
    return out


def _archive_files(root: Path) -> list[Entry]:
    import numpy as np

    d = root / "archives"
    d.mkdir(parents=True, exist_ok=True)
    st = (root / "arrays" / "mlp.safetensors").read_bytes()
    with zipfile.ZipFile(d / "hf-bundle.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/config.json", json.dumps({"architectures": ["MLP"], "hidden": 32}))
        z.writestr("model/model.safetensors", st)
    buf = io.BytesIO()
    np.save(buf, np.arange(100.0))
    with tarfile.open(d / "arrays.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("arrays/a.npy")
        info.size = len(buf.getvalue())
        t.addfile(info, io.BytesIO(buf.getvalue()))
    return [("archives/hf-bundle.zip", "archive", "zip"),
            ("archives/arrays.tar.gz", "archive", "tar.gz")]


def build(root: Path) -> list[Entry]:
    """Write the benign corpus under ``root``; returns (path, family, format) entries."""
    entries = _torch_files(root)
    entries += _sklearn_files(root)
    entries += _array_files(root)
    entries += _onnx_h5_files(root)
    entries += _archive_files(root)
    return entries


# -- timing inputs --------------------------------------------------------------------------

def big_checkpoint(path: Path, tensors: int = 8, mib_each: int = 256) -> None:
    """A ~2 GB PyTorch zip state dict of large tensors. torch.zeros is lazily backed (calloc),
    so only the pages torch.save reads are ever touched, one storage at a time."""
    import torch

    sd = {f"layers.{i}.weight": torch.zeros(mib_each * 2**20 // 4) for i in range(tensors)}
    sd["embed.weight"] = torch.randn(1000, 64)
    sd["head.bias"] = torch.zeros(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)


def small_folder(folder: Path, count: int = 300) -> list[Entry]:
    """~300 small benign model files of mixed formats, for the folder-throughput test."""
    import joblib
    import numpy as np
    import onnx
    import torch
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out: list[Entry] = []
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    kinds = ("safetensors", "npy", "npz", "torch", "onnx", "pickle", "joblib")
    for i in range(count):
        kind = kinds[i % len(kinds)]
        w = rng.standard_normal((32, 16)).astype("f4")
        if kind == "safetensors":
            name = f"m{i:03d}.safetensors"
            save_file({"w": w, "b": w[0].copy()}, str(folder / name))
        elif kind == "npy":
            name = f"m{i:03d}.npy"
            np.save(folder / name, w)
        elif kind == "npz":
            name = f"m{i:03d}.npz"
            np.savez(folder / name, w=w, b=w[0])
        elif kind == "torch":
            name = f"m{i:03d}.pt"
            torch.save({"w": torch.from_numpy(w), "step": i}, folder / name)
        elif kind == "onnx":
            name = f"m{i:03d}.onnx"
            onnx.save_model(onnx_model(i), str(folder / name))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LogisticRegression(C=0.1 + i / 100, max_iter=50).fit(X, y)
            if kind == "pickle":
                name = f"m{i:03d}.pkl"
                (folder / name).write_bytes(pickle.dumps(model, protocol=4))
            else:
                name = f"m{i:03d}.joblib"
                joblib.dump(model, folder / name)
        out.append((name, f"folder-{kind}", kind))
    return out
