"""Make a pruned model smaller *and* runnable on TFLM: clustering, then LUT compression.

TFLM has no DENSIFY kernel, so a sparse-encoded flatbuffer does not run on a microcontroller.
What does run is TFLM's own look-up-table (LUT) compression: a weight tensor with at most
``2**b`` distinct values per channel is stored as ``b``-bit indices plus one small value table
per channel (or one for the whole tensor when that is smaller, e.g. for per-tensor quantized
weights), and a ``TFLM_DECODE`` operator expands it into the arena just before the operator
that reads it (``tflite_micro/tensorflow/lite/micro/compression/``, ``compress.py`` and
``lut.py``). Pruning alone gives many distinct values; sparsity-preserving clustering
(:func:`cluster`) cuts them to ``number_of_clusters`` per layer while keeping the zeros.

Two steps, used in this order::

    clustered = cluster(stripped_pruned_model, number_of_clusters=16)
    clustered.compile(...)               # cluster_weights drops the optimizer
    clustered.fit(..., epochs=1)         # short fine-tune
    final = strip_clustering(clustered)
    int8 = convert(final, quantization="int8", ...).tflite_bytes
    result = lut_compress(int8)          # LutCompressionResult, .tflite_bytes runs on TFLM

RAM cost: the decoded tensors live in the TFLM arena while their consumer runs, so the arena of
a compressed model is larger than the uncompressed one's. Measure the compressed model's arena
(footprint/TFLM module); do not reuse the uncompressed model's figure.

:func:`lut_compress` does not import TensorFlow; :func:`cluster` does, when called.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from edge_prune.errors import ConfigError, ConversionError, ModelFileError, UnsupportedModelError
from edge_prune.tflite_file import load_bytes, read_model

LUT_BITWIDTHS = (2, 3, 4)  # index widths edge-prune uses; TFLM's DCM field allows 1-7
DEFAULT_MIN_TENSOR_BYTES = 512
_DCM_BYTES = 16  # DECODE common metadata header in front of every value table (decode.py)
_PER_TENSOR_AXIS = 0xF  # DCM axis value meaning one table for the whole tensor (lut.py)
_DECODE_OP = "TFLM_DECODE"


# --------------------------------------------------------------------------- clustering


def cluster(
    model,
    number_of_clusters: int = 16,
    *,
    preserve_sparsity: bool = True,
    cluster_per_channel: bool = False,
):
    """Wrap a ``tf_keras`` model for sparsity-preserving weight clustering (tfmot).

    ``model`` should be a pruned model with the pruning wrappers stripped. Each clusterable
    layer's kernel is replaced by ``number_of_clusters`` shared values (centroids initialised
    with k-means++); with ``preserve_sparsity`` the pruned zeros stay zero and count as one of
    the values. ``cluster_per_channel`` (Conv2D only, tfmot) gives each output channel its own
    centroids.

    Returns the *wrapped* model, ready for a short fine-tune. tfmot builds a new model without
    an optimizer: call ``compile`` before ``fit``. Then call :func:`strip_clustering` before
    converting. For :func:`lut_compress` with 4-bit indices keep ``number_of_clusters <= 16``.
    """
    _check_cluster_count(number_of_clusters)
    from edge_prune._tf import keras, tfmot

    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"cluster: model is a {type(model).__module__}.{type(model).__name__}, expected a "
            "tf_keras Model (build it with `import tf_keras as keras`, not Keras 3)"
        )
    clustering = tfmot.clustering.keras
    parameters = {
        "number_of_clusters": number_of_clusters,
        "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": preserve_sparsity,
        "cluster_per_channel": cluster_per_channel,
    }

    def wrap(layer):
        return _clustered_layer(layer, parameters, clustering.cluster_weights)

    try:
        if any(isinstance(layer, keras.Model) for layer in model.layers):
            return clustering.cluster_weights(model, **parameters)  # nested: tfmot's own walk
        return keras.models.clone_model(model, clone_function=wrap)
    except (ValueError, TypeError) as e:
        raise UnsupportedModelError(
            f"cluster: tfmot cannot cluster this model ({e}); strip the pruning wrappers first "
            "and use a Sequential or Functional tf_keras model"
        ) from e


def _clustered_layer(layer, parameters: dict, cluster_weights):
    """``layer`` wrapped for clustering, with fewer clusters where k-means++ cannot place them.

    With sparsity preserved, tfmot splits the centroids between the positive and the negative
    weights and fails when one side has fewer weights than its share (seen: a 72-weight conv
    kernel pruned to 95%: "num_to_sample <= points.rows(). 7 vs 4"). Such a layer gets the
    largest cluster count that works, so its zeros stay preserved; layers without a kernel
    (pooling, reshapes) are returned as they are, as tfmot does.
    """
    from edge_prune._tf import tf

    if not any("kernel" in w.name for w in layer.weights):
        return layer
    for clusters in range(parameters["number_of_clusters"], 1, -1):
        wrapped = cluster_weights(layer, **{**parameters, "number_of_clusters": clusters})
        try:
            wrapped.build(layer.input_shape)  # centroids are placed here
        except tf.errors.InvalidArgumentError:
            continue
        return wrapped
    return layer


def strip_clustering(model):
    """Remove the clustering wrappers; the kernels keep their clustered values."""
    from edge_prune._tf import tfmot

    return tfmot.clustering.keras.strip_clustering(model)


def _check_cluster_count(number_of_clusters: int) -> None:
    if (
        not isinstance(number_of_clusters, int)
        or isinstance(number_of_clusters, bool)
        or number_of_clusters < 2
    ):
        raise ConfigError(
            f"number_of_clusters: got {number_of_clusters!r}, expected an integer >= 2 "
            "(16 or fewer for 4-bit LUT compression)"
        )


# ------------------------------------------------------------------------ LUT compression


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
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["decision"] = self.decision
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
    data, label = load_bytes(int8_tflite_bytes)
    info = read_model(data)
    if info.sparse_tensors:
        names = ", ".join(repr(t.name) for t in info.sparse_tensors[:3])
        raise ConversionError(
            f"{label}: tensors {names} are sparse-encoded; LUT compression needs the dense int8 "
            "model (convert without sparse encoding)"
        )
    model = _read_editable(data, label)

    decisions: dict[tuple[int, int], TensorDecision] = {}
    candidates: list[_Candidate] = []
    for sg_index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            if tensor.buffer is None or not len(tensor.buffer.data):
                continue
            planned = _plan(sg_index, subgraph, tensor, bitwidth, min_tensor_bytes, strict)
            if isinstance(planned, _Candidate):
                candidates.append(planned)
            else:
                decisions[(planned.subgraph, planned.index)] = planned

    accepted, current = _keep_what_shrinks_the_file(data, candidates, decisions)
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


def _read_editable(data: bytes, label: str):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    try:
        return model_editor.read(data)
    except Exception as e:  # the flatbuffers reader raises anything on a bad file
        raise ModelFileError(f"{label}: cannot read TFLite flatbuffer for compression ({e})") from e


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

    base = _describe(sg_index, tensor)

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
    if _shares_buffer(subgraph, tensor):
        return kept("shares its buffer with another tensor")

    array = tensor.array
    axis = _channel_axis(tensor)
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


@functools.cache
def _tensor_type_names() -> dict[int, str]:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def _describe(sg_index: int, tensor) -> dict:
    type_names = _tensor_type_names()
    return {
        "subgraph": sg_index,
        "index": tensor.index,
        "name": tensor.name or f"tensor_{tensor.index}",
        "shape": tuple(int(n) for n in tensor.shape),
        "dtype": type_names.get(tensor.dtype, f"TYPE_{tensor.dtype}"),
        "bytes_before": len(tensor.buffer.data),
    }


def _shares_buffer(subgraph, tensor) -> bool:
    return any(t is not tensor and t.buffer is tensor.buffer for t in subgraph.tensors)


def _channel_axis(tensor) -> int:
    """The quantized dimension for per-channel quantized weights, else axis 0."""
    q = tensor.quantization
    if q is not None and np.size(q.scales) > 1 and q.axis is not None:
        return int(q.axis)
    return 0


def _is_per_channel(tensor) -> bool:
    q = tensor.quantization
    return q is not None and np.size(q.scales) > 1


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
    if total <= 2 ** (bitwidth or LUT_BITWIDTHS[-1]) and not _is_per_channel(tensor):
        options.append((total, spec.PerTensor(), "per-tensor"))

    best = None
    for distinct, mode, mode_name in options:
        method = spec.LookUpTableCompression(
            index_bitwidth=_bits_for(distinct, bitwidth), mode=mode
        )
        after = _compressed_tensor_bytes(tensor, method)
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


def _compressed_tensor_bytes(tensor, method) -> int:
    from tflite_micro.tensorflow.lite.micro.compression import lut

    with _quiet():
        result = lut.LutCompressor().compress(tensor, method)
    return len(result.encoded_data) + len(result.ancillary_data)


@contextlib.contextmanager
def _quiet():
    """Silence tflite_micro's chatter: we report expansion and bit widths ourselves."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _keep_what_shrinks_the_file(data, candidates, decisions):
    """Add candidates one by one, biggest saving first, keeping each only if the file shrinks.

    The first compressed tensor also pays for the rebuilt flatbuffer, the DECODE operator code
    and per-consumer DECODE operators, so its worth is measured on the whole file.
    """
    accepted: list[_Candidate] = []
    current = data
    for candidate in sorted(candidates, key=lambda c: (-c.saving, c.key)):
        trial = _build(data, [*accepted, candidate])
        if len(trial) < len(current):
            accepted.append(candidate)
            current = trial
            decisions[candidate.key] = candidate.decision
        else:
            d = candidate.decision
            decisions[candidate.key] = TensorDecision(
                subgraph=d.subgraph,
                index=d.index,
                name=d.name,
                shape=d.shape,
                dtype=d.dtype,
                bytes_before=d.bytes_before,
                bytes_after=d.bytes_before,
                compressed=False,
                reason=f"would expand the file: {len(current)} B -> {len(trial)} B "
                f"(DECODE operator and tensor overhead)",
                distinct_values=d.distinct_values,
            )
    return accepted, current


def _build(data: bytes, candidates: list[_Candidate]) -> bytes:
    from tflite_micro.tensorflow.lite.micro.compression import spec
    from tflite_micro.tensorflow.lite.micro.compression.compress import compress
    from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionError

    specs = [
        spec.Tensor(subgraph=c.key[0], tensor=c.key[1], compression=[c.method])
        for c in sorted(candidates, key=lambda c: c.key)
    ]
    try:
        with _quiet():
            return _drop_encoded_quantization(bytes(compress(data, specs)))
    except CompressionError as e:
        names = ", ".join(repr(c.decision.name) for c in candidates)
        raise ConversionError(
            f"TFLM LUT compression failed for tensors {names}: {e}; no model was written"
        ) from e


def _drop_encoded_quantization(model_bytes: bytes) -> bytes:
    """Remove the quantization parameters left on the packed-index tensors DECODE reads.

    tflite_micro's model_editor keeps the original per-channel scales and zero points on the
    rewritten UINT8 index tensor although the decoded copy carries them too (12 B per channel
    for int8 per-channel weights: a float32 scale and an int64 zero point). DECODE reads only
    the index bytes and the value tables; the outputs on TFLM are checked equal in the tests.
    """
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    decode_codes = {
        i for i, code in enumerate(model.operatorCodes) if code.customCode == _DECODE_OP.encode()
    }
    changed = False
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.opcodeIndex not in decode_codes:
                continue
            for tensor_index in list(op.inputs)[0::2]:
                tensor = subgraph.tensors[tensor_index]
                if tensor.quantization is not None:
                    tensor.quantization = None
                    changed = True
    if not changed:
        return model_bytes
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return _aligned(bytes(builder.Output()))


def _aligned(model_bytes: bytes) -> bytes:
    """Re-lay the flatbuffer with the buffer alignment TFLM expects (TFLM's C++ aligner)."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory(prefix="edge-prune-lut-") as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(model_bytes)
        tflite_flatbuffer_align_wrapper.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()


def _verify_decodes_to_original(compressed: bytes, accepted: list[_Candidate], label: str):
    """Decode every DECODE output of ``compressed`` and compare it with the input weights."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    expected = {c.decision.name: c for c in accepted}
    seen: set[str] = set()
    for subgraph in model_editor.read(compressed).subgraphs:
        for op in subgraph.operators:
            if op.custom_code != _DECODE_OP:
                continue
            for k, out in enumerate(op.outputs):
                encoded, ancillary = op.inputs[2 * k], op.inputs[2 * k + 1]
                name = (out.name or "").removesuffix("_decoded")
                values = _decode_lut(bytes(encoded.buffer.data), bytes(ancillary.buffer.data), out)
                if name not in expected or not _matches(values, expected[name]):
                    raise ConversionError(
                        f"{label}: LUT compression produced tensor {out.name!r} that does not "
                        "decode to the original weights; no model was written"
                    )
                seen.add(name)
    missing = sorted(set(expected) - seen)
    if missing:
        raise ConversionError(
            f"{label}: LUT compression left tensors {missing} without a DECODE operator; "
            "no model was written"
        )


def _matches(values: np.ndarray, candidate: _Candidate) -> bool:
    return values.shape == candidate.weights.shape and np.array_equal(values, candidate.weights)


def _decode_lut(encoded: bytes, ancillary: bytes, out) -> np.ndarray:
    """Expand LUT indices + value tables (layout of TFLM ``lut.py``) into the full tensor."""
    dtype = np.dtype(np.int8)
    shape = tuple(int(n) for n in out.shape)
    params = ancillary[5]
    axis, bits, stride = params >> 4, params & 0x7, ancillary[6]
    count = math.prod(shape)
    bit_stream = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8))[: count * bits]
    weights = 1 << np.arange(bits - 1, -1, -1)
    indices = bit_stream.reshape(count, bits) @ weights
    tables = np.frombuffer(ancillary[_DCM_BYTES:], dtype=dtype)
    if axis == _PER_TENSOR_AXIS:
        return tables[indices].reshape(shape)
    moved_shape = (shape[axis], *shape[:axis], *shape[axis + 1 :])
    channels = np.arange(shape[axis]).repeat(count // shape[axis])
    per_channel = tables.reshape(shape[axis], stride)
    # indices are stored in the tensor's own element order; put the channel axis first.
    ordered = np.moveaxis(indices.reshape(shape), axis, 0).reshape(-1)
    return np.moveaxis(per_channel[channels, ordered].reshape(moved_shape), 0, axis)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
