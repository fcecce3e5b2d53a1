"""Lottery-ticket rewinding: after pruning, reset the surviving weights to early training values.

Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
ICLR 2019: train, prune by magnitude, reset the weights that survive to their values from an
early point of training, and retrain with the pruning mask held fixed. Frankle, Dziugaite, Roy
& Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020, show that on
larger networks rewinding to an early epoch k > 0 works where rewinding to initialisation fails.

- :func:`record_weights` gives a Keras callback that keeps the weights at the end of epoch k
  (epoch 0 = before training) during the dense training.
- :func:`early_model` trains a fresh copy for k epochs instead, from the same seed: with op
  determinism on, that is the dense run's state after k epochs.
- :func:`rewind` returns the pruned model with its non-zero weights replaced by the early ones
  (a weight pruned to zero stays zero) and :func:`retrain_with_fixed_mask` retrains it with the
  zeros re-applied after every batch.
- :data:`REWIND` is the pipeline stage (after ``prune``): it reads ``models["early"]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.runner import Progress, Stage

if TYPE_CHECKING:
    import tf_keras

    from edge_prune.data import Dataset
    from edge_prune.pipeline import BuildState, Inputs

__all__ = [
    "REWIND",
    "early_model",
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
    from edge_prune._tf import keras

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


def early_model(inputs: Inputs, epochs: int, progress: Progress) -> tf_keras.Model:
    """The dense model after ``epochs`` epochs of the ``train`` stage's seeded training."""
    from edge_prune.pipeline import load_or_build_model
    from edge_prune.train import compile_for_training, fit, seed_everything

    config = inputs.config
    if not 0 <= epochs <= config.train.epochs:
        raise ConfigError(
            f"rewind epoch: got {epochs}, expected 0 to train.epochs ({config.train.epochs})"
        )
    seed_everything(config.train.seed)
    model = load_or_build_model(inputs)
    compile_for_training(model, config.train.learning_rate, inputs.data)
    fit(
        model,
        inputs.data,
        batch_size=config.train.batch_size,
        epochs=epochs,
        stage=f"dense to epoch {epochs} (rewind point)",
        progress=progress,
    )
    return model


def rewind(
    pruned: tf_keras.Model, early_weights: Sequence[np.ndarray]
) -> tuple[tf_keras.Model, list[np.ndarray | None]]:
    """A copy of ``pruned`` whose weights are ``early_weights`` where ``pruned`` is non-zero.

    ``early_weights`` is ``model.get_weights()`` of the same architecture early in training.
    Returns the copy and the masks (1 = kept) of the kernels (None for weights that carry no
    mask: biases and other 1-D weights). Raises UnsupportedModelError on a shape mismatch, e.g.
    early weights of the model before channel removal.
    """
    from edge_prune.train import copy_model

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
    from edge_prune._tf import keras

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
    from edge_prune.train import compile_for_training, fit

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


def rewind_stage(state: BuildState, progress: Progress) -> BuildState:
    """Rewind the pruned model's surviving weights to ``models["early"]`` and retrain them."""
    from edge_prune.prune import sparsity_report
    from edge_prune.train import keras_score

    config, data = state.config, state.inputs.data
    if "early" not in state.models:
        raise ConfigError("rewind: no early model recorded (models['early']) to rewind to")
    if "structured" in state.models:
        raise ConfigError(
            "rewind: the early weights are those of the dense model; rewinding after channel "
            "removal (structured.ratio > 0) is not supported"
        )
    model, masks = rewind(state.models["pruned"], state.models["early"].get_weights())
    retrain_with_fixed_mask(
        model,
        masks,
        data,
        epochs=config.prune.epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.learning_rate,
        progress=progress,
    )
    score = keras_score(model, data)
    sparsity = sparsity_report(model)
    progress(
        f"  rewound and retrained: {sparsity.sparsity:.1%} sparse, Keras {state.metric.name} "
        f"{state.metric.format(score)}"
    )
    return state.with_pruned(model, sparsity, score)


REWIND = Stage(
    "rewind",
    rewind_stage,
    "rewinding the surviving weights to the early model; retraining with the mask fixed",
)
