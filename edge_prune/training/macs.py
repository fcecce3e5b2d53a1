"""Per-layer parameters, MACs and an estimated latency of a tf_keras model.

What is counted, per Keras layer, with the TFLite operator the converter turns it into (each
layer class's op and formula are its entry in :mod:`edge_prune.training.layer_kinds`):

- ``macs``: multiply-accumulates. Conv2D ``H_out·W_out·K_h·K_w·(C_in/groups)·C_out``;
  Conv1D ``L_out·K·(C_in/groups)·C_out``; DepthwiseConv2D ``H_out·W_out·K_h·K_w·C_in·multiplier``;
  Dense ``in·out`` (times the leading positions when applied to a tensor of rank > 2).
  Recurrent layers, per time step times the ``T`` steps, each bias add counted as one MAC:
  LSTM ``4·(in + units + 1)·units`` (input, forget, cell and output gates); GRU
  ``3·(in + units + b)·units`` with ``b = 2`` when ``reset_after`` (two biases, the Keras
  default) else 1 (update, reset and candidate gates); SimpleRNN ``(in + units + 1)·units``.
  The gates' sigmoid/tanh and products are not counted. Every other layer has 0 MACs.
- ``elementwise_ops``: work of the ops without MACs, one per output element per input beyond the
  first (ADD), one per window element per output (pooling), one per input element (global
  pooling / MEAN), one per element (activations, SOFTMAX), two per element for a
  BatchNormalization that cannot be folded. Data movement (RESHAPE, CONCATENATION, PAD) is 0.
- Layers of a class not in that table are not counted: their row has no op, 0 MACs and 0
  elementwise ops (their parameters are counted), and ``ModelCost.not_counted`` names them, so
  the totals are a lower bound. Counting never fails on a layer type.
- ``params``: Keras parameters of the layer (``count_params``), BatchNormalization moving
  statistics included. The .tflite file differs: the converter folds BatchNormalization into the
  Conv/Dense before it, and biases are stored as int32 in int8 models.

Operator mapping, checked by converting a model with TensorFlow 2.21 and reading its operators:
BatchNormalization after Conv2D/DepthwiseConv2D/Dense is folded (no op); a ReLU/ReLU6 (layer or
``activation=``) after Conv/Dense/Add, or after such a folded BatchNormalization, is fused (no
op); GlobalAveragePooling2D/1D → MEAN (not AVERAGE_POOL_2D); Flatten/Reshape → RESHAPE;
Conv1D and the 1-D poolings → the 2-D op on an H=1 image (between RESHAPEs, not counted);
LSTM → UNIDIRECTIONAL_SEQUENCE_LSTM when converted with batch 1 (``edge_prune.training.convert``);
``Dense(activation="softmax")`` → FULLY_CONNECTED + SOFTMAX (two rows for one layer);
hard_sigmoid → MUL, ADD, MINIMUM, RELU, where the MUL and ADD fold into a Conv/Dense right
before it (a row per op that runs); GRU and SimpleRNN → unrolled over their time steps (one
row labelled ``GRU (unrolled)`` / ``SimpleRNN (unrolled)``, not an op, with all their MACs);
Dropout disappears at inference.

The latency is an ESTIMATE from per-operator throughput figures (MACs per cycle for an op, at a
clock, plus a fixed cost per call), never a measurement; ops with no figure are listed as not
estimated rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError
from edge_prune.training.keras_graph import GraphNode, model_nodes
from edge_prune.training.layer_kinds import (
    ACTIVATION_OPS,
    FLOAT_IN_INT8_ACTIVATIONS,
    FOLDED_ACTIVATION_OPS,
    LayerKind,
    elements,
    kind_named,
)

if TYPE_CHECKING:
    from edge_prune.training._tf import keras

__all__ = [
    "GraphNode",  # re-exported from edge_prune.training.keras_graph
    "LayerCost",
    "ModelCost",
    "count_costs",
    "estimate_latency",
    "estimate_latency_for_target",
    "model_nodes",  # re-exported from edge_prune.training.keras_graph
    "UncountedLayer",
]

# Ops whose kernel takes a fused ReLU/ReLU6 (TFLite ActivationFunctionType).
_FUSING_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"}
_FUSABLE_ACTIVATIONS = {"relu", "relu6"}
# Ops a BatchNormalization after them is folded into.
_FOLDING_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@dataclass(frozen=True)
class LayerCost:
    """Cost of one TFLite op a layer becomes (``op`` None: no kernel runs for it)."""

    layer: str
    layer_type: str
    op: str | None
    params: int
    macs: int
    elementwise_ops: int
    est_us: float | None = None  # None: not estimated (no throughput figure for this op)

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "layer_type": self.layer_type,
            "op": self.op,
            "params": self.params,
            "macs": self.macs,
            "elementwise_ops": self.elementwise_ops,
            "est_us": self.est_us,
        }


@dataclass(frozen=True)
class UncountedLayer:
    """A layer whose type the counter does not know: no MACs or elementwise ops counted."""

    layer: str
    layer_type: str

    def __str__(self) -> str:
        return f"{self.layer} ({self.layer_type})"


@dataclass(frozen=True)
class LatencyBasis:
    """Where an estimate comes from: the clock and the throughput figures' source."""

    clock_hz: float
    source: str
    not_estimated: tuple[str, ...]  # "layer (OP)" for each op without a figure


@dataclass(frozen=True)
class ModelCost:
    """Per-layer parameters and MACs of a model; with ``latency`` set, estimated µs per op."""

    model_name: str
    rows: tuple[LayerCost, ...]
    latency: LatencyBasis | None = None
    not_counted: tuple[UncountedLayer, ...] = ()  # their MACs are missing from the totals

    @property
    def total_params(self) -> int:
        # A layer may give two rows (Dense + SOFTMAX); its params are on the first only.
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_elementwise_ops(self) -> int:
        return sum(r.elementwise_ops for r in self.rows)

    @property
    def estimated_us(self) -> float | None:
        """Sum of the estimated rows (ops not estimated are left out), None without latency."""
        if self.latency is None:
            return None
        return sum(r.est_us for r in self.rows if r.est_us is not None)

    def to_dict(self) -> dict:
        latency = None
        if self.latency is not None:
            latency = {
                "kind": "estimate",
                "total_us": self.estimated_us,
                "clock_hz": self.latency.clock_hz,
                "source": self.latency.source,
                "not_estimated": list(self.latency.not_estimated),
            }
        return {
            "model": self.model_name,
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_elementwise_ops": self.total_elementwise_ops,
            "layers": [r.to_dict() for r in self.rows],
            "not_counted": [
                {"layer": u.layer, "layer_type": u.layer_type} for u in self.not_counted
            ],
            "latency": latency,
        }

    def __str__(self) -> str:
        header = ("layer", "type", "TFLite op", "params", "MACs", "elem ops", "est. µs")
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.layer,
                    r.layer_type,
                    r.op or "-",
                    f"{r.params:,}",
                    f"{r.macs:,}",
                    f"{r.elementwise_ops:,}",
                    _format_us(r, self.latency),
                )
            )
        total_us = "" if self.latency is None else f"{self.estimated_us:,.1f}"
        lines.append(
            (
                "total",
                "",
                "",
                f"{self.total_params:,}",
                f"{self.total_macs:,}",
                f"{self.total_elementwise_ops:,}",
                total_us,
            )
        )
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        text = [f"Cost of model '{self.model_name}'"]
        for row in lines:
            cells = [
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            text.append("  ".join(cells).rstrip())
        if self.not_counted:
            text.append(
                "Not counted (layer type unknown to the counter; totals are a lower bound): "
                + ", ".join(map(str, self.not_counted))
            )
        if self.latency is not None:
            text.append(
                f"Latency is an ESTIMATE at {self.latency.clock_hz / 1e6:g} MHz from "
                f"per-op throughput figures ({self.latency.source})."
            )
            if self.latency.not_estimated:
                text.append("Not estimated (no figure): " + ", ".join(self.latency.not_estimated))
        return "\n".join(text)


def _format_us(row: LayerCost, latency: LatencyBasis | None) -> str:
    if latency is None:
        return ""
    return "n/e" if row.est_us is None else f"{row.est_us:,.1f}"


# --- counting -------------------------------------------------------------------------------


def count_costs(model: keras.Model, quantization: str = "float") -> ModelCost:
    """Per-layer parameters, MACs and elementwise ops of ``model`` (see the module docstring),
    with the ops the converter emits for ``quantization`` ("float" or "int8": an activation
    without an int8 kernel runs between a DEQUANTIZE and a QUANTIZE).

    Best effort: a layer of a type the counter does not know gets a row without op, MACs or
    elementwise ops and is listed in ``not_counted``. Raises UnsupportedModelError only for a
    model it cannot read as a graph (subclassed, unbuilt, Keras 3, shared layers).
    """
    if quantization not in ("float", "int8"):
        raise ConfigError(f"quantization: got {quantization!r}, expected 'float' or 'int8'")
    nodes = model_nodes(model)
    ops: dict[str, str | None] = {}  # layer name -> op that runs its result (for fusion checks)
    rows: list[LayerCost] = []
    not_counted: list[UncountedLayer] = []
    for node in nodes:
        kind = kind_named(node.class_name)
        if kind.cost == "not_counted":
            not_counted.append(UncountedLayer(node.name, node.class_name))
            params = int(node.layer.count_params())
            node_rows = [LayerCost(node.name, node.class_name, None, params, 0, 0)]
            ops[node.name] = f"{node.class_name} (not counted)"
        else:
            node_rows = _node_costs(node, kind, ops, quantization)
            ops[node.name] = _result_op(node, kind, node_rows, ops)
        rows.extend(node_rows)
    return ModelCost(model_name=model.name, rows=tuple(rows), not_counted=tuple(not_counted))


def _result_op(
    node: GraphNode, kind: LayerKind, node_rows: list[LayerCost], ops: dict[str, str | None]
) -> str | None:
    """The op that computes this layer's output, for folding and fusion of the layers after it.

    A layer that becomes no op passes on the op before it (a folded BatchNormalization → the
    Conv it is folded into). A Conv/Dense with its own activation cannot take a fold or fusion.
    """
    last = node_rows[-1].op
    if last is None:
        return _single_input_op(node, ops)
    if kind.cost == "weighted" and node.config.get("activation", "linear") != "linear":
        return f"{last}+activation"
    return last


def _node_costs(
    node: GraphNode, kind: LayerKind, ops: dict[str, str | None], quantization: str
) -> list[LayerCost]:
    """The rows of one layer, by its kind's cost rule
    (edge_prune.training.layer_kinds.COST_RULES)."""
    params = int(node.layer.count_params())
    out_elements = elements(node.output_shape)

    def row(op: str | None, macs: int = 0, elementwise: int = 0, p: int = params) -> LayerCost:
        return LayerCost(node.name, node.class_name, op, p, int(macs), int(elementwise))

    if kind.cost == "weighted":
        rows = [row(kind.ops[0], macs=kind.macs(node))]
        activation = node.config.get("activation", "linear")
        if activation not in ("linear", *_FUSABLE_ACTIVATIONS):
            after = _activation_ops(activation, kind.ops[0] in _FOLDING_OPS, quantization)
            rows.extend(row(op, elementwise=out_elements, p=0) for op in after)
        return rows
    if kind.cost == "batchnorm":
        if _single_input_op(node, ops) in _FOLDING_OPS:
            return [row(None)]  # folded into the weights of the op before it
        return [
            row(op, elementwise=out_elements, p=params if i == 0 else 0)
            for i, op in enumerate(kind.ops)
        ]
    if kind.cost == "activation":
        activation = kind.activation(node)
        if activation == "linear":
            return [row(None)]
        before = _single_input_op(node, ops)
        if activation in _FUSABLE_ACTIVATIONS and before in _FUSING_OPS:
            return [row(None)]
        return [
            row(op, elementwise=out_elements, p=params if i == 0 else 0)
            for i, op in enumerate(
                _activation_ops(activation, before in _FOLDING_OPS, quantization)
            )
        ]
    return [
        row(
            kind.ops[0] if kind.ops else None,
            macs=kind.macs(node) if kind.macs else 0,
            elementwise=kind.elementwise(node) if kind.elementwise else 0,
        )
    ]


def _single_input_op(node: GraphNode, ops: dict[str, str | None]) -> str | None:
    return ops.get(node.inputs[0]) if len(node.inputs) == 1 else None


def _activation_ops(activation: str, after_folding_op: bool, quantization: str) -> tuple[str, ...]:
    """The ops of an activation; right after a Conv/Dense, without those folded into it; in an
    int8 model, between a DEQUANTIZE and a QUANTIZE when it has no int8 kernel."""
    ops = ACTIVATION_OPS.get(activation, (activation.upper(),))
    if after_folding_op:
        ops = ops[len(FOLDED_ACTIVATION_OPS.get(activation, ())) :]
    if quantization == "int8" and activation in FLOAT_IN_INT8_ACTIVATIONS:
        ops = ("DEQUANTIZE", *ops, "QUANTIZE")
    return ops


# --- latency estimate -----------------------------------------------------------------------


def estimate_latency(
    cost: ModelCost,
    *,
    macs_per_cycle: Mapping[str, float],
    us_per_call: Mapping[str, float],
    clock_hz: float,
    source: str,
) -> ModelCost:
    """``cost`` with an estimated time per op: work / macs_per_cycle[op] / clock + us_per_call[op].

    The work of an op is its MACs, or its elementwise ops for ops without MACs (ADD), the unit
    the per-operator throughput figures use. An op with neither figure gets ``est_us`` None and
    is listed in ``latency.not_estimated``; layers that become no op cost 0.
    """
    _check_throughput(macs_per_cycle, us_per_call, clock_hz)
    rows = []
    missing = []
    uncounted = {u.layer for u in cost.not_counted}
    for r in cost.rows:
        est = (
            None
            if r.layer in uncounted
            else _row_estimate(r, macs_per_cycle, us_per_call, clock_hz)
        )
        if est is None:
            missing.append(f"{r.layer} ({r.op or r.layer_type + ', not counted'})")
        rows.append(replace(r, est_us=est))
    basis = LatencyBasis(clock_hz=float(clock_hz), source=source, not_estimated=tuple(missing))
    return replace(cost, rows=tuple(rows), latency=basis)


def estimate_latency_for_target(cost: ModelCost, target) -> ModelCost | None:
    """Estimate with a Target-like object (``.clock_hz``, ``.throughput`` with
    ``macs_per_cycle``, ``us_per_call``, ``source``); None when it has no throughput figures."""
    throughput = getattr(target, "throughput", None)
    if throughput is None:
        return None
    return estimate_latency(
        cost,
        macs_per_cycle=throughput.macs_per_cycle,
        us_per_call=throughput.us_per_call,
        clock_hz=target.clock_hz,
        source=throughput.source,
    )


def _row_estimate(
    row: LayerCost,
    macs_per_cycle: Mapping[str, float],
    us_per_call: Mapping[str, float],
    clock_hz: float,
) -> float | None:
    if row.op is None:
        return 0.0
    if row.op not in macs_per_cycle and row.op not in us_per_call:
        return None
    us = 0.0
    if row.op in macs_per_cycle:
        work = row.macs if row.macs else row.elementwise_ops
        us += work / macs_per_cycle[row.op] / clock_hz * 1e6
    return us + us_per_call.get(row.op, 0.0)


def _check_throughput(macs_per_cycle, us_per_call, clock_hz) -> None:
    if not clock_hz or clock_hz <= 0:
        raise ConfigError(f"clock_hz must be a positive number of Hz, got {clock_hz!r}")
    for op, rate in macs_per_cycle.items():
        if not rate or rate <= 0:
            raise ConfigError(f"macs_per_cycle[{op!r}] must be > 0, got {rate!r}")
    for op, us in us_per_call.items():
        if us is None or us < 0:
            raise ConfigError(f"us_per_call[{op!r}] must be >= 0 µs, got {us!r}")
