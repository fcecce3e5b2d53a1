"""Tiny seeded tf_keras models and synthetic data for fast tests (shared by test files).

The data is learnable: each class is a fixed random 8x8 prototype plus noise, so a few dozen
training steps give a model whose outputs mean something (quantization checks need that).
"""

from __future__ import annotations

import numpy as np

from edge_prune.training._tf import keras

INPUT_SHAPE = (8, 8, 1)
NUM_CLASSES = 10
MLP_FEATURES = 16


def make_cnn(seed: int = 0, name: str = "tiny_cnn") -> keras.Model:
    """Sequential CNN on 8x8x1 with 10 logits: conv2d (3x3x1x8), dense_hidden (288x32), logits."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2d"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="dense_hidden"),
            keras.layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name=name,
    )


def make_mlp(seed: int = 0, features: int = MLP_FEATURES, name: str = "tiny_mlp") -> keras.Model:
    """Functional MLP: ``features`` inputs → dense_1 (64) → dense_2 (32) → logits (10)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,), name="features")
    h = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    h = keras.layers.Dense(32, activation="relu", name="dense_2")(h)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def make_images(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images (n, 8, 8, 1) in [0, 1], int64 labels 0-9: class prototypes + noise."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1234).random((NUM_CLASSES, *INPUT_SHAPE))
    labels = rng.integers(0, NUM_CLASSES, n)
    noise = rng.normal(0.0, 0.15, (n, *INPUT_SHAPE))
    images = np.clip(prototypes[labels] + noise, 0.0, 1.0).astype(np.float32)
    return images, labels.astype(np.int64)


def make_features(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 feature vectors (n, 16) and int64 labels 0-9, class prototypes + noise."""
    images, labels = make_images(n, seed)
    return images.reshape(n, -1)[:, :MLP_FEATURES].copy(), labels


def compile_for_classes(model: keras.Model, learning_rate: float = 1e-2) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def trained_cnn(seed: int = 0, epochs: int = 3) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A CNN trained briefly on :func:`make_images` (deterministic), with its data."""
    x, y = make_images(seed=seed)
    model = compile_for_classes(make_cnn(seed))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    return model, x, y


# --- one tiny model per family users bring (seeded, a few hundred weights each) --------------


def make_sensor_conv1d(seed: int = 0) -> keras.Model:
    """Conv1D sensor model on 32 steps x 3 axes: conv1 → pool → conv2 → GAP → 4 classes."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 3)),
            layers.Conv1D(8, 5, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling1D(2, name="pool"),
            layers.Conv1D(8, 3, activation="relu", name="conv2"),
            layers.GlobalAveragePooling1D(name="gap"),
            layers.Dense(4, name="logits"),
        ],
        name="sensor_conv1d",
    )


def make_lstm(seed: int = 0) -> keras.Model:
    """LSTM on 10 steps x 3 features: lstm (8 units) → 4 classes."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((10, 3)),
            keras.layers.LSTM(8, name="lstm"),
            keras.layers.Dense(4, name="logits"),
        ],
        name="tiny_lstm",
    )


def make_ds_cnn(seed: int = 0) -> keras.Model:
    """DS-CNN block on 12x12x1: Conv2D+BN+ReLU → DepthwiseConv2D+BN+ReLU → pointwise → GAP."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw"),
            layers.BatchNormalization(name="bn2"),
            layers.ReLU(name="relu2"),
            layers.Conv2D(16, 1, activation="relu", name="pw"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(4, name="logits"),
        ],
        name="ds_cnn",
    )


def make_autoencoder(seed: int = 0, features: int = 16) -> keras.Model:
    """Dense autoencoder (regression output): 16 → 8 → 4 → 8 → 16."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,), name="features")
    h = keras.layers.Dense(8, activation="relu", name="enc1")(inputs)
    h = keras.layers.Dense(4, activation="relu", name="code")(h)
    h = keras.layers.Dense(8, activation="relu", name="dec1")(h)
    outputs = keras.layers.Dense(features, name="reconstruction")(h)
    return keras.Model(inputs, outputs, name="autoencoder")


def make_mobilenet_block(seed: int = 0) -> keras.Model:
    """MobileNetV2-like inverted residual on 8x8x8: expand 1x1 → depthwise 3x3 → project 1x1,
    added to its input, → GAP → 4 classes."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    stem = layers.Conv2D(8, 3, padding="same", activation="relu6", name="stem")(inputs)
    x = layers.Conv2D(16, 1, activation="relu6", name="expand")(stem)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    x = layers.Conv2D(8, 1, name="project")(x)
    x = layers.Add(name="residual")([stem, x])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_block")


def zero_smallest(model, fraction: float) -> None:
    """Stand-in for a pruned + stripped model: zero the smallest kernel weights of each layer."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel = weights[0]
        kernel[np.abs(kernel) < np.quantile(np.abs(kernel), fraction)] = 0.0
        layer.set_weights([kernel, *weights[1:]])
