"""One table of the tf_keras layer classes edge-prune knows: how each is counted and pruned.

Each class has one :class:`LayerKind`, found by class name (``type(layer).__name__``) with
:func:`kind_of`, as tfmot keeps one map of layer classes in its ``prune_registry.py``:

- ``cost``, ``ops``, ``macs``, ``elementwise``, ``activation``: what the cost counter
  (:mod:`edge_prune.training.macs`) makes of the layer: the TFLite op(s) the converter turns it into
  and the work of each (see :data:`COST_RULES`);
- ``channels`` and the fields after it: what structured pruning
(:mod:`edge_prune.training.structured`)
  does with the channels (last axis) of the tensors around the layer, and which weight axes
  it slices (see :data:`CHANNEL_ROLES`).

The op names are the operators of the converted flatbuffer, which the firmware's op resolver
(:mod:`edge_prune.measurement.firmware`) registers by name; tests check that each one has a TFLM
``Add`` method and that the converter emits it. The recurrent layers the converter unrolls over
their time steps (GRU, SimpleRNN) are the exception: their one cost row carries the label
``"<class> (unrolled)"``, which names no op, and ``unrolled_into`` lists the ops they become.

A class that is not in the table gets the default kind: the cost counter gives its layers a
row with no op and no work and lists them as not counted, and structured pruning refuses the
model. Teaching edge-prune a class is one :class:`LayerKind`: an entry of :data:`KINDS` for
a Keras class, or :func:`register` for one of your own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError

if TYPE_CHECKING:
    from edge_prune.training._tf import keras
    from edge_prune.training.keras_graph import GraphNode

__all__ = [
    "ACTIVATION_OPS",
    "CHANNEL_ROLES",
    "COST_RULES",
    "FOLDED_ACTIVATION_OPS",
    "KINDS",
    "LayerKind",
    "kind_named",
    "kind_of",
    "kinds",
    "register",
    "unregister",
    "unrolled_label",
    # what a kind counts with (for kinds of your own)
    "conv1d_macs",
    "conv2d_macs",
    "dense_macs",
    "depthwise_macs",
    "elements",
    "per_extra_input",
    "per_input_element",
    "per_output_element",
    "per_window_element",
    "recurrent_macs",
]

COST_RULES = {
    "op": "one row: ops[0] (no op when ops is empty) with macs(node) MACs and elementwise(node) "
    "elementwise ops (0 when None)",
    "weighted": "a Conv/Dense row as for 'op'; its activation= runs fused (relu, relu6), as "
    "extra rows, one per op of ACTIVATION_OPS not in FOLDED_ACTIVATION_OPS, one op per output "
    "element each, or not at all (linear)",
    "activation": "activation(node) names the function: no op when linear or when relu/relu6 "
    "fuses into the op before; else a row per op of ACTIVATION_OPS (but those of "
    "FOLDED_ACTIVATION_OPS after a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED), one op per "
    "output element each",
    "batchnorm": "folded into a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED before it (no "
    "op), else one row per op in ops, one op per output element each",
    "not_counted": "a class the counter does not know: a row with no op and no work, listed in "
    "ModelCost.not_counted",
}
CHANNEL_ROLES = {
    "input": "the model input: its channels are never removed",
    "owns": "makes config[size_key] output channels and can lose some; its kernel (weights[0]) "
    "reads the input channels on kernel_axes[0] and writes the outputs on kernel_axes[1], "
    "weights[1] is the bias; kept whole when config groups != 1",
    "kept_whole": "makes config[size_key] channels but keeps them, and the channels feeding it",
    "repeats": "each input channel gives config['depth_multiplier'] output channels; the kernel "
    "reads the input channels on kernel_axes[0], the bias is per output channel",
    "normalizes": "per-channel scale and shift of the last axis from moving statistics "
    "(gamma, beta, moving_mean, moving_variance): every weight is sliced per channel",
    "passes": "the last axis stays as it is (values may change, channel identity does not)",
    "flattens": "spreads the channels over H·W·C positions (the next Dense reads rows of them)",
    "reshapes": "keeps channels when the last axis keeps its size, else mixes them",
    "adds": "channel i of every input is one channel: the inputs' producers share one mask",
    "concatenates": "lays its inputs' channels side by side (on another axis: as 'adds')",
}

# Keras activation names -> the TFLite ops that compute them, in order (as TensorFlow 2.21
# converts them). hard_sigmoid is clip(0.2·x + 0.5, 0, 1): MUL, ADD, MINIMUM(·, 1), RELU.
ACTIVATION_OPS: dict[str, tuple[str, ...]] = {
    "relu": ("RELU",),
    "relu6": ("RELU6",),
    "softmax": ("SOFTMAX",),
    "sigmoid": ("LOGISTIC",),
    "tanh": ("TANH",),
    "elu": ("ELU",),
    "leaky_relu": ("LEAKY_RELU",),
    "hard_sigmoid": ("MUL", "ADD", "MINIMUM", "RELU"),
}
# The leading ops of an activation that the converter folds into the weights of a CONV_2D,
# DEPTHWISE_CONV_2D or FULLY_CONNECTED right before it (as it folds BatchNormalization): only
# the rest of ACTIVATION_OPS run there.
FOLDED_ACTIVATION_OPS: dict[str, tuple[str, ...]] = {"hard_sigmoid": ("MUL", "ADD")}
# Activations the int8 converter keeps in float (TensorFlow 2.21 emits no int8 ELU): in an int8
# model they run as DEQUANTIZE, the float op(s), QUANTIZE.
FLOAT_IN_INT8_ACTIVATIONS = frozenset({"elu"})


@dataclass(frozen=True)
class LayerKind:
    """What edge-prune knows of one Keras layer class (``name``); see the module docstring.

    Counting: ``cost`` (a key of :data:`COST_RULES`), ``ops`` (the TFLite op names of its
    rows; for 'activation', the ops it may become), ``macs`` and ``elementwise`` (functions of
    the layer's :class:`~edge_prune.training.keras_graph.GraphNode`, None: 0), ``activation`` (for
    'activation': the function's Keras name), ``unrolled_into`` (the ops the converter unrolls
    the layer into over its time steps; ``ops`` is then the cost label
    ``("<name> (unrolled)",)``, which names no op).

    Channels: ``channels`` (a key of :data:`CHANNEL_ROLES`, None: structured pruning refuses
    the layer), ``size_key`` (config key of the channel count), ``kernel_axes`` (input, output
    channel axis of weights[0]), ``per_value`` (computed value by value: also accepts a
    flattened tensor, and maps a constant channel through the layer itself), ``keeps_constants``
    (a channel that is one constant at every position stays that constant), ``windowed`` (each
    output reads a window of positions, where "same" padding reads zeros), ``mixes_channels``
    (each output depends on every channel: softmax).
    """

    name: str
    cost: str = "op"
    ops: tuple[str, ...] = ()
    macs: Callable[[GraphNode], int] | None = None
    elementwise: Callable[[GraphNode], int] | None = None
    activation: Callable[[GraphNode], str] | None = None
    unrolled_into: tuple[str, ...] = ()
    channels: str | None = None
    size_key: str = ""
    kernel_axes: tuple[int, int | None] | None = None
    per_value: bool = False
    keeps_constants: bool = False
    windowed: bool = False
    mixes_channels: bool = False

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ConfigError(f"layer kind {self.name!r}: {problem}")

    @property
    def known(self) -> bool:
        """Whether the class is in the table (False: the default kind of an unknown class)."""
        return _TABLE.get(self.name) is self


def unrolled_label(class_name: str) -> str:
    """The cost label of a layer the converter unrolls (it names no op)."""
    return f"{class_name} (unrolled)"


def _problem(kind: LayerKind) -> str:
    if not kind.name:
        return "needs the layer's class name"
    if kind.cost not in COST_RULES:
        return f"cost must be one of {', '.join(COST_RULES)}, got {kind.cost!r}"
    if kind.channels is not None and kind.channels not in CHANNEL_ROLES:
        return f"channels must be None or one of {', '.join(CHANNEL_ROLES)}, got {kind.channels!r}"
    if kind.cost == "weighted" and (not kind.ops or kind.macs is None):
        return "cost 'weighted' needs its op and a macs function"
    if kind.cost == "activation" and kind.activation is None:
        return "cost 'activation' needs an activation function"
    if kind.unrolled_into and kind.ops != (unrolled_label(kind.name),):
        return f"an unrolled layer's ops is its cost label ({unrolled_label(kind.name)!r},)"
    if kind.cost == "batchnorm" and not kind.ops:
        return "cost 'batchnorm' needs the ops of the unfolded layer"
    if kind.channels in ("owns", "kept_whole") and not kind.size_key:
        return f"channels {kind.channels!r} needs the size_key of its channel count"
    if kind.channels in ("owns", "repeats") and kind.kernel_axes is None:
        return f"channels {kind.channels!r} needs the kernel_axes it slices"
    return ""


# --- the work of one layer ------------------------------------------------------------------


def elements(shape) -> int:
    """Elements of one sample: the product of the non-batch dimensions."""
    return math.prod(int(d) for d in shape[1:]) if len(shape) > 1 else 1


def dense_macs(node: GraphNode) -> int:
    """in·out, times the leading positions when applied to a tensor of rank > 2."""
    positions = elements(node.output_shape[:-1])
    return positions * node.input_shapes[0][-1] * node.config["units"]


def conv1d_macs(node: GraphNode) -> int:
    """L_out·K·(C_in/groups)·C_out."""
    c = node.config
    (k,) = c["kernel_size"]
    in_channels = node.input_shapes[0][-1]
    return node.output_shape[1] * k * (in_channels // c.get("groups", 1)) * c["filters"]


def conv2d_macs(node: GraphNode) -> int:
    """H_out·W_out·K_h·K_w·(C_in/groups)·C_out."""
    c = node.config
    kh, kw = c["kernel_size"]
    h_out, w_out = node.output_shape[1], node.output_shape[2]
    in_channels = node.input_shapes[0][-1]
    return h_out * w_out * kh * kw * (in_channels // c.get("groups", 1)) * c["filters"]


def depthwise_macs(node: GraphNode) -> int:
    """H_out·W_out·K_h·K_w·C_in·multiplier."""
    c = node.config
    kh, kw = c["kernel_size"]
    h_out, w_out = node.output_shape[1], node.output_shape[2]
    return h_out * w_out * kh * kw * node.input_shapes[0][-1] * c["depth_multiplier"]


def recurrent_macs(gates: int, biases: Callable[[dict], int]) -> Callable[[GraphNode], int]:
    """Gates × (inputs + units + biases per gate) × units, per step, times the time steps."""

    def count(node: GraphNode) -> int:
        units = int(node.config["units"])
        timesteps, inputs = node.input_shapes[0][1], node.input_shapes[0][-1]
        per_step = gates * (int(inputs) + units + biases(node.config)) * units
        return int(timesteps) * per_step

    return count


def per_extra_input(node: GraphNode) -> int:
    """One per output element per input beyond the first (ADD, MUL, SUB)."""
    return elements(node.output_shape) * (len(node.input_shapes) - 1)


def per_window_element(node: GraphNode) -> int:
    """One per window element per output (pooling)."""
    return elements(node.output_shape) * math.prod(node.config["pool_size"])


def per_input_element(node: GraphNode) -> int:
    """One per input element (global pooling: MEAN, REDUCE_MAX)."""
    return elements(node.input_shapes[0])


def per_output_element(node: GraphNode) -> int:
    return elements(node.output_shape)


def configured_activation(node: GraphNode) -> str:
    return str(node.config["activation"])


def relu_activation(node: GraphNode) -> str:
    """A ReLU layer's function: leaky_relu with a slope or threshold, relu6 capped at 6."""
    if node.config.get("negative_slope", 0) or node.config.get("threshold", 0):
        return "leaky_relu"
    return "relu6" if node.config.get("max_value") == 6 else "relu"


# --- the table ------------------------------------------------------------------------------


def _no_op(name: str, **channels) -> LayerKind:
    """A layer that runs no op at inference and passes its channels."""
    return LayerKind(name, channels="passes", **channels)


def _pooling(name: str, op: str, elementwise: Callable[[GraphNode], int]) -> LayerKind:
    return LayerKind(
        name, ops=(op,), elementwise=elementwise, channels="passes", keeps_constants=True
    )


KINDS: tuple[LayerKind, ...] = (
    LayerKind("InputLayer", channels="input"),
    # Make channels (CONV_2D: the converter runs Conv1D as a 2-D conv on an H=1 image).
    LayerKind(
        "Conv1D",
        cost="weighted",
        ops=("CONV_2D",),
        macs=conv1d_macs,
        channels="owns",
        size_key="filters",
        kernel_axes=(1, 2),
        windowed=True,
    ),
    LayerKind(
        "Conv2D",
        cost="weighted",
        ops=("CONV_2D",),
        macs=conv2d_macs,
        channels="owns",
        size_key="filters",
        kernel_axes=(2, 3),
        windowed=True,
    ),
    LayerKind(
        "Dense",
        cost="weighted",
        ops=("FULLY_CONNECTED",),
        macs=dense_macs,
        channels="owns",
        size_key="units",
        kernel_axes=(0, 1),
    ),
    LayerKind(
        "DepthwiseConv2D",
        cost="weighted",
        ops=("DEPTHWISE_CONV_2D",),
        macs=depthwise_macs,
        channels="repeats",
        kernel_axes=(2, None),
        windowed=True,
    ),
    # Recurrent, each bias add one MAC. LSTM: input, forget, cell, output gates. GRU: update,
    # reset, candidate gates, two biases when reset_after (the Keras default). The converter
    # unrolls GRU and SimpleRNN (edge_prune.training.convert) into the ops of unrolled_into (UNPACK
    # the steps, PACK them back with return_sequences; int8 may add QUANTIZE/DEQUANTIZE): their
    # one row, with all their MACs, carries a label.
    LayerKind(
        "LSTM",
        ops=("UNIDIRECTIONAL_SEQUENCE_LSTM",),
        macs=recurrent_macs(4, lambda c: 1),
        channels="kept_whole",
        size_key="units",
    ),
    LayerKind(
        "GRU",
        ops=(unrolled_label("GRU"),),
        unrolled_into=(
            "RESHAPE",
            "UNPACK",
            "FULLY_CONNECTED",
            "SPLIT",
            "SPLIT_V",
            "LOGISTIC",
            "TANH",
            "MUL",
            "ADD",
            "SUB",
            "PACK",
        ),
        macs=recurrent_macs(3, lambda c: 2 if c.get("reset_after", True) else 1),
        channels="kept_whole",
        size_key="units",
    ),
    LayerKind(
        "SimpleRNN",
        ops=(unrolled_label("SimpleRNN"),),
        unrolled_into=("RESHAPE", "UNPACK", "FULLY_CONNECTED", "TANH", "ADD", "PACK"),
        macs=recurrent_macs(1, lambda c: 1),
        channels="kept_whole",
        size_key="units",
    ),
    LayerKind("BatchNormalization", cost="batchnorm", ops=("MUL", "ADD"), channels="normalizes"),
    # Activations.
    LayerKind(
        "Activation",
        cost="activation",
        ops=tuple(dict.fromkeys(op for ops in ACTIVATION_OPS.values() for op in ops)),
        activation=configured_activation,
        channels="passes",
        per_value=True,
    ),
    LayerKind(
        "ReLU",
        cost="activation",
        ops=("RELU", "RELU6", "LEAKY_RELU"),
        activation=relu_activation,
        channels="passes",
        per_value=True,
    ),
    LayerKind(
        "LeakyReLU",
        ops=("LEAKY_RELU",),
        elementwise=per_output_element,
        channels="passes",
        per_value=True,
    ),
    LayerKind(
        "ELU",
        cost="activation",
        ops=("ELU",),
        activation=lambda node: "elu",
        channels="passes",
        per_value=True,
    ),
    LayerKind(
        "Softmax",
        ops=("SOFTMAX",),
        elementwise=per_output_element,
        channels="passes",
        mixes_channels=True,
    ),
    # Gone at inference.
    _no_op("Dropout", per_value=True),
    _no_op("GaussianNoise", per_value=True),
    _no_op("GaussianDropout", per_value=True),
    _no_op("SpatialDropout1D", keeps_constants=True),
    _no_op("SpatialDropout2D", keeps_constants=True),
    # Pooling (1-D: the 2-D op on an H=1 image); global average pooling is MEAN.
    _pooling("MaxPooling1D", "MAX_POOL_2D", per_window_element),
    _pooling("MaxPooling2D", "MAX_POOL_2D", per_window_element),
    _pooling("AveragePooling1D", "AVERAGE_POOL_2D", per_window_element),
    _pooling("AveragePooling2D", "AVERAGE_POOL_2D", per_window_element),
    _pooling("GlobalAveragePooling1D", "MEAN", per_input_element),
    _pooling("GlobalAveragePooling2D", "MEAN", per_input_element),
    _pooling("GlobalMaxPooling1D", "REDUCE_MAX", per_input_element),
    _pooling("GlobalMaxPooling2D", "REDUCE_MAX", per_input_element),
    # Data movement (no work counted) and elementwise arithmetic.
    LayerKind("ZeroPadding1D", ops=("PAD",), channels="passes"),
    LayerKind("ZeroPadding2D", ops=("PAD",), channels="passes"),
    LayerKind("Flatten", ops=("RESHAPE",), channels="flattens", keeps_constants=True),
    LayerKind("Reshape", ops=("RESHAPE",), channels="reshapes", keeps_constants=True),
    LayerKind("Permute", ops=("TRANSPOSE",)),
    LayerKind("Concatenate", ops=("CONCATENATION",), channels="concatenates"),
    LayerKind("Add", ops=("ADD",), elementwise=per_extra_input, channels="adds"),
    LayerKind("Multiply", ops=("MUL",), elementwise=per_extra_input),
    LayerKind("Subtract", ops=("SUB",), elementwise=per_extra_input),
)

_TABLE: dict[str, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    """Add ``kind`` to the table (e.g. for a custom layer class); its name must be new."""
    if kind.name in _TABLE:
        raise ConfigError(f"layer kind {kind.name!r} is already in the table")
    _TABLE[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind added with :func:`register` (the built-in ones stay)."""
    if any(k.name == name for k in KINDS):
        raise ConfigError(f"layer kind {name!r} is built in and cannot be removed")
    _TABLE.pop(name, None)


for _kind in KINDS:
    register(_kind)


def kinds() -> tuple[LayerKind, ...]:
    """Every kind in the table, built-in ones first."""
    return tuple(_TABLE.values())


def kind_named(class_name: str) -> LayerKind:
    """The kind of the layer class called ``class_name``; the default kind when unknown."""
    return _TABLE.get(class_name) or LayerKind(class_name, cost="not_counted")


def kind_of(layer: keras.layers.Layer) -> LayerKind:
    """The kind of a Keras layer, by its class name; the default kind when unknown."""
    return kind_named(type(layer).__name__)
