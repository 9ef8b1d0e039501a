"""Real files written by the real libraries: benign ones are clean, malicious ones are caught,
and no payload ever runs. torch tests are skipped when torch is not installed."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bastion.findings import Severity
from bastion.scan import scan_path


class Payload:
    """Unpickling runs os.system('touch MARKER'): harmless, and visible if it ever ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def above_info(report) -> list[tuple[str, str, str]]:
    return [(f.rule_id, f.severity.value, str(f.location)) for f in report.findings
            if f.severity > Severity.INFO]


@pytest.fixture(scope="module")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import joblib
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    folder = tmp_path_factory.mktemp("sklearn")
    X, y = load_iris(return_X_y=True)
    models = {
        "lr": LogisticRegression(max_iter=300), "rf": RandomForestClassifier(n_estimators=3),
        "gb": GradientBoostingClassifier(n_estimators=3),
        "hgb": HistGradientBoostingClassifier(max_iter=3), "svc": SVC(probability=True),
        "pipe": make_pipeline(StandardScaler(), PCA(2), LogisticRegression()),
        "km": KMeans(3, n_init=2), "mlp": MLPClassifier(max_iter=20),
        "dtr": DecisionTreeRegressor(), "iso": IsolationForest(n_estimators=3),
        "knn": KNeighborsClassifier(),
        "ufunc": make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()),
        "grid": GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1]}, cv=2),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in models.items():
            model.fit(X, y)
            (folder / f"{name}.pkl").write_bytes(pickle.dumps(model))
            joblib.dump(model, folder / f"{name}.joblib")
        joblib.dump(models["rf"], folder / "rf_p2.joblib", protocol=2)
        text = make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(
            ["apple banana", "banana cherry", "cherry date", "apple date"], [0, 1, 0, 1])
        (folder / "tfidf.pkl").write_bytes(pickle.dumps(text, protocol=4))
        encoder = ColumnTransformer([("oh", OneHotEncoder(), [0])]).fit(
            np.array([["a"], ["b"]], dtype=object))
        joblib.dump(encoder, folder / "encoder.joblib")
    joblib.dump({"ints": np.arange(10), "obj": np.array([1, "x", None], dtype=object),
                 "f": np.ones((3, 4), order="F"), "u": np.array(["ab", "c"])},
                folder / "arrays.joblib")
    np.save(folder / "plain.npy", np.arange(12.0).reshape(3, 4))
    np.save(folder / "strings.npy", np.array(["a", "bc"]))
    np.save(folder / "objects.npy", np.array([{"a": 1}, [2]], dtype=object), allow_pickle=True)
    return folder


def test_benign_sklearn_joblib_numpy_are_clean(sklearn_models: Path) -> None:
    report = scan_path(sklearn_models)
    assert report.stats.analyzed == len(list(sklearn_models.iterdir()))
    assert above_info(report) == []


def test_malicious_joblib_and_npy(tmp_path: Path) -> None:
    import joblib

    marker = tmp_path / "marker"
    joblib.dump({"model": np.arange(5), "evil": Payload(marker)}, tmp_path / "m.joblib")
    np.save(tmp_path / "m.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    report = scan_path(tmp_path)
    hits = {f.location.path.rsplit("/", 1)[-1] for f in report.findings
            if f.rule_id == "PICKLE-DANGEROUS-GLOBAL"}
    assert hits == {"m.joblib", "m.npy"}
    assert not marker.exists()


def test_joblib_array_data_after_evil_object_array(tmp_path: Path) -> None:
    """The payload hides in a joblib object array, after raw numeric array bytes."""
    import joblib

    marker = tmp_path / "marker"
    joblib.dump([np.arange(1000, dtype=np.float64),
                 np.array([Payload(marker)], dtype=object)], tmp_path / "m.joblib")
    report = scan_path(tmp_path / "m.joblib")
    assert "PICKLE-DANGEROUS-GLOBAL" in {f.rule_id for f in report.findings}
    assert "PICKLE-MALFORMED" not in {f.rule_id for f in report.findings}
    assert not marker.exists()




def _torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = _torch()
    folder = tmp_path_factory.mktemp("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10),
                              torch.nn.Dropout(0.1), torch.nn.LayerNorm(10))
    opt = torch.optim.Adam(net.parameters())
    net(torch.zeros(2, 1, 8, 8)).sum().backward()
    opt.step()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "rng": torch.get_rng_state()}, folder / "checkpoint.pt")
    torch.save(net, folder / "whole_module.pt")
    torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(torch.arange(10, dtype=torch.bfloat16), folder / "tensor.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated, still loadable
        torch.save({"q": torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.quint8),
                    "sparse": torch.eye(3).to_sparse()}, folder / "special.pt")
    torch.jit.script(net).save(folder / "scripted.pt")
    torch.jit.trace(net.eval(), torch.zeros(1, 1, 8, 8)).save(folder / "traced.pt")
    return folder


def test_benign_torch_checkpoints_are_clean(torch_models: Path) -> None:
    report = scan_path(torch_models)
    assert report.stats.analyzed == 7
    assert above_info(report) == []
    assert {f.rule_id for f in report.findings} == {"TORCH-TORCHSCRIPT"}


def test_malicious_torch_zip_and_legacy(tmp_path: Path) -> None:
    torch = _torch()
    marker = tmp_path / "marker"
    obj = {"weights": torch.ones(3), "evil": Payload(marker)}
    torch.save(obj, tmp_path / "zip.pt")
    torch.save(obj, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    report = scan_path(tmp_path)
    hits = {f.location.path.rsplit("/", 1)[-1] for f in report.findings
            if f.rule_id == "PICKLE-DANGEROUS-GLOBAL"}
    assert hits == {"zip.pt", "legacy.pt"}
    zip_hit = next(f for f in report.findings if f.location.path.endswith("zip.pt"))
    assert zip_hit.location.members == ("zip/data.pkl",)
    assert not marker.exists()


def test_pickle_hidden_under_another_member_name(tmp_path: Path) -> None:
    """Every member that is a pickle is walked, whatever its name or folder."""
    torch = _torch()
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    evil = pickle.dumps(Payload(tmp_path / "marker"), protocol=2)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("archive/extra/tokenizer.bin", evil)
    (tmp_path / "m.pt").write_bytes(buffer.getvalue())
    report = scan_path(tmp_path / "m.pt")
    hit = next(f for f in report.findings if f.rule_id == "PICKLE-DANGEROUS-GLOBAL")
    assert hit.location.members == ("archive/extra/tokenizer.bin",)


def test_legacy_tar_format(tmp_path: Path) -> None:
    """PyTorch < 0.4 wrote a tar of pickles; built here member by member."""
    marker = tmp_path / "marker"
    members = {
        "sys_info": pickle.dumps({"protocol_version": 1000, "little_endian": True}, protocol=2),
        "pickle": pickle.dumps({"state": Payload(marker)}, protocol=2),
        "storages": pickle.dumps(0, protocol=2),
        "tensors": pickle.dumps(0, protocol=2),
    }
    with tarfile.open(tmp_path / "old.pt", "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    report = scan_path(tmp_path / "old.pt")
    hit = next(f for f in report.findings if f.rule_id == "PICKLE-DANGEROUS-GLOBAL")
    assert hit.location.members == ("pickle",)
    assert not marker.exists()


def test_torchscript_with_malicious_constants(tmp_path: Path) -> None:
    torch = _torch()
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "clean.pt"))
    out = io.BytesIO()
    with zipfile.ZipFile(tmp_path / "clean.pt") as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("constants.pkl"):
                data = pickle.dumps(Payload(tmp_path / "marker"), protocol=2)
            dst.writestr(info, data)
    (tmp_path / "clean.pt").unlink()
    (tmp_path / "ts.pt").write_bytes(out.getvalue())
    report = scan_path(tmp_path / "ts.pt")
    assert "PICKLE-DANGEROUS-GLOBAL" in {f.rule_id for f in report.findings}


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"])
def test_compressed_joblib(tmp_path: Path, codec: str) -> None:
    """joblib's compress= wraps the pickle in a compressed stream: it is decompressed
    (bounded) and the pickle inside is walked."""
    import joblib

    if codec == "lz4":
        pytest.importorskip("lz4")
    marker = tmp_path / "marker"
    joblib.dump({"w": np.arange(100), "evil": Payload(marker)}, tmp_path / "m.joblib",
                compress=(codec, 3))
    joblib.dump({"w": np.arange(100)}, tmp_path / "clean.joblib", compress=(codec, 3))
    report = scan_path(tmp_path)
    hits = [f for f in report.findings if f.rule_id == "PICKLE-DANGEROUS-GLOBAL"]
    assert [f.location.path.rsplit("/", 1)[-1] for f in hits] == ["m.joblib"]
    assert hits[0].location.members == ("<decompressed>",)
    assert above_info(report) == [(f.rule_id, f.severity.value, str(f.location)) for f in hits]
    assert not marker.exists()


def test_pickle_hidden_in_a_tensor_storage_member(tmp_path: Path) -> None:
    """torch never unpickles data/<key>, but a payload staged there is reported; the tensor
    bytes of ordinary storages are never read past their first bytes."""
    torch = _torch()
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(64)}, buffer)
    evil = pickle.dumps(Payload(tmp_path / "marker"), protocol=2)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data/0"):
                data = evil + data[len(evil):]
            dst.writestr(info, data)
    (tmp_path / "m.pt").write_bytes(out.getvalue())
    rules = {(f.rule_id, f.location.members[-1]) for f in scan_path(tmp_path / "m.pt").findings}
    assert ("TORCH-HIDDEN-PICKLE", "archive/data/0") in rules
    assert ("PICKLE-DANGEROUS-GLOBAL", "archive/data/0") in rules
