"""int4 weights: 4-bit QAT, the converter's packed INT4 kernels, TFLM runs, zeros kept, the
arena a CMSIS-NN target counts, and DECODE never touching INT4 tensors."""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.measurement import int4, tflm


def test_pack_and_unpack_are_inverse_and_low_nibble_first():
    values = np.random.default_rng(0).integers(-8, 8, 101).astype(np.int8)
    assert np.array_equal(int4.unpack(int4.pack(values), 101), values)
    assert int4.pack(np.array([1, -1], dtype=np.int8)) == bytes([0xF1])


@pytest.fixture(scope="module")
def int4_models():
    """A pruned conv + dense model, 4-bit QAT for one epoch, converted; and its int8 twin."""
    from edge_prune.training._tf import keras
    from edge_prune.training.convert import convert
    from edge_prune.training.int4 import quantize_int4

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((128, 8, 8, 1), dtype=np.float32)
    y = (x.reshape(128, -1).mean(axis=1) > 0.5).astype(np.int64)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    for layer in model.layers:  # prune half of every kernel by magnitude
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            cut = np.quantile(np.abs(kernel), 0.5)
            layer.set_weights([np.where(np.abs(kernel) <= cut, 0, kernel), bias])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = quantize_int4(model, x, y, epochs=1, loss=loss)
    tflite = convert(result.model, quantization="int8", representative_data=x).tflite_bytes
    return result, tflite, x


def test_converter_writes_int4_kernels_conv_per_channel_dense_per_tensor(int4_models):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    result, tflite, _ = int4_models
    assert result.method == "qat" and result.int4_layers == ("conv", "fc", "out")
    kernels = [
        t for sg in model_editor.read(tflite).subgraphs for t in sg.tensors if t.dtype == int4.INT4
    ]
    assert len(kernels) == 3
    scales = sorted(len(t.quantization.scales) for t in kernels)
    assert scales == [1, 1, 4]  # two Dense per tensor, the Conv2D per output channel
    for t in int4.int4_tensors(tflite):
        assert t.values.min() >= -7 and t.values.max() <= 7  # narrow range, zero point 0


def test_pruned_zeros_stay_zero_through_the_fine_tune_and_the_converter(int4_models):
    result, tflite, _ = int4_models
    zeros = sum(int((t.values == 0).sum()) for t in int4.int4_tensors(tflite))
    assert result.zeros_before > 0
    assert zeros >= result.zeros_before


def test_unpacked_twin_gives_the_same_outputs_without_the_unpack_buffers(int4_models):
    _, tflite, x = int4_models
    twin = int4.unpacked_twin(tflite)
    assert not int4.has_int4(twin) and int4.has_int4(tflite)
    quantized = np.clip(np.round(x[:16] / (1 / 255)) - 128, -128, 127).astype(np.int8)
    assert np.array_equal(tflm.run(tflite, quantized), tflm.run(twin, quantized))
    packed, unpacked = tflm.measure_arena(tflite), tflm.measure_arena(twin)
    # the reference kernels unpack the largest filter (fc: 144 x 16) into arena scratch
    assert packed.recorded_head_bytes >= 144 * 16 > unpacked.recorded_head_bytes


def test_decode_compression_is_never_offered_int4_tensors(int4_models):
    from edge_prune.measurement.codecs import compress_for_mcu

    _, tflite, _ = int4_models
    result = compress_for_mcu(tflite, min_tensor_bytes=1)
    assert int4.has_int4(result.tflite_bytes)  # left as they were: DECODE refuses INT4


def test_instruction_costs_key_int4_filters_apart(int4_models):
    from edge_prune.measurement.instructions import operator_work

    _, tflite, _ = int4_models
    keys = {c.key for op in operator_work(tflite) for c in op}
    assert {"CONV_2D:int8+int4", "FULLY_CONNECTED:int8+int4"} <= keys


def test_a_cmsis_nn_verdict_counts_the_packed_arena_a_reference_one_the_unpacked(int4_models):
    """CMSIS-NN computes on the packed INT4 weights: its arena is derived without the buffers
    the reference kernels unpack them into (the reference-kernel verdict keeps them)."""
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.targets import load_target

    _, tflite, _ = int4_models
    footprint = measure(tflite)
    m4, m7 = load_target("cortex-m4"), load_target("cortex-m7")  # CMSIS-NN, reference
    cmsis, reference = verdict_for(footprint, m4), verdict_for(footprint, m7)
    unpacked = sum(r.bytes for r in cmsis.kernel_arena.reference_scratch)
    assert unpacked > 0 and cmsis.kernel_arena.head_extra_bytes < 0
    assert cmsis.arena_bytes < reference.arena_bytes / 2
    assert reference.arena_bytes == footprint.arena.verdict_bytes


def test_the_converters_int4_model_runs_on_the_int4_sparse_kernels(int4_models):
    """int4-pruned's rewrite on the converter's own INT4 model: every layer on the int4 ops
    (Conv2D per channel, Dense per tensor), valid, and on TFLM exactly the dense model's
    outputs (needs g++ and a TFLM tree for the host library; else that part is skipped)."""
    from edge_prune.errors import EdgePruneError
    from edge_prune.measurement.sparse import native
    from edge_prune.measurement.sparse.rewrite import rewrite, verify

    _, tflite, x = int4_models
    sparse = rewrite(tflite, force=True)
    assert [layer.int4 for layer in sparse.sparse_layers] == [True, True, True]
    assert b"EDGE_PRUNE_SPARSE_CONV_INT4" in sparse.model
    assert b"EDGE_PRUNE_SPARSE_FC_INT4" in sparse.model
    assert verify(sparse.model) == 3
    try:
        native.host_library()
    except EdgePruneError as e:
        pytest.skip(f"the host library of the sparse kernels cannot be built: {e}")
    q = np.random.default_rng(2).integers(-128, 128, (32, *x.shape[1:])).astype(np.int8)
    np.testing.assert_array_equal(tflm.run(sparse.model, q), tflm.run(tflite, q))
