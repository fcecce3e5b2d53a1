"""Whole models with the sparse custom ops on TFLM's host interpreter (the tflite-micro wheel).

A model pruned in place (int8 weights zeroed) is rewritten with EDGE_PRUNE_SPARSE_FC / _CONV;
its outputs on TFLM must be byte-identical to the dense int8 model's. The rewrite, the
verifier and the refusal of malformed models run everywhere; the TFLM runs need g++ and a TFLM
tree ($EDGE_PRUNE_TFLM) to build the host library, and are skipped, with the reason, otherwise.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import DATA_DIR

from edge_prune.errors import EdgePruneError, TFLMError
from edge_prune.measurement import tflm
from edge_prune.measurement.codecs._tflm import pack
from edge_prune.measurement.sparse import format as fmt
from edge_prune.measurement.sparse import native
from edge_prune.measurement.sparse.filter_edit import zero_random_blocks
from edge_prune.measurement.sparse.rewrite import rewrite, verify

MODELS = ("mlp_int8_lenet.tflite", "codecs_cnn_per_channel.tflite", "cnn_int8.tflite")


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def pruned_in_place(data: bytes, sparsity: float, block: int, seed: int = 0) -> bytes:
    """``data`` with a fraction ``sparsity`` of each FC/CONV filter's blocks set to zero."""
    return zero_random_blocks(data, sparsity, block, seed)


def _model(name: str, sparsity: float, block: int) -> bytes:
    return pruned_in_place((DATA_DIR / name).read_bytes(), sparsity, block)


def _host_library_or_skip():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found on PATH (the host library of the sparse kernels needs it)")
    try:
        native.tflm_tree()
    except EdgePruneError as e:
        pytest.skip(f"no TFLM tree: {e}")


def _inputs(model: bytes, n: int) -> np.ndarray:
    details = tflm.execute(model).inputs[0]
    shape = [max(int(s), 1) for s in details["shape"]]
    return np.random.default_rng(1).integers(-128, 128, [n, *shape[1:]]).astype(np.int8)


# ------------------------------------------------------------------------- rewrite, no TFLM


@pytest.mark.parametrize("block", [1, 4])
def test_rewrite_replaces_pruned_layers_and_shrinks_the_file(block):
    dense = _model("mlp_int8_lenet.tflite", 0.9, block)
    result = rewrite(dense, blocks=(block,))
    assert [layer.block for layer in result.layers] == [block] * 3
    assert len(result.model) < 0.3 * len(dense)
    assert verify(result.model) == 3
    tensors = sum(len(sg.tensors) for sg in _schema().ModelT.InitFromPackedBuf(dense, 0).subgraphs)
    after = _schema().ModelT.InitFromPackedBuf(result.model, 0)
    assert sum(len(sg.tensors) for sg in after.subgraphs) == tensors + 3  # no biases: + index


def test_rewrite_keeps_dense_layers_that_would_not_pay():
    dense = _model("cnn_int8.tflite", 0.0, 1)  # a dense model: no zeros to speak of
    result = rewrite(dense)
    assert result.model == dense
    assert {layer.reason for layer in result.layers} == {"too few zeros to pay"}


def _corrupt_index(model: bytes, value: int) -> bytes:
    schema = _schema()
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    subgraph = m.subgraphs[0]
    op = subgraph.operators[0]
    index = subgraph.tensors[op.inputs[2]]
    out_channels = fmt.Options.unpack(np.asarray(op.customOptions, np.uint8).tobytes()).out_channels
    data = np.asarray(m.buffers[index.buffer].data, np.uint8).copy()
    data[4 * out_channels] = value  # first row's entry count, after the folded biases
    m.buffers[index.buffer].data = data
    return pack(m)


def test_verify_refuses_a_malformed_index():
    good = rewrite(_model("mlp_int8_lenet.tflite", 0.9, 1)).model
    bad = _corrupt_index(good, 255)
    with pytest.raises(fmt.SparseFormatError, match="operator 0"):
        verify(bad, "bad.tflite")


# ------------------------------------------------------------------------ on TFLM (host)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("block", [1, 4])
def test_sparse_model_equals_dense_on_tflm(name, block):
    _host_library_or_skip()
    dense = _model(name, 0.85, block)
    sparse = rewrite(dense, blocks=(block,), force=True)
    assert sparse.sparse_layers, [layer.reason for layer in sparse.layers]
    x = _inputs(dense, 16)
    want = tflm.run(dense, x)
    got = tflm.run(sparse.model, x)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_malformed_sparse_model_fails_to_prepare_not_crash():
    _host_library_or_skip()
    good = rewrite(_model("mlp_int8_lenet.tflite", 0.9, 1)).model
    with pytest.raises(TFLMError) as err:
        tflm.measure_arena(_corrupt_index(good, 255))
    assert "EDGE_PRUNE_SPARSE" in str(err.value) or "prepare" in str(err.value).lower()


def test_host_library_is_cached():
    _host_library_or_skip()
    assert native.host_library() == native.host_library()


# ------------------------------------------------------------------ INT4 filters (int4 ops)


def int4_filters(data: bytes) -> bytes:
    """``data`` with every FC/CONV filter requantized to 4 bits and stored as a packed INT4
    tensor (FULLY_CONNECTED per tensor, CONV_2D per channel, as the int4-weights candidate);
    zeros stay zeros."""
    from edge_prune.measurement.int4 import pack as pack_int4

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = max(code.builtinCode, code.deprecatedBuiltinCode)
            if kind not in (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D):
                continue
            tensor = subgraph.tensors[op.inputs[1]]
            raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).view(np.int8)
            scales = np.asarray(tensor.quantization.scale, np.float64)
            rows = raw.reshape(tensor.shape[0], -1) * scales.reshape(-1, 1)
            if kind == schema.BuiltinOperator.FULLY_CONNECTED:
                new = np.full(len(rows), max(np.abs(rows).max() / 7, 1e-6))
            else:
                new = np.maximum(np.abs(rows).max(axis=1) / 7, 1e-6)
            w4 = np.clip(np.round(rows / new[:, None]), -8, 7).astype(np.int8)
            model.buffers[tensor.buffer].data = np.frombuffer(pack_int4(w4), np.uint8)
            tensor.type = 17  # INT4
            tensor.quantization.scale = new[:1].tolist() if len(set(new)) == 1 else new.tolist()
            tensor.quantization.zeroPoint = [0] * len(tensor.quantization.scale)
            tensor.quantization.quantizedDimension = 0
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            bias = subgraph.tensors[op.inputs[2]] if has_bias else None
            if bias is not None and bias.quantization is not None:
                n = len(tensor.quantization.scale)
                x_scale = subgraph.tensors[op.inputs[0]].quantization.scale[0]
                bias.quantization.scale = [x_scale * s for s in tensor.quantization.scale]
                bias.quantization.zeroPoint = [0] * n
    return pack(model)


def _int4_model(name: str, sparsity: float, block: int) -> bytes:
    return int4_filters(_model(name, sparsity, block))


@pytest.mark.parametrize("block", [1, 4])
def test_int4_filters_become_the_int4_ops(block):
    data = _int4_model("mlp_int8_lenet.tflite", 0.9, block)
    sparse = rewrite(data, blocks=(block,), force=True)
    assert sparse.sparse_layers and all(layer.int4 for layer in sparse.sparse_layers)
    assert b"EDGE_PRUNE_SPARSE_FC_INT4" in sparse.model
    assert verify(sparse.model) == len(sparse.sparse_layers)
    for layer in sparse.sparse_layers:
        assert layer.sparse_bytes < layer.dense_bytes == (np.prod(layer.shape) + 1) // 2


def test_int4_fc_with_per_channel_scales_is_kept_dense():
    schema = _schema()
    data = _int4_model("mlp_int8_lenet.tflite", 0.9, 1)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    tensor = model.subgraphs[0].tensors[model.subgraphs[0].operators[0].inputs[1]]
    tensor.quantization.scale = [tensor.quantization.scale[0]] * int(tensor.shape[0])
    tensor.quantization.zeroPoint = [0] * int(tensor.shape[0])
    layers = rewrite(pack(model), force=True).layers
    assert layers[0].block == 0 and "per-channel" in layers[0].reason


def test_int4_verify_refuses_a_values_tensor_of_the_wrong_size():
    schema = _schema()
    good = rewrite(_int4_model("mlp_int8_lenet.tflite", 0.9, 1), force=True).model
    model = schema.ModelT.InitFromPackedBuf(good, 0)
    subgraph = model.subgraphs[0]
    values = subgraph.tensors[subgraph.operators[0].inputs[1]]
    data = np.asarray(model.buffers[values.buffer].data, np.uint8)
    model.buffers[values.buffer].data = data[:-1]
    values.shape = [len(data) - 1]
    bad = pack(model)
    with pytest.raises(fmt.SparseFormatError, match="int4 values"):
        verify(bad, "bad.tflite")
    if shutil.which("g++") is not None and _has_tree():
        with pytest.raises(TFLMError):
            tflm.measure_arena(bad)


def _has_tree() -> bool:
    try:
        native.tflm_tree()
    except EdgePruneError:
        return False
    return True


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("block", [1, 4])
def test_int4_sparse_model_equals_dense_int4_on_tflm(name, block):
    _host_library_or_skip()
    dense = _int4_model(name, 0.85, block)
    sparse = rewrite(dense, blocks=(block,), force=True)
    assert sparse.sparse_layers, [layer.reason for layer in sparse.layers]
    x = _inputs(dense, 16)
    want = tflm.run(dense, x)
    got = tflm.run(sparse.model, x)
    np.testing.assert_array_equal(got, want)
