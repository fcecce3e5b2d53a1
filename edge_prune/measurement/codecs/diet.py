"""Drop from a flatbuffer what TFLM does not read: tensor names, signature defs, metadata.

TFLM's interpreter and allocator (``tensorflow/lite/micro/micro_interpreter.cc``,
``micro_allocator.cc``, ``micro_allocation_info.cc``) read the subgraphs' tensors (type, shape,
buffer, quantization), operators, operator codes and buffers; of the model metadata they read
only the ``OfflineMemoryAllocation`` entry (offline memory plan, ``micro_allocation_info.cc``),
which is kept with any other entry named in :data:`KEPT_METADATA`. Tensor and subgraph names,
the model description, signature defs and conversion metadata (``min_runtime_version``,
``CONVERSION_METADATA``) are dropped; the returned name map keeps the tensor names for
debugging. No TensorFlow here.
"""

from __future__ import annotations

from edge_prune.errors import ModelFileError
from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.tflite_file import load_bytes

KEPT_METADATA = ("OfflineMemoryAllocation",)


def strip_for_mcu(tflite_bytes) -> tuple[bytes, dict[tuple[int, int], str]]:
    """``(smaller flatbuffer, {(subgraph, tensor index): tensor name})``.

    The outputs on TFLM are unchanged (checked in the tests); buffers referenced only by
    dropped metadata are emptied (their table entries stay, so buffer indices do not move).
    """
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    data, label = load_bytes(tflite_bytes)
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # the flatbuffers reader raises anything on a bad file
        raise ModelFileError(f"{label}: cannot read TFLite flatbuffer ({e})") from e
    names: dict[tuple[int, int], str] = {}
    for sg_index, subgraph in enumerate(model.subgraphs or []):
        subgraph.name = None
        for t_index, tensor in enumerate(subgraph.tensors or []):
            if tensor.name:
                names[(sg_index, t_index)] = tensor.name.decode("utf-8", "replace")
            tensor.name = None
    model.description = None
    model.signatureDefs = None
    _drop_metadata(model)
    return _tflm.pack(model), names


def _drop_metadata(model) -> None:
    entries = list(model.metadata or [])
    kept = [e for e in entries if (e.name or b"").decode("utf-8", "replace") in KEPT_METADATA]
    dropped_buffers = {e.buffer for e in entries if e not in kept}
    for index in sorted(dropped_buffers - _buffers_in_use(model, kept)):
        model.buffers[index].data = None
    model.metadata = kept or None
    model.metadataBuffer = None


def _buffers_in_use(model, kept_metadata) -> set[int]:
    used = {entry.buffer for entry in kept_metadata}
    for subgraph in model.subgraphs or []:
        used.update(tensor.buffer for tensor in subgraph.tensors or [])
    return used
