"""Regenerate the tiny .tflite fixtures in this directory (needs TensorFlow; the tests do not).

    .venv/bin/python tests/data/make_models.py

Writes, seeded and deterministic for a given TensorFlow version (2.21.0 made the committed ones):

- ``mlp_float.tflite``: float32 MLP 16-32-4 (FULLY_CONNECTED, SOFTMAX).
- ``cnn_int8.tflite``: int8 CNN on 12x12x1 (CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, RESHAPE,
  FULLY_CONNECTED, SOFTMAX), int8 input and output, calibrated on 16 seeded random samples.
- ``sparse_float.tflite``: float32 Dense 64-64 with 90% zero weights, converted with
  ``EXPERIMENTAL_SPARSITY``: the weights are stored sparse and a DENSIFY op is inserted, which
  TFLM has no kernel for.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_prune._tf import keras, tf

HERE = Path(__file__).resolve().parent
SEED = 7


def _write(name: str, data: bytes) -> None:
    path = HERE / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    print(f"{path.name}: {len(data)} bytes")


def mlp_float() -> bytes:
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def cnn_int8() -> bytes:
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.DepthwiseConv2D(3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="softmax"),
        ]
    )
    samples = np.random.default_rng(SEED).uniform(0, 1, (16, 12, 12, 1)).astype(np.float32)

    def representative():
        for sample in samples:
            yield [sample[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def sparse_float() -> bytes:
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    kernel, bias = model.layers[0].get_weights()
    mask = np.random.default_rng(SEED).uniform(size=kernel.shape) < 0.1
    model.layers[0].set_weights([kernel * mask, bias])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


if __name__ == "__main__":
    _write("mlp_float.tflite", mlp_float())
    _write("cnn_int8.tflite", cnn_int8())
    _write("sparse_float.tflite", sparse_float())
