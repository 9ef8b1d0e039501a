"""Evaluation data: labelled samples from a file, or the built-in demos, validated and bounded.

An assessment needs labelled samples the model never saw (``holdout``: attacked for
robustness, queried by the copycat, the non-members of membership inference) and, for the
privacy tests, samples it was trained on (``members``). Both are user files, so both are
hostile: every size is bounded before anything is read, NPZ files are read without pickle
(object arrays are refused), and NaN, infinities, ragged shapes and non-integer labels stop
the run with one clear message (:class:`~bastion.errors.InputError`) instead of a traceback
from deep inside an attack.

Formats: ``.npz`` (arrays ``x`` and ``y``), CSV (numeric columns, the label in a column named
``label``/``target``/``class``/``y`` or the last one), and a folder with one sub-folder of
images per class (read with Pillow, channels first, scaled to [0, 1]).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from bastion.errors import InputError

#: Bounds on what an evaluation file may hold. Attacks cost far more per sample than reading
#: does, so these are generous for evaluation sets and still far from exhausting memory.
MAX_FILE_SIZE = 1 << 30
MAX_SAMPLES = 200_000
MAX_FEATURES = 1 << 20  # values per sample (a 3×512×512 image is 786,432)
MAX_VALUES = 1 << 27  # values in all: 512 MiB as float32
MAX_CLASSES = 1000
MAX_IMAGE_PIXELS = 1 << 22  # per image, checked before decoding

Kind = Literal["image", "tabular"]
DEMOS = ("digits", "breast-cancer")

_X_KEYS = ("x", "X", "data", "inputs", "features")
_Y_KEYS = ("y", "labels", "label", "target", "targets")
_LABEL_NAMES = ("label", "labels", "target", "class", "y")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Labelled samples: ``x`` float32 ``(n, *input_shape)``, ``y`` int64 class indices."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    source: str

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def kind(self) -> Kind:
        return "image" if self.x.ndim > 2 else "tabular"

    def subset(self, index: NDArray[np.int64]) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.source)

    def take(self, n: int, seed: int) -> Dataset:
        """At most ``n`` samples, the same ones for the same seed."""
        if n >= self.n_samples:
            return self
        order = np.random.default_rng(seed).permutation(self.n_samples)[:n]
        return self.subset(np.sort(order).astype(np.int64))

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Two disjoint parts, the first holding ``fraction`` of the samples (shuffled)."""
        order = np.random.default_rng(seed).permutation(self.n_samples).astype(np.int64)
        cut = round(self.n_samples * fraction)
        return self.subset(order[:cut]), self.subset(order[cut:])


@dataclass(frozen=True, slots=True, eq=False)
class EvalData:
    """What one assessment runs on."""

    holdout: Dataset
    members: Dataset | None
    clip_values: tuple[float, float]
    n_classes: int
    name: str

    @property
    def kind(self) -> Kind:
        return self.holdout.kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.holdout.input_shape

    @property
    def value_range(self) -> float:
        low, high = self.clip_values
        return high - low

    @classmethod
    def of(cls, holdout: Dataset, members: Dataset | None = None, *,
           clip_values: tuple[float, float] | None = None, name: str | None = None,
           n_classes: int | None = None) -> EvalData:
        """Check that the parts fit together; the value range defaults to the data's."""
        parts = [holdout] if members is None else [holdout, members]
        if members is not None and members.input_shape != holdout.input_shape:
            raise InputError(
                f"{members.source}: samples have shape {members.input_shape}, but "
                f"{holdout.source} has {holdout.input_shape}; both must fit the same model")
        if holdout.n_samples < 10:
            raise InputError(f"{holdout.source}: {holdout.n_samples} samples; an assessment "
                             "needs at least 10")
        if clip_values is None:
            low = min(float(p.x.min()) for p in parts)
            high = max(float(p.x.max()) for p in parts)
            clip_values = (low, high)
        if not clip_values[1] > clip_values[0]:
            raise InputError(f"{holdout.source}: every value is {clip_values[0]}; the data "
                             "has no range to perturb")
        classes = max(int(p.y.max()) for p in parts) + 1
        if n_classes is not None:
            classes = max(classes, n_classes)
        if classes < 2:
            raise InputError(f"{holdout.source}: every label is 0; an assessment needs at "
                             "least two classes")
        return cls(holdout, members, clip_values, classes, name or holdout.source)


# -- validation ----------------------------------------------------------------------------------


def check_arrays(x: Any, y: Any, source: str) -> Dataset:
    """Validate raw arrays as evaluation data; every message names the file and the fix."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{source}: samples must be numbers (got dtype {x.dtype})")
    if y.dtype.kind not in "biuf":
        raise InputError(f"{source}: labels must be integers (got dtype {y.dtype})")
    if x.ndim < 2:
        raise InputError(f"{source}: samples must be an array of shape (n, features...) "
                         f"(got shape {x.shape})")
    if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(1)  # one-hot labels
    if y.ndim != 1:
        raise InputError(f"{source}: labels must be one per sample, shape (n,) or one-hot "
                         f"(got shape {y.shape})")
    n = x.shape[0]
    if n != y.shape[0]:
        raise InputError(f"{source}: {n} samples but {y.shape[0]} labels")
    if n == 0:
        raise InputError(f"{source}: no samples")
    if n > MAX_SAMPLES:
        raise InputError(f"{source}: {n} samples, more than the {MAX_SAMPLES} an assessment "
                         "reads; pass a subset")
    features = int(np.prod(x.shape[1:]))
    if features == 0 or features > MAX_FEATURES:
        raise InputError(f"{source}: {features} values per sample (shape {x.shape[1:]}); "
                         f"expected 1 to {MAX_FEATURES}")
    if n * features > MAX_VALUES:
        raise InputError(f"{source}: {n * features} values in all, more than {MAX_VALUES}; "
                         "pass fewer samples")
    xf = x.astype(np.float32)
    bad = ~np.isfinite(xf)
    if bad.any():
        first = int(np.argwhere(bad.reshape(n, -1).any(1))[0, 0])
        raise InputError(f"{source}: {int(bad.sum())} NaN or infinite value(s) (first in "
                         f"sample {first}); clean or impute the data first")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise InputError(f"{source}: labels must be whole numbers (class indices)")
    if y.min() < 0 or y.max() >= MAX_CLASSES:
        raise InputError(f"{source}: labels must be class indices from 0 to "
                         f"{MAX_CLASSES - 1} (got {y.min()} to {y.max()})")
    return Dataset(np.ascontiguousarray(xf), y.astype(np.int64), source)


# -- files ---------------------------------------------------------------------------------------


def load_dataset(path: str | Path, *, label_column: str | None = None) -> Dataset:
    """Read an evaluation file or folder; the format is decided by content, not by name."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        return _load_folder(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if size > MAX_FILE_SIZE:
        raise InputError(f"{source}: {size} bytes, larger than the {MAX_FILE_SIZE} an "
                         "evaluation file may be")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _load_npz(path)
    if head.startswith(b"\x93NUMPY"):
        raise InputError(f"{source}: a .npy file holds one array; save samples and labels "
                         "together with numpy.savez(path, x=..., y=...)")
    return _load_csv(path, label_column)


def _load_npz(path: Path) -> Dataset:
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{source}: not a readable .npz archive: {exc}") from None
    if len(infos) > 64:
        raise InputError(f"{source}: {len(infos)} arrays in the archive; expected x and y")
    total = sum(info.file_size for info in infos)
    if total > 2 * MAX_VALUES * 8:
        raise InputError(f"{source}: arrays of {total} bytes uncompressed, too large to read")
    names = {info.filename.removesuffix(".npy") for info in infos}
    x_key = next((k for k in _X_KEYS if k in names), None)
    y_key = next((k for k in _Y_KEYS if k in names), None)
    if x_key is None or y_key is None:
        raise InputError(f"{source}: expected arrays named x and y (found "
                         f"{', '.join(sorted(names)) or 'none'}); save with "
                         "numpy.savez(path, x=samples, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive[x_key], archive[y_key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{source}: holds object arrays, which only load by unpickling "
                             "(refused); save numeric arrays") from None
        raise InputError(f"{source}: unreadable array: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{source}: unreadable array: {exc}") from None
    return check_arrays(x, y, source)


def _load_csv(path: Path, label_column: str | None) -> Dataset:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a CSV text file, nor an .npz archive") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(c.strip() for c in row)]
    if not rows:
        raise InputError(f"{source}: empty CSV file")
    header: list[str] | None = None
    if not _numeric(rows[0]):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    if width < 2:
        raise InputError(f"{source}: a CSV needs at least one feature column and a label "
                         "column")
    if len(rows) > MAX_SAMPLES:
        raise InputError(f"{source}: {len(rows)} rows, more than the {MAX_SAMPLES} an "
                         "assessment reads; pass a subset")
    label = _label_index(header, width, label_column, source)
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{source}: row {i + 1 + bool(header)} has {len(row)} columns, "
                             f"expected {width}")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise InputError(f"{source}: row {i + 1 + bool(header)} has a value that is not "
                             "a number; encode categories as numbers first") from None
    x = np.delete(values, label, axis=1)
    return check_arrays(x, values[:, label], source)


def _numeric(row: Sequence[str]) -> bool:
    try:
        for cell in row:
            float(cell)
    except ValueError:
        return False
    return True


def _label_index(header: list[str] | None, width: int, label_column: str | None,
                 source: str) -> int:
    if label_column is not None:
        if header and label_column in header:
            return header.index(label_column)
        if label_column.lstrip("-").isdigit() and -width <= int(label_column) < width:
            return int(label_column) % width
        raise InputError(f"{source}: no column {label_column!r}"
                         + (f" (columns: {', '.join(header)})" if header else ""))
    if header:
        for name in _LABEL_NAMES:
            for i, column in enumerate(header):
                if column.lower() == name:
                    return i
    return width - 1


def _load_folder(path: Path) -> Dataset:
    """One sub-folder per class, images inside; classes are the sorted folder names."""
    source = str(path)
    try:
        from PIL import Image
    except ImportError:
        raise InputError(f"{source}: reading an image folder needs Pillow "
                         "(pip install pillow)") from None
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"{source}: expected one sub-folder of images per class (at least "
                         "two), or an .npz or CSV file")
    if len(classes) > MAX_CLASSES:
        raise InputError(f"{source}: {len(classes)} class folders, more than {MAX_CLASSES}")
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        for item in sorted(folder.iterdir()):
            if item.suffix.lower() in _IMAGE_SUFFIXES and item.is_file():
                files.append((item, label))
                if len(files) > MAX_SAMPLES:
                    raise InputError(f"{source}: more than {MAX_SAMPLES} images")
    if not files:
        raise InputError(f"{source}: no images ({', '.join(_IMAGE_SUFFIXES)}) in the class "
                         "folders")
    images: list[NDArray[np.float32]] = []
    mode: str | None = None
    size: tuple[int, int] | None = None
    for item, _ in files:
        try:
            with Image.open(item) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"{item}: {image.width}×{image.height} pixels, more "
                                     f"than {MAX_IMAGE_PIXELS}")
                if mode is None:
                    mode = "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"
                    size = image.size
                if image.size != size:
                    raise InputError(f"{item}: {image.width}×{image.height} pixels, unlike "
                                     f"the first image ({size}); resize all images to one size")
                array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        except InputError:
            raise
        except Exception as exc:  # Pillow raises many types on a broken or hostile image
            raise InputError(f"{item}: unreadable image: {type(exc).__name__}: {exc}") from None
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        if len(images) * images[0].size > MAX_VALUES:
            raise InputError(f"{source}: more than {MAX_VALUES} pixel values in all")
    x = np.stack(images)
    y = np.array([label for _, label in files], dtype=np.int64)
    return check_arrays(x, y, source)


# -- demos ---------------------------------------------------------------------------------------


def demo_data(name: str, seed: int = 0) -> EvalData:
    """scikit-learn's bundled datasets (offline), split in two stratified halves.

    ``digits``: 1,797 8×8 grey images, shape (1, 8, 8), values scaled to [0, 1].
    ``breast-cancer``: 569 records of 30 measurements, min-max scaled to [0, 1].
    The first half trains the demo model (the members), the second is never seen by it.
    """
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split

    if name == "digits":
        bunch = load_digits()
        x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
    elif name == "breast-cancer":
        bunch = load_breast_cancer()
        low, high = bunch.data.min(0), bunch.data.max(0)
        x = (bunch.data - low) / np.where(high > low, high - low, 1.0)
    else:
        raise InputError(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    index = np.arange(len(bunch.target))
    members, holdout = train_test_split(index, test_size=0.5, random_state=seed,
                                        stratify=bunch.target)
    full = check_arrays(x, bunch.target, f"demo:{name}")
    return EvalData.of(full.subset(np.sort(holdout)), full.subset(np.sort(members)),
                       clip_values=(0.0, 1.0), name=f"demo:{name}")
