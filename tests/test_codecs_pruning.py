"""Pruning bitmask codec (DECODE type 2): layout, reference decoder, and outputs on TFLM."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.measurement import tflm
from edge_prune.measurement.codecs import _tflm, pruning
from edge_prune.measurement.codecs.registry import CODECS

MODELS = ("codecs_cnn_per_channel.tflite", "codecs_cnn_per_tensor.tflite")


def model_inputs(model_bytes: bytes) -> np.ndarray:
    """48 held-out images quantized to the model's int8 input, then 48 seeded random inputs."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    q = model_editor.read(model_bytes).subgraphs[0].inputs[0].quantization
    scale, zero_point = float(np.ravel(q.scales)[0]), int(np.ravel(q.zero_points)[0])
    images = np.load(DATA_DIR / "codecs_heldout.npy")
    heldout = np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)
    random = np.random.default_rng(0).integers(-128, 128, heldout.shape).astype(np.int8)
    return np.concatenate([heldout, random])


def compress_every_constant(model_bytes: bytes, method, dtypes) -> bytes:
    """TFLM's own compress() with the given method on every constant tensor of ``dtypes``."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    _tflm.register(CODECS.values())
    tensors = model_editor.read(model_bytes).subgraphs[0].tensors
    keys = [
        (0, t.index)
        for t in tensors
        if t.buffer is not None and len(t.buffer.data) and _tflm.dtype_name(t) in dtypes
    ]
    return _tflm.build(model_bytes, dict.fromkeys(keys, method), "test")


def test_mask_is_msb_first_and_values_follow_the_metadata():
    values = np.array([0, 5, 0, 0, 0, 0, 0, 0, -7], dtype=np.int8)

    encoded, ancillary = pruning.encode(values, np.zeros(9, dtype=np.int64))

    assert encoded == bytes([0b0100_0000, 0b1000_0000])
    assert ancillary[0] == 2 and ancillary[1] == 1 and ancillary[4] == 1  # type, DCM, format
    assert len(ancillary) == 16 + 2
    assert ancillary[16:] == np.array([5, -7], dtype=np.int8).tobytes()


@pytest.mark.parametrize("axis", [0, -1])
def test_per_channel_zero_points_round_trip(axis):
    rng = np.random.default_rng(1)
    values = rng.integers(-128, 128, (6, 5, 4)).astype(np.int8)
    points = rng.integers(-5, 5, values.shape[axis])
    view = [1, 1, 1]
    view[axis] = points.size
    zero_points = np.broadcast_to(points.reshape(view), values.shape)
    values[rng.random(values.shape) < 0.8] = 0
    values = np.where(values == 0, zero_points, values).astype(np.int8)

    encoded, ancillary = pruning.encode(values, zero_points)
    decoded = pruning.decode(encoded, ancillary, values.shape, np.int8, zero_points)

    np.testing.assert_array_equal(decoded, values)
    assert len(ancillary) - 16 == np.count_nonzero(values != zero_points)


def test_float_negative_zero_is_kept_as_a_value():
    values = np.array([0.0, -0.0, 1.5, 0.0], dtype=np.float32)

    encoded, ancillary = pruning.encode(values, np.zeros(4))
    decoded = pruning.decode(encoded, ancillary, (4,), np.float32, np.zeros(4))

    assert decoded.view(np.uint32).tolist() == values.view(np.uint32).tolist()
    assert len(ancillary) == 16 + 2 * 4


def test_90_percent_sparse_int8_tensor_shrinks_to_about_a_quarter():
    rng = np.random.default_rng(2)
    values = rng.integers(1, 128, 10_000).astype(np.int8)
    values[rng.permutation(10_000)[:9_000]] = 0

    encoded, ancillary = pruning.encode(values, np.zeros(10_000))

    assert len(encoded) + len(ancillary) == 1_250 + 16 + 1_000  # 0.227 of 10,000 B


@pytest.mark.parametrize("name", MODELS)
def test_every_constant_pruned_runs_on_tflm_with_identical_outputs(name):
    plain = (DATA_DIR / name).read_bytes()
    x = model_inputs(plain)
    from tflite_micro.tensorflow.lite.micro.compression import spec

    compressed = compress_every_constant(plain, spec.PruningCompression(), ("INT8", "INT32"))

    decoded = list(_tflm.decoded_tensors(compressed))
    assert {d.decode_type for d in decoded} == {2}
    assert {d.output.numpy_dtype for d in decoded} == {np.dtype(np.int8), np.dtype(np.int32)}
    assert any(len(d.output.shape) == 4 and d.output.shape[-1] == 16 for d in decoded)  # dw
    np.testing.assert_array_equal(tflm.run(compressed, x), tflm.run(plain, x))


def test_tensor_quantized_along_a_middle_axis_is_unsuitable():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    tensor = model_editor.Tensor(
        shape=(2, 3, 4),
        dtype=schema.TensorType.INT8,
        data=np.zeros((2, 3, 4), dtype=np.int8),
        quantization=model_editor.Quantization(
            scales=[1.0, 1.0, 1.0], zero_points=[0, 0, 0], axis=1
        ),
    )
    with pytest.raises(_tflm.Unsuitable, match="axis 1"):
        pruning.PruningCodec().methods(tensor)
