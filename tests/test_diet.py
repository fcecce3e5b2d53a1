"""Flatbuffer diet: names, signature defs and conversion metadata go, outputs on TFLM stay."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA_DIR
from test_codecs_pruning import MODELS, model_inputs

from edge_prune.errors import ModelFileError
from edge_prune.measurement import tflm
from edge_prune.measurement.codecs import _tflm, compress_for_mcu, strip_for_mcu


def _model_t(data: bytes):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(data, 0)


@pytest.mark.parametrize("name", MODELS)
def test_stripped_model_is_smaller_and_gives_identical_outputs_on_tflm(name):
    plain = (DATA_DIR / name).read_bytes()
    x = model_inputs(plain)
    compressed = compress_for_mcu(plain).tflite_bytes

    for model in (plain, compressed):
        slim, names = strip_for_mcu(model)

        assert len(slim) < len(model)
        np.testing.assert_array_equal(tflm.run(slim, x), tflm.run(model, x))
        assert any(n.endswith("dense_hidden/MatMul") for n in names.values())


def test_names_signatures_and_conversion_metadata_are_gone():
    plain = (DATA_DIR / MODELS[0]).read_bytes()
    before = _model_t(plain)
    assert before.signatureDefs and before.metadata  # what the converter wrote

    slim, names = strip_for_mcu(plain)

    after = _model_t(slim)
    assert not after.signatureDefs and not after.metadata
    tensors = after.subgraphs[0].tensors
    assert all(t.name in (None, b"") for t in tensors)
    assert names == {
        (0, i): t.name.decode() for i, t in enumerate(before.subgraphs[0].tensors) if t.name
    }


def test_offline_memory_plan_metadata_is_kept():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = _model_t((DATA_DIR / MODELS[0]).read_bytes())
    plan = schema.BufferT()
    plan.data = list(np.array([1, 0, 0], dtype="<i4").tobytes())  # version 1, subgraph 0, 0
    model.buffers.append(plan)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"OfflineMemoryAllocation", len(model.buffers) - 1
    model.metadata.append(entry)

    slim, _ = strip_for_mcu(_tflm.pack(model))

    kept = _model_t(slim).metadata
    assert [m.name for m in kept] == [b"OfflineMemoryAllocation"]
    assert bytes(_model_t(slim).buffers[kept[0].buffer].data) == bytes(plan.data)


def test_not_a_flatbuffer_is_a_model_file_error():
    with pytest.raises(ModelFileError, match="cannot read"):
        strip_for_mcu(b"not a model at all")
