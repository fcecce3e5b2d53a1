"""Regenerate the int8 models the CMSIS-NN arena derivation is checked on (needs TensorFlow; the
tests do not).

    PYTHONPATH=. .venv/bin/python tests/data/make_arena_models.py

Writes, seeded and deterministic for a given TensorFlow version (2.21.0 made the committed ones),
untrained (random weights, calibrated on 16 seeded random samples), int8 input and output:

- ``resnet8_int8.tflite``: the ResNet-8 of MLPerf Tiny's image classification benchmark
  (32x32x3, three residual stacks of 16/32/64 filters with strided 1x1 shortcuts: CONV_2D, ADD,
  AVERAGE_POOL_2D, FULLY_CONNECTED, SOFTMAX).
- ``ds_cnn_int8.tflite``: a small depthwise-separable keyword-spotting CNN (49x10x1: a 10x4
  stride-2 convolution, 3x3 and 5x5 depthwise convolutions with 1x1 pointwise ones, average
  pooling, FULLY_CONNECTED).
- ``conv1d_int8.tflite``: 1xN convolutions over a 1x64x8 sequence (the CMSIS-NN 1_x_n path)
  and a FULLY_CONNECTED head.
- ``gru_int8.tflite``: a sensor-style GRU(16) over 8 steps of 8 channels and a softmax Dense
  head, converted as ``edge-prune`` converts (batch of one: the converter unrolls the GRU into
  115 builtin ops, FULLY_CONNECTED, ADD, MUL, SUB, LOGISTIC, TANH, SPLIT, SPLIT_V, UNPACK;
  per-channel Dense). Its 153 planned tensors make the memory planner's arrays, not the
  tensors, set the arena (see ``_PLANNER_BYTES_PER_BUFFER`` in edge_prune/measurement/tflm.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_prune.training._tf import keras, tf

HERE = Path(__file__).resolve().parent
SEED = 11


def _write(name: str, data: bytes) -> None:
    path = HERE / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    print(f"{path.name}: {len(data)} bytes")


def _int8(model, shape: tuple[int, ...]) -> bytes:
    samples = np.random.default_rng(SEED).uniform(0, 1, (16, *shape)).astype(np.float32)

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


def _residual(x, filters: int, stride: int):
    layers = keras.layers
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    if stride != 1:
        x = layers.Conv2D(filters, 1, strides=stride)(x)
    return layers.Activation("relu")(layers.Add()([x, y]))


def resnet8() -> bytes:
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = _residual(x, 16, 1)
    x = _residual(x, 32, 2)
    x = _residual(x, 64, 2)
    x = layers.AveragePooling2D(8)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return _int8(keras.Model(inputs, outputs), (32, 32, 3))


def ds_cnn() -> bytes:
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((49, 10, 1))
    x = layers.Conv2D(32, (10, 4), strides=2, padding="same", activation="relu")(inputs)
    for kernel in (3, 5):
        x = layers.DepthwiseConv2D(kernel, padding="same", activation="relu")(x)
        x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.AveragePooling2D(x.shape[1:3])(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(12, activation="softmax")(x)
    return _int8(keras.Model(inputs, outputs), (49, 10, 1))


def conv1d() -> bytes:
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((1, 64, 8))
    x = layers.Conv2D(16, (1, 5), padding="same", activation="relu")(inputs)
    x = layers.Conv2D(16, (1, 3), strides=(1, 2), activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    outputs = layers.Dense(4, activation="softmax")(x)
    return _int8(keras.Model(inputs, outputs), (1, 64, 8))


def gru() -> bytes:
    from edge_prune.training.convert import convert

    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((8, 8))
    x = layers.GRU(16)(inputs)
    outputs = layers.Dense(4, activation="softmax")(x)
    samples = np.random.default_rng(SEED).uniform(0, 1, (16, 8, 8)).astype(np.float32)
    model = keras.Model(inputs, outputs)
    return convert(model, quantization="int8", representative_data=samples).tflite_bytes


if __name__ == "__main__":
    _write("resnet8_int8.tflite", resnet8())
    _write("ds_cnn_int8.tflite", ds_cnn())
    _write("conv1d_int8.tflite", conv1d())
    _write("gru_int8.tflite", gru())
