"""Lottery-ticket rewinding: after pruning, reset the surviving weights to early training values.

Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
ICLR 2019: train, prune by magnitude, reset the weights that survive to their values from an
early point of training, and retrain with the pruning mask held fixed. Frankle, Dziugaite, Roy
& Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020, show that on
larger networks rewinding to an early epoch k > 0 works where rewinding to initialisation fails.

- :func:`record_weights` gives a Keras callback that keeps the weights at the end of epoch k
  (epoch 0 = before training) during the dense training.
- The build's ``early`` stage (:func:`edge_prune.stages.training.early_stage`) trains a fresh
  copy for k epochs instead, from the same seed: with op determinism on, that is the dense
  run's state after k epochs.
- :func:`rewind` returns the pruned model with its non-zero weights replaced by the early ones
  (a weight pruned to zero stays zero) and :func:`retrain_with_fixed_mask` retrains it with the
  zeros re-applied after every batch.
- The build's ``rewind`` stage (:func:`edge_prune.stages.training.rewind_stage`) runs both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.runner import Progress

if TYPE_CHECKING:
    import tf_keras

    from edge_prune.data import Dataset

__all__ = [
    "fixed_mask_callback",
    "record_weights",
    "retrain_with_fixed_mask",
    "rewind",
]

# Weights with fewer dimensions (biases, batch-norm statistics) are not pruned by tfmot's
# magnitude pruning of Conv/Dense kernels; they are rewound but carry no mask.
_MASKED_MIN_DIMENSIONS = 2


@functools.cache
def _record_weights_callback():
    from edge_prune.training._tf import keras

    class RecordWeights(keras.callbacks.Callback):
        """Keep ``model.get_weights()`` at the end of epoch ``epoch`` (0: before training)."""

        def __init__(self, epoch: int):
            super().__init__()
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
                raise ConfigError(f"epoch: got {epoch!r}, expected an integer >= 0")
            self.epoch = epoch
            self.weights: list[np.ndarray] | None = None

        def on_train_begin(self, logs=None):
            if self.epoch == 0:
                self.weights = [w.copy() for w in self.model.get_weights()]

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == self.epoch:
                self.weights = [w.copy() for w in self.model.get_weights()]

    return RecordWeights


def record_weights(epoch: int):
    """A Keras callback whose ``.weights`` holds ``model.get_weights()`` at the end of epoch
    ``epoch`` (0: before training), for :func:`rewind`. Pass it to the dense ``model.fit``."""
    return _record_weights_callback()(epoch)


def rewind(
    pruned: tf_keras.Model, early_weights: Sequence[np.ndarray]
) -> tuple[tf_keras.Model, list[np.ndarray | None]]:
    """A copy of ``pruned`` whose weights are ``early_weights`` where ``pruned`` is non-zero.

    ``early_weights`` is ``model.get_weights()`` of the same architecture early in training.
    Returns the copy and the masks (1 = kept) of the kernels (None for weights that carry no
    mask: biases and other 1-D weights). Raises UnsupportedModelError on a shape mismatch, e.g.
    early weights of the model before channel removal.
    """
    from edge_prune.training.train import copy_model

    current = pruned.get_weights()
    if len(current) != len(early_weights):
        raise UnsupportedModelError(
            f"rewind: the pruned model has {len(current)} weight arrays, the early model "
            f"{len(early_weights)}; they must be the same architecture"
        )
    rewound, masks = [], []
    for index, (now, early) in enumerate(zip(current, early_weights, strict=True)):
        if now.shape != early.shape:
            raise UnsupportedModelError(
                f"rewind: weight {index} has shape {now.shape} in the pruned model and "
                f"{early.shape} in the early model; they must be the same architecture"
            )
        if now.ndim >= _MASKED_MIN_DIMENSIONS:
            mask = (now != 0).astype(now.dtype)
            rewound.append(early * mask)
            masks.append(mask)
        else:
            rewound.append(early.copy())
            masks.append(None)
    model = copy_model(pruned)
    model.set_weights(rewound)
    return model, masks


def fixed_mask_callback(masks: Sequence[np.ndarray | None]):
    """A Keras callback that multiplies each weight by its mask (from :func:`rewind`) after every
    training batch: weights pruned to zero stay zero while the others train."""
    from edge_prune.training._tf import keras

    class FixedMask(keras.callbacks.Callback):
        """Re-apply the pruning mask after every batch, so pruned weights stay zero."""

        def on_train_batch_end(self, batch, logs=None):
            for variable, mask in zip(self.model.weights, masks, strict=True):
                if mask is not None:
                    variable.assign(variable * mask)

    return FixedMask()


def retrain_with_fixed_mask(
    model: tf_keras.Model,
    masks: Sequence[np.ndarray | None],
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    progress: Progress,
) -> tf_keras.Model:
    """Train ``model`` in place for ``epochs`` with the zeros of ``masks`` held; returns it."""
    from edge_prune.training.train import compile_for_training, fit

    if len(masks) != len(model.weights):
        raise ConfigError(
            f"masks: got {len(masks)}, expected one per model weight ({len(model.weights)})"
        )
    compile_for_training(model, learning_rate, data)
    fit(
        model,
        data,
        batch_size=batch_size,
        epochs=epochs,
        stage="rewound retrain",
        progress=progress,
        callbacks=(fixed_mask_callback(masks),),
    )
    return model
