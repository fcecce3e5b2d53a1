"""Training helpers shared by the stages: the bundled model, compile, fit with progress, seeding.

Everything here needs TensorFlow and imports it (through :mod:`edge_prune._tf`) when called.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.data import Dataset
from edge_prune.errors import DataError
from edge_prune.runner import Progress

if TYPE_CHECKING:
    import tf_keras


def default_model(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
    """The bundled example: a small CNN (two 3x3 convolutions, one hidden dense layer)."""
    from edge_prune._tf import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def check_model_fits_data(model: tf_keras.Model, data: Dataset, label: str) -> None:
    """The model's input shape and output width agree with the data; raises DataError."""
    expected = tuple(model.input_shape[1:])
    if len(expected) != len(data.input_shape) or any(
        e is not None and e != d for e, d in zip(expected, data.input_shape, strict=False)
    ):
        raise DataError(
            f"{data.source}: samples have shape {data.input_shape} but the model {label} "
            f"expects {expected}"
        )
    outputs = model.output_shape[-1]
    if outputs is not None and data.num_classes > outputs:
        raise DataError(
            f"{data.source}: labels go up to {data.num_classes - 1} but the model {label} "
            f"has {outputs} outputs"
        )


class EpochProgress:
    """A tf_keras callback printing one line per epoch: ``stage: epoch 3/12 loss … (0.7 s)``."""

    def __new__(cls, stage: str, progress: Progress):
        from edge_prune._tf import keras

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                metrics = " ".join(f"{k} {v:.4f}" for k, v in logs.items())
                took = time.perf_counter() - self._start
                total = self.params.get("epochs", "?")
                progress(f"  {stage}: epoch {epoch + 1}/{total} {metrics} ({took:.1f} s)")

        return _Callback()


def loss_for(model: tf_keras.Model):
    """Sparse categorical cross-entropy, on logits unless the last layer is a softmax."""
    from edge_prune._tf import keras

    last = model.layers[-1]
    last = getattr(last, "layer", last)  # inside a pruning or clustering wrapper
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    softmax_out = activation == "softmax" or type(last).__name__ == "Softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax_out)


def compile_for_training(model: tf_keras.Model, learning_rate: float) -> None:
    from edge_prune._tf import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss_for(model),
        metrics=["accuracy"],
    )


def fit(
    model: tf_keras.Model,
    data: Dataset,
    *,
    batch_size: int,
    epochs: int,
    stage: str,
    progress: Progress,
    callbacks: tuple = (),
) -> None:
    """``model.fit`` on the training split with one progress line per epoch; 0 epochs: no-op."""
    if epochs <= 0:
        return
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[*callbacks, EpochProgress(stage, progress)],
    )


def keras_accuracy(model: tf_keras.Model, data: Dataset) -> float:
    """Top-1 accuracy of a Keras model on the held-out split."""
    probabilities = model.predict(data.x_test, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == data.y_test))


def copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """An independent copy of a tf_keras model: same architecture and weights, new variables."""
    from edge_prune._tf import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def seed_everything(seed: int) -> None:
    from edge_prune._tf import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
