"""Pruning codec (DECODE type 2): a bitmask of the non-zero-point elements plus their values.

Layout read by TFLM's decoder (``tensorflow/lite/micro/kernels/decode_state_prune.cc``):

- encoded tensor: one bit per element in the tensor's row-major order, most significant bit
  first within each byte; 1 = the element differs from its zero point;
- ancillary tensor: the 16-byte DECODE common metadata with byte 4 (pruning format version) = 1,
  then the kept values in the same order, in the tensor's own type.

Zero points come from the decoded tensor's quantization: per channel for int8 quantized along
axis 0 or the last axis, else one zero point, which must be 0 for types other than int8.
Cost: 1 bit per element plus the kept values (an int8 tensor at 90% sparsity: 0.225 of its
bytes). No TensorFlow here.
"""

from __future__ import annotations

import numpy as np

from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.protocol import Codec

DECODE_TYPE = 2
FORMAT_VERSION = 1
# Types the decoder expands (decode_state_prune.cc, DecodeStatePrune::Decode).
SUPPORTED_TYPES = ("INT8", "INT16", "INT32", "INT64", "FLOAT32", "BOOL")


def encode(values: np.ndarray, zero_points: np.ndarray) -> tuple[bytes, bytes]:
    """``(encoded bitmask, ancillary)`` for ``values`` with the per-element ``zero_points``."""
    flat = np.ascontiguousarray(values).reshape(-1)
    keep = flat.view(_bits_dtype(flat.dtype)) != _zero_bits(zero_points, flat.dtype)
    mask = np.packbits(keep.astype(np.uint8), bitorder="big")
    kept = flat[keep].astype(flat.dtype.newbyteorder("<"), copy=False)
    ancillary = _tflm.dcm(DECODE_TYPE, FORMAT_VERSION) + kept.tobytes()
    return mask.tobytes(), ancillary


def decode(encoded: bytes, ancillary: bytes, shape, dtype, zero_points: np.ndarray) -> np.ndarray:
    """Python reference of TFLM's pruning decoder: the full tensor back from mask and values."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    bits = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8), bitorder="big")[:count]
    if bits.size < count:
        raise ValueError(f"pruning mask holds {bits.size} bits, tensor has {count} elements")
    keep = bits.astype(bool)
    kept = np.frombuffer(ancillary[_tflm.DCM_BYTES :], dtype=dtype.newbyteorder("<"))
    if kept.size != int(keep.sum()):
        raise ValueError(f"pruning values: {kept.size} stored, mask marks {int(keep.sum())}")
    out = np.broadcast_to(zero_points, shape).reshape(-1).astype(dtype)
    out[keep] = kept
    return out.reshape(shape)


def decode_checked(encoded: bytes, ancillary: bytes, output) -> np.ndarray:
    """The tensor TFLM's pruning decoder gives for this layout, or :class:`_tflm.BadLayout`:
    the mask must hold one bit per element (no more bytes), the values one per set bit."""
    type_name = _tflm.dtype_name(output)
    _tflm.require(type_name in SUPPORTED_TYPES, f"{type_name} output, the decoder takes "
                  f"{', '.join(SUPPORTED_TYPES)}")  # fmt: skip
    dtype = _tflm.output_dtype(output)
    _tflm.require(
        ancillary[4] == FORMAT_VERSION,
        f"pruning format version {ancillary[4]}, TFLM reads {FORMAT_VERSION}",
    )
    channels, _ = _tflm.runtime_channels(output)
    shape = tuple(int(n) for n in output.shape)
    count = int(np.prod(shape, dtype=np.int64))
    zero_points = _tflm.zero_points(output)
    _tflm.require(
        type_name == "INT8" or not np.any(zero_points != 0),
        f"{type_name} output with non-zero zero points (TFLM: all zero points must be zero)",
    )
    _tflm.element_channels(count, channels, False)
    _tflm.require(
        len(encoded) == -(-count // 8),
        f"{len(encoded)} B of mask, {count} elements need {-(-count // 8)} B",
    )
    kept = int(np.unpackbits(np.frombuffer(encoded, dtype=np.uint8))[:count].sum())
    values = len(ancillary) - _tflm.DCM_BYTES
    _tflm.require(
        values == kept * dtype.itemsize,
        f"{values} B of kept values, the mask marks {kept} of {dtype.itemsize} B",
    )
    return decode(encoded, ancillary, shape, dtype, zero_points)


class PruningCodec(Codec):
    """Pruning bitmask + kept values (:class:`~edge_prune.measurement.codecs.protocol.Codec`)."""

    name = "pruning"
    decode_type = DECODE_TYPE
    decoder_source = "prune"

    @property
    def method_type(self):
        from tflite_micro.tensorflow.lite.micro.compression import spec

        return spec.PruningCompression

    def methods(self, tensor) -> list:
        from tflite_micro.tensorflow.lite.micro.compression import spec

        _check(tensor)
        return [spec.PruningCompression()]

    def describe(self, method) -> str:
        return "bitmask + kept values"

    def compress(self, tensor, method):
        from tflite_micro.tensorflow.lite.micro.compression.compressor import (
            CompressionError,
            CompressionResult,
        )

        try:
            _check(tensor)
        except _tflm.Unsuitable as e:
            raise CompressionError(f"pruning: tensor {tensor.name!r}: {e}") from e
        encoded, ancillary = encode(tensor.array, _tflm.zero_points(tensor))
        return CompressionResult(encoded_data=encoded, ancillary_data=ancillary)

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        shape = tuple(int(n) for n in output.shape)
        return decode(encoded, ancillary, shape, output.numpy_dtype, _tflm.zero_points(output))

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_checked(encoded, ancillary, output)


def _check(tensor) -> None:
    type_name = _tflm.dtype_name(tensor)
    if type_name not in SUPPORTED_TYPES:
        raise _tflm.Unsuitable(f"{type_name} tensor, the pruning decoder takes {SUPPORTED_TYPES}")
    rank = len(tensor.shape)
    if _tflm.is_per_channel(tensor):
        axis = _tflm.channel_axis(tensor)
        if axis not in (0, rank - 1):
            raise _tflm.Unsuitable(f"quantized along axis {axis}; the decoder takes 0 or last")
        if type_name != "INT8" and np.any(_tflm.zero_points(tensor) != 0):
            raise _tflm.Unsuitable(f"{type_name} tensor with non-zero zero points")
    elif type_name != "INT8" and np.any(_tflm.zero_points(tensor) != 0):
        raise _tflm.Unsuitable(f"{type_name} tensor with a non-zero zero point")


def _bits_dtype(dtype: np.dtype) -> np.dtype:
    """Compare by bit pattern, as the C decoder copies bytes (a float -0.0 is kept)."""
    return np.dtype(f"u{dtype.itemsize}")


def _zero_bits(zero_points: np.ndarray, dtype: np.dtype) -> np.ndarray:
    zeros = np.asarray(zero_points).reshape(-1).astype(dtype)
    return zeros.view(_bits_dtype(dtype))
