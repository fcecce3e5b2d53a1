"""Glue to TFLM's compression package (``tflite_micro/tensorflow/lite/micro/compression/``).

- :func:`register` puts the codecs' compressors into ``compress._COMPRESSORS``, the package's
  dispatch table from a ``spec`` compression method to a ``Compressor`` (``decode_type`` +
  ``compress(tensor, method) -> CompressionResult``); the stock table holds stubs that raise
  for Huffman and pruning.
- :func:`build` runs the package's ``compress()`` (which inserts the ``TFLM_DECODE`` operators
  and aligns the flatbuffer) and drops the quantization left on the encoded tensors.
- :func:`decoded_tensors` walks the DECODE operators of a built model, for the decode check.
- Facts about a ``model_editor.Tensor`` the codecs share (type name, channel axis, zero points).

The DECODE common metadata (DCM) that starts every ancillary tensor is 16 bytes: byte 0 the
decode type (0 LUT, 1 Huffman, 2 pruning), byte 1 the DCM version (1), byte 4 the version of the
type-specific data (``tensorflow/lite/micro/kernels/decode_state.h``, ``compression/decode.py``).

No TensorFlow here: only the ``tflite_micro`` package and numpy.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edge_prune.errors import ConversionError, ModelFileError
from edge_prune.measurement.flatbuffer_pack import aligned, pack  # noqa: F401 - codecs use them

DECODE_OP = "TFLM_DECODE"
DCM_BYTES = 16


class Unsuitable(ValueError):
    """A codec cannot encode this tensor (type, too many symbols ...); the message says why."""


class BadLayout(ValueError):
    """An encoded tensor or its ancillary data that TFLM's decoder cannot expand into the output
    tensor (unknown version, sizes that do not add up, table indices out of range ...)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`BadLayout` with ``message`` unless ``condition``."""
    if not condition:
        raise BadLayout(message)


def runtime_channels(output) -> tuple[int, bool]:
    """``(channels, alternate axis)`` as TFLM's LUT and pruning decoders take them from the
    output tensor's quantization (``decode_state_lut.cc``/``decode_state_prune.cc``, Setup):
    one channel per scale, along axis 0, or interleaved when quantized along the last axis."""
    q = output.quantization
    if q is None or np.size(q.scales) == 0:
        return 1, False
    channels = int(np.size(q.scales))
    require(
        np.size(q.zero_points) == channels,
        f"{channels} scales but {np.size(q.zero_points)} zero points",
    )
    axis = int(q.axis or 0)
    if axis == len(output.shape) - 1 and channels > 1:
        return channels, True
    require(axis == 0, f"quantized along axis {axis}; TFLM's decoder takes 0 or the last axis")
    return channels, False


def element_channels(count: int, channels: int, alternate: bool) -> np.ndarray:
    """The channel of each element in row-major order, as TFLM's decoders walk them."""
    require(count % channels == 0, f"{count} elements do not split into {channels} channels evenly")
    if alternate:
        return np.tile(np.arange(channels), count // channels)
    return np.arange(channels).repeat(count // channels)


def output_dtype(output) -> np.dtype:
    try:
        return np.dtype(output.numpy_dtype)
    except (ValueError, TypeError, KeyError) as e:
        raise BadLayout(f"output type {dtype_name(output)} has no decoder") from e


def dcm(decode_type: int, type_version: int, type_byte: int = 0) -> bytes:
    """The 16-byte DECODE common metadata: type, DCM version 1, type-specific version and byte 5."""
    header = bytearray(DCM_BYTES)
    header[0], header[1], header[4], header[5] = decode_type, 1, type_version, type_byte
    return bytes(header)


# ----------------------------------------------------------------------------- tensor facts


def dtype_name(tensor) -> str:
    from edge_prune.measurement.tflite_file import tensor_type_name

    return tensor_type_name(tensor.dtype)


def is_per_channel(tensor) -> bool:
    q = tensor.quantization
    return q is not None and np.size(q.scales) > 1


def channel_axis(tensor) -> int:
    """The quantized dimension for per-channel quantized weights, else axis 0."""
    q = tensor.quantization
    if is_per_channel(tensor) and q.axis is not None:
        return int(q.axis)
    return 0


def zero_points(tensor) -> np.ndarray:
    """The zero point of every element (broadcast along the quantized axis); 0 if unquantized."""
    shape = tuple(int(n) for n in tensor.shape)
    q = tensor.quantization
    if q is None:
        return np.zeros(shape, dtype=np.int64)
    points = np.atleast_1d(np.asarray(q.zero_points, dtype=np.int64))
    if points.size == 1:
        return np.full(shape, int(points[0]), dtype=np.int64)
    axis = channel_axis(tensor)
    view = [1] * len(shape)
    view[axis] = points.size
    return np.broadcast_to(points.reshape(view), shape)


def shares_buffer(subgraph, tensor) -> bool:
    return any(t is not tensor and t.buffer is tensor.buffer for t in subgraph.tensors)


# ------------------------------------------------------------------------- registration


def keep_what_shrinks_the_file(data: bytes, candidates: list, build, keep, reject):
    """Add candidates one by one, biggest ``saving`` first (ties by ``key``), each kept only if
    the whole file shrinks: the first compressed tensor also pays for the rebuilt flatbuffer and
    the DECODE operators, so its worth is measured on the whole file.

    ``build(data, accepted) -> bytes``; ``keep(candidate)`` and ``reject(candidate, reason)``
    record the outcome. Returns ``(accepted, bytes of the file with them)``.
    """
    accepted: list = []
    current = data
    for candidate in sorted(candidates, key=lambda c: (-c.saving, c.key)):
        trial = build(data, [*accepted, candidate])
        if len(trial) < len(current):
            accepted.append(candidate)
            current = trial
            keep(candidate)
        else:
            reject(
                candidate,
                f"would expand the file: {len(current)} B -> {len(trial)} B (DECODE operator and "
                "tensor overhead)",
            )
    return accepted, current


def register(codecs: Iterable) -> None:
    """Make TFLM's ``compress()`` use these codecs for their ``spec`` method types."""
    import importlib

    # the package's __init__ exports the compress() function under the module's name
    module = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    for codec in codecs:
        module._COMPRESSORS[codec.method_type] = codec


# --------------------------------------------------------------------------------- build


def read_dense_editable(tflite, needs: str):
    """``(bytes, label, editable model)`` of a flatbuffer (bytes or path) that holds no
    sparse-encoded tensor; ``needs`` says in the error what wants the dense model."""
    from edge_prune.measurement.tflite_file import load_bytes, read_model

    data, label = load_bytes(tflite)
    sparse = read_model(data).sparse_tensors
    if sparse:
        names = ", ".join(repr(t.name) for t in sparse[:3])
        raise ConversionError(
            f"{label}: tensors {names} are sparse-encoded; {needs} (convert without sparse "
            "encoding)"
        )
    return data, label, read_editable(data, label)


def constant_tensors(model) -> Iterator[tuple[int, object, object]]:
    """``(subgraph index, subgraph, tensor)`` for every tensor that has constant data."""
    for sg_index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            if tensor.buffer is not None and len(tensor.buffer.data):
                yield sg_index, subgraph, tensor


def read_editable(data: bytes, label: str):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    try:
        return model_editor.read(data)
    except Exception as e:  # the flatbuffers reader raises anything on a bad file
        raise ModelFileError(f"{label}: cannot read TFLite flatbuffer for compression ({e})") from e


@contextlib.contextmanager
def quiet():
    """Silence tflite_micro's chatter: expansion and bit widths are reported by the caller."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def build(data: bytes, methods: dict[tuple[int, int], object], what: str) -> bytes:
    """``data`` with each ``(subgraph, tensor)`` of ``methods`` compressed by its spec method."""
    from tflite_micro.tensorflow.lite.micro.compression import spec
    from tflite_micro.tensorflow.lite.micro.compression.compress import compress
    from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionError

    specs = [
        spec.Tensor(subgraph=sg, tensor=index, compression=[method])
        for (sg, index), method in sorted(methods.items())
    ]
    try:
        with quiet():
            return drop_encoded_quantization(bytes(compress(data, specs)))
    except CompressionError as e:
        raise ConversionError(f"TFLM {what} compression failed: {e}; no model was written") from e


def drop_encoded_quantization(model_bytes: bytes) -> bytes:
    """Remove the quantization parameters left on the encoded tensors DECODE reads.

    Some tflite_micro versions keep the original per-channel scales and zero points on the
    rewritten UINT8 encoded tensor although the decoded copy carries them too (12 B per channel
    for int8 per-channel weights: a float32 scale and an int64 zero point). DECODE reads only
    the encoded bytes and the ancillary data; the outputs on TFLM are checked equal in tests.
    """
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    decode_codes = {
        i for i, code in enumerate(model.operatorCodes) if code.customCode == DECODE_OP.encode()
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
    return pack(model)


@dataclass(frozen=True)
class DecodedTensor:
    """One output of a DECODE operator: its encoded and ancillary bytes and the output tensor."""

    name: str  # the original tensor's name (the "_decoded" suffix removed), "" if stripped
    key: tuple[int, int]  # (subgraph, index) of the encoded tensor: the original tensor's index
    decode_type: int
    encoded: bytes
    ancillary: bytes
    output: object  # model_editor.Tensor


def decoded_tensors(model_bytes: bytes) -> Iterator[DecodedTensor]:
    """Every DECODE output of a compressed model, in operator order.

    TFLM's ``compress()`` rewrites each compressed tensor in place into the encoded tensor, so
    ``key`` is the index the tensor had in the uncompressed model: match by it, not by name
    (:func:`edge_prune.measurement.codecs.strip_for_mcu` drops the names)."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    for sg_index, subgraph in enumerate(model_editor.read(model_bytes).subgraphs):
        for op in subgraph.operators:
            if op.custom_code != DECODE_OP:
                continue
            for k, out in enumerate(op.outputs):
                encoded, ancillary = op.inputs[2 * k], op.inputs[2 * k + 1]
                ancillary_bytes = bytes(ancillary.buffer.data)
                yield DecodedTensor(
                    name=(out.name or "").removesuffix("_decoded"),
                    key=(sg_index, encoded.index),
                    decode_type=ancillary_bytes[0],
                    encoded=bytes(encoded.buffer.data),
                    ancillary=ancillary_bytes,
                    output=out,
                )
