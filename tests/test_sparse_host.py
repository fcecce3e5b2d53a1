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
from edge_prune.measurement.sparse.rewrite import rewrite, verify

MODELS = ("mlp_int8_lenet.tflite", "codecs_cnn_per_channel.tflite", "cnn_int8.tflite")


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def pruned_in_place(data: bytes, sparsity: float, block: int, seed: int = 0) -> bytes:
    """``data`` with a fraction ``sparsity`` of each FC/CONV filter's blocks set to zero."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    rng = np.random.default_rng(seed)
    kinds = (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in kinds:
                continue
            tensor = subgraph.tensors[op.inputs[1]]
            raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).view(np.int8)
            w = raw.reshape(tuple(tensor.shape)).copy()
            b = block if w.shape[-1] % block == 0 else 1
            blocks = w.reshape(w.shape[0], -1, b)
            blocks[rng.random(blocks.shape[:2]) < sparsity] = 0
            model.buffers[tensor.buffer].data = blocks.reshape(-1).view(np.uint8)
    return pack(model)


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
