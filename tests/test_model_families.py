"""One tiny seeded model per family users bring, through the whole Keras-side path.

Each model goes through count_costs (never raises), prune_channels where it applies, prune +
strip with the public API, int8 conversion with batch 1, and a run on the real TFLM interpreter
whose outputs must agree with Keras within a few int8 output steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import (
    make_autoencoder,
    make_ds_cnn,
    make_lstm,
    make_mobilenet_block,
    make_sensor_conv1d,
)

import edge_prune as ep
from edge_prune.measurement import tflm
from edge_prune.training._tf import keras

SAMPLES = 32
SPARSITY = 0.5
# Agreement with Keras, in int8 output steps: input, weight and activation rounding over a few
# layers (the integer LSTM kernel included, its state reset before every sample).
STEPS = 12
# name: (builder, prune_depthwise, layer expected to lose channels (None: none), output steps)
FAMILIES = {
    "conv1d_sensor": (make_sensor_conv1d, False, "conv1", STEPS),
    "lstm": (make_lstm, False, None, STEPS),
    "ds_cnn": (make_ds_cnn, True, "conv", STEPS),
    "dense_autoencoder": (make_autoencoder, False, "enc1", STEPS),
    "mobilenet_block": (make_mobilenet_block, True, "expand", STEPS),
}


def _data(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, *model.input_shape[1:])).astype(np.float32)
    y = rng.normal(size=(SAMPLES, *model.output_shape[1:])).astype(np.float32)
    return x, y


def _quantize(x: np.ndarray, tensor) -> np.ndarray:
    values = np.round(x / tensor.scale[0] + tensor.zero_point[0])
    return np.clip(values, -128, 127).astype(np.int8)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_family_counts_prunes_converts_and_runs_on_tflm(family):
    build, prune_depthwise, shrinking, steps = FAMILIES[family]
    model = build()
    x, y = _data(model)

    cost = ep.count_costs(model)
    assert cost.not_counted == ()
    assert cost.total_macs > 0

    channels = ep.prune_channels(model, 0.25)
    if shrinking is None:
        assert {s.reason for s in channels.skipped} >= {"recurrent layer kept whole"}
    else:
        kept = next(layer for layer in channels.layers if layer.name == shrinking)
        assert kept.kept < kept.total
        assert channels.params_after < channels.params_before
    assert channels.model.predict(x[:2], verbose=0).shape == (2, *model.output_shape[1:])

    pruned = ep.prune(
        model,
        ep.PruningSchedule.constant_sparsity(SPARSITY, frequency=1),
        optimizer=keras.optimizers.Adam(1e-3),
        loss="mse",
        prune_depthwise=prune_depthwise,
    )
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    small = ep.strip(pruned)
    kernels = [r for r in ep.sparsity_report(small).rows if "kernel" in r.weight]
    assert min(r.sparsity for r in kernels if r.layer in pruned.pruned_layers) >= SPARSITY - 0.05

    converted = ep.convert(small, quantization="int8", representative_data=x)
    info = ep.read_model(converted.tflite_bytes)
    source, sink = info.input_tensors[0], info.output_tensors[0]
    assert source.shape[0] == 1
    assert not {"REDUCE_PROD", "WHILE", "SHAPE"} & set(info.operators)

    raw = tflm.run(converted.tflite_bytes, _quantize(x[:8], source))
    got = (raw.reshape(8, -1).astype(np.float32) - sink.zero_point[0]) * sink.scale[0]
    expected = small.predict(x[:8], verbose=0).reshape(8, -1)
    assert np.abs(got - expected).max() <= steps * sink.scale[0], family


def test_a_recurrent_model_starts_every_sample_from_a_fresh_state_on_tflm():
    # A converted LSTM keeps its state in variable tensors between Invoke() calls; without a
    # reset, sample n would start from sample n-1's state and one-by-one runs would differ.
    model = make_lstm()
    x, _ = _data(model)
    tflite = ep.convert(model, quantization="float").tflite_bytes
    together = tflm.run(tflite, x[:4])
    one_by_one = np.concatenate([tflm.run(tflite, x[i : i + 1]) for i in range(4)])
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_allclose(
        together.reshape(4, -1), model.predict(x[:4], verbose=0).reshape(4, -1), atol=1e-4
    )
