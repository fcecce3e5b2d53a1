"""Check the DECODE operators of a model someone hands to ``edge-prune report``.

``edge-prune model`` checks its own compressed models by decoding every DECODE output and
comparing it with the weights it encoded (:mod:`edge_prune.measurement.codecs.per_tensor`). A model
from elsewhere gets the same treatment where possible:

1. layout: each DECODE operator has encoded/ancillary pairs of constant tensors; the ancillary
   data starts with the 16-byte DECODE common metadata (``kernels/decode_state.h``): a known
   decode type (one of the registered codecs': 0 LUT, 1 Huffman, 2 pruning), DCM version 1;
   the codec checks the rest against its TFLM decoder (``decode_checked``). An impossible
   layout is unreadable input (:class:`~edge_prune.errors.ModelFileError` naming the tensor);
2. values: when the model lies in a directory beside its uncompressed source (a build
   directory: ``model_clustered*.tflite`` beside ``model_compressed*.tflite``, ``model_int8``
   beside ``model_sparse``), recognised because every tensor the codecs left raw is identical
   there at the same index, each decoded tensor must equal that source's tensor at its index.
   Without such a source the decoded values cannot be checked, and :attr:`DecodeCheck.unverified`
   says so in one line.

No TensorFlow here: ``tflite_micro``'s model editor and numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_prune.errors import ModelFileError
from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.registry import by_decode_type

DCM_VERSION = 1
# Sibling files read while looking for the uncompressed source: a bound on the work.
MAX_SIBLINGS = 32
MAX_SIBLING_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecodeCheck:
    """What was checked of a model's DECODE operators.

    ``tensors``: (tensor label, codec) per DECODE output, all decoded by the Python mirror of
    TFLM's decoders; ``reference``: the uncompressed file their values were compared with and
    found equal (None: no such file).
    """

    tensors: tuple[tuple[str, str], ...]
    reference: str | None

    @property
    def unverified(self) -> str | None:
        """One line: what could not be verified, or None."""
        if self.reference:
            return None
        return (
            f"DECODE: the values of {len(self.tensors)} decoded tensor(s) were not compared with "
            "uncompressed weights (no uncompressed source beside the model): a well-formed "
            "layout with other weights would not be noticed"
        )

    @property
    def summary(self) -> str:
        codecs: dict[str, int] = {}
        for _, codec in self.tensors:
            codecs[codec] = codecs.get(codec, 0) + 1
        kinds = ", ".join(f"{n} {c}" for c, n in sorted(codecs.items()))
        where = (
            f"equal to the weights of {self.reference}"
            if self.reference
            else "values not compared (no uncompressed source)"
        )
        return f"layout checked and decoded in Python ({kinds}); {where}"

    def to_dict(self) -> dict:
        return {
            "what": "DECODE operators: layout checked against TFLM's decoders, decoded in Python",
            "tensors": [{"tensor": t, "codec": c} for t, c in self.tensors],
            "reference": self.reference,
            "unverified": self.unverified,
        }


@dataclass(frozen=True)
class _Decoded:
    key: tuple[int, int]
    label: str
    codec: str
    values: np.ndarray


def check_decode(model: str | Path | bytes) -> DecodeCheck | None:
    """Check every DECODE output of ``model`` (None when it has none); raises
    :class:`ModelFileError` naming the tensor on a layout TFLM cannot decode or on values that
    differ from the uncompressed source found beside it."""
    from edge_prune.measurement.tflite_file import load_bytes, read_model

    data, label = load_bytes(model)
    if not any(op.endswith(_tflm.DECODE_OP) for op in read_model(data).op_types):
        return None  # nothing to decode: the model is left to TFLM as it is
    editable = _read(data, label)
    decoded, encoded_keys = _decode_all(editable, label)
    raw = _raw_constants(editable, encoded_keys)
    path = None if isinstance(model, (bytes, bytearray, memoryview)) else Path(model)
    reference = _reference(path, data, raw, decoded, label) if path else None
    return DecodeCheck(
        tensors=tuple((d.label, d.codec) for d in decoded),
        reference=str(reference) if reference else None,
    )


def _read(data: bytes, label: str):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    try:
        return model_editor.read(data)
    except Exception as e:  # the flatbuffers reader raises anything on a bad file
        raise ModelFileError(f"{label}: corrupted TFLite flatbuffer ({type(e).__name__})") from e


def _tensor_label(sg_index: int, index: int, name: str | None) -> str:
    """The weights by the index they have in the uncompressed model (the encoded tensor keeps
    it; a build's ``model_tensor_names.json`` maps it to the Keras name), and their name if the
    file still has one."""
    label = f"tensor #{index}" + (f" of subgraph {sg_index}" if sg_index else "")
    shown = (name or "").removesuffix("_decoded")
    return label + (f" ({shown[:60]})" if shown else "")


def _decode_all(model, label: str) -> tuple[list[_Decoded], set[tuple[int, int]]]:
    decoded, encoded_keys = [], set()
    for sg_index, subgraph in enumerate(model.subgraphs):
        for op_index, op in enumerate(subgraph.operators):
            if op.custom_code != _tflm.DECODE_OP:
                continue
            where = f"{label}: DECODE operator {op_index}" + (
                f" of subgraph {sg_index}" if sg_index else ""
            )
            if not op.outputs or len(op.inputs) != 2 * len(op.outputs):
                raise ModelFileError(
                    f"{where}: {len(op.inputs)} inputs for {len(op.outputs)} outputs; TFLM "
                    "expects an encoded and an ancillary tensor per output"
                )
            for k, out in enumerate(op.outputs):
                encoded, ancillary = op.inputs[2 * k], op.inputs[2 * k + 1]
                name = _tensor_label(sg_index, encoded.index, out.name)
                codec, values = _decode_one(encoded, ancillary, out, f"{where}, {name}")
                key = (sg_index, encoded.index)
                encoded_keys |= {key, (sg_index, ancillary.index)}
                decoded.append(_Decoded(key, name, codec, values))
    return decoded, encoded_keys


def _decode_one(encoded, ancillary, out, where: str) -> tuple[str, np.ndarray]:
    for role, tensor in (("encoded", encoded), ("ancillary", ancillary)):
        if tensor.buffer is None or not len(tensor.buffer.data):
            raise ModelFileError(f"{where}: the {role} input holds no constant data")
    enc, anc = bytes(encoded.buffer.data), bytes(ancillary.buffer.data)
    try:
        _tflm.require(
            len(anc) >= _tflm.DCM_BYTES,
            f"ancillary data is {len(anc)} B, shorter than the {_tflm.DCM_BYTES}-byte "
            "DECODE header",
        )
        codec = by_decode_type(anc[0])
        _tflm.require(codec is not None, f"unknown decode type {anc[0]}")
        _tflm.require(anc[1] == DCM_VERSION, f"DECODE header version {anc[1]}, TFLM reads 1")
        return codec.name, codec.decode_checked(enc, anc, out)
    except _tflm.BadLayout as e:
        raise ModelFileError(f"{where}: impossible DECODE layout: {e}") from None


def _raw_constants(model, skip: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Constant data of every tensor that is not a DECODE input, by (subgraph, index)."""
    return {
        (sg_index, tensor.index): bytes(tensor.buffer.data)
        for sg_index, _, tensor in _tflm.constant_tensors(model)
        if (sg_index, tensor.index) not in skip
    }


def _reference(path: Path, data: bytes, raw: dict, decoded: list, label: str) -> Path | None:
    """The sibling whose weights the decoded tensors equal, or None.

    A sibling holding the model's raw constants at the same indices is its source: decoded
    weights that differ from it are corrupted data (:class:`ModelFileError`). A model with no
    raw constant identifies no source: a sibling then counts only when every decoded tensor
    equals it."""
    for sibling, model in _candidates(path, data, raw):
        mismatch = _first_mismatch(decoded, model)
        if mismatch is None:
            return sibling
        if raw:
            raise ModelFileError(
                f"{label}: DECODE output {mismatch.label} ({mismatch.codec}) decodes to weights "
                f"that differ from the uncompressed source {sibling.name} beside it: corrupted "
                "encoded data"
            )
    return None


def _candidates(path: Path, data: bytes, raw: dict) -> Iterator[tuple[Path, object]]:
    """``(file, editable model)`` of each sibling .tflite without DECODE operators that holds
    the same raw constants at the same indices."""
    try:
        siblings = sorted(p for p in path.parent.glob("*.tflite") if p.is_file())
    except OSError:
        return
    for sibling in siblings[:MAX_SIBLINGS]:
        try:
            if sibling.stat().st_size > MAX_SIBLING_BYTES:
                continue
            other = sibling.read_bytes()
        except OSError:
            continue
        if other == data:
            continue
        candidate = _candidate(other, raw)
        if candidate is not None:
            yield sibling, candidate


def _candidate(other: bytes, raw: dict):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    try:
        model = model_editor.read(other)
        subgraphs = model.subgraphs
        if any(op.custom_code == _tflm.DECODE_OP for sg in subgraphs for op in sg.operators):
            return None
        for (sg_index, index), content in raw.items():
            tensors = subgraphs[sg_index].tensors
            if index >= len(tensors) or tensors[index].buffer is None:
                return None
            if bytes(tensors[index].buffer.data) != content:
                return None
    except Exception:  # an unreadable sibling is no reference
        return None
    return model


def _first_mismatch(decoded: list[_Decoded], model) -> _Decoded | None:
    """The first decoded tensor that differs from ``model``'s tensor at its index, or None."""
    for d in decoded:
        sg_index, index = d.key
        try:
            expected = model.subgraphs[sg_index].tensors[index].array
        except Exception:  # no such tensor, or one without readable data
            return d
        if (
            expected is None
            or expected.dtype != d.values.dtype
            or expected.shape != d.values.shape
            or expected.tobytes() != d.values.tobytes()
        ):
            return d
    return None
