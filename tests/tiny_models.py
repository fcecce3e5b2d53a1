"""Tiny seeded tf_keras models and synthetic data for fast tests (shared by test files).

The data is learnable: each class is a fixed random 8x8 prototype plus noise, so a few dozen
training steps give a model whose outputs mean something (quantization checks need that).
"""

from __future__ import annotations

import numpy as np

from edge_prune._tf import keras

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
