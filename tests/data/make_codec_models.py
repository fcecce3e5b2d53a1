"""Regenerate the codec test fixtures in this directory (needs TensorFlow; the tests do not).

    PYTHONPATH=. .venv/bin/python tests/data/make_codec_models.py

Writes, seeded (TensorFlow 2.21.0 made the committed ones):

- ``codecs_cnn_per_channel.tflite``: int8 CNN on 8x8x1 trained briefly on the synthetic
  prototypes of ``tests/tiny_models.py``: conv2d 3x3x1x8 (quantized along axis 0),
  depthwise 3x3 x2 (quantized along the last axis), dense 32, logits 10; 80% of each kernel's
  smallest weights set to zero (a stand-in for pruning), default per-channel quantization.
- ``codecs_cnn_per_tensor.tflite``: the same model with per-tensor quantization everywhere.
- ``codecs_heldout.npy``: 48 float32 images the model was not calibrated on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tiny_models import compile_for_classes, make_images  # noqa: E402

from edge_prune._tf import keras, tf  # noqa: E402

PRUNED_FRACTION = 0.8


def _write(name: str, data: bytes) -> None:
    path = HERE / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    print(f"{path.name}: {len(data)} bytes")


def trained_model(x, y):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2d"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", name="dw"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="dense_hidden"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    compile_for_classes(model).fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), PRUNED_FRACTION)] = 0.0
            layer.set_weights([kernel, *weights[1:]])
    return model


def int8(model, x, per_channel: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in x[:64])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not per_channel
    return converter.convert()


def main() -> None:
    x, y = make_images(n=256, seed=0)
    model = trained_model(x, y)
    _write("codecs_cnn_per_channel.tflite", int8(model, x, per_channel=True))
    _write("codecs_cnn_per_tensor.tflite", int8(model, x, per_channel=False))
    heldout, _ = make_images(n=48, seed=1)
    np.save(HERE / "codecs_heldout.npy", heldout)
    print("codecs_heldout.npy: 48 images")


if __name__ == "__main__":
    main()
