"""Per-tensor choice of weight encoding for TFLM: raw or one of the registered codecs.

For each constant weight tensor every selected codec (:mod:`edge_prune.measurement.codecs.registry`)
proposes its encodings; the smallest (encoded + ancillary bytes) wins when it is smaller than
the raw data and, measured on the whole file, shrinks it (a DECODE operator and two tensors cost
flatbuffer bytes). A codec that cannot take a tensor (type, too many symbols) is skipped with
its reason recorded. Every compressed tensor of the built model is decoded with the codecs'
Python reference decoders and compared with the original weights; nothing is returned unless
they are equal. What a codec provides: :class:`edge_prune.measurement.codecs.protocol.Codec`.

RAM: TFLM's DECODE writes each decoded tensor into the arena, where it lives until its
consumer has run, so the arena grows by about the largest decoded tensor. With
``arena_limit_bytes`` the compressed model's arena is measured on TFLM and, while it is over
the limit, the compressed tensor with the largest decoded size is left raw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_prune.errors import ConfigError, ConversionError
from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.constant_inputs import find_uses
from edge_prune.measurement.codecs.lut import LutCodec
from edge_prune.measurement.codecs.registry import DEFAULT_CODECS, select
from edge_prune.tables import table_lines

DEFAULT_MIN_TENSOR_BYTES = 512
RAW = "raw"


@dataclass(frozen=True)
class TensorEncoding:
    """What :func:`compress_for_mcu` did with one constant tensor.

    ``bytes_before``: the tensor's constant data in the input file. ``bytes_after``: encoded
    plus ancillary (DECODE metadata, tables, kept values) bytes when compressed, else
    ``bytes_before``; flatbuffer bookkeeping (DECODE operators, tensor tables) is only in the
    file sizes of the result. ``decoded_arena_bytes``: the decoded copy DECODE writes into the
    arena (0 when raw: raw weights are read from flash). ``candidates``: ``(codec, size in
    bytes or why it could not encode)`` for every codec tried. ``facts``: the chosen method's
    parameters (``Codec.facts``, e.g. LUT's ``bitwidth`` and ``mode``), also report fields.
    """

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    codec: str  # "raw" or a registry name
    detail: str
    bytes_before: int
    bytes_after: int
    decoded_arena_bytes: int
    reason: str
    candidates: tuple[tuple[str, str], ...] = ()
    facts: tuple[tuple[str, object], ...] = ()

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.bytes_after / self.elements if self.elements else 0.0

    def to_dict(self) -> dict:
        return {
            "subgraph": self.subgraph,
            "index": self.index,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "codec": self.codec,
            "detail": self.detail,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bits_per_weight": round(self.bits_per_weight, 3),
            "decoded_arena_bytes": self.decoded_arena_bytes,
            "reason": self.reason,
            "candidates": dict(self.candidates),
            **dict(self.facts),
        }


@dataclass(frozen=True)
class McuCompressionResult:
    """A flatbuffer with per-tensor encodings that TFLM decodes, and what was done per tensor.

    ``size_bytes`` is the whole output flatbuffer (what is flashed), ``original_size_bytes`` the
    input. ``arena_bytes``: the output's arena on TFLM as a verdict counts it (``verdict_bytes``),
    only when an arena limit was given. ``decoded_elements``: elements each codec expands per
    inference (their time: :mod:`edge_prune.measurement.instructions`, calibrated on device runs).
    """

    tflite_bytes: bytes
    original_size_bytes: int
    tensors: tuple[TensorEncoding, ...]
    arena_limit_bytes: int | None = None
    arena_bytes: int | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.tflite_bytes)

    @property
    def compressed(self) -> tuple[TensorEncoding, ...]:
        return tuple(t for t in self.tensors if t.codec != RAW)

    @property
    def decoded_elements(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.compressed:
            counts[t.codec] = counts.get(t.codec, 0) + t.elements
        return counts

    @property
    def weight_bytes_before(self) -> int:
        return sum(t.bytes_before for t in self.tensors)

    @property
    def weight_bytes_after(self) -> int:
        return sum(t.bytes_after for t in self.tensors)

    def to_dict(self) -> dict:
        return {
            "original_size_bytes": self.original_size_bytes,
            "size_bytes": self.size_bytes,
            "weight_bytes_before": self.weight_bytes_before,
            "weight_bytes_after": self.weight_bytes_after,
            "arena_limit_bytes": self.arena_limit_bytes,
            "arena_bytes": self.arena_bytes,
            "decoded_elements": self.decoded_elements,
            "tensors": [t.to_dict() for t in self.tensors],
        }

    def __str__(self) -> str:
        header = ["tensor", "shape", "codec", "before B", "after B", "bits/w", "arena B", "why"]
        rows = [
            [
                t.name,
                "x".join(map(str, t.shape)),
                t.codec if t.codec == RAW else f"{t.codec} ({t.detail})",
                f"{t.bytes_before:,}",
                f"{t.bytes_after:,}",
                f"{t.bits_per_weight:.2f}",
                f"{t.decoded_arena_bytes:,}",
                t.reason,
            ]
            for t in self.tensors
        ]
        arena = "" if self.arena_bytes is None else f", arena {self.arena_bytes:,} B"
        title = (
            f"Per-tensor encoding: {self.original_size_bytes:,} B -> {self.size_bytes:,} B"
            f"{arena}, {len(self.compressed)} of {len(self.tensors)} tensors compressed"
        )
        return "\n".join([title, *table_lines(header, rows, rule=True)])


@dataclass(frozen=True)
class _Choice:
    """The best encoding of one tensor, before it is checked on the whole file."""

    key: tuple[int, int]
    encoding: TensorEncoding
    method: object = field(repr=False)
    weights: np.ndarray = field(repr=False, compare=False)

    @property
    def saving(self) -> int:
        return self.encoding.bytes_before - self.encoding.bytes_after


def compress_for_mcu(
    int8_tflite_bytes,
    *,
    codecs: tuple = DEFAULT_CODECS,
    arena_limit_bytes: int | None = None,
    min_tensor_bytes: int = DEFAULT_MIN_TENSOR_BYTES,
    only: frozenset[tuple[int, int]] | None = None,
) -> McuCompressionResult:
    """Encode each large constant tensor of a dense TFLite model with its smallest codec.

    ``int8_tflite_bytes``: a flatbuffer (bytes or path) without sparse encoding.
    ``codecs``: names from :data:`~edge_prune.measurement.codecs.registry.CODECS` to try, in
    tie-break order, or codec objects with options (``LutCodec(bitwidth=4, strict=True)``).
    ``arena_limit_bytes``: when given, the arena of the result is measured on TFLM and
    compressed tensors are left raw, largest decoded size first, until it fits (if the raw
    model alone is over the limit, nothing is compressed and ``arena_bytes`` says so).
    ``min_tensor_bytes``: smaller tensors stay raw.
    ``only``: when given, the ``(subgraph, tensor index)`` pairs that may be compressed; every
    other tensor stays raw.
    Deterministic: the same input gives the same bytes.
    """
    selected = _check_arguments(codecs, arena_limit_bytes, min_tensor_bytes)
    data, label, model = _tflm.read_dense_editable(
        int8_tflite_bytes, "compress_for_mcu needs the dense model"
    )
    _tflm.register(selected.values())

    encodings: dict[tuple[int, int], TensorEncoding] = {}
    choices: list[_Choice] = []
    for sg_index, subgraph, tensor in _tflm.constant_tensors(model):
        if only is not None and (sg_index, tensor.index) not in only:
            encodings[(sg_index, tensor.index)] = _raw(_identity(sg_index, tensor), "not selected")
            continue
        planned = _plan(sg_index, subgraph, tensor, selected, min_tensor_bytes)
        if isinstance(planned, _Choice):
            choices.append(planned)
        else:
            encodings[(sg_index, tensor.index)] = planned

    accepted, current = _tflm.keep_what_shrinks_the_file(
        data,
        choices,
        _build,
        keep=lambda c: encodings.__setitem__(c.key, c.encoding),
        reject=lambda c, why: encodings.__setitem__(c.key, _left_raw(c, why)),
    )
    arena = None
    if arena_limit_bytes is not None:
        accepted, current, arena = _fit_arena(data, accepted, current, arena_limit_bytes, encodings)
    if accepted:
        _verify_decodes_to_original(current, accepted, selected, label)
    return McuCompressionResult(
        tflite_bytes=current,
        original_size_bytes=len(data),
        tensors=tuple(encodings[key] for key in sorted(encodings)),
        arena_limit_bytes=arena_limit_bytes,
        arena_bytes=arena,
    )


def lut_compress(
    int8_tflite_bytes,
    *,
    bitwidth: int | None = None,
    min_tensor_bytes: int = DEFAULT_MIN_TENSOR_BYTES,
    strict: bool = True,
) -> McuCompressionResult:
    """:func:`compress_for_mcu` with the LUT codec alone, for clustered int8 weights.

    ``bitwidth``: index width for every compressed tensor (2, 3 or 4); ``None`` picks per
    tensor the smallest width in 2-4 that holds its distinct values. ``strict``: a weight
    matrix with more distinct values per channel than the width holds raises
    :class:`~edge_prune.errors.ConversionError` naming it (no model is written); with
    ``strict=False`` it stays raw. A single table for the whole tensor is used when smaller
    and the tensor is quantized per tensor.
    """
    return compress_for_mcu(
        int8_tflite_bytes,
        codecs=(LutCodec(bitwidth, strict=strict),),
        min_tensor_bytes=min_tensor_bytes,
    )


def _check_arguments(codecs, arena_limit_bytes, min_tensor_bytes) -> dict:
    selected = select(codecs)
    if arena_limit_bytes is not None and (
        not isinstance(arena_limit_bytes, int) or arena_limit_bytes <= 0
    ):
        raise ConfigError(f"arena_limit_bytes: got {arena_limit_bytes!r}, expected an int > 0")
    if not isinstance(min_tensor_bytes, int) or min_tensor_bytes < 0:
        raise ConfigError(f"min_tensor_bytes: got {min_tensor_bytes!r}, expected an integer >= 0")
    return selected


def _identity(sg_index: int, tensor) -> dict:
    """The identifying fields and raw size of a constant tensor, as TensorEncoding takes them."""
    return {
        "subgraph": sg_index,
        "index": tensor.index,
        "name": tensor.name or f"tensor_{tensor.index}",
        "shape": tuple(int(n) for n in tensor.shape),
        "dtype": _tflm.dtype_name(tensor),
        "bytes_before": len(tensor.buffer.data),
    }


def _raw(base: dict, reason: str, candidates=()) -> TensorEncoding:
    return TensorEncoding(
        **base,
        codec=RAW,
        detail="",
        bytes_after=base["bytes_before"],
        decoded_arena_bytes=0,
        reason=reason,
        candidates=tuple(candidates),
    )


def _plan(sg_index, subgraph, tensor, codecs: dict, min_tensor_bytes: int):
    """A raw :class:`TensorEncoding` with its reason, or the best :class:`_Choice`."""
    base = _identity(sg_index, tensor)
    if base["bytes_before"] < min_tensor_bytes:
        return _raw(
            base, f"below min_tensor_bytes ({base['bytes_before']} B < {min_tensor_bytes} B)"
        )
    if not subgraph.consumers_of(tensor):
        return _raw(base, "no operator reads it")
    if uses := find_uses(subgraph, tensor):
        return _raw(base, "must stay constant: " + "; ".join(u.describe() for u in uses))
    if _tflm.shares_buffer(subgraph, tensor):
        return _raw(base, "shares its buffer with another tensor")

    candidates, best = _candidates(base, tensor, codecs)
    if best is None:
        return _raw(base, "no codec can encode it", candidates)
    size, name, method = best
    if size >= base["bytes_before"]:
        return _raw(base, f"would expand: smallest is {name} at {size} B", candidates)
    codec = codecs[name]
    encoding = TensorEncoding(
        **base,
        codec=name,
        detail=codec.describe(method),
        bytes_after=size,
        decoded_arena_bytes=codec.decoded_bytes(tensor),
        reason="smallest encoding",
        candidates=tuple(candidates),
        facts=tuple(codec.facts(method).items()),
    )
    return _Choice(
        key=(sg_index, tensor.index), encoding=encoding, method=method, weights=tensor.array.copy()
    )


def _candidates(base: dict, tensor, codecs: dict):
    """``(candidates, (size, name, method) of the smallest or None)`` over every codec; a
    codec's ConversionError (an option forbids leaving the tensor raw) names the tensor."""
    from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionError

    candidates, best = [], None
    for name, codec in codecs.items():
        try:
            for method in codec.methods(tensor):
                result = codec.compress(tensor, method)
                size = len(result.encoded_data) + len(result.ancillary_data)
                if best is None or size < best[0]:
                    best = (size, name, method)
                candidates.append((f"{name}: {codec.describe(method)}", f"{size} B"))
        except (_tflm.Unsuitable, CompressionError) as e:
            candidates.append((name, f"cannot encode: {e}"))
        except ConversionError as e:
            shape = "x".join(map(str, base["shape"]))
            raise ConversionError(
                f"tensor {base['name']!r} (subgraph {base['subgraph']}, index {base['index']}, "
                f"shape {shape}): {e}; no model was written"
            ) from e
    return candidates, best


def _build(data: bytes, accepted: list[_Choice]) -> bytes:
    if not accepted:
        return data
    return _tflm.build(data, {c.key: c.method for c in accepted}, "per-tensor")


def _left_raw(choice: _Choice, reason: str) -> TensorEncoding:
    e = choice.encoding
    base = {k: getattr(e, k) for k in ("subgraph", "index", "name", "shape", "dtype")}
    return _raw({**base, "bytes_before": e.bytes_before}, reason, e.candidates)


def _fit_arena(data, accepted, current, limit, encodings):
    """Leave the largest decoded tensor raw while the measured arena is over ``limit``."""
    from edge_prune.measurement import tflm

    arena = tflm.measure_arena(current).verdict_bytes
    accepted = list(accepted)
    while arena > limit and accepted:
        largest = max(accepted, key=lambda c: (c.encoding.decoded_arena_bytes, c.key))
        accepted.remove(largest)
        encodings[largest.key] = _left_raw(
            largest, f"left raw: decoding would push the arena to {arena} B > limit {limit} B"
        )
        current = _build(data, accepted)
        arena = tflm.measure_arena(current).verdict_bytes
    return accepted, current, arena


def _verify_decodes_to_original(
    compressed: bytes, accepted: list[_Choice], codecs: dict, label: str
) -> None:
    """Decode every DECODE output with the codecs' reference decoders; compare with the
    weights."""
    by_type = {codec.decode_type: codec for codec in codecs.values()}
    expected = {c.key: c for c in accepted}
    seen: set[tuple[int, int]] = set()
    for decoded in _tflm.decoded_tensors(compressed):
        choice = expected.get(decoded.key)
        codec = by_type.get(decoded.decode_type)
        values = (
            None
            if codec is None
            else codec.decode(decoded.encoded, decoded.ancillary, decoded.output)
        )
        if (
            choice is None
            or values is None
            or not (values.shape == choice.weights.shape and np.array_equal(values, choice.weights))
        ):
            raise ConversionError(
                f"{label}: tensor {decoded.output.name!r} (decode type {decoded.decode_type}) "
                "does not decode to the original weights; no model was written"
            )
        seen.add(decoded.key)
    if missing := sorted(set(expected) - seen):
        names = [expected[key].encoding.name or f"#{key[1]}" for key in missing]
        raise ConversionError(
            f"{label}: tensors {names} have no DECODE operator after compression; "
            "no model was written"
        )
