"""Instructions per inference of a ``.tflite`` on a Cortex-M build of TFLM: measured or estimated.

Measured: ``edge-prune device`` counts the instructions QEMU executes for one ``Invoke()``
(``-icount``: instructions, not cycles). Estimated, where no device run covers the model: per
operator, a fixed cost per call plus a cost per unit of work, calibrated by
``bench/instruction_costs.py`` on per-operator counts that a device run profiles (TFLM's
``MicroProfilerInterface`` around every kernel's Eval). Costs are per op and input type
(``FULLY_CONNECTED:int8``; ``FULLY_CONNECTED:int8+int4`` with a packed INT4 filter) and per
decoder (``DECODE:huffman``). The unit of work is the multiply-accumulates of CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV (the gate weights times the steps of an
LSTM), the output elements of a DECODE and of every other op.

Not counted: the application around ``Invoke()`` (input copy, output reading), interrupts.
This module does not import TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from edge_prune.data import DATA_DIR
from edge_prune.measurement.targets import Target
from edge_prune.measurement.tflite_file import builtin_operator_name

COSTS_PATH = DATA_DIR / "tflm_instructions.json"
INVOKE = "INVOKE"  # what one Invoke() costs outside its operators, per call and per operator
INT4_TYPE = 17  # tflite::TensorType_INT4
_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass(frozen=True)
class OpWork:
    """One kernel call of an inference: its cost key (op name, or DECODE:<decoder>) and work."""

    key: str
    work: int
    outputs: int = 0  # output elements of the call


@dataclass(frozen=True)
class InstructionEstimate:
    """Instructions per inference: ``total`` of the ops the calibration covers, and which not."""

    total: int
    per_key: dict[str, int]
    not_estimated: tuple[str, ...]
    measured: bool
    source: str

    @property
    def kind(self) -> str:
        return "measured (QEMU -icount)" if self.measured else "estimate"

    def to_dict(self) -> dict:
        return {
            "instructions_per_inference": self.total,
            "what": "emulated instructions per Invoke() on the target's TFLM build (not cycles)",
            "kind": self.kind,
            "per_op": dict(self.per_key),
            "not_estimated": list(self.not_estimated),
            "source": self.source,
        }


def operator_work(model: bytes) -> list[list[OpWork]]:
    """Per operator of ``model`` (all subgraphs, in order), its kernel work: one entry, or one
    per output of a DECODE operator (each output has its own decoder)."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    edited = model_editor.read(bytes(model))
    taps = _sparse_conv_taps(model) if _has_sparse_conv(edited) else {}
    return [
        _op_work(op, taps.get((s, o), 1), edited.operator_codes)
        for s, subgraph in enumerate(edited.subgraphs)
        for o, op in enumerate(subgraph.operators)
    ]


def _builtin(op, codes) -> int:
    """The op's builtin code; a model of schema 3 or older keeps it only in the opcode's
    ``deprecated_builtin_code`` (``builtin_code`` 0, ADD), as TFLM's ``GetBuiltinCode`` reads."""
    index = op.opcode_index
    fb = getattr(codes[index], "_fb", None) if index is not None and index < len(codes) else None
    return max(int(op.opcode), int(getattr(fb, "deprecatedBuiltinCode", 0) or 0))


def _has_sparse_conv(edited) -> bool:
    return any(op.custom_code in _SPARSE_CONVS for sg in edited.subgraphs for op in sg.operators)


def _sparse_conv_taps(model: bytes) -> dict[tuple[int, int], int]:
    """Kernel taps (kh x kw) of each sparse convolution, from its custom options."""
    from edge_prune.measurement.sparse.format import Options, SparseFormatError
    from edge_prune.measurement.sparse.rewrite import read_model

    taps = {}
    for s, subgraph in enumerate(read_model(bytes(model)).subgraphs or []):
        for o, op in enumerate(subgraph.operators or []):
            raw = op.customOptions
            try:
                options = Options.unpack(bytes(bytearray(raw)) if raw is not None else b"")
            except SparseFormatError:
                continue
            taps[(s, o)] = options.kernel[0] * options.kernel[1]
    return taps


def _op_work(op, taps: int = 1, codes=()) -> list[OpWork]:
    name = builtin_operator_name(_builtin(op, codes)) if op.custom_code is None else op.custom_code
    if name == "TFLM_DECODE":
        return [
            OpWork(_decode_key(int(op.inputs[2 * k + 1].buffer.data[0])), _count(out), _count(out))
            for k, out in enumerate(op.outputs)
        ]
    if name in _SPARSE_OPS or name in _SPARSE_INT4_OPS:
        return _sparse_work(name, op, taps)
    name = f"{name}:{_dtype(op)}{_int4_filter(op)}"
    output = max((_count(t) for t in op.outputs), default=0)
    if name.split(":")[0] in _MAC_OPS and len(op.inputs) > 1 and op.inputs[1] is not None:
        shape = [int(d) for d in op.inputs[1].shape]
        if name.startswith("DEPTHWISE_CONV_2D"):
            per_output = int(np.prod(shape[1:3])) if len(shape) == 4 else 1
        elif name.startswith("TRANSPOSE_CONV"):
            per_output = int(np.prod(shape[1:3])) * shape[0] if len(shape) == 4 else 1
            output = max((_count(t) for t in op.inputs if t is not None), default=0)
        else:
            per_output = int(np.prod(shape[1:])) if shape else 1
        return [OpWork(name, output * per_output, output)]
    if name.startswith("UNIDIRECTIONAL_SEQUENCE_LSTM") and len(op.inputs) > 8:
        # per step, one MAC per element of the eight gate weight matrices (inputs 1-8)
        steps = int(np.prod([int(d) for d in op.inputs[0].shape][:-1]))
        weights = sum(_count(t) for t in op.inputs[1:9] if t is not None)
        return [OpWork(name, steps * weights, max((_count(t) for t in op.outputs), default=0))]
    inputs = max((_count(t) for t in op.inputs if t is not None), default=0)
    return [OpWork(name, max(output, inputs), output)]


# edge-prune's sparse kernels, fitted by bench/instruction_costs.py on per-operator QEMU
# profiles of pruned fixtures rewritten with them (50% and 90% zeros, blocks of 1 and 4), like
# every other key (:func:`sparse_costs` are the entries it keeps where a build's calibration
# fitted none, or with ``--keep-sparse``):
# - ``EDGE_PRUNE_SPARSE_FC:int8:block1/4`` and ``EDGE_PRUNE_SPARSE_CONV:int8:block1/4``: per
#   stored weight times positions and per output, no cost per call;
# - ``EDGE_PRUNE_SPARSE_CONV:patch``: per kernel tap and output position, copying the receptive
#   field (FillPatch) of a KxK convolution, fitted on what its call costs beyond the row loop.
# The cortex-m4 CMSIS-NN build keeps its earlier costs (bench/sparse.py's per-layer counts on the
# 784x300 layer of LeNet-300-100; the patch copy from the two 3x3 layers of the digits CNN): the
# fit agrees with them (bench/results/instruction-costs-2026-12-07.txt).
# - ``EDGE_PRUNE_SPARSE_FC:int4:block1/4`` (the int4 ops ``EDGE_PRUNE_SPARSE_FC_INT4`` /
#   ``_CONV_INT4``), cortex-m4 CMSIS-NN only: the same fit on the 784x300 layer with its weights
#   requantized to INT4 (bench/sparse.py --int4, results/sparse-int4-2026-12-07: 6.25 / 4.50 per
#   stored weight, 84.11 / 74.40 per output); the int4 convolution takes the FC's costs and the
#   same patch key.
_SPARSE_OPS = ("EDGE_PRUNE_SPARSE_FC", "EDGE_PRUNE_SPARSE_CONV")
_SPARSE_INT4_OPS = ("EDGE_PRUNE_SPARSE_FC_INT4", "EDGE_PRUNE_SPARSE_CONV_INT4")
_SPARSE_CONVS = ("EDGE_PRUNE_SPARSE_CONV", "EDGE_PRUNE_SPARSE_CONV_INT4")
SPARSE_PATCH_KEY = "EDGE_PRUNE_SPARSE_CONV:patch"


def sparse_costs(entry: dict) -> dict:
    """The sparse kernels' costs of one config entry of the cost file (kept on regeneration)."""
    return {k: v for k, v in entry.get("costs", {}).items() if k.split(":")[0] in _SPARSE_OPS}


def _sparse_work(name: str, op, taps: int) -> list[OpWork]:
    """edge-prune's sparse kernels: the unit of work is a stored weight times the positions it
    is applied at (batches, or output pixels); the key names the block size, whose kernels
    differ in cost per weight (``EDGE_PRUNE_SPARSE_FC:int8:block4``). A KxK convolution also
    copies its receptive field per position (:data:`SPARSE_PATCH_KEY`, per tap)."""
    values, index = op.inputs[1], op.inputs[2]
    out = op.outputs[0]
    channels = int(out.shape[-1]) if len(out.shape) else 1
    outputs = _count(out)
    positions = outputs // channels
    entries = max(_count(index) - 6 * channels, 1)  # index: bias int32 + count uint16 + deltas
    if name in _SPARSE_INT4_OPS:
        # values: each row's 4-bit weights packed two per byte; a 4-block is exactly 2 bytes,
        # unstructured rows take at most (entries + rows) / 2 < 2 * entries bytes
        block = 4 if _count(values) == 2 * entries else 1
        work = [
            OpWork(
                f"{name.removesuffix('_INT4')}:int4:block{block}",
                entries * block * positions,
                outputs,
            )
        ]
    else:
        block = max(_count(values) // entries, 1)
        work = [OpWork(f"{name}:int8:block{block}", _count(values) * positions, outputs)]
    if name in _SPARSE_CONVS and taps > 1:
        work.append(OpWork(SPARSE_PATCH_KEY, taps * positions, 0))
    return work


def decoder_cost_key(codec_name: str) -> str:
    """The cost key of a codec's decoder, e.g. ``DECODE:huffman``."""
    return f"DECODE:{codec_name}"


def _decode_key(decode_type: int) -> str:
    """The cost key of a DECODE output by its decode type (DCM byte 0), named as the
    calibration recorded it (``decode_types``: written from the codec registry by
    ``bench/instruction_costs.py``); ``DECODE`` for a type no calibration covers."""
    name = _cost_data().get("decode_types", {}).get(str(decode_type))
    return "DECODE" if name is None else decoder_cost_key(name)


def _dtype(op) -> str:
    """The type a kernel computes in: its first input's (float32, int8, int16...)."""
    first = next((t for t in op.inputs if t is not None), None)
    first = first if first is not None else next(iter(op.outputs), None)
    return str(np.dtype(first.numpy_dtype)) if first is not None else "none"


def _int4_filter(op) -> str:
    """``+int4`` for a kernel whose filter (input 1) is packed INT4: CMSIS-NN runs other code
    for it (``arm_fully_connected_s4``), the reference kernels unpack it first."""
    inputs = list(op.inputs)
    if len(inputs) > 1 and inputs[1] is not None and int(inputs[1].dtype) == INT4_TYPE:
        return "+int4"
    return ""


def _count(tensor) -> int:
    return int(np.prod([int(d) for d in tensor.shape])) if tensor is not None else 0


@dataclass(frozen=True)
class CostModel:
    """Calibrated per-key costs for one TFLM build: instructions = per_call + per_unit x work
    + per_output x output elements."""

    config: str
    per_call: dict[str, float]
    per_unit: dict[str, float]
    source: str
    per_output: dict[str, float] = field(default_factory=dict)

    def estimate(self, calls: list[list[OpWork]]) -> InstructionEstimate:
        per_key: dict[str, int] = {}
        if INVOKE in self.per_unit:  # per Invoke() and per operator it walks over
            per_key[INVOKE] = round(self.per_call[INVOKE] + self.per_unit[INVOKE] * len(calls))
        missing = []
        for call in (c for op in calls for c in op):
            if call.key not in self.per_unit:
                missing.append(call.key)
                continue
            cost = (
                self.per_call[call.key]
                + self.per_unit[call.key] * call.work
                + self.per_output.get(call.key, 0.0) * call.outputs
            )
            per_key[call.key] = per_key.get(call.key, 0) + round(cost)
        return InstructionEstimate(
            total=sum(per_key.values()),
            per_key=per_key,
            not_estimated=tuple(dict.fromkeys(missing)),
            measured=False,
            source=self.source,
        )


@lru_cache(maxsize=1)
def _cost_data() -> dict:
    if not COSTS_PATH.is_file():
        return {}
    return json.loads(COSTS_PATH.read_text())


def cost_model(target: Target) -> CostModel | None:
    """The calibrated costs of the target's TFLM build; None when no device run calibrated it."""
    from edge_prune.measurement.runtime_tables import config_key

    if target.tflm_arch is None:
        return None
    key = config_key(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)
    entry = _cost_data().get("configs", {}).get(key)
    if entry is None:
        return None
    return CostModel(
        config=key,
        per_call={k: float(v[0]) for k, v in entry["costs"].items()},
        per_unit={k: float(v[1]) for k, v in entry["costs"].items()},
        per_output={k: float(v[2]) if len(v) > 2 else 0.0 for k, v in entry["costs"].items()},
        source=f"calibrated on QEMU runs of {key} ({_cost_data().get('source', '')})",
    )


def estimate(model: bytes, target: Target) -> InstructionEstimate | None:
    """Estimated instructions per inference of ``model`` on the target's build, or None."""
    model_costs = cost_model(target)
    if model_costs is None:
        return None
    return model_costs.estimate(operator_work(model))


def fit_costs(
    samples: list[tuple], relative: bool = False
) -> dict[str, tuple[float, float, float]]:
    """Per key, (per_call, per_unit, per_output) from ``(key, work, instructions)`` or
    ``(key, work, instructions, outputs)`` samples of profiled calls: least squares on as many
    of the terms as the samples tell apart, every term kept >= 0 (with one sample, or one work
    size, all of it per unit of work). ``relative``: on each call's error relative to its count,
    so that calls of a few hundred instructions weigh as much as calls of millions."""
    by_key: dict[str, list[tuple[float, float, float]]] = {}
    for key, work, count, *outputs in samples:
        by_key.setdefault(key, []).append((work, outputs[0] if outputs else 0, count))
    return {
        key: _fit(np.array(rows, dtype=float), relative) for key, rows in sorted(by_key.items())
    }


def _fit(rows: np.ndarray, relative: bool = False) -> tuple[float, float, float]:
    work, outputs, count = rows[:, 0], rows[:, 1], rows[:, 2]
    ones = np.ones_like(work)
    weight = 1.0 / np.maximum(count, 1.0) if relative else ones
    for columns, slots in (
        ((ones, work, outputs), (0, 1, 2)),
        ((ones, work), (0, 1)),
    ):
        design = np.stack(columns, axis=1)
        if len(rows) < len(columns) or np.linalg.matrix_rank(design) < len(columns):
            continue
        coefficients = np.linalg.lstsq(design * weight[:, None], count * weight, rcond=None)[0]
        if (coefficients >= 0).all():
            fitted = [0.0, 0.0, 0.0]
            for slot, value in zip(slots, coefficients, strict=True):
                fitted[slot] = float(value)
            return tuple(fitted)
    return 0.0, float(count.sum() / max(work.sum(), 1.0)), 0.0
