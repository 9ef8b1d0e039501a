"""Evaluation data files are hostile: every bad one gets one clear error, none runs code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.assess import data as data_module
from bastion.assess.data import EvalData, demo_data, load_dataset
from bastion.errors import InputError


class _Payload:
    """Unpickled, it would create the marker file (it never must be)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(0, 255, (40, 3, 4, 4))
    dataset = load_dataset(_npz(tmp_path / "eval.npz", x=x, y=np.arange(40) % 3))
    assert dataset.x.dtype == np.float32
    assert dataset.input_shape == (3, 4, 4)
    assert dataset.kind == "image"
    assert dataset.y.tolist() == (np.arange(40) % 3).tolist()
    evaluation = EvalData.of(dataset)
    assert evaluation.clip_values == (pytest.approx(x.min()), pytest.approx(x.max()))
    assert evaluation.n_classes == 3


def test_one_hot_labels_are_accepted(tmp_path: Path) -> None:
    y = np.eye(4)[np.arange(20) % 4]
    dataset = load_dataset(_npz(tmp_path / "e.npz", x=np.zeros((20, 5)), y=y))
    assert dataset.y.tolist() == (np.arange(20) % 4).tolist()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros(10), "y": np.zeros(10)}, "shape (n, features...)"),
    ({"x": np.zeros((10, 3)), "y": np.zeros(9)}, "10 samples but 9 labels"),
    ({"x": np.zeros((10, 3)), "y": np.zeros((10, 2, 2))}, "one per sample"),
    ({"x": np.zeros((10, 3)), "y": np.full(10, 0.5)}, "whole numbers"),
    ({"x": np.zeros((10, 3)), "y": -np.ones(10)}, "class indices"),
    ({"x": np.zeros((10, 3)), "y": np.full(10, 5000)}, "class indices"),
    ({"x": np.array([["a", "b"]] * 10), "y": np.zeros(10)}, "must be numbers"),
    ({"samples": np.zeros((10, 3)), "y": np.zeros(10)}, "expected arrays named x and y"),
])
def test_bad_arrays_are_refused_with_the_reason(tmp_path: Path, arrays: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(InputError, match=r"eval\.npz") as error:
        load_dataset(_npz(tmp_path / "eval.npz", **arrays))
    assert message in error.value.message


def test_nan_names_the_first_bad_sample(tmp_path: Path) -> None:
    x = np.zeros((10, 3))
    x[7, 1] = np.nan
    x[8, 0] = np.inf
    with pytest.raises(InputError, match=r"2 NaN or infinite value\(s\) \(first in sample 7\)"):
        load_dataset(_npz(tmp_path / "eval.npz", x=x, y=np.zeros(10)))


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = np.array([_Payload(marker)] * 10, dtype=object).reshape(10, 1)
    path = _npz(tmp_path / "eval.npz", x=payload, y=np.zeros(10))
    with pytest.raises(InputError, match=r"object arrays.*refused"):
        load_dataset(path)
    assert not marker.exists()


def test_huge_inputs_are_refused_before_reading(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _npz(tmp_path / "eval.npz", x=np.zeros((100, 8)), y=np.zeros(100))
    monkeypatch.setattr(data_module, "MAX_FILE_SIZE", 1000)
    with pytest.raises(InputError, match="larger than the 1000"):
        load_dataset(path)
    monkeypatch.undo()
    monkeypatch.setattr(data_module, "MAX_SAMPLES", 50)
    with pytest.raises(InputError, match="100 samples, more than the 50"):
        load_dataset(path)
    monkeypatch.undo()
    monkeypatch.setattr(data_module, "MAX_VALUES", 100)  # declared sizes, before decompressing
    with pytest.raises(InputError, match="too large to read"):
        load_dataset(path)


def test_csv_with_a_header_and_a_named_label(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("label,a,b\n1,0.5,1\n0,1,2\n1,3,4\n", encoding="utf-8")
    dataset = load_dataset(path)
    assert dataset.x.tolist() == [[0.5, 1.0], [1.0, 2.0], [3.0, 4.0]]
    assert dataset.y.tolist() == [1, 0, 1]
    assert dataset.kind == "tabular"
    by_name = load_dataset(path, label_column="b")
    assert by_name.x.tolist() == [[1.0, 0.5], [0.0, 1.0], [1.0, 3.0]]
    assert by_name.y.tolist() == [1, 2, 4]


@pytest.mark.parametrize(("text", "message"), [
    ("a,label\n1,0\n2\n", "row 3 has 1 columns, expected 2"),
    ("a,label\n1,0\nx,1\n", "row 3 has a value that is not a number"),
    ("", "empty CSV"),
    ("a,label\n1,nan\n", "whole numbers"),
])
def test_bad_csv_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "eval.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"eval\.csv") as error:
        load_dataset(path)
    assert message in error.value.message


def test_binary_garbage_and_npy_files(tmp_path: Path) -> None:
    garbage = tmp_path / "eval.bin"
    garbage.write_bytes(b"\xff\xfe\x00\x01" * 100)
    with pytest.raises(InputError, match="not a CSV text file"):
        load_dataset(garbage)
    npy = tmp_path / "eval.npy"
    np.save(npy, np.zeros((3, 3)))
    with pytest.raises(InputError, match="holds one array"):
        load_dataset(npy)
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing.npz")


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for label, colour in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("L", (6, 5), colour).save(tmp_path / label / f"{i}.png")
    dataset = load_dataset(tmp_path)
    assert dataset.x.shape == (6, 1, 5, 6)
    assert dataset.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset.x[:3].max() == 0.0
    assert dataset.x[3:].min() == 1.0
    Image.new("L", (7, 7)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(InputError, match="resize all images to one size"):
        load_dataset(tmp_path)
    (tmp_path / "dog" / "odd.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(InputError, match=r"odd\.png: unreadable image"):
        load_dataset(tmp_path)


def test_demo_halves_are_disjoint_and_stratified() -> None:
    digits = demo_data("digits", 0)
    assert digits.members is not None
    assert digits.members.n_samples + digits.holdout.n_samples == 1797
    assert digits.input_shape == (1, 8, 8)
    assert digits.clip_values == (0.0, 1.0)
    members = {row.tobytes() for row in digits.members.x}
    overlap = sum(row.tobytes() in members for row in digits.holdout.x)
    assert overlap < 10  # digits has a few duplicate images; the halves are otherwise disjoint
    counts = np.bincount(digits.holdout.y)
    assert counts.min() >= 85  # every class in both halves
    cancer = demo_data("breast-cancer", 0)
    assert cancer.kind == "tabular"
    assert cancer.input_shape == (30,)
    assert cancer.holdout.x.min() >= 0.0
    assert cancer.holdout.x.max() <= 1.0
    with pytest.raises(InputError, match="unknown demo"):
        demo_data("mnist")
