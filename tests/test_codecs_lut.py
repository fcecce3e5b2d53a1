"""TFLM LUT compression of clustered weights: smaller, runs on TFLM, same outputs, clear errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from tiny_models import compile_for_classes, trained_cnn, zero_smallest

from edge_prune.errors import ConfigError, ConversionError
from edge_prune.measurement import tflm
from edge_prune.measurement.codecs import _tflm, lut_compress
from edge_prune.measurement.codecs.lut import LUT_BITWIDTHS
from edge_prune.measurement.evaluate import check_deployable
from edge_prune.training.cluster import cluster, strip_clustering
from edge_prune.training.convert import convert
from edge_prune.training.train import copy_model

HIDDEN_KERNEL = "dense_hidden/MatMul"  # 32x288 int8 kernel: the one tensor big enough to compress
PRUNED_FRACTION = 0.7


@pytest.fixture(scope="module")
def models():
    model, x, y = trained_cnn(seed=0, epochs=2)
    zero_smallest(model, PRUNED_FRACTION)
    unclustered_int8 = convert(model, quantization="int8", representative_data=x).tflite_bytes
    clustered = compile_for_classes(cluster(model, number_of_clusters=16), learning_rate=1e-3)
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    final = strip_clustering(clustered)
    int8 = convert(final, quantization="int8", representative_data=x).tflite_bytes
    return {
        "keras": final,
        "x": x,
        "y": y,
        "int8": int8,
        "unclustered_int8": unclustered_int8,
        "compressed": lut_compress(int8),
    }


def _decision(result, name_part: str):
    (decision,) = [d for d in result.tensors if name_part in d.name]
    return decision


def _distinct_per_channel(model_bytes: bytes, name_part: str) -> int:
    """Most distinct values in one channel of the tensor, read from the uncompressed model."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    (tensor,) = [
        t for t in model_editor.read(model_bytes).subgraphs[0].tensors if t.name == name_part
    ]
    array = tensor.array
    axis = _tflm.channel_axis(tensor)
    rows = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    return max(len(np.unique(row)) for row in rows)


def test_lut_compressed_model_runs_on_tflm_with_outputs_equal_to_uncompressed_int8(models):
    result = models["compressed"]
    assert result.size_bytes < len(models["int8"])
    assert _decision(result, HIDDEN_KERNEL).codec == "lut"

    report = check_deployable(result.tflite_bytes, models["x"][:48], models["int8"], name="lut")

    assert report.runs_on_tflm
    assert report.compared_as == "int8"
    assert report.max_abs_difference == 0.0
    assert report.top1_agreement == 1.0


def test_compressed_outputs_equal_uncompressed_on_raw_tflm_runs(models):
    scale, zero_point = _input_quantization(models["int8"])
    x = np.clip(np.round(models["x"][:16] / scale) + zero_point, -128, 127).astype(np.int8)

    plain = tflm.run(models["int8"], x)
    compressed = tflm.run(models["compressed"].tflite_bytes, x)

    np.testing.assert_array_equal(compressed, plain)


def _input_quantization(model_bytes: bytes) -> tuple[float, int]:
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    q = graph.Tensors(graph.Inputs(0)).Quantization()
    return float(q.Scale(0)), int(q.ZeroPoint(0))


def test_arena_of_compressed_model_holds_the_decoded_weights(models):
    plain = tflm.measure_arena(models["int8"])
    compressed = tflm.measure_arena(models["compressed"].tflite_bytes)
    decoded_bytes = _decision(models["compressed"], HIDDEN_KERNEL).bytes_before

    # The decoded 32x288 kernel lives in the arena's non-persistent head while its FC runs.
    assert compressed.recorded_head_bytes >= decoded_bytes > plain.recorded_head_bytes
    assert compressed.verdict_bytes > plain.verdict_bytes


def test_too_many_distinct_values_for_asked_bitwidth_raises_without_a_model(models):
    with pytest.raises(
        ConversionError,
        match=rf"{HIDDEN_KERNEL}.*has \d+ distinct values in one channel.*2-bit LUT holds at "
        r"most 4.*no model was written",
    ):
        lut_compress(models["int8"], bitwidth=2)


def test_unclustered_weights_raise_in_automatic_bitwidth(models):
    with pytest.raises(ConversionError, match=r"distinct values in one channel.*at most 16"):
        lut_compress(models["unclustered_int8"])


def test_unclustered_weights_are_kept_when_not_strict(models):
    result = lut_compress(models["unclustered_int8"], strict=False)

    kernel = _decision(result, HIDDEN_KERNEL)
    assert kernel.codec == "raw"
    why = dict(kernel.candidates)["lut"]
    assert int(re.search(r"(\d+) distinct", why).group(1)) > 16
    assert "distinct values per channel > 16" in why
    assert result.tflite_bytes == models["unclustered_int8"]


def test_tensor_that_would_expand_is_kept_uncompressed(models):
    # 10x32 logits kernel: 160 B of 4-bit indices + 10 tables of up to 16 B > its 320 B.
    result = lut_compress(models["int8"], min_tensor_bytes=0)

    logits = _decision(result, "logits/MatMul")
    assert logits.codec == "raw"
    assert "would expand" in logits.reason
    assert logits.bytes_after == logits.bytes_before
    assert _decision(result, HIDDEN_KERNEL).codec == "lut"


def test_asked_bitwidth_is_used_for_every_compressed_tensor(models):
    result = lut_compress(models["int8"], bitwidth=4)

    assert result.compressed
    assert all(dict(d.facts)["bitwidth"] == 4 for d in result.compressed)


def test_automatic_bitwidth_is_the_smallest_that_holds_the_values(models):
    assert models["compressed"].compressed
    for d in models["compressed"].compressed:
        bitwidth = dict(d.facts)["bitwidth"]
        distinct = _distinct_per_channel(models["int8"], d.name)
        assert bitwidth in LUT_BITWIDTHS
        assert distinct <= 2**bitwidth
        assert bitwidth == LUT_BITWIDTHS[0] or distinct > 2 ** (bitwidth - 1)


def test_lut_compress_is_deterministic(models):
    assert lut_compress(models["int8"]).tflite_bytes == models["compressed"].tflite_bytes


def test_sparse_encoded_model_is_rejected(models):
    sparse = convert(
        models["keras"], quantization="int8", sparse=True, representative_data=models["x"]
    ).tflite_bytes
    with pytest.raises(ConversionError, match="sparse-encoded.*dense model"):
        lut_compress(sparse)


@pytest.mark.parametrize("bitwidth", [1, 5, 8, "4"])
def test_bitwidth_outside_2_to_4_is_a_config_error(models, bitwidth):
    with pytest.raises(ConfigError, match="bitwidth"):
        lut_compress(models["int8"], bitwidth=bitwidth)


def test_result_reports_sizes_per_tensor_as_json_and_text(models):
    result = models["compressed"]
    data = json.loads(json.dumps(result.to_dict()))

    assert data["size_bytes"] == result.size_bytes < data["original_size_bytes"]
    hidden = next(t for t in data["tensors"] if HIDDEN_KERNEL in t["name"])
    assert hidden["bytes_after"] < hidden["bytes_before"]
    assert hidden["codec"] == "lut"
    assert hidden["detail"].startswith(f"{hidden['bitwidth']}-bit indices")
    assert f"{result.original_size_bytes:,} B -> {result.size_bytes:,} B" in str(result)


def test_one_table_for_the_whole_tensor_when_quantized_per_tensor(models):
    from edge_prune.training._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(models["keras"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in models["x"][:64])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    per_tensor_int8 = converter.convert()

    result = lut_compress(per_tensor_int8)

    hidden = _decision(result, HIDDEN_KERNEL)
    assert dict(hidden.facts)["mode"] == "per-tensor"
    assert hidden.bytes_after < _decision(models["compressed"], HIDDEN_KERNEL).bytes_after
    report = check_deployable(result.tflite_bytes, models["x"][:16], per_tensor_int8)
    assert report.max_abs_difference == 0.0


def test_per_channel_quantized_tensor_with_few_values_keeps_per_channel_tables(models):
    # Four values in the whole tensor would fit one table, but TFLM decodes a single table of a
    # per-channel-quantized tensor wrongly (outputs no longer match); per-channel tables do.
    model = copy_model(models["keras"])
    few = [
        [np.where(w[0] == 0, 0.0, np.where(w[0] > 0, 0.05, -0.05)).astype(np.float32), *w[1:]]
        if w
        else w
        for w in (layer.get_weights() for layer in model.layers)
    ]
    for layer, weights in zip(model.layers, few, strict=True):
        layer.set_weights(weights)
    int8 = convert(model, quantization="int8", representative_data=models["x"]).tflite_bytes

    result = lut_compress(int8)

    hidden = _decision(result, HIDDEN_KERNEL)
    assert hidden.codec == "lut" and dict(hidden.facts)["mode"].startswith("per-channel")
    report = check_deployable(result.tflite_bytes, models["x"][:32], int8)
    assert report.max_abs_difference == 0.0 and report.top1_agreement == 1.0
