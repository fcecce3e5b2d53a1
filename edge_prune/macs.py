"""Per-layer parameters, MACs and an estimated latency of a tf_keras model.

What is counted, per Keras layer, with the TFLite operator the converter turns it into:

- ``macs``: multiply-accumulates. Conv2D ``H_out·W_out·K_h·K_w·(C_in/groups)·C_out``;
  DepthwiseConv2D ``H_out·W_out·K_h·K_w·C_in·multiplier``; Dense ``in·out`` (times the leading
  positions when applied to a tensor of rank > 2). Every other layer has 0 MACs.
- ``elementwise_ops``: work of the ops without MACs, one per output element per input beyond the
  first (ADD), one per window element per output (pooling), one per input element (global
  pooling / MEAN), one per element (activations, SOFTMAX), two per element for a
  BatchNormalization that cannot be folded. Data movement (RESHAPE, CONCATENATION, PAD) is 0.
- ``params``: Keras parameters of the layer (``count_params``), BatchNormalization moving
  statistics included. The .tflite file differs: the converter folds BatchNormalization into the
  Conv/Dense before it, and biases are stored as int32 in int8 models.

Operator mapping, checked by converting a model with TensorFlow 2.21 and reading its operators:
BatchNormalization after Conv2D/DepthwiseConv2D/Dense is folded (no op); a ReLU/ReLU6 (layer or
``activation=``) after Conv/Dense/Add, or after such a folded BatchNormalization, is fused (no
op); GlobalAveragePooling2D → MEAN (not AVERAGE_POOL_2D); Flatten/Reshape → RESHAPE;
``Dense(activation="softmax")`` → FULLY_CONNECTED + SOFTMAX (two rows for one layer); Dropout
disappears at inference.

The latency is an ESTIMATE from per-operator throughput figures (MACs per cycle for an op, at a
clock, plus a fixed cost per call), never a measurement; ops with no figure are listed as not
estimated rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from edge_prune.errors import ConfigError, UnsupportedModelError

__all__ = [
    "GraphNode",
    "LayerCost",
    "ModelCost",
    "count_costs",
    "estimate_latency",
    "estimate_latency_for_target",
    "model_nodes",
]

# Ops whose kernel takes a fused ReLU/ReLU6 (TFLite ActivationFunctionType).
_FUSING_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"}
_FUSABLE_ACTIVATIONS = {"relu", "relu6"}
_ACTIVATION_OPS = {
    "relu": "RELU",
    "relu6": "RELU6",
    "softmax": "SOFTMAX",
    "sigmoid": "LOGISTIC",
    "tanh": "TANH",
    "elu": "ELU",
    "leaky_relu": "LEAKY_RELU",
    "hard_sigmoid": "HARD_SWISH",
}
_NO_OP_LAYERS = {"InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout"}
_SIMPLE_OPS = {
    "MaxPooling2D": "MAX_POOL_2D",
    "AveragePooling2D": "AVERAGE_POOL_2D",
    "GlobalAveragePooling2D": "MEAN",
    "GlobalMaxPooling2D": "REDUCE_MAX",
    "Flatten": "RESHAPE",
    "Reshape": "RESHAPE",
    "Add": "ADD",
    "Concatenate": "CONCATENATION",
    "ZeroPadding2D": "PAD",
    "Softmax": "SOFTMAX",
    "LeakyReLU": "LEAKY_RELU",
    "ELU": "ELU",
}
_WEIGHTED_OPS = {
    "Conv2D": "CONV_2D",
    "DepthwiseConv2D": "DEPTHWISE_CONV_2D",
    "Dense": "FULLY_CONNECTED",
}
SUPPORTED_LAYERS = frozenset(
    _NO_OP_LAYERS
    | set(_SIMPLE_OPS)
    | set(_WEIGHTED_OPS)
    | {"BatchNormalization", "ReLU", "Activation"}
)


@dataclass(frozen=True)
class GraphNode:
    """One layer of a Sequential or Functional model, called once, with its neighbours."""

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]  # names of the layers it reads; () for the model input
    input_shapes: tuple[tuple, ...]
    output_shape: tuple
    layer: Any  # the tf_keras layer object (read only)


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


# --- the model as a graph -------------------------------------------------------------------


def model_nodes(model) -> list[GraphNode]:
    """The layers of a built Sequential or Functional tf_keras model, inputs before users.

    Raises UnsupportedModelError for subclassed or unbuilt models and for layers called more
    than once (shared layers).
    """
    class_name = type(model).__name__
    module = type(model).__module__
    if module.startswith("keras") and not module.startswith("keras.src.engine"):
        raise UnsupportedModelError(
            f"model '{getattr(model, 'name', model)}' is a Keras 3 {class_name} ({module}): "
            "build it with tf_keras (import tf_keras as keras, TF_USE_LEGACY_KERAS=1)"
        )
    if not getattr(model, "_is_graph_network", False) or class_name not in (
        "Sequential",
        "Functional",
    ):
        raise UnsupportedModelError(
            f"model '{getattr(model, 'name', model)}' is a {class_name}: only Sequential and "
            "Functional tf_keras models can be analysed (subclassed models cannot)"
        )
    if not model.built:
        raise UnsupportedModelError(
            f"model '{model.name}' is not built: give it an input shape (keras.Input) first"
        )
    config = model.get_config()
    if class_name == "Sequential":
        return _sequential_nodes(model)
    return _functional_nodes(model, config)


def _sequential_nodes(model) -> list[GraphNode]:
    nodes = []
    previous: tuple[str, ...] = ()
    for layer in model.layers:
        nodes.append(_node(layer, previous))
        previous = (layer.name,)
    return nodes


def _functional_nodes(model, config: dict) -> list[GraphNode]:
    nodes = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = model.get_layer(name)
        calls = entry["inbound_nodes"]
        if len(calls) > 1:
            raise UnsupportedModelError(
                f"layer '{name}' is called {len(calls)} times (shared layer): not supported"
            )
        inputs = tuple(_inbound_name(name, item) for item in calls[0]) if calls else ()
        nodes.append(_node(layer, inputs))
    return nodes


def _inbound_name(layer_name: str, item) -> str:
    if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
        return item[0]
    raise UnsupportedModelError(
        f"layer '{layer_name}' has inputs this tool cannot read ({item!r}): use Keras layers"
    )


def _node(layer, inputs: tuple[str, ...]) -> GraphNode:
    input_shapes = _shapes(layer.input_shape)
    output_shapes = _shapes(layer.output_shape)
    return GraphNode(
        name=layer.name,
        class_name=type(layer).__name__,
        config=layer.get_config(),
        inputs=inputs,
        input_shapes=input_shapes,
        output_shape=output_shapes[0],
        layer=layer,
    )


def _shapes(shape) -> tuple[tuple, ...]:
    """``layer.input_shape`` is a tuple, or a list of tuples for several inputs."""
    if isinstance(shape, list):
        return tuple(tuple(s) for s in shape)
    return (tuple(shape),)


# --- counting -------------------------------------------------------------------------------


def count_costs(model) -> ModelCost:
    """Per-layer parameters, MACs and elementwise ops of ``model`` (see the module docstring).

    Raises UnsupportedModelError naming the first layer of a type it cannot count.
    """
    nodes = model_nodes(model)
    ops: dict[str, str | None] = {}  # layer name -> op that runs its result (for fusion checks)
    rows: list[LayerCost] = []
    for node in nodes:
        node_rows = _node_costs(node, ops)
        ops[node.name] = _result_op(node, node_rows, ops)
        rows.extend(node_rows)
    return ModelCost(model_name=model.name, rows=tuple(rows))


def _result_op(node: GraphNode, node_rows: list[LayerCost], ops) -> str | None:
    """The op that computes this layer's output, for folding and fusion of the layers after it.

    A layer that becomes no op passes on the op before it (a folded BatchNormalization → the
    Conv it is folded into). A Conv/Dense with its own activation cannot take a fold or fusion.
    """
    last = node_rows[-1].op
    if last is None:
        return _single_input_op(node, ops)
    if node.class_name in _WEIGHTED_OPS and node.config.get("activation", "linear") != "linear":
        return f"{last}+activation"
    return last


def _node_costs(node: GraphNode, ops) -> list[LayerCost]:
    kind = node.class_name
    if kind not in SUPPORTED_LAYERS:
        raise UnsupportedModelError(
            f"layer '{node.name}' is a {kind}: MACs cannot be counted for it "
            f"(supported: {', '.join(sorted(SUPPORTED_LAYERS))})"
        )
    params = int(node.layer.count_params())
    out_elements = _elements(node.output_shape)

    def row(op: str | None, macs: int = 0, elementwise: int = 0, p: int = params) -> LayerCost:
        return LayerCost(node.name, kind, op, p, int(macs), int(elementwise))

    if kind in _WEIGHTED_OPS:
        rows = [row(_WEIGHTED_OPS[kind], macs=_weighted_macs(node))]
        activation = node.config.get("activation", "linear")
        if activation not in ("linear", *_FUSABLE_ACTIVATIONS):
            rows.append(row(_activation_op(activation), elementwise=out_elements, p=0))
        return rows
    if kind in _NO_OP_LAYERS:
        return [row(None)]
    if kind == "BatchNormalization":
        if _single_input_op(node, ops) in {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}:
            return [row(None)]  # folded into the weights of the op before it
        return [row("MUL", elementwise=out_elements), row("ADD", elementwise=out_elements, p=0)]
    if kind in ("ReLU", "Activation"):
        activation = _activation_of(node)
        if activation == "linear":
            return [row(None)]
        if activation in _FUSABLE_ACTIVATIONS and _single_input_op(node, ops) in _FUSING_OPS:
            return [row(None)]
        return [row(_activation_op(activation), elementwise=out_elements)]
    return [row(_SIMPLE_OPS[kind], elementwise=_simple_elementwise(node, out_elements))]


def _single_input_op(node: GraphNode, ops) -> str | None:
    return ops.get(node.inputs[0]) if len(node.inputs) == 1 else None


def _activation_of(node: GraphNode) -> str:
    if node.class_name == "Activation":
        return str(node.config["activation"])
    max_value = node.config.get("max_value")
    if node.config.get("negative_slope", 0) or node.config.get("threshold", 0):
        return "leaky_relu"
    return "relu6" if max_value == 6 else "relu"


def _activation_op(activation: str) -> str:
    return _ACTIVATION_OPS.get(activation, activation.upper())


def _weighted_macs(node: GraphNode) -> int:
    c = node.config
    out_shape = node.output_shape
    in_channels = node.input_shapes[0][-1]
    if node.class_name == "Dense":
        positions = _elements(out_shape[:-1])
        return positions * in_channels * c["units"]
    kh, kw = c["kernel_size"]
    h_out, w_out = out_shape[1], out_shape[2]
    if node.class_name == "Conv2D":
        return h_out * w_out * kh * kw * (in_channels // c.get("groups", 1)) * c["filters"]
    return h_out * w_out * kh * kw * in_channels * c["depth_multiplier"]


def _simple_elementwise(node: GraphNode, out_elements: int) -> int:
    kind = node.class_name
    if kind == "Add":
        return out_elements * (len(node.input_shapes) - 1)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        ph, pw = node.config["pool_size"]
        return out_elements * ph * pw
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return _elements(node.input_shapes[0])
    if kind in ("Softmax", "LeakyReLU", "ELU"):
        return out_elements
    return 0  # RESHAPE, CONCATENATION, PAD move data only


def _elements(shape) -> int:
    """Elements of one sample: the product of the non-batch dimensions."""
    return math.prod(int(d) for d in shape[1:]) if len(shape) > 1 else 1


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
    for r in cost.rows:
        est = _row_estimate(r, macs_per_cycle, us_per_call, clock_hz)
        if est is None:
            missing.append(f"{r.layer} ({r.op})")
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


def _row_estimate(row: LayerCost, macs_per_cycle, us_per_call, clock_hz) -> float | None:
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
