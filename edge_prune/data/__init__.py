"""Datasets: the bundled digits example and user ``.npz`` files, validated on load.

Nothing here downloads anything: the default dataset ships inside the package
(see ``DIGITS_LICENSE.md`` beside this file).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_prune.errors import DataError

DATA_DIR = Path(__file__).resolve().parent  # the package data every layer reads
DIGITS_PATH = DATA_DIR / "digits.npz"
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# The classifier gets one output per class id. 65,536 outputs behind even a 64-unit layer are
# 4 MiB of int8 weights, more flash than any shipped target has; a larger id is a broken file.
MAX_CLASSES = 65_536


@dataclass(frozen=True)
class Dataset:
    """Train and test splits: ``x`` float32 with a leading sample axis; ``y`` int64 class ids
    (classification) or float32 targets of any per-sample shape (regression, reconstruction)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    # How class ids were read from the file when it held one-hot or probability rows, one line.
    labels_note: str | None = None

    def __iter__(self):
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_classification(self) -> bool:
        return self.y_train.dtype.kind in "iu"

    @property
    def task(self) -> str:
        return "classification" if self.is_classification else "regression"

    @property
    def num_classes(self) -> int:
        """Classification: one more than the largest class id. Regression: values per target."""
        if not self.is_classification:
            return int(np.prod(self.y_train.shape[1:], dtype=np.int64))
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.y_train.shape[1:])

    def describe(self) -> str:
        sizes = f"{len(self.x_train)} train / {len(self.x_test)} test, input {self.input_shape}"
        if self.is_classification:
            rows = f"; {self.labels_note}" if self.labels_note else ""
            return f"{self.source} ({sizes}, {self.num_classes} classes{rows})"
        return f"{self.source} ({sizes}, float targets of shape {self.target_shape}: regression)"


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The bundled 8x8 digits as (N, 8, 8, 1) float32 in [0, 1], split per class with ``seed``."""
    with np.load(DIGITS_PATH) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    x = (images.astype(np.float32) / 16.0)[..., np.newaxis]
    test_idx = _stratified_test_indices(labels, test_fraction, seed)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return Dataset(
        x[train_mask], labels[train_mask], x[test_idx], labels[test_idx], source="digits"
    )


def _stratified_test_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[: round(len(members) * fraction)])
    return np.sort(np.concatenate(picked))


def load_npz(path: str | Path) -> Dataset:
    """Load a user dataset: an ``.npz`` with ``x_train, y_train, x_test, y_test``.

    ``x_*`` must be numeric with the same per-sample shape, finite and non-empty. ``y_*``: 1-D
    integer class ids (floats holding only whole numbers count as class ids) for classification,
    one-hot or probability rows (2-D, values in [0, 1], each row summing to 1: the class is the
    row's argmax, also classification), or float targets (non-integer values, or more than one
    value per sample, e.g. ``y = x`` for an autoencoder) for regression; one per sample, the
    same kind in both splits.
    """
    path = Path(path)
    arrays = _read_npz(path)
    x_train, x_test = (_features(path, n, arrays[n]) for n in ("x_train", "x_test"))
    rows = class_rows(arrays["y_train"], arrays["y_test"])
    if rows is not None:
        y_train, y_test = (
            _labels(path, n, arrays[n].argmax(axis=1)) for n in ("y_train", "y_test")
        )
        note = (
            f"y_train and y_test are {rows} rows of {arrays['y_train'].shape[1]} values: "
            "classification, class = argmax of each row, judged by top-1 accuracy"
        )
    else:
        y_train, y_test = (_targets(path, n, arrays[n]) for n in ("y_train", "y_test"))
        note = None
    if y_train.dtype != y_test.dtype or y_train.shape[1:] != y_test.shape[1:]:
        raise DataError(
            f"{path}: y_train is {_kind(y_train)} but y_test is {_kind(y_test)}; both must be "
            "class ids or both float targets of one shape"
        )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path}: x_train samples have shape {x_train.shape[1:]} but x_test samples have "
            f"{x_test.shape[1:]}; they must match"
        )
    for x_name, x, y_name, y in (
        ("x_train", x_train, "y_train", y_train),
        ("x_test", x_test, "y_test", y_test),
    ):
        if len(x) != len(y):
            raise DataError(f"{path}: {x_name} has {len(x)} samples but {y_name} has {len(y)}")
    return Dataset(x_train, y_train, x_test, y_test, source=str(path), labels_note=note)


# A row of class probabilities sums to 1 within this (float32 softmax outputs saved as labels).
_ROW_SUM_TOLERANCE = 1e-3


def class_rows(y_train: np.ndarray, y_test: np.ndarray) -> str | None:
    """ "one-hot" or "probability" when both label arrays are 2-D rows of at least two values
    in [0, 1] summing to 1 (a class per row: the largest value), else None."""
    kinds = {_row_kind(y) for y in (y_train, y_test)}
    if None in kinds or np.shape(y_train)[1:] != np.shape(y_test)[1:]:
        return None
    return "one-hot" if kinds == {"one-hot"} else "probability"


def _row_kind(y: np.ndarray) -> str | None:
    if y.ndim != 2 or y.shape[1] < 2 or len(y) == 0 or y.dtype.kind not in "iuf":
        return None
    values = y.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        return None
    if not np.allclose(values.sum(axis=1), 1.0, rtol=0, atol=_ROW_SUM_TOLERANCE):
        return None
    return "one-hot" if np.isin(values, (0.0, 1.0)).all() else "probability"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    from edge_prune.input_files import check_regular

    try:
        check_regular(path, error=DataError)  # a FIFO or a device: refused unread
    except (FileNotFoundError, IsADirectoryError) as e:
        raise DataError(
            f"{path}: {'no such file' if isinstance(e, FileNotFoundError) else 'a directory'} "
            f"(expected an .npz with {', '.join(NPZ_ARRAYS)})"
        ) from None
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy gives an array
            raise DataError(
                f"{path}: a single array (.npy), not an .npz archive; save the four arrays "
                f"with np.savez(path, {'=..., '.join(NPZ_ARRAYS)}=...)"
            )
        with loaded as f:
            missing = [n for n in NPZ_ARRAYS if n not in f.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; an .npz with "
                    f"{', '.join(NPZ_ARRAYS)} is expected (found: {', '.join(f.files) or 'none'})"
                )
            return {n: f[n] for n in NPZ_ARRAYS}
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    except MemoryError as e:  # an .npy header can declare any shape; numpy allocates it first
        raise DataError(f"{path}: an array is too large to load ({e})") from None


def _features(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "fiub" or x.ndim < 2:
        raise DataError(
            f"{path}: {name} must be a numeric array of shape (samples, ...), "
            f"got dtype {x.dtype} shape {x.shape}"
        )
    if len(x) == 0:
        raise DataError(f"{path}: {name} is empty")
    if x[0].size == 0:
        raise DataError(f"{path}: {name} samples hold no values (shape {x.shape})")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {name} holds {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x


def _kind(y: np.ndarray) -> str:
    if y.dtype.kind in "iu":
        return "class ids"
    return f"float targets of shape {y.shape[1:]}"


def _targets(path: Path, name: str, y: np.ndarray) -> np.ndarray:
    """Class ids (int64) or regression targets (float32)."""
    if y.ndim < 1 or y.dtype.kind not in "iuf" or (y.ndim > 1 and y.dtype.kind != "f"):
        raise DataError(
            f"{path}: {name} must be 1-D integer class ids, one-hot or probability rows, or "
            "float targets, got dtype "
            f"{y.dtype} shape {y.shape}"
        )
    if len(y) == 0:
        raise DataError(f"{path}: {name} is empty")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{path}: {name} holds {int((~np.isfinite(y)).sum())} NaN/inf values")
        if y.ndim > 1 or (y != np.round(y)).any():
            return y.astype(np.float32)  # regression targets
    return _labels(path, name, y)


def _labels(path: Path, name: str, y: np.ndarray) -> np.ndarray:
    if (y < 0).any():
        raise DataError(f"{path}: {name} holds negative labels (min {y.min()})")
    if y.max() >= MAX_CLASSES:
        raise DataError(
            f"{path}: {name} holds class id {y.max()}; expected class ids 0..{MAX_CLASSES - 1}"
        )
    return y.astype(np.int64)
