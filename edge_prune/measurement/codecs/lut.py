"""LUT codec (DECODE type 0): ``b``-bit indices into small per-channel or per-tensor value tables.

A weight tensor with at most ``2**b`` distinct values per channel is stored as ``b``-bit indices
plus one value table per channel (or one for the whole tensor when that is smaller and the
tensor is quantized per tensor), and a ``TFLM_DECODE`` operator expands it into the arena just
before the operator that reads it. The encoder is TFLM's own
(``tflite_micro/tensorflow/lite/micro/compression/lut.py``); the choice per tensor, the check
that the file shrinks and that every tensor decodes back to its weights are
:func:`~edge_prune.measurement.codecs.per_tensor.compress_for_mcu`'s. Weights need clustering first
(:func:`edge_prune.training.cluster.cluster`) to have few values.

RAM cost: the decoded tensors live in the TFLM arena while their consumer runs, so the arena of
a compressed model is larger than the uncompressed one's; measure the compressed model.
"""

from __future__ import annotations

import math

import numpy as np

from edge_prune.errors import ConfigError, ConversionError
from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.protocol import Codec

LUT_BITWIDTHS = (2, 3, 4)  # index widths edge-prune uses; TFLM's DCM field allows 1-7


class LutCodec(Codec):
    """The LUT format: TFLM's own ``LutCompressor``, index widths chosen per tensor or fixed.

    ``methods`` offers the tables TFLM's compressor lays out from the tensor's quantization: one
    per channel of a per-channel-quantized tensor, one for a per-tensor one (the decoder takes
    the channel count from the quantization). ``bitwidth``: index width of every table (2, 3 or 4);
    None picks per table the smallest width in 2-4 that holds its values. ``strict``: a weight
    matrix (INT8, rank >= 2) with more distinct values per channel than the width holds is a
    :class:`~edge_prune.errors.ConversionError` instead of a tensor this codec cannot take.
    """

    name = "lut"
    decode_type = 0
    decoder_source = "lut"

    def __init__(self, bitwidth: int | None = None, *, strict: bool = False):
        if bitwidth is not None and bitwidth not in LUT_BITWIDTHS:
            raise ConfigError(
                f"bitwidth: got {bitwidth!r}, expected one of "
                f"{', '.join(map(str, LUT_BITWIDTHS))} or None (choose per tensor)"
            )
        self.bitwidth = bitwidth
        self.strict = strict

    @property
    def method_type(self):
        from tflite_micro.tensorflow.lite.micro.compression import spec

        return spec.LookUpTableCompression

    def methods(self, tensor) -> list:
        if _tflm.dtype_name(tensor) != "INT8":
            raise _tflm.Unsuitable(f"{_tflm.dtype_name(tensor)} tensor, LUT here takes INT8 only")
        array = tensor.array
        axis = _tflm.channel_axis(tensor)
        per_channel = _tflm.is_per_channel(tensor)
        # TFLM's compressor takes the tables from the quantization: one per channel of a
        # per-channel tensor, one for a per-tensor one (lut.py, identify_compression_axis).
        distinct = _max_distinct_per_channel(array, axis) if per_channel else np.unique(array).size
        width = self.bitwidth or LUT_BITWIDTHS[-1]
        if distinct > 2**width:
            if self.strict and len(tensor.shape) >= 2:
                raise ConversionError(self._too_many(distinct, axis, width))
            where = "per channel" if per_channel else "in the tensor"
            raise _tflm.Unsuitable(f"{distinct} distinct values {where} > {2**width}")
        return [_lut_method(_bits_for(int(distinct), self.bitwidth), None if per_channel else -1)]

    @staticmethod
    def _too_many(per_channel: int, axis: int, width: int) -> str:
        widest = LUT_BITWIDTHS[-1]
        wider = f" or a wider bitwidth (up to {widest})" if width < widest else ""
        return (
            f"it has {per_channel} distinct values in one channel (axis {axis}); a {width}-bit "
            f"LUT holds at most {2**width}: cluster the layer to <= {2**width} values{wider}, "
            "or pass strict=False to keep it uncompressed"
        )

    def compress(self, tensor, method):
        from tflite_micro.tensorflow.lite.micro.compression import lut

        with _tflm.quiet():
            return lut.LutCompressor().compress(tensor, method)

    def describe(self, method) -> str:
        tables = "per-tensor" if _per_tensor(method) else "per-channel"
        return f"{method.index_bitwidth}-bit indices, {tables} tables"

    def facts(self, method) -> dict[str, object]:
        return {"bitwidth": method.index_bitwidth, "mode": _mode(method)}

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_lut(encoded, ancillary, output)

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_checked(encoded, ancillary, output)


def _lut_method(bitwidth: int, axis: int | None):
    """TFLM's LUT method with the table layout it will get (``axis`` -1: one table)."""
    from tflite_micro.tensorflow.lite.micro.compression import spec

    method = spec.LookUpTableCompression(bitwidth)
    method.table_axis = axis  # read back by describe() and facts(); TFLM ignores it
    return method


def _per_tensor(method) -> bool:
    return getattr(method, "table_axis", None) == -1


def _mode(method) -> str:
    return "per-tensor" if _per_tensor(method) else "per-channel"


def _bits_for(distinct: int, bitwidth: int | None) -> int:
    return bitwidth or max(LUT_BITWIDTHS[0], math.ceil(math.log2(max(distinct, 1))))


def _max_distinct_per_channel(array: np.ndarray, axis: int) -> int:
    rows = np.sort(np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1), axis=1)
    distinct = 1 + np.count_nonzero(np.diff(rows, axis=1), axis=1)
    return int(distinct.max())


def decode_lut(encoded: bytes, ancillary: bytes, out) -> np.ndarray:
    """Expand LUT indices + value tables into the tensor, as TFLM's DECODE kernel does (the
    Python reference used to check a built model; see :func:`decode_checked`)."""
    return decode_checked(encoded, ancillary, out)


# Output types TFLM's LUT decoder expands (decode_state_lut.cc, DecodeStateLut::Decode).
RUNTIME_TYPES = ("BOOL", "FLOAT32", "INT8", "INT16", "INT32", "INT64")
_MAX_BITS, _MAX_STRIDE = 7, 128  # decode_state_lut.h: kMaxBitWidth, kMaxValueTableChannelStride


def decode_checked(encoded: bytes, ancillary: bytes, out) -> np.ndarray:
    """The tensor TFLM's LUT decoder gives for this layout, or :class:`_tflm.BadLayout`.

    Mirrors the runtime, not the compressor: the channel count comes from the output's
    quantization (the axis nibble of byte 5 is not read), byte 5 bits 0-2 are the index width,
    byte 6 the value-table stride; every index must fall within its channel's table.
    """
    _tflm.require(_tflm.dtype_name(out) in RUNTIME_TYPES, f"{_tflm.dtype_name(out)} output")
    dtype = _tflm.output_dtype(out)
    _tflm.require(ancillary[4] == 1, f"LUT format version {ancillary[4]}, TFLM reads 1")
    bits, stride = ancillary[5] & 0x7, ancillary[6]
    _tflm.require(1 <= bits <= _MAX_BITS, f"LUT index width {bits} bits, TFLM takes 1-7")
    _tflm.require(1 <= stride <= _MAX_STRIDE, f"LUT table stride {stride}, TFLM takes 1-128")
    channels, alternate = _tflm.runtime_channels(out)
    count = math.prod(int(n) for n in out.shape)
    channel = _tflm.element_channels(count, channels, alternate)
    needed = -(-count * bits // 8)
    _tflm.require(
        len(encoded) == needed,
        f"{len(encoded)} B of indices, {count} elements of {bits} bits need {needed} B",
    )
    table_bytes = channels * stride * dtype.itemsize
    _tflm.require(
        len(ancillary) - _tflm.DCM_BYTES == table_bytes,
        f"{len(ancillary) - _tflm.DCM_BYTES} B of value tables, {channels} channel(s) x "
        f"{stride} values of {dtype.itemsize} B need {table_bytes} B",
    )
    stream = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8))[: count * bits]
    indices = stream.reshape(count, bits) @ (1 << np.arange(bits - 1, -1, -1))
    _tflm.require(
        count == 0 or int(indices.max()) < stride,
        f"LUT index {int(indices.max()) if count else 0} beyond the table of {stride} values",
    )
    tables = np.frombuffer(ancillary[_tflm.DCM_BYTES :], dtype=dtype.newbyteorder("<"))
    return tables[channel * stride + indices].astype(dtype).reshape(tuple(map(int, out.shape)))
