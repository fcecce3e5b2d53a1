"""The metric a build is judged by, chosen by the data: classification or regression.

- Classification (``y`` integer class ids): top-1 accuracy, higher is better; an artifact may
  lose at most ``select.tolerance_points`` percentage points against the dense model.
- Regression and reconstruction (``y`` float, e.g. an autoencoder's ``y = x``): mean squared
  error over every output value, lower is better; an artifact's error may be at most
  ``select.tolerance_relative`` (a fraction) above the dense model's.

Each metric also knows its *chance level*: the score of a model that learned nothing (always the
most frequent class; always the mean of the training targets). A model at that level is useless
whatever its size, and the build says so instead of reporting "fits".

This module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_prune.errors import DataError

# A classifier within this many points of always answering the majority class has not learned.
CHANCE_MARGIN_POINTS = 5.0
# A regressor whose error is above this fraction of the predict-the-mean error has not learned.
CHANCE_ERROR_FRACTION = 0.9
# Held-out far below training: more than this many points of accuracy, or this many times the
# training error. Such a model memorised its training data (or its BatchNorm statistics are off).
GAP_POINTS = 30.0
GAP_ERROR_RATIO = 4.0


@dataclass(frozen=True)
class Metric:
    """How outputs are scored against ``y`` and how two scores compare."""

    key: str  # "accuracy" or "mse"
    name: str
    higher_is_better: bool

    def score(self, outputs: np.ndarray, y: np.ndarray) -> float:
        if self.key == "accuracy":
            return top1_accuracy(outputs, y)
        return mean_squared_error(outputs, y)

    def format(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.2%}" if self.key == "accuracy" else f"{value:.4g}"

    def loss(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline``: points of accuracy, or the relative
        increase of the error (0.1 = 10% higher). Negative when it is better."""
        if self.key == "accuracy":
            return (baseline - value) * 100.0
        return (value - baseline) / baseline if baseline > 0 else (np.inf if value > 0 else 0.0)

    def format_loss(self, loss: float) -> str:
        if self.key == "accuracy":
            return f"{loss:+.2f} points"
        return f"{loss:+.1%}"

    def tolerance(self, select_config) -> float:
        """The largest allowed :meth:`loss`, from the ``[select]`` config."""
        if self.key == "accuracy":
            return select_config.tolerance_points
        return select_config.tolerance_relative

    def format_tolerance(self, tolerance: float) -> str:
        if self.key == "accuracy":
            return f"{tolerance:g} point{'' if tolerance == 1 else 's'}"
        return f"{tolerance:.0%} relative"

    def chance(self, y_train: np.ndarray, y_test: np.ndarray) -> float:
        """The held-out score of a model that learned nothing from the training data."""
        if self.key == "accuracy":
            counts = np.bincount(_class_ids(y_train))
            return float(np.mean(_class_ids(y_test) == counts.argmax()))
        mean = np.asarray(y_train, dtype=np.float64).mean(axis=0)
        return mean_squared_error(np.broadcast_to(mean, np.shape(y_test)), y_test)

    def no_better_than_chance(self, value: float, chance: float) -> bool:
        if self.key == "accuracy":
            return value <= chance + CHANCE_MARGIN_POINTS / 100.0
        return value >= chance * CHANCE_ERROR_FRACTION

    def clearly_learned(self, value: float, chance: float) -> bool:
        """At least halfway from chance level to a perfect score: how edge-prune tells a trained
        model from an untrained one (a random network can beat chance by a few points)."""
        if self.key == "accuracy":
            return value >= chance + 0.5 * (1.0 - chance)
        return value <= 0.5 * chance

    def chance_what(self) -> str:
        if self.key == "accuracy":
            return "always answering the most frequent training class"
        return "always predicting the mean training target"

    def far_below_training(self, train: float, held_out: float) -> bool:
        """Held-out much worse than training (see GAP_POINTS, GAP_ERROR_RATIO)."""
        if self.key == "accuracy":
            return (train - held_out) * 100.0 > GAP_POINTS
        return held_out > GAP_ERROR_RATIO * train and held_out > 1e-12


ACCURACY = Metric("accuracy", "top-1 accuracy", higher_is_better=True)
MSE = Metric("mse", "mean squared error", higher_is_better=False)


def metric_for(y: np.ndarray) -> Metric:
    """Top-1 accuracy for integer class ids and for one-hot or probability rows (the class is
    the row's argmax), mean squared error for other float targets."""
    from edge_prune.data import class_rows

    y = np.asarray(y)
    if y.dtype.kind in "iu" and y.ndim <= 1:
        return ACCURACY
    return ACCURACY if class_rows(y, y) is not None else MSE


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the label (class index or one-hot row)."""
    scores = _rows(outputs)
    truth = np.asarray(labels)
    truth = truth.argmax(axis=-1) if truth.ndim == 2 else truth.reshape(-1)
    if len(truth) != len(scores):
        raise DataError(f"labels: got {len(truth)} labels for {len(scores)} samples")
    return float(np.mean(scores.argmax(axis=1) == truth))


def mean_squared_error(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over samples and values of the squared difference (float targets)."""
    predicted, truth = _rows(outputs), _rows(np.asarray(targets, dtype=np.float64))
    if predicted.shape != truth.shape:
        raise DataError(
            f"targets: shape {truth.shape} does not match the model outputs {predicted.shape} "
            "(one row per sample)"
        )
    return float(np.mean((predicted.astype(np.float64) - truth) ** 2))


def _class_ids(labels: np.ndarray) -> np.ndarray:
    """Class ids from ids or from one-hot / probability rows (their argmax)."""
    labels = np.asarray(labels)
    return labels.argmax(axis=-1) if labels.ndim == 2 else labels.reshape(-1).astype(np.int64)


def _rows(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    return y.reshape(len(y), -1)
