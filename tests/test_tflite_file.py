"""The flatbuffer reader checks every length and offset it uses against the file.

Bad files are made from a valid fixture: by patching a length in place, or by re-packing it
with the flatbuffers object API after moving a buffer's data outside the flatbuffer
(``offset``/``size``, the layout of models above 2 GB).
"""

from __future__ import annotations

import struct

import flatbuffers
import numpy as np
import pytest
from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

from edge_prune.cli import main
from edge_prune.errors import ModelFileError
from edge_prune.measurement import tflm
from edge_prune.measurement.tflite_file import (
    read_model,
    tensor_type_dtype,
    tensor_type_name,
    tensor_type_value,
)


def _largest_buffer(data: bytes) -> int:
    model = schema.Model.GetRootAs(data, 0)
    sizes = [model.Buffers(i).DataLength() for i in range(model.BuffersLength())]
    return int(np.argmax(sizes))


def _vector_length_position(table, slot: int) -> int:
    tab = table._tab
    return tab.Vector(tab.Offset(slot)) - 4  # the uint32 length precedes the vector


def _repacked(data: bytes, change) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(model)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _moved_outside(index: int, offset: int, size: int):
    def change(model):
        model.buffers[index].data = None
        model.buffers[index].offset = offset
        model.buffers[index].size = size

    return change


def test_a_buffer_whose_data_length_runs_past_the_file_is_rejected(mlp_float_path):
    data = bytearray(mlp_float_path.read_bytes())
    index = _largest_buffer(bytes(data))
    buffer = schema.Model.GetRootAs(bytes(data), 0).Buffers(index)
    struct.pack_into("<I", data, _vector_length_position(buffer, 4), len(data))
    with pytest.raises(ModelFileError, match=f"buffer {index}: its data ends at byte"):
        read_model(bytes(data))


def test_a_tensor_name_running_past_the_file_is_rejected(mlp_float_path):
    data = bytearray(mlp_float_path.read_bytes())
    tensor = schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Tensors(0)
    struct.pack_into("<I", data, _vector_length_position(tensor, 10), 10 * len(data))
    with pytest.raises(ModelFileError, match="a string ends at byte"):
        read_model(bytes(data))


def test_weights_outside_the_flatbuffer_but_inside_the_file_are_counted(mlp_float_path):
    data = mlp_float_path.read_bytes()
    index = _largest_buffer(data)
    weights = schema.Model.GetRootAs(data, 0).Buffers(index).DataAsNumpy().tobytes()
    packed = _repacked(data, _moved_outside(index, 1 << 20, len(weights)))  # placeholder
    offset = len(packed)
    packed = _repacked(data, _moved_outside(index, offset, len(weights)))
    assert len(packed) == offset
    info = read_model(packed + weights)
    assert info.size_bytes == offset + len(weights)
    assert len(weights) in {t.data_bytes for t in info.tensors}


@pytest.mark.parametrize("past_end_bytes", [1, 1 << 31, 1 << 40])
def test_weights_pointing_outside_the_file_are_rejected_and_give_no_verdict(
    past_end_bytes, mlp_float_path, tmp_path, monkeypatch, capsys
):
    data = mlp_float_path.read_bytes()
    index = _largest_buffer(data)
    packed = _repacked(data, _moved_outside(index, 64, 1000))
    packed = _repacked(data, _moved_outside(index, len(packed) - 1000 + past_end_bytes, 1000))
    with pytest.raises(ModelFileError, match=f"buffer {index}: data at offset .* outside the file"):
        read_model(packed)
    path = tmp_path / "outside.tflite"
    path.write_bytes(packed)

    def never(*args, **kwargs):
        raise AssertionError("a file the reader rejects reached TFLM")

    monkeypatch.setattr(tflm, "execute", never)
    monkeypatch.setattr(tflm, "measure_arena", never)
    assert main(["report", str(path), "--target", "cortex-m4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edge-prune: error: {path}: corrupted")


def test_tensor_type_map_is_tflite_micros():
    assert tensor_type_name(tensor_type_value("INT8")) == "INT8"
    assert tensor_type_dtype(tensor_type_value("FLOAT32")) == np.dtype("<f4")
    assert tensor_type_dtype(tensor_type_value("INT16")) == np.dtype("<i2")
    assert tensor_type_name(250) == "TYPE_250"
    with pytest.raises(ModelFileError, match="STRING"):
        tensor_type_dtype(tensor_type_value("STRING"))
