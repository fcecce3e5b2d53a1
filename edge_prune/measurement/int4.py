"""Packed INT4 weight tensors in a ``.tflite``: find them, read their values, unpack them.

TFLite's INT4 tensor type (TensorType 17) packs two values per byte, element 2i in the low
nibble and 2i+1 in the high nibble, flat in row-major order (``UnpackDenseInt4IntoInt8`` in
TFLM's ``tensorflow/lite/kernels/internal/portable_tensor_utils.cc``). TFLM's reference
FULLY_CONNECTED and CONV_2D unpack the whole filter into an int8 scratch buffer in the arena on
every Invoke; CMSIS-NN computes on the packed values (``arm_fully_connected_s4`` in
``tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc``, and the s4 convolutions), so it
needs no such buffer. :func:`unpacked_twin` gives the same model
with the INT4 tensors stored as INT8: the same outputs, and the arena without the unpack buffers.

This module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT4 = 17  # tflite::TensorType_INT4
INT8 = 9


@dataclass(frozen=True)
class Int4Tensor:
    name: str
    shape: tuple[int, ...]
    values: np.ndarray  # int8, unpacked, in [-8, 7]

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def packed_bytes(self) -> int:
        return (self.elements + 1) // 2


def unpack(packed: bytes, count: int) -> np.ndarray:
    """``count`` signed 4-bit values from ``packed`` (low nibble first) as int8."""
    raw = np.frombuffer(packed, dtype=np.uint8)
    nibbles = np.empty(raw.size * 2, dtype=np.uint8)
    nibbles[0::2] = raw & 0x0F
    nibbles[1::2] = raw >> 4
    values = nibbles[:count].astype(np.int8)
    return np.where(values > 7, values - 16, values).astype(np.int8)


def pack(values: np.ndarray) -> bytes:
    """Signed values in [-8, 7] packed two per byte (element 2i in the low nibble)."""
    flat = np.asarray(values, dtype=np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    nibbles = (flat.astype(np.int16) & 0x0F).astype(np.uint8)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def int4_tensors(model: bytes) -> list[Int4Tensor]:
    """The constant INT4 tensors of ``model`` (all subgraphs), unpacked."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    found = []
    for subgraph in model_editor.read(bytes(model)).subgraphs:
        for tensor in subgraph.tensors:
            if tensor.dtype == INT4 and tensor.buffer is not None and tensor.buffer.data:
                count = int(np.prod(tensor.shape))
                values = unpack(bytes(tensor.buffer.data), count).reshape(tensor.shape)
                found.append(Int4Tensor(tensor.name or "", tuple(tensor.shape), values))
    return found


def has_int4(model: bytes) -> bool:
    return bool(int4_tensors(model))


def unpacked_twin(model: bytes) -> bytes:
    """``model`` with every constant INT4 tensor stored as INT8 (same values, same scales): the
    outputs are the same on TFLM, and the arena lacks the reference kernels' unpack buffers."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    from edge_prune.measurement.codecs import _tflm

    edited = schema.ModelT.InitFromPackedBuf(bytes(model), 0)
    for subgraph in edited.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = edited.buffers[tensor.buffer]
            if tensor.type == INT4 and buffer.data is not None and len(buffer.data):
                count = int(np.prod(tensor.shape))
                buffer.data = unpack(bytes(bytearray(buffer.data)), count).view(np.uint8)
                tensor.type = INT8
    return _tflm.pack(edited)
