"""Check the DECODE operators of a model someone hands to ``edge-prune report``.

``edge-prune model`` checks its own compressed models by decoding every DECODE output and
comparing it with the weights it encoded (:mod:`edge_prune.measurement.codecs.per_tensor`). A model
from elsewhere gets the same treatment where possible:

1. layout: each DECODE operator has encoded/ancillary pairs of constant tensors; the ancillary
   data starts with the 16-byte DECODE common metadata (``kernels/decode_state.h``): a known
   decode type (one of the registered codecs': 0 LUT, 1 Huffman, 2 pruning), DCM version 1;
   the codec checks the rest against its TFLM decoder (``decode_checked``). An impossible
   layout is unreadable input (:class:`~edge_prune.errors.ModelFileError` naming the tensor);
2. graph: each DECODE operator runs before every operator that reads its output (TFLM runs the
   operators in file order: a reader placed before would read the arena before anything was
   decoded into it), and no other operator writes that output; each decoded tensor has a shape
   of whole dimensions and, when an int8/int16 FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D
   reads it as its filter, sane quantization (one positive scale per channel of its axis)
   whose scales times the input's scale are the bias scales (the converter's rule), so a
   changed scale, a removed quantization or a filter wired to another layer's weights is
   refused;
3. the uncompressed source: a sibling ``.tflite`` in the same directory (a build directory:
   ``model_clustered*.tflite`` beside ``model_compressed*.tflite``, ``model_int8`` beside
   ``model_sparse``) with the same operators and inputs/outputs, and most of its constant
   tensors equal at the same indices (raw ones byte for byte, decoded ones after decoding).
   Then each decoded tensor must equal the source's tensor at its index (values, type, shape
   and quantization), and both models run on TFLM over the same seeded inputs must give
   identical outputs: this catches what the checks above cannot see (operators moved or
   rewired, activation scales, raw constants changed).
   Without such a source, values and outputs are not compared, and
   :attr:`DecodeCheck.unverified` says so in one line.

No TensorFlow here: ``tflite_micro``'s model editor, numpy, and TFLM in a child process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_prune.errors import ModelFileError, TFLMError
from edge_prune.measurement.codecs import _tflm
from edge_prune.measurement.codecs.registry import by_decode_type

DCM_VERSION = 1
# Sibling files read while looking for the uncompressed source: a bound on the work.
MAX_SIBLINGS = 32
MAX_SIBLING_BYTES = 64 * 1024 * 1024
# Inputs both models run on: all zeros, then seeded random values over the input type's range.
COMPARED_INPUTS = 32
_INPUT_SEED = 0
# Operators whose input 1 is a filter and input 2 an int32 bias quantized with
# scale = input scale x filter scale (per channel).
_FILTER_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
_BIAS_SCALE_TOLERANCE = 1e-3  # relative; the converter stores the product as float32
_CHECKED = "DECODE layout, graph order, decoded type/shape/quantization"


@dataclass(frozen=True)
class DecodeCheck:
    """What was checked of a model's DECODE operators.

    ``tensors``: (tensor label, codec) per DECODE output, all decoded by the Python mirror of
    TFLM's decoders; ``reference``: the uncompressed source found beside the model whose
    weights they equal (None: no such file); ``compared_inputs``: inputs on which both models
    gave identical outputs on TFLM (0: outputs not compared, ``not_compared`` says why).
    """

    tensors: tuple[tuple[str, str], ...]
    reference: str | None
    compared_inputs: int = 0
    not_compared: str | None = None

    @property
    def unverified(self) -> str | None:
        """One line: what could not be verified, or None."""
        if self.reference and self.compared_inputs:
            return None
        if self.reference:
            return (
                f"DECODE: the TFLM outputs were not compared with those of {self.reference} "
                f"({self.not_compared}): operators moved or rewired around the DECODE "
                "operators would not be noticed"
            )
        return (
            f"DECODE: the values of {len(self.tensors)} decoded tensor(s) and the TFLM outputs "
            f"were not compared with uncompressed weights (no uncompressed source beside the "
            f"model); checked: {_CHECKED}. A well-formed model with other weights, "
            "activation scales or filter scales without a bias to check them against would "
            "not be noticed"
        )

    @property
    def verified(self) -> str:
        """One line: what was verified."""
        done = f"{_CHECKED} checked"
        if self.reference:
            done += f"; decoded weights equal to those of {self.reference}"
        if self.compared_inputs:
            done += f"; TFLM outputs identical to its outputs on {self.compared_inputs} inputs"
        return done

    @property
    def summary(self) -> str:
        codecs: dict[str, int] = {}
        for _, codec in self.tensors:
            codecs[codec] = codecs.get(codec, 0) + 1
        kinds = ", ".join(f"{n} {c}" for c, n in sorted(codecs.items()))
        if not self.reference:
            where = "values and outputs not compared (no uncompressed source)"
        elif self.compared_inputs:
            where = (
                f"equal to the weights of {self.reference}, TFLM outputs identical on "
                f"{self.compared_inputs} inputs"
            )
        else:
            where = f"equal to the weights of {self.reference}, outputs not compared"
        return f"layout, graph order, quantization checked; decoded in Python ({kinds}); {where}"

    def to_dict(self) -> dict:
        return {
            "what": "DECODE operators: layout checked against TFLM's decoders, decoded in "
            "Python; graph order and decoded type/shape/quantization checked; with an "
            "uncompressed source beside the model, its weights and TFLM outputs compared",
            "tensors": [{"tensor": t, "codec": c} for t, c in self.tensors],
            "reference": self.reference,
            "outputs_compared_on_inputs": self.compared_inputs,
            "verified": self.verified,
            "unverified": self.unverified,
        }


@dataclass(frozen=True)
class _Decoded:
    key: tuple[int, int]
    label: str
    codec: str
    values: np.ndarray
    output: object  # the decoded model_editor.Tensor


def check_decode(
    model: str | Path | bytes, *, timeout_s: float | None = None
) -> DecodeCheck | None:
    """Check every DECODE output of ``model`` (None when it has none); raises
    :class:`ModelFileError` naming the tensor or operator on a layout TFLM cannot decode, a
    DECODE operator after a reader of its output, decoded quantization that disagrees with its
    readers, or weights/outputs that differ from the uncompressed source found beside it.
    ``timeout_s`` limits each TFLM run of the output comparison."""
    from edge_prune.measurement.tflite_file import load_bytes, read_model

    data, label = load_bytes(model)
    if not any(op.endswith(_tflm.DECODE_OP) for op in read_model(data).op_types):
        return None  # nothing to decode: the model is left to TFLM as it is
    editable = _read(data, label)
    decoded, encoded_keys = _decode_all(editable, label)
    _check_graph_order(editable, label)
    _check_filter_quantization(editable, decoded, label)
    raw = _raw_constants(editable, encoded_keys)
    path = None if isinstance(model, (bytes, bytearray, memoryview)) else Path(model)
    found = _reference(path, data, editable, raw, decoded, label) if path else None
    if found is None:
        return DecodeCheck(tensors=tuple((d.label, d.codec) for d in decoded), reference=None)
    sibling, sibling_data = found
    compared, why_not = _compare_outputs(data, sibling_data, sibling, label, timeout_s)
    return DecodeCheck(
        tensors=tuple((d.label, d.codec) for d in decoded),
        reference=str(sibling),
        compared_inputs=compared,
        not_compared=why_not,
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
            where = _where(label, sg_index, op_index)
            if not op.outputs or len(op.inputs) != 2 * len(op.outputs) or None in op.inputs:
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
                decoded.append(_Decoded(key, name, codec, values, out))
    return decoded, encoded_keys


def _where(label: str, sg_index: int, op_index: int) -> str:
    return f"{label}: DECODE operator {op_index}" + (f" of subgraph {sg_index}" if sg_index else "")


def _decode_one(encoded, ancillary, out, where: str) -> tuple[str, np.ndarray]:
    for role, tensor in (("encoded", encoded), ("ancillary", ancillary)):
        if tensor.buffer is None or not len(tensor.buffer.data):
            raise ModelFileError(f"{where}: the {role} input holds no constant data")
    enc, anc = bytes(encoded.buffer.data), bytes(ancillary.buffer.data)
    try:
        _check_output_tensor(out)
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
    except (ValueError, IndexError, TypeError, OverflowError) as e:
        # a decoder choking on a tensor no check above foresaw is still this tensor's fault
        raise ModelFileError(f"{where}: cannot be decoded ({type(e).__name__}: {e})") from None


def _check_output_tensor(out) -> None:
    """The decoded tensor as a decoder can fill it: whole dimensions, and quantization with one
    finite scale and zero point per channel of its axis."""
    shape = [int(n) for n in out.shape]
    _tflm.require(
        bool(shape) and all(n >= 1 for n in shape),
        f"decoded tensor shape {shape}: expected at least one dimension, each >= 1",
    )
    q = out.quantization
    if q is None:
        return
    scales = np.atleast_1d(np.asarray(q.scales, dtype=np.float64))
    points = np.atleast_1d(np.asarray(q.zero_points))
    _tflm.require(
        scales.size >= 1 and bool(np.all(np.isfinite(scales) & (scales > 0))),
        f"decoded tensor scales {scales[:4].tolist()}: expected finite scales > 0",
    )
    _tflm.require(
        points.size in (1, scales.size),
        f"{scales.size} scales but {points.size} zero points",
    )
    if scales.size > 1:
        axis = int(q.axis or 0)
        _tflm.require(0 <= axis < len(shape), f"quantized axis {axis} of a {len(shape)}-D tensor")
        _tflm.require(
            shape[axis] == scales.size,
            f"{scales.size} scales for {shape[axis]} channels along axis {axis} (shape {shape})",
        )


def _op_name(op) -> str:
    from edge_prune.measurement.tflite_file import builtin_operator_name

    return op.custom_code or builtin_operator_name(op.opcode)


def _check_graph_order(model, label: str) -> None:
    """Each DECODE operator runs before every reader of its outputs, and alone writes them."""
    for sg_index, subgraph in enumerate(model.subgraphs):
        operators = subgraph.operators
        inputs = {t.index for t in subgraph.inputs}
        for op_index, op in enumerate(operators):
            if op.custom_code != _tflm.DECODE_OP:
                continue
            for out in op.outputs:
                name = _tensor_label(sg_index, out.index, out.name)
                where = f"{_where(label, sg_index, op_index)}: its output {name}"
                if out.index in inputs:
                    raise ModelFileError(f"{where} is an input of the model")
                for other_index, other in enumerate(operators):
                    if other is op:
                        continue
                    if any(t is not None and t.index == out.index for t in other.outputs):
                        raise ModelFileError(
                            f"{where} is also written by operator {other_index} "
                            f"({_op_name(other)})"
                        )
                    reads = any(t is not None and t.index == out.index for t in other.inputs)
                    if reads and other_index < op_index:
                        raise ModelFileError(
                            f"{where} is read by operator {other_index} ({_op_name(other)}), "
                            "which runs before it: TFLM runs operators in file order, so that "
                            "operator would read the tensor before it is decoded"
                        )


def _check_filter_quantization(model, decoded: list[_Decoded], label: str) -> None:
    """A decoded filter of an int8/int16 FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D is
    quantized, and its scales times the input's scale are the bias scales."""
    by_key = {(d.key[0], d.output.index): d for d in decoded}
    for sg_index, subgraph in enumerate(model.subgraphs):
        for op_index, op in enumerate(subgraph.operators):
            name = _op_name(op)
            if name not in _FILTER_OPS or len(op.inputs) < 2 or op.inputs[1] is None:
                continue
            d = by_key.get((sg_index, op.inputs[1].index))
            if d is None or _tflm.dtype_name(d.output) not in ("INT8", "INT16", "INT4"):
                continue
            where = (
                f"{label}: operator {op_index} ({name})"
                + (f" of subgraph {sg_index}" if sg_index else "")
                + f" reads the DECODE output {d.label} as its filter"
            )
            if d.output.quantization is None:
                raise ModelFileError(f"{where}, which has no quantization ({name} needs scales)")
            bias = op.inputs[2] if len(op.inputs) > 2 else None
            x = op.inputs[0]
            problem = _bias_scale_problem(x, d.output, bias)
            if problem:
                raise ModelFileError(f"{where}: {problem}")


def _scales(tensor) -> np.ndarray | None:
    q = None if tensor is None else tensor.quantization
    if q is None:
        return None
    scales = np.atleast_1d(np.asarray(q.scales, dtype=np.float64))
    return scales if scales.size else None


def _bias_scale_problem(x, weights, bias) -> str | None:
    """Why bias scale != input scale x filter scale (per channel), or None (also when a scale
    is missing: nothing to compare)."""
    x_scale, w_scales, b_scales = _scales(x), _scales(weights), _scales(bias)
    if x_scale is None or b_scales is None or x_scale.size != 1:
        return None
    if w_scales.size not in (1, b_scales.size):
        return (
            f"{w_scales.size} filter scales for the {b_scales.size} bias scales of tensor "
            f"#{bias.index}"
        )
    w_scales = np.broadcast_to(w_scales, b_scales.shape)
    expected = x_scale[0] * w_scales
    off = np.abs(expected - b_scales) > _BIAS_SCALE_TOLERANCE * np.abs(b_scales)
    if not np.any(off):
        return None
    c = int(np.argmax(off))
    return (
        f"input scale {x_scale[0]:.6g} x filter scale {w_scales[c]:.6g} "
        f"= {expected[c]:.6g}, but the bias (tensor #{bias.index}) has scale {b_scales[c]:.6g} "
        f"(channel {c}): the quantization of the filter or of its input was changed"
    )


def _raw_constants(model, skip: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Constant data of every tensor that is not a DECODE input, by (subgraph, index)."""
    return {
        (sg_index, tensor.index): bytes(tensor.buffer.data)
        for sg_index, _, tensor in _tflm.constant_tensors(model)
        if (sg_index, tensor.index) not in skip
    }


# ----------------------------------------------------------------- the uncompressed source


def _reference(
    path: Path, data: bytes, model, raw: dict, decoded: list, label: str
) -> tuple[Path, bytes] | None:
    """``(file, bytes)`` of the uncompressed source beside ``path``, or None.

    A sibling is the source when it has the same operators (DECODE aside) and inputs/outputs
    and more than half of the model's constant tensors equal at the same indices; of several,
    the one with most equal. Its decoded tensors must then equal the source's (values, type,
    shape, quantization): otherwise :class:`ModelFileError`."""
    signature = _signature(model)
    best = None
    for sibling, other_data, other in _candidates(path, data):
        if _signature(other) != signature:
            continue
        equal = _equal_constants(raw, decoded, other)
        if 2 * equal > len(raw) + len(decoded) and (best is None or equal > best[0]):
            best = (equal, sibling, other_data, other)
    if best is None:
        return None
    _, sibling, other_data, other = best
    for d in decoded:
        problem = _difference(d, other)
        if problem:
            raise ModelFileError(
                f"{label}: DECODE output {d.label} ({d.codec}) {problem} the uncompressed "
                f"source {sibling.name} beside it"
            )
    problem = _structure_difference(model, other, raw, decoded)
    if problem:
        raise ModelFileError(
            f"{label}: {problem} in its uncompressed source {sibling.name} beside it: the model "
            "around the DECODE operators was changed"
        )
    return sibling, other_data


def _structure_difference(model, source, raw: dict, decoded: list[_Decoded]) -> str | None:
    """Where ``model`` is not ``source`` with DECODE operators inserted: a raw constant, a
    tensor's type, shape or quantization, or an operator's tensors or place (readers of a
    decoded tensor mapped to the tensor's index in the source); None: nowhere."""
    encoded = {d.key for d in decoded}
    decoded_as = {(d.key[0], d.output.index): d.key[1] for d in decoded}
    for sg_index, (mine, theirs) in enumerate(zip(model.subgraphs, source.subgraphs, strict=True)):
        for tensor in mine.tensors[: len(theirs.tensors)]:
            if (sg_index, tensor.index) in encoded:
                continue
            other = theirs.tensors[tensor.index]
            label = _tensor_label(sg_index, tensor.index, tensor.name)
            if (sg_index, tensor.index) in raw and (
                other.buffer is None or bytes(other.buffer.data) != raw[(sg_index, tensor.index)]
            ):
                return f"constant {label} differs from tensor #{tensor.index}"
            if (
                tuple(tensor.shape) != tuple(other.shape)
                or int(tensor.dtype) != int(other.dtype)
                or not _same_quantization(tensor.quantization, other.quantization)
            ):
                return f"{label} has another type, shape or quantization than tensor #{other.index}"

        def mapped(tensors, sg=sg_index):
            """Indices as in the source: a decoded tensor is its encoded tensor's index; an
            encoded tensor itself (read by another operator than DECODE) is no source tensor."""
            return tuple(
                -1
                if t is None
                else ("encoded", t.index)
                if (sg, t.index) in encoded
                else decoded_as.get((sg, t.index), t.index)
                for t in tensors
            )

        ops = [op for op in mine.operators if op.custom_code != _tflm.DECODE_OP]
        for position, (op, other) in enumerate(zip(ops, theirs.operators, strict=False)):
            if (
                _op_name(op) != _op_name(other)
                or mapped(op.inputs) != mapped(other.inputs, -1)
                or mapped(op.outputs) != mapped(other.outputs, -1)
            ):
                return (
                    f"operator {position} (DECODE aside; {_op_name(op)}) has other tensors or "
                    f"another place than operator {position} ({_op_name(other)})"
                )
    return None


def _signature(model) -> tuple:
    """What a model and its uncompressed source share: per subgraph the operators (DECODE
    aside, as a multiset) and the types and shapes of the inputs and outputs."""
    signature = []
    for subgraph in model.subgraphs:
        ops = sorted(
            (int(op.opcode or 0), op.custom_code or "")
            for op in subgraph.operators
            if op.custom_code != _tflm.DECODE_OP
        )
        ends = [
            (tuple(int(n) for n in t.shape), int(t.dtype))
            for t in (*subgraph.inputs, *subgraph.outputs)
        ]
        signature.append((tuple(ops), tuple(ends)))
    return tuple(signature)


def _equal_constants(raw: dict, decoded: list[_Decoded], other) -> int:
    equal = 0
    for (sg_index, index), content in raw.items():
        tensor = _tensor_at(other, sg_index, index)
        if tensor is not None and tensor.buffer is not None:
            equal += bytes(tensor.buffer.data) == content
    for d in decoded:
        equal += _difference(d, other) is None
    return equal


def _tensor_at(model, sg_index: int, index: int):
    try:
        return model.subgraphs[sg_index].tensors[index]
    except IndexError:
        return None


def _difference(d: _Decoded, model) -> str | None:
    """How ``d`` differs from ``model``'s tensor at its index (None: it does not)."""
    tensor = _tensor_at(model, *d.key)
    try:
        expected = None if tensor is None else tensor.array
    except Exception:  # a tensor without readable data
        expected = None
    if expected is None:
        return "has no constant tensor at its index in"
    if expected.dtype != d.values.dtype or expected.shape != d.values.shape:
        return (
            f"is {d.values.dtype} {list(d.values.shape)}, not {expected.dtype} "
            f"{list(expected.shape)} as in"
        )
    if expected.tobytes() != d.values.tobytes():
        return "decodes to weights that differ from those of"
    if not _same_quantization(d.output.quantization, tensor.quantization):
        return "has quantization (scales, zero points, axis) that differs from that of"
    return None


def _same_quantization(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (
        np.array_equal(np.atleast_1d(a.scales), np.atleast_1d(b.scales))
        and np.array_equal(np.atleast_1d(a.zero_points), np.atleast_1d(b.zero_points))
        and (a.axis or 0) == (b.axis or 0)
    )


def _candidates(path: Path, data: bytes) -> Iterator[tuple[Path, bytes, object]]:
    """``(file, bytes, editable model)`` of each readable regular sibling .tflite without DECODE
    operators."""
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
        model = _candidate(other)
        if model is not None:
            yield sibling, other, model


def _candidate(other: bytes):
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    try:
        model = model_editor.read(other)
        if any(op.custom_code == _tflm.DECODE_OP for sg in model.subgraphs for op in sg.operators):
            return None
        _signature(model)
    except Exception:  # an unreadable sibling is no reference
        return None
    return model


# ------------------------------------------------------------------------ TFLM outputs


def _compare_outputs(
    data: bytes, source: bytes, sibling: Path, label: str, timeout_s: float | None
) -> tuple[int, str | None]:
    """Run both models on TFLM over the same inputs: ``(inputs compared, None)`` when every
    output is identical, ``(0, why not)`` when they could not be run; ModelFileError when an
    output differs."""
    from edge_prune.measurement import tflm
    from edge_prune.measurement.tflite_file import read_model

    info = read_model(data)
    if len(info.input_tensors) != 1:
        return 0, f"{len(info.input_tensors)} inputs; the comparison feeds one"
    x = _inputs(info.input_tensors[0])
    if x is None:
        return 0, f"input type {info.input_tensors[0].dtype} has no generated inputs"
    for index in range(len(info.output_tensors)):
        try:
            got = tflm.run(data, x, output_index=index, label=label, **_timeout(timeout_s))
        except TFLMError:
            return 0, "TFLM could not run the model (see below)"
        try:
            want = tflm.run(
                source, x, output_index=index, label=str(sibling), **_timeout(timeout_s)
            )
        except TFLMError as e:
            return 0, f"TFLM could not run {sibling.name}: {str(e)[:120]}"
        if got.shape != want.shape or got.tobytes() != want.tobytes():
            differ = sum(
                1 for a, b in zip(got, want, strict=False) if a.tobytes() != b.tobytes()
            ) + abs(len(got) - len(want))
            raise ModelFileError(
                f"{label}: its TFLM output {index} differs from that of its uncompressed source "
                f"{sibling.name} beside it on {differ} of {len(x)} inputs although the decoded "
                "weights are equal: the model around the DECODE operators was changed "
                "(operator order, wiring, activation quantization or raw constants)"
            )
    return len(x), None


def _timeout(timeout_s: float | None) -> dict:
    return {} if timeout_s is None else {"timeout_s": timeout_s}


def _inputs(tensor) -> np.ndarray | None:
    """All zeros, then seeded random values over the range of the input type."""
    from edge_prune.measurement.tflite_file import tensor_type_dtype, tensor_type_value

    try:
        dtype = np.dtype(tensor_type_dtype(tensor_type_value(tensor.dtype)))
    except Exception:
        return None
    shape = tuple(max(int(n), 1) for n in tensor.shape)
    rng = np.random.default_rng(_INPUT_SEED)
    n = COMPARED_INPUTS - 1
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, int(info.max) + 1, size=(n, *shape), dtype=dtype)
    elif np.issubdtype(dtype, np.floating):
        values = rng.uniform(-1.0, 1.0, size=(n, *shape)).astype(dtype)
    else:
        return None
    return np.concatenate([np.zeros((1, *shape), dtype=dtype), values])
