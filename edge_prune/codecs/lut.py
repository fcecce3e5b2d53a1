"""LUT codec (DECODE type 0): ``b``-bit indices into small per-channel or per-tensor value tables.

A weight tensor with at most ``2**b`` distinct values per channel is stored as ``b``-bit indices
plus one value table per channel (or one for the whole tensor when that is smaller and the
tensor is quantized per tensor), and a ``TFLM_DECODE`` operator expands it into the arena just
before the operator that reads it. The encoder is TFLM's own
(``tflite_micro/tensorflow/lite/micro/compression/lut.py``); this module plans the bit widths,
keeps only what shrinks the file and checks that every tensor decodes back to its weights.
Weights need clustering first (:func:`edge_prune.cluster.cluster`) to have few values.

RAM cost: the decoded tensors live in the TFLM arena while their consumer runs, so the arena of
a compressed model is larger than the uncompressed one's; measure the compressed model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from edge_prune.codecs import _tflm
from edge_prune.errors import ConfigError, ConversionError

LUT_BITWIDTHS = (2, 3, 4)  # index widths edge-prune uses; TFLM's DCM field allows 1-7
DEFAULT_MIN_TENSOR_BYTES = 512
_PER_TENSOR_AXIS = 0xF  # DCM axis value meaning one table for the whole tensor (lut.py)


class LutCodec:
    """The LUT format for :mod:`edge_prune.codecs.choose`: TFLM's own ``LutCompressor``.

    ``methods`` offers the per-channel table, and one table for the whole tensor when it is
    quantized per tensor (a single table on a per-channel-quantized tensor decodes wrongly on
    TFLM: the kernel takes the channel count from the quantization).
    """

    name = "lut"

    @property
    def method_type(self):
        from tflite_micro.tensorflow.lite.micro.compression import spec

        return spec.LookUpTableCompression

    @property
    def decode_type(self):
        from tflite_micro.tensorflow.lite.micro.compression import decode

        return decode.DecodeType.LUT

    def methods(self, tensor) -> list:
        from tflite_micro.tensorflow.lite.micro.compression import spec

        if _tflm.dtype_name(tensor) != "INT8":
            raise _tflm.Unsuitable(f"{_tflm.dtype_name(tensor)} tensor, LUT here takes INT8 only")
        array = tensor.array
        axis = _tflm.channel_axis(tensor)
        per_channel = _max_distinct_per_channel(array, axis)
        limit = 2 ** LUT_BITWIDTHS[-1]
        options = []
        if per_channel <= limit:
            bits = _bits_for(per_channel, None)
            options.append(spec.LookUpTableCompression(bits, spec.PerChannel(axis=axis)))
        total = int(np.unique(array).size)
        if total <= limit and not _tflm.is_per_channel(tensor):
            options.append(spec.LookUpTableCompression(_bits_for(total, None), spec.PerTensor()))
        if not options:
            raise _tflm.Unsuitable(f"{per_channel} distinct values per channel > {limit}")
        return options

    def compress(self, tensor, method):
        from tflite_micro.tensorflow.lite.micro.compression import lut

        with _tflm.quiet():
            return lut.LutCompressor().compress(tensor, method)

    def describe(self, method) -> str:
        mode = "per-tensor" if method.mode.__class__.__name__ == "PerTensor" else "per-channel"
        return f"{method.index_bitwidth}-bit indices, {mode} tables"

    def decode(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_lut(encoded, ancillary, output)

    def decode_checked(self, encoded: bytes, ancillary: bytes, output) -> np.ndarray:
        return decode_checked(encoded, ancillary, output)


def describe(sg_index: int, tensor) -> dict:
    """The identifying fields of a constant tensor, as :class:`TensorDecision` takes them."""
    return {
        "subgraph": sg_index,
        "index": tensor.index,
        "name": tensor.name or f"tensor_{tensor.index}",
        "shape": tuple(int(n) for n in tensor.shape),
        "dtype": _tflm.dtype_name(tensor),
        "bytes_before": len(tensor.buffer.data),
    }


def _encoded_bytes(tensor, method) -> int:
    result = LutCodec().compress(tensor, method)
    return len(result.encoded_data) + len(result.ancillary_data)


def _build(data: bytes, candidates: list) -> bytes:
    try:
        return _tflm.build(data, {c.key: c.method for c in candidates}, "LUT")
    except ConversionError as e:
        names = ", ".join(repr(c.decision.name) for c in candidates)
        raise ConversionError(f"tensors {names}: {e}") from e


@dataclass(frozen=True)
class TensorDecision:
    """What :func:`lut_compress` did with one constant tensor.

    ``bytes_before`` is the tensor's constant data in the input file; ``bytes_after`` is its
    packed indices plus its DECODE ancillary data (DCM header and value tables) when
    compressed, else ``bytes_before``. Flatbuffer bookkeeping (DECODE operators, extra tensor
    tables) is not in these figures, it is in the file sizes of the result.
    """

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes_before: int
    bytes_after: int
    compressed: bool
    reason: str  # "compressed" or why it was kept
    distinct_values: int | None = None  # most distinct values in one channel (or the tensor)
    bitwidth: int | None = None
    mode: str | None = None  # "per-channel axis N" or "per-tensor"

    @property
    def decision(self) -> str:
        if self.compressed:
            return f"{self.bitwidth}-bit LUT, {self.mode}"
        return f"kept: {self.reason}"

    def to_dict(self) -> dict:
        """The fields, plus the keys a :class:`~edge_prune.codecs.choose.TensorEncoding` has
        (``codec``, ``detail``, ``bits_per_weight``, ``decoded_arena_bytes``), so that a build
        report reads either result the same way."""
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["decision"] = self.decision
        elements = math.prod(self.shape)
        out["codec"] = "lut" if self.compressed else "raw"
        out["detail"] = self.decision if self.compressed else ""
        out["bits_per_weight"] = round(8 * self.bytes_after / elements, 3) if elements else 0.0
        out["decoded_arena_bytes"] = elements if self.compressed else 0  # INT8 only
        return out


@dataclass(frozen=True)
class LutCompressionResult:
    """A LUT-compressed flatbuffer and what was done to each constant tensor.

    ``size_bytes`` is the whole output flatbuffer (what is flashed); ``original_size_bytes`` is
    the input flatbuffer. When no tensor is worth compressing, ``tflite_bytes`` is the input,
    unchanged.
    """

    tflite_bytes: bytes
    original_size_bytes: int
    decisions: tuple[TensorDecision, ...]

    @property
    def size_bytes(self) -> int:
        return len(self.tflite_bytes)

    @property
    def saved_bytes(self) -> int:
        return self.original_size_bytes - self.size_bytes

    @property
    def compressed_tensors(self) -> tuple[TensorDecision, ...]:
        return tuple(d for d in self.decisions if d.compressed)

    def to_dict(self) -> dict:
        return {
            "original_size_bytes": self.original_size_bytes,
            "size_bytes": self.size_bytes,
            "saved_bytes": self.saved_bytes,
            "compressed_tensor_count": len(self.compressed_tensors),
            "tensors": [d.to_dict() for d in self.decisions],
        }

    def __str__(self) -> str:
        ratio = self.size_bytes / self.original_size_bytes if self.original_size_bytes else 1.0
        lines = [
            f"LUT compression: {self.original_size_bytes:,} B -> {self.size_bytes:,} B "
            f"({ratio:.1%} of the input flatbuffer), "
            f"{len(self.compressed_tensors)} of {len(self.decisions)} constant tensors compressed",
            f"  {'tensor':<40} {'shape':<16} {'distinct':>8} {'before B':>9} {'after B':>8}  "
            "decision",
        ]
        for d in self.decisions:
            distinct = "-" if d.distinct_values is None else str(d.distinct_values)
            shape = "x".join(str(n) for n in d.shape) or "scalar"
            lines.append(
                f"  {_clip(d.name, 40):<40} {shape:<16} {distinct:>8} {d.bytes_before:>9,} "
                f"{d.bytes_after:>8,}  {d.decision}"
            )
        return "\n".join(lines)


def lut_compress(
    int8_tflite_bytes,
    *,
    bitwidth: int | None = None,
    min_tensor_bytes: int = DEFAULT_MIN_TENSOR_BYTES,
    strict: bool = True,
) -> LutCompressionResult:
    """LUT-compress the large constant INT8 weight tensors of a TFLite model for TFLM.

    ``int8_tflite_bytes``: an int8 flatbuffer (bytes or a path) without sparse encoding, whose
    weights were clustered so that each channel holds few distinct values.
    ``bitwidth``: index width for every compressed tensor (2, 3 or 4); ``None`` picks per
    tensor the smallest width in 2-4 that holds its distinct values.
    ``min_tensor_bytes``: tensors with less constant data are left alone.
    ``strict``: a candidate tensor with more distinct values per channel than the width allows
    raises :class:`ConversionError`; with ``strict=False`` it is kept uncompressed instead.

    Channels are slices along the tensor's quantized dimension (axis 0 for per-tensor
    quantization); a single table for the whole tensor is used when that is smaller. A tensor
    is kept uncompressed when compressing it would grow the file, measured by building the
    model with and without it. The output is checked by decoding every compressed tensor back
    and comparing with the input weights; nothing is returned unless they are identical.
    Deterministic: the same input gives the same bytes.
    """
    _check_arguments(bitwidth, min_tensor_bytes)
    data, label, model = _tflm.read_dense_editable(
        int8_tflite_bytes, "LUT compression needs the dense int8 model"
    )

    decisions: dict[tuple[int, int], TensorDecision] = {}
    candidates: list[_Candidate] = []
    for sg_index, subgraph, tensor in _tflm.constant_tensors(model):
        planned = _plan(sg_index, subgraph, tensor, bitwidth, min_tensor_bytes, strict)
        if isinstance(planned, _Candidate):
            candidates.append(planned)
        else:
            decisions[(planned.subgraph, planned.index)] = planned

    accepted, current = _tflm.keep_what_shrinks_the_file(
        data,
        candidates,
        _build,
        keep=lambda c: decisions.__setitem__(c.key, c.decision),
        reject=lambda c, why: decisions.__setitem__(c.key, _left_as_is(c, why)),
    )
    if accepted:
        _verify_decodes_to_original(current, accepted, label)
    else:
        current = data
    ordered = tuple(decisions[key] for key in sorted(decisions))
    return LutCompressionResult(
        tflite_bytes=current, original_size_bytes=len(data), decisions=ordered
    )


def _check_arguments(bitwidth: int | None, min_tensor_bytes: int) -> None:
    if bitwidth is not None and bitwidth not in LUT_BITWIDTHS:
        raise ConfigError(
            f"bitwidth: got {bitwidth!r}, expected one of {', '.join(map(str, LUT_BITWIDTHS))} "
            "or None (choose per tensor)"
        )
    if not isinstance(min_tensor_bytes, int) or min_tensor_bytes < 0:
        raise ConfigError(f"min_tensor_bytes: got {min_tensor_bytes!r}, expected an integer >= 0")


@dataclass(frozen=True)
class _Candidate:
    """A tensor that LUT compression can shrink, with its planned spec and exact sizes."""

    decision: TensorDecision  # filled in as if compressed
    method: object  # spec.LookUpTableCompression
    weights: np.ndarray = field(compare=False, repr=False)  # the input values, for the check

    @property
    def key(self) -> tuple[int, int]:
        return (self.decision.subgraph, self.decision.index)

    @property
    def saving(self) -> int:
        return self.decision.bytes_before - self.decision.bytes_after


def _plan(sg_index, subgraph, tensor, bitwidth, min_tensor_bytes, strict):
    """Return a kept :class:`TensorDecision` or a :class:`_Candidate` for one constant tensor."""
    from tflite_micro.tensorflow.lite.micro.compression import constant_inputs

    base = describe(sg_index, tensor)

    def kept(reason: str, **extra) -> TensorDecision:
        return TensorDecision(
            **base, bytes_after=base["bytes_before"], compressed=False, reason=reason, **extra
        )

    if base["bytes_before"] < min_tensor_bytes:
        return kept(f"below min_tensor_bytes ({base['bytes_before']} B < {min_tensor_bytes} B)")
    if base["dtype"] != "INT8":
        return kept(f"{base['dtype']} tensor, only INT8 weights are LUT-compressed")
    if len(base["shape"]) < 2:
        return kept("rank-1 tensor (bias-like), not a weight matrix")
    if not subgraph.consumers_of(tensor):
        return kept("no operator reads it")
    if uses := constant_inputs.find_uses(subgraph, tensor):
        return kept("must stay constant: " + "; ".join(u.describe() for u in uses))
    if _tflm.shares_buffer(subgraph, tensor):
        return kept("shares its buffer with another tensor")

    array = tensor.array
    axis = _tflm.channel_axis(tensor)
    per_channel = _max_distinct_per_channel(array, axis)
    limit = bitwidth or LUT_BITWIDTHS[-1]
    if per_channel > 2**limit:
        if strict:
            wider = f" or a wider bitwidth (up to {LUT_BITWIDTHS[-1]})" if limit < 4 else ""
            raise ConversionError(
                f"tensor {base['name']!r} (subgraph {sg_index}, index {base['index']}, shape "
                f"{'x'.join(map(str, base['shape']))}) has {per_channel} distinct values in one "
                f"channel (axis {axis}); a {limit}-bit LUT holds at most {2**limit}: cluster "
                f"the layer to <= {2**limit} values{wider}, or pass strict=False to keep it "
                "uncompressed; no model was written"
            )
        return kept(
            f"{per_channel} distinct values per channel > {2**limit} ({limit}-bit LUT)",
            distinct_values=per_channel,
        )
    return _cheapest_candidate(base, tensor, array, axis, per_channel, bitwidth)


def _max_distinct_per_channel(array: np.ndarray, axis: int) -> int:
    rows = np.sort(np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1), axis=1)
    distinct = 1 + np.count_nonzero(np.diff(rows, axis=1), axis=1)
    return int(distinct.max())


def _bits_for(distinct: int, bitwidth: int | None) -> int:
    return bitwidth or max(LUT_BITWIDTHS[0], math.ceil(math.log2(max(distinct, 1))))


def _cheapest_candidate(base, tensor, array, axis, per_channel, bitwidth):
    """Plan per-channel tables, or one table when the whole tensor has few enough values."""
    from tflite_micro.tensorflow.lite.micro.compression import spec

    total = int(np.unique(array).size)
    options = [(per_channel, spec.PerChannel(axis=axis), f"per-channel axis {axis}")]
    # One table for a per-channel-quantized tensor decodes wrongly on TFLM (seen here: top-1
    # agreement with the int8 model fell to 10%), so it is offered for per-tensor ones only.
    if total <= 2 ** (bitwidth or LUT_BITWIDTHS[-1]) and not _tflm.is_per_channel(tensor):
        options.append((total, spec.PerTensor(), "per-tensor"))

    best = None
    for distinct, mode, mode_name in options:
        method = spec.LookUpTableCompression(
            index_bitwidth=_bits_for(distinct, bitwidth), mode=mode
        )
        after = _encoded_bytes(tensor, method)
        if best is None or after < best[0]:
            best = (after, distinct, method, mode_name)
    after, distinct, method, mode_name = best

    if after >= base["bytes_before"]:
        return TensorDecision(
            **base,
            bytes_after=base["bytes_before"],
            compressed=False,
            reason=f"would expand: {base['bytes_before']} B -> {after} B "
            f"({method.index_bitwidth}-bit indices + value tables)",
            distinct_values=distinct,
        )
    decision = TensorDecision(
        **base,
        bytes_after=after,
        compressed=True,
        reason="compressed",
        distinct_values=distinct,
        bitwidth=method.index_bitwidth,
        mode=mode_name,
    )
    return _Candidate(decision=decision, method=method, weights=array.copy())


def _left_as_is(candidate: _Candidate, reason: str) -> TensorDecision:
    d = candidate.decision
    return TensorDecision(
        subgraph=d.subgraph,
        index=d.index,
        name=d.name,
        shape=d.shape,
        dtype=d.dtype,
        bytes_before=d.bytes_before,
        bytes_after=d.bytes_before,
        compressed=False,
        reason=reason,
        distinct_values=d.distinct_values,
    )


def _verify_decodes_to_original(compressed: bytes, accepted: list[_Candidate], label: str):
    """Decode every DECODE output of ``compressed`` and compare it with the input weights."""
    expected = {c.key: c for c in accepted}
    seen: set[tuple[int, int]] = set()
    for decoded in _tflm.decoded_tensors(compressed):
        values = decode_lut(decoded.encoded, decoded.ancillary, decoded.output)
        if decoded.key not in expected or not _matches(values, expected[decoded.key]):
            raise ConversionError(
                f"{label}: LUT compression produced tensor {decoded.output.name!r} that does not "
                "decode to the original weights; no model was written"
            )
        seen.add(decoded.key)
    missing = sorted(set(expected) - seen)
    if missing:
        names = [expected[key].decision.name or f"#{key[1]}" for key in missing]
        raise ConversionError(
            f"{label}: LUT compression left tensors {names} without a DECODE operator; "
            "no model was written"
        )


def _matches(values: np.ndarray, candidate: _Candidate) -> bool:
    return values.shape == candidate.weights.shape and np.array_equal(values, candidate.weights)


def decode_lut(encoded: bytes, ancillary: bytes, out) -> np.ndarray:
    """Expand LUT indices + value tables (layout of TFLM ``compression/lut.py``) into the tensor.

    A Python reference of the LUT branch of TFLM's DECODE kernel, used to check a built model.
    """
    dtype = np.dtype(out.numpy_dtype)
    shape = tuple(int(n) for n in out.shape)
    params = ancillary[5]
    axis, bits, stride = params >> 4, params & 0x7, ancillary[6]
    count = math.prod(shape)
    bit_stream = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8))[: count * bits]
    weights = 1 << np.arange(bits - 1, -1, -1)
    indices = bit_stream.reshape(count, bits) @ weights
    tables = np.frombuffer(ancillary[_tflm.DCM_BYTES :], dtype=dtype)
    if axis == _PER_TENSOR_AXIS:
        return tables[indices].reshape(shape)
    moved_shape = (shape[axis], *shape[:axis], *shape[axis + 1 :])
    channels = np.arange(shape[axis]).repeat(count // shape[axis])
    per_channel = tables.reshape(shape[axis], stride)
    # indices are stored in the tensor's own element order; put the channel axis first.
    ordered = np.moveaxis(indices.reshape(shape), axis, 0).reshape(-1)
    return np.moveaxis(per_channel[channels, ordered].reshape(moved_shape), 0, axis)


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


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
