"""Training helpers shared by the stages: the bundled model, compile, fit with progress, seeding.

Everything here needs TensorFlow and imports it (through :mod:`edge_prune.training._tf`) when
called.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.data import Dataset
from edge_prune.errors import DataError
from edge_prune.runner import Progress
from edge_prune.training.model_io import compile_not_restored

if TYPE_CHECKING:
    import tf_keras


def default_model(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
    """The bundled example: a small CNN (two 3x3 convolutions, one hidden dense layer)."""
    from edge_prune.training._tf import keras

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
    if not data.is_classification:
        produced = tuple(model.output_shape[1:])
        if int(np.prod([d or 0 for d in produced])) != data.num_classes:
            raise DataError(
                f"{data.source}: targets have shape {data.target_shape} but the model {label} "
                f"outputs {produced}"
            )
        return
    outputs = model.output_shape[-1]
    if outputs is not None and data.num_classes > outputs:
        raise DataError(
            f"{data.source}: labels go up to {data.num_classes - 1} but the model {label} "
            f"has {outputs} outputs"
        )


class EpochProgress:
    """A tf_keras callback printing one line per epoch: ``stage: epoch 3/12 loss … (0.7 s)``."""

    def __new__(cls, stage: str, progress: Progress):
        from edge_prune.training._tf import keras

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


def loss_for(model: tf_keras.Model, data: Dataset | None = None):
    """Mean squared error for regression data; else sparse categorical cross-entropy, on
    logits unless the last layer is a softmax."""
    from edge_prune.training._tf import keras

    if data is not None and not data.is_classification:
        return keras.losses.MeanSquaredError()
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # inside a pruning or clustering wrapper
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    softmax_out = activation == "softmax" or type(last).__name__ == "Softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax_out)


def metrics_for(data: Dataset) -> list[str]:
    return ["accuracy"] if data.is_classification else ["mae"]


def compile_for_training(model: tf_keras.Model, learning_rate: float, data: Dataset) -> None:
    """Adam at ``learning_rate`` with the loss the data calls for (see :func:`loss_for`)."""
    from edge_prune.training._tf import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss_for(model, data),
        metrics=metrics_for(data),
    )


def compile_as_the_user_did(model: tf_keras.Model, learning_rate: float, data: Dataset) -> str:
    """Recompile with the model's own optimizer (a fresh copy) and loss when it was saved
    compiled; else :func:`compile_for_training`. Returns which, for the report."""
    from edge_prune.training._tf import keras

    optimizer, loss = getattr(model, "optimizer", None), getattr(model, "loss", None)
    if optimizer is None or loss is None:
        compile_for_training(model, learning_rate, data)
        why = compile_not_restored(model)
        return (
            f"edge-prune's compile settings: Adam({learning_rate:g}), "
            f"{type(loss_for(model, data)).__name__}"
            + (f" (its own could not be restored: {why})" if why else "")
        )
    fresh = keras.optimizers.get(
        {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
    )
    model.compile(optimizer=fresh, loss=loss, metrics=metrics_for(data))
    name = loss if isinstance(loss, str) else type(loss).__name__
    return f"its own compile settings: {type(optimizer).__name__}, loss {name}"


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


def keras_score(model: tf_keras.Model, data: Dataset, *, split: str = "test") -> float:
    """The data's metric (:func:`edge_prune.measurement.metrics.metric_for`) of a Keras model on a
    split."""
    from edge_prune.measurement.metrics import metric_for

    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return metric_for(y).score(model.predict(x, batch_size=256, verbose=0), y)


def reestimate_batchnorm(model: tf_keras.Model, x: np.ndarray, batch_size: int = 256) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the statistics of its
    input over ``x``, layer by layer in graph order (each later layer sees the earlier ones
    already corrected). Returns how many layers were updated.

    Moving averages lag behind the weights: after a few hundred samples of training, or after
    channels were removed or weights pruned, they describe a network that no longer exists,
    and the held-out accuracy can fall to chance although training accuracy is high.
    """
    from edge_prune.training._tf import keras

    if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        return 0
    # A stripped pruning/clustering wrapper leaves layers that belong to two graphs; a fresh
    # clone has one, so probing a layer's input there is unambiguous.
    clone = copy_model(model)
    updated = 0
    for layer, original in zip(clone.layers, model.layers, strict=True):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(clone.inputs, layer.input)
        values = probe.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)
        axes = tuple(a for a in range(values.ndim) if a != (layer.axis[0] % values.ndim))
        weights = layer.get_weights()
        statistics = [values.mean(axis=axes), values.var(axis=axes)]
        layer.set_weights([*weights[:-2], *statistics])
        original.set_weights([*weights[:-2], *statistics])
        updated += 1
    return updated


def copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """An independent copy of a tf_keras model: same architecture and weights, new variables."""
    from edge_prune.training._tf import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def seed_everything(seed: int) -> None:
    from edge_prune.training._tf import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
