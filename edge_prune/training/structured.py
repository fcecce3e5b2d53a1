"""Structured pruning: remove whole Conv1D/Conv2D filters and Dense units, rebuild a smaller model.

Unstructured zeros do not make dense Cortex-M kernels (CMSIS-NN) faster; fewer channels do.
For a tf_keras Sequential or Functional model this module:

1. follows every tensor's channels (last axis) back to the layer that made them. Conv1D/Conv2D
   (groups=1) and Dense make channels and can lose some; DepthwiseConv2D, BatchNormalization,
   1-D and 2-D pooling, activations, Dropout and channel-preserving Reshape pass them on;
   Flatten spreads them over H·W·C rows of the next Dense; Concatenate lays them side by side;
   Add (and a Concatenate on another axis) ties its inputs: their producers share one mask.
   What each layer class does is its ``channels`` role in :mod:`edge_prune.training.layer_kinds`.
2. scores each output channel by the L1 or L2 norm of its filter, times |gamma|/sqrt(var+eps) of
   a BatchNormalization that is the producer's only consumer. Tied producers are ranked by the
   sum of their scores, each divided by its layer's mean score so no layer dominates.
3. removes the lowest-scored channels (``floor(ratio·C)`` of them, never below
   ``min_channels``, kept count rounded up to ``channel_multiple``) and rebuilds the model from
   its config with the smaller ``filters``/``units``, copying the surviving weights into every
   dependent layer (next Conv/Dense inputs, depthwise kernels, BatchNormalization statistics,
   Flatten→Dense rows).

Channels that reach a model output, or feed a structure this module does not handle, are kept
whole; their producers are listed in ``skipped`` with the reason. Recurrent layers (LSTM, GRU,
SimpleRNN) and grouped convolutions (``groups > 1``) are kept whole, with the channels feeding
them, and listed in ``skipped`` too.
The input model is not changed. The returned model is not compiled: compile and fine-tune it.

:func:`remove_dead_units` reuses the same analysis and rebuild to remove, without changing what
the model computes, the channels that magnitude pruning left dead: read only through zero
weights, or constant (zero filter) and folded into the biases of the layers reading them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.training.keras_graph import GraphNode, model_nodes
from edge_prune.training.layer_kinds import LayerKind, kind_named, kinds

if TYPE_CHECKING:
    from edge_prune.training._tf import keras

__all__ = [
    "CRITERIA",
    "DeadUnitLayer",
    "DeadUnitResult",
    "LayerChannels",
    "SkippedLayer",
    "StructuredPruneResult",
    "prune_channels",
    "remove_dead_units",
]

CRITERIA = ("l1", "l2")

RECURRENT_REASON = "recurrent layer kept whole"


def _grouped_reason(node: GraphNode) -> str:
    return f"grouped convolution (groups={node.config['groups']}): channels kept whole"


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerChannels:
    """Output channels (units) of one Conv1D/Conv2D/Dense: how many kept, which, and what it
    is tied to."""

    name: str
    kept: int
    total: int
    kept_indices: tuple[int, ...]  # original indices of the kept channels, ascending
    tied_with: tuple[str, ...] = ()  # layers sharing this mask through an Add

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kept": self.kept,
            "total": self.total,
            "kept_indices": list(self.kept_indices),
            "tied_with": list(self.tied_with),
        }


@dataclass(frozen=True)
class SkippedLayer:
    """A Conv/Dense (or recurrent) layer whose channels were all kept, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True, eq=False)
class StructuredPruneResult:
    """The rebuilt (smaller, uncompiled) model and what was removed from which layer."""

    model: keras.Model
    criterion: str
    layers: tuple[LayerChannels, ...]
    skipped: tuple[SkippedLayer, ...]
    params_before: int
    params_after: int

    @property
    def channels_kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def channels_total(self) -> int:
        return sum(layer.total for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "channels_kept": self.channels_kept,
            "channels_total": self.channels_total,
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def __str__(self) -> str:
        title = (
            f"Structured pruning ({self.criterion.upper()} norm): parameters "
            f"{self.params_before:,} -> {self.params_after:,}, channels "
            f"{self.channels_kept:,}/{self.channels_total:,} kept"
        )
        lines = _layer_table(
            title, self.layers, "tied with", lambda layer: ", ".join(layer.tied_with), self.skipped
        )
        return "\n".join(line.rstrip() for line in lines)


# --- channel maps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """``length`` channels of ``source`` (a producer; None: channels never removed), each
    repeated ``repeat`` times in a row (a DepthwiseConv2D multiplier)."""

    source: str | None
    length: int
    repeat: int = 1

    @property
    def width(self) -> int:
        return self.length * self.repeat


@dataclass(frozen=True)
class _ChannelMap:
    """Where each channel of a tensor comes from. ``positions`` > 0: a Flatten output, i.e.
    ``positions`` spatial positions × these channels, in H, W, C order."""

    segments: tuple[_Segment, ...]
    positions: int = 0

    @property
    def width(self) -> int:
        return sum(s.width for s in self.segments)

    @property
    def sources(self) -> set[str]:
        return {s.source for s in self.segments if s.source is not None}


def _fixed(channels: int) -> _ChannelMap:
    return _ChannelMap((_Segment(None, int(channels)),))


class _Analysis:
    """Walks the graph once: channel maps of every tensor, ties (union-find), frozen producers."""

    def __init__(self, nodes: list[GraphNode], output_names: list[str]):
        self.nodes = nodes
        self.maps: dict[str, _ChannelMap] = {}
        self.parent: dict[str, str] = {}
        self.frozen: dict[str, str] = {}  # producer -> reason its channels are kept whole
        self.consumers: dict[str, list[GraphNode]] = {n.name: [] for n in nodes}
        for node in nodes:
            for name in node.inputs:
                self.consumers[name].append(node)
        for node in nodes:
            self.maps[node.name] = self._output_map(node)
        for name in output_names:
            self._freeze(self.maps[name], f"its channels reach model output '{name}'")

    # union-find over producer names: tied producers share one mask
    def root(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def _union(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra

    def _freeze(self, channel_map: _ChannelMap, reason: str) -> None:
        for source in channel_map.sources:
            self.frozen.setdefault(source, reason)

    def _new_source(self, node: GraphNode, channels: int) -> _ChannelMap:
        self.parent[node.name] = node.name
        return _ChannelMap((_Segment(node.name, int(channels)),))

    def _input_maps(self, node: GraphNode) -> list[_ChannelMap]:
        if not node.inputs:  # first layer of a Sequential model: the model input
            return [_fixed(node.input_shapes[0][-1])]
        return [self.maps[name] for name in node.inputs]

    def _output_map(self, node: GraphNode) -> _ChannelMap:
        kind, config = kind_named(node.class_name), node.config
        role = kind.channels
        if role is None:
            supported = sorted(k.name for k in kinds() if k.channels is not None)
            raise UnsupportedModelError(
                f"layer '{node.name}' is a {node.class_name}: structured pruning supports "
                f"{', '.join(supported)}"
            )
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedModelError(
                f"layer '{node.name}' uses data_format={config['data_format']!r}: only "
                "channels_last is supported"
            )
        if role == "input":
            return _fixed(node.output_shape[-1])
        inputs = self._input_maps(node)
        if role in ("adds", "concatenates"):
            return self._merge_map(node, kind, inputs)
        (inp,) = inputs
        if inp.positions and not (kind.per_value or role in ("owns", "flattens")):
            self._freeze(inp, f"its flattened output goes into {node.class_name} '{node.name}'")
            inp = _fixed(node.input_shapes[0][-1])
        if role == "owns":
            return self._owner_map(node, kind, inp)
        if role == "kept_whole":
            self._freeze(inp, f"it feeds recurrent layer '{node.name}' (kept whole)")
            out = self._new_source(node, config[kind.size_key])
            self.frozen[node.name] = RECURRENT_REASON
            return out
        if role == "repeats":
            multiplier = config["depth_multiplier"]
            segments = tuple(
                _Segment(s.source, s.length, s.repeat * multiplier) for s in inp.segments
            )
            return _ChannelMap(segments)
        if role == "normalizes":
            return self._batchnorm_map(node, inp)
        if role == "flattens":
            return self._flatten_map(node, inp)
        if role == "reshapes":
            if node.input_shapes[0][-1] == node.output_shape[-1] and not inp.positions:
                return inp
            self._freeze(inp, f"Reshape '{node.name}' mixes its channels with other axes")
            return _fixed(node.output_shape[-1])
        return inp  # passes

    def _owner_map(self, node: GraphNode, kind: LayerKind, inp: _ChannelMap) -> _ChannelMap:
        out = self._new_source(node, node.config[kind.size_key])
        if _is_grouped(node):
            self._freeze(inp, f"it feeds grouped convolution '{node.name}' (kept whole)")
            self.frozen[node.name] = _grouped_reason(node)
        return out

    def _batchnorm_map(self, node: GraphNode, inp: _ChannelMap) -> _ChannelMap:
        axis = node.config["axis"]
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        rank = len(node.output_shape)
        if [a % rank for a in axes] != [rank - 1]:
            raise UnsupportedModelError(
                f"layer '{node.name}' normalizes axis {axis}: only the last (channel) axis "
                "is supported"
            )
        return inp

    def _flatten_map(self, node: GraphNode, inp: _ChannelMap) -> _ChannelMap:
        if inp.positions or len(node.input_shapes[0]) <= 2:
            return inp
        positions = math.prod(int(d) for d in node.input_shapes[0][1:-1])
        return _ChannelMap(inp.segments, positions=positions)

    def _merge_map(
        self, node: GraphNode, kind: LayerKind, inputs: list[_ChannelMap]
    ) -> _ChannelMap:
        rank = len(node.output_shape)
        on_channels = kind.channels == "concatenates" and node.config["axis"] % rank == rank - 1
        if on_channels:
            if any(m.positions for m in inputs):
                for m in inputs:
                    self._freeze(m, f"it is concatenated after Flatten in '{node.name}'")
                return _fixed(node.output_shape[-1])
            return _ChannelMap(tuple(s for m in inputs for s in m.segments))
        # Add, or Concatenate on another axis: channel i of every input is the same channel.
        simple = all(
            len(m.segments) == 1 and m.segments[0].repeat == 1 and not m.positions for m in inputs
        )
        if not simple:
            for m in inputs:
                self._freeze(
                    m,
                    f"{node.class_name} '{node.name}' joins channels that do not come from "
                    "one layer each (Concatenate, depth multiplier or Flatten before it)",
                )
            return inputs[0]
        sources = [m.segments[0].source for m in inputs]
        if None in sources:
            for m in inputs:
                self._freeze(
                    m, f"{node.class_name} '{node.name}' ties it to channels of the model input"
                )
            return inputs[0]
        for source in sources[1:]:
            self._union(sources[0], source)
        return inputs[0]

    def groups(self) -> dict[str, list[str]]:
        """Tied producers by group root, in model order."""
        out: dict[str, list[str]] = {}
        for name in self.parent:
            out.setdefault(self.root(name), []).append(name)
        return out


# --- choosing channels ----------------------------------------------------------------------


def _channel_scores(node: GraphNode, consumers: list[GraphNode], criterion: str) -> np.ndarray:
    flat = _output_columns(node, node.layer.get_weights()[0])
    scores = np.abs(flat).sum(axis=0) if criterion == "l1" else np.sqrt((flat**2).sum(axis=0))
    if len(consumers) == 1 and _role(consumers[0]) == "normalizes":
        scores = scores * _batchnorm_scale(consumers[0])
    return scores.astype(np.float64)


def _role(node: GraphNode) -> str | None:
    return kind_named(node.class_name).channels


def _is_owner(node: GraphNode) -> bool:
    return _role(node) == "owns"


def _is_grouped(node: GraphNode) -> bool:
    """A grouped convolution: its kernel holds C_in/groups inputs, so its channels stay whole."""
    return node.config.get("groups", 1) != 1


def _size_key(node: GraphNode) -> str:
    return kind_named(node.class_name).size_key


def _output_columns(node: GraphNode, kernel: np.ndarray) -> np.ndarray:
    """The kernel as a matrix with one column per output channel."""
    out_axis = kind_named(node.class_name).kernel_axes[1]
    moved = np.moveaxis(kernel, out_axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def _input_first(node: GraphNode, kernel: np.ndarray) -> np.ndarray:
    """The kernel with its input-channel axis first and its output-channel axis last."""
    return np.moveaxis(kernel, kind_named(node.class_name).kernel_axes, (0, -1))


def _batchnorm_scale(node: GraphNode) -> np.ndarray:
    """|gamma| / sqrt(moving_variance + epsilon): how much BN multiplies each channel."""
    bn = node.layer
    gamma = np.abs(bn.gamma.numpy()) if bn.scale else 1.0
    return gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)


def _keep_count(total: int, ratio: float, min_channels: int, multiple: int) -> int:
    keep = total - math.floor(ratio * total + 1e-9)
    keep = max(keep, min(min_channels, total))
    return min(total, math.ceil(keep / multiple) * multiple)


def _joint_scores(member_scores: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(member_scores[0])
    for scores in member_scores:
        mean = scores.mean()
        total += scores / mean if mean > 0 else scores
    return total


def _group_ratio(members: list[str], ratio: float | Mapping[str, float]) -> float:
    if not isinstance(ratio, Mapping):
        return float(ratio)
    asked = {float(ratio[m]) for m in members if m in ratio}
    if len(asked) > 1:
        raise ConfigError(
            f"ratio: layers {', '.join(members)} share one channel mask (tied by Add) but were "
            f"given different ratios {sorted(asked)}; give them the same ratio"
        )
    return asked.pop() if asked else 0.0


def _check_arguments(
    ratio: float | Mapping[str, float],
    criterion: str,
    min_channels: int,
    channel_multiple: int,
    producers: list[str],
) -> None:
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ConfigError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    if not isinstance(channel_multiple, int) or channel_multiple < 1:
        raise ConfigError(f"channel_multiple must be an integer >= 1, got {channel_multiple!r}")
    values = ratio.items() if isinstance(ratio, Mapping) else [("ratio", ratio)]
    for name, value in values:
        if isinstance(ratio, Mapping) and name not in producers:
            raise ConfigError(
                f"ratio: '{name}' is not a Conv2D or Dense layer (or Conv1D) of the model "
                f"(prunable layers: {', '.join(producers) or 'none'})"
            )
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            label = "ratio" if name == "ratio" else f"ratio['{name}']"
            raise ConfigError(f"{label} must be a number in [0, 1), got {value!r}")


# --- rebuilding -----------------------------------------------------------------------------


def _kept_indices(channel_map: _ChannelMap, keep: Mapping[str, np.ndarray]) -> np.ndarray:
    """Indices along the tensor's last axis that survive (all of them for frozen sources)."""
    parts, offset = [], 0
    for seg in channel_map.segments:
        source_kept = keep.get(seg.source) if seg.source is not None else None
        if source_kept is None:
            source_kept = np.arange(seg.length)
        expanded = (source_kept[:, None] * seg.repeat + np.arange(seg.repeat)).reshape(-1)
        parts.append(offset + expanded)
        offset += seg.width
    channels = np.concatenate(parts) if parts else np.arange(0)
    if not channel_map.positions:
        return channels
    rows = np.arange(channel_map.positions)[:, None] * channel_map.width + channels[None, :]
    return rows.reshape(-1)


def _sliced_weights(
    node: GraphNode, kept_in: np.ndarray, kept_out: np.ndarray, weights: list | None = None
) -> list:
    weights = list(node.layer.get_weights() if weights is None else weights)
    kind = kind_named(node.class_name)
    if kind.channels == "kept_whole" or _is_grouped(node):
        return weights  # and so are the channels feeding it
    if kind.channels not in ("owns", "repeats"):  # BatchNormalization: every weight per channel
        return [w[kept_out] for w in weights]
    in_axis, out_axis = kind.kernel_axes
    weights[0] = np.take(weights[0], kept_in, axis=in_axis)
    if out_axis is not None:
        weights[0] = np.take(weights[0], kept_out, axis=out_axis)
    if len(weights) > 1:
        weights[1] = weights[1][kept_out]
    return weights


def _rebuild(
    model: keras.Model,
    nodes: list[GraphNode],
    maps: Mapping[str, _ChannelMap],
    keep: Mapping[str, np.ndarray],
    weights: Mapping[str, list] | None = None,
) -> keras.Model:
    """The model rebuilt with ``keep`` channels; ``weights`` replace a layer's own (unsliced)."""
    weights = weights or {}
    class_names = {n.name: n.class_name for n in nodes}
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        layer_config = entry["config"]
        name = layer_config["name"]
        kind = kind_named(class_names.get(name, entry["class_name"]))
        if name in keep:
            layer_config[kind.size_key] = int(len(keep[name]))
        elif kind.channels == "reshapes":
            target = list(layer_config["target_shape"])
            target[-1] = int(len(_kept_indices(maps[name], keep)))
            layer_config["target_shape"] = tuple(target)
    try:
        new_model = type(model).from_config(config)
    except Exception as e:  # a config Keras cannot rebuild is a model we do not support
        raise UnsupportedModelError(
            f"model '{model.name}' could not be rebuilt with fewer channels: {e}"
        ) from e
    for node in nodes:
        if not node.layer.weights:
            continue
        in_map = maps[node.inputs[0]] if node.inputs else _fixed(node.input_shapes[0][-1])
        sliced = _sliced_weights(
            node,
            _kept_indices(in_map, keep),
            _kept_indices(maps[node.name], keep),
            weights.get(node.name),
        )
        new_model.get_layer(node.name).set_weights(sliced)
    return new_model


# --- public API -----------------------------------------------------------------------------


def prune_channels(
    model: keras.Model,
    ratio: float | Mapping[str, float],
    *,
    criterion: str = "l1",
    min_channels: int = 1,
    channel_multiple: int = 1,
) -> StructuredPruneResult:
    """Remove the lowest-scored output channels of each Conv1D/Conv2D/Dense; rebuild the model.

    ``ratio``: the fraction of channels to remove in [0, 1), one number for every prunable
    layer, or ``{layer name: ratio}`` (layers not named keep all their channels). Layers tied by
    an Add share one mask and must be given the same ratio. ``criterion``: "l1" or "l2" norm of
    each filter (BatchNorm scale folded in). At least ``min(min_channels, C)`` channels stay in
    each layer; the kept count is rounded up to a multiple of ``channel_multiple`` (4 suits
    CMSIS-NN kernels), never above C.

    Raises UnsupportedModelError for non Sequential/Functional models and unsupported layers,
    ConfigError for bad arguments. ``model`` is not modified.
    """
    nodes = model_nodes(model)
    producers = [n.name for n in nodes if _is_owner(n)]
    _check_arguments(ratio, criterion, min_channels, channel_multiple, producers)
    output_names = _output_layer_names(model)
    analysis = _Analysis(nodes, output_names)
    by_name = {n.name: n for n in nodes}

    keep: dict[str, np.ndarray] = {}
    tied: dict[str, tuple[str, ...]] = {}
    for members in analysis.groups().values():
        for m in members:
            tied[m] = tuple(o for o in members if o != m)
        if any(m in analysis.frozen for m in members):
            continue
        scores = _joint_scores(
            [_channel_scores(by_name[m], analysis.consumers[m], criterion) for m in members]
        )
        total = len(scores)
        count = _keep_count(total, _group_ratio(members, ratio), min_channels, channel_multiple)
        if count == total:
            continue
        order = np.argsort(-scores, kind="stable")
        kept = np.sort(order[:count])
        for m in members:
            keep[m] = kept

    new_model = _rebuild(model, nodes, analysis.maps, keep)
    return StructuredPruneResult(
        model=new_model,
        criterion=criterion,
        layers=tuple(
            _layer_channels(by_name[p], keep, tied)
            for p in analysis.parent
            if _is_owner(by_name[p])
        ),
        skipped=tuple(_skipped(p, analysis) for p in analysis.parent if _is_skipped(p, analysis)),
        params_before=int(model.count_params()),
        params_after=int(new_model.count_params()),
    )


def _output_layer_names(model: keras.Model) -> list[str]:
    if type(model).__name__ == "Sequential":
        return [model.layers[-1].name]
    return [entry[0] for entry in model.get_config()["output_layers"]]


def _layer_channels(
    node: GraphNode, keep: Mapping[str, np.ndarray], tied: Mapping[str, tuple[str, ...]]
) -> LayerChannels:
    total = int(node.config[_size_key(node)])
    kept = keep.get(node.name, np.arange(total))
    return LayerChannels(
        name=node.name,
        kept=len(kept),
        total=total,
        kept_indices=tuple(int(i) for i in kept),
        tied_with=tied.get(node.name, ()),
    )


def _is_skipped(name: str, analysis: _Analysis) -> bool:
    return any(m in analysis.frozen for m in analysis.groups()[analysis.root(name)])


def _skipped(name: str, analysis: _Analysis) -> SkippedLayer:
    if name in analysis.frozen:
        return SkippedLayer(name, analysis.frozen[name])
    members = analysis.groups()[analysis.root(name)]
    cause = next(m for m in members if m in analysis.frozen)
    return SkippedLayer(name, f"tied by Add to '{cause}', which is left alone")


# --- dead units -----------------------------------------------------------------------------
#
# A channel of a producer can go without changing what the model computes when every layer
# that reads it (the next Conv/Dense, through activations, BatchNormalization, pooling,
# Flatten, Concatenate and Add) either multiplies it by zero weights, or reads it as a constant
# it can fold into its bias. A channel is constant when its filter is all zero: its output is
# act(bias) at every position; BatchNormalization, elementwise activations and pooling keep it
# constant. A Dense reader, or a Conv reader whose every window lies inside the input
# (padding "valid", or a 1×1 kernel), sees the same constant at every tap and folds it exactly:
# bias += c · Σ_taps W[..., i, :]. A Conv with "same" padding would see zeros at the border, so
# constants are not folded into it (nor through DepthwiseConv2D or ZeroPadding).

_SOFTMAX_REASON = "softmax mixes its channels"
_MAX_PASSES = 8  # removing units can leave earlier units dead; the graph settles in a few passes


@dataclass(frozen=True)
class DeadUnitLayer:
    """Output channels (units) of one Conv1D/Conv2D/Dense after dead-unit removal: how many
    kept, which, and how many removed because nothing read them (``unused``) or because their
    constant output was folded into the biases of the layers reading them (``folded``)."""

    name: str
    kept: int
    total: int
    kept_indices: tuple[int, ...]
    unused: int = 0
    folded: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kept": self.kept,
            "total": self.total,
            "kept_indices": list(self.kept_indices),
            "unused": self.unused,
            "folded": self.folded,
        }


@dataclass(frozen=True, eq=False)
class DeadUnitResult:
    """The rebuilt model (same function, uncompiled) and the dead units removed per layer."""

    model: keras.Model
    layers: tuple[DeadUnitLayer, ...]
    skipped: tuple[SkippedLayer, ...]
    params_before: int
    params_after: int

    @property
    def units_removed(self) -> int:
        return sum(layer.total - layer.kept for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "units_removed": self.units_removed,
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def __str__(self) -> str:
        title = (
            f"Dead units: {self.units_removed:,} removed, parameters "
            f"{self.params_before:,} -> {self.params_after:,}"
        )
        lines = _layer_table(
            title,
            self.layers,
            "unused  folded",
            lambda layer: f"{layer.unused:6d}  {layer.folded:6d}",
            self.skipped,
        )
        return "\n".join(lines)


def _layer_table(title: str, layers, header: str, cells, skipped) -> list[str]:
    """A result's text: the title, one row a layer (kept/total, then ``cells(layer)``), and
    the layers left alone with why."""
    width = max((len(layer.name) for layer in layers), default=5)
    lines = [title, f"  {'layer'.ljust(width)}  kept/total  {header}"]
    for layer in layers:
        ratio = f"{layer.kept}/{layer.total}"
        lines.append(f"  {layer.name.ljust(width)}  {ratio.rjust(10)}  {cells(layer)}")
    if skipped:
        lines.append("Left alone:")
        lines.extend(f"  {s.name}: {s.reason}" for s in skipped)
    return lines


def remove_dead_units(model: keras.Model, *, atol: float = 0.0) -> DeadUnitResult:
    """Remove the Conv1D/Conv2D/Dense output channels that pruning left dead; same function.

    A channel is dead when every weight reading it is zero (|w| <= ``atol``), or when its own
    filter is zero so it outputs a constant that the layers reading it fold into their biases
    (see the comment above). Channels tied by Add go only when dead in every member; channels
    reaching a model output, and the last channel of a layer, stay. Removing units can leave
    earlier ones dead, so passes repeat until none is found. The outputs equal the input model's
    up to float summation order (and ``atol``). ``model`` is not modified; the returned model is
    a rebuilt copy (not compiled) even when nothing was dead.

    Raises UnsupportedModelError as :func:`prune_channels` does, ConfigError for a bad ``atol``.
    """
    if not isinstance(atol, (int, float)) or not atol >= 0:
        raise ConfigError(f"atol must be a number >= 0, got {atol!r}")
    params_before = int(model.count_params())
    current = model
    kept_total: dict[str, np.ndarray] = {}
    unused: dict[str, int] = {}
    folded: dict[str, int] = {}
    skipped: tuple[SkippedLayer, ...] = ()
    for _ in range(_MAX_PASSES):
        nodes = model_nodes(current)
        analysis = _Analysis(nodes, _output_layer_names(current))
        _freeze_softmax(nodes, analysis)
        skipped = tuple(_skipped(p, analysis) for p in analysis.parent if _is_skipped(p, analysis))
        plan = _DeadPlan(nodes, analysis, float(atol))
        if not plan.keep and current is not model:
            break
        current = _rebuild(current, nodes, analysis.maps, plan.keep, plan.weights)
        for name, kept in plan.keep.items():
            previous = kept_total.get(name)
            kept_total[name] = kept if previous is None else previous[kept]
        for name, count in plan.unused.items():
            unused[name] = unused.get(name, 0) + count
        for name, count in plan.folded.items():
            folded[name] = folded.get(name, 0) + count
        if not plan.keep:
            break
    by_name = {n.name: n for n in model_nodes(model)}
    layers = tuple(
        _dead_layer(node, kept_total, unused, folded)
        for node in by_name.values()
        if _is_owner(node)
    )
    return DeadUnitResult(
        model=current,
        layers=layers,
        skipped=skipped,
        params_before=params_before,
        params_after=int(current.count_params()),
    )


def _dead_layer(
    node: GraphNode,
    kept_total: Mapping[str, np.ndarray],
    unused: Mapping[str, int],
    folded: Mapping[str, int],
) -> DeadUnitLayer:
    total = int(node.config[_size_key(node)])
    kept = kept_total.get(node.name, np.arange(total))
    return DeadUnitLayer(
        name=node.name,
        kept=len(kept),
        total=total,
        kept_indices=tuple(int(i) for i in kept),
        unused=unused.get(node.name, 0),
        folded=folded.get(node.name, 0),
    )


def _is_softmax(node: GraphNode) -> bool:
    mixes = kind_named(node.class_name).mixes_channels
    return mixes or node.config.get("activation") == "softmax"


def _freeze_softmax(nodes: list[GraphNode], analysis: _Analysis) -> None:
    """A softmax normalizes over all channels: removing one changes the others."""
    for node in nodes:
        if not _is_softmax(node):
            continue
        if _is_owner(node):
            analysis.frozen.setdefault(node.name, _SOFTMAX_REASON)
        else:
            for name in node.inputs:
                analysis._freeze(analysis.maps[name], f"it feeds softmax '{node.name}'")


def _index_owners(channel_map: _ChannelMap) -> tuple[np.ndarray, np.ndarray]:
    """For every index of the tensor's last axis: its producer (None: fixed) and channel."""
    sources: list[str | None] = []
    channels = []
    for seg in channel_map.segments:
        sources.extend([seg.source] * seg.width)
        channels.append(np.repeat(np.arange(seg.length), seg.repeat))
    owner = np.array(sources, dtype=object)
    channel = np.concatenate(channels) if channels else np.arange(0)
    if channel_map.positions:
        owner = np.tile(owner, channel_map.positions)
        channel = np.tile(channel, channel_map.positions)
    return owner, channel


def _is_reader(node: GraphNode) -> bool:
    return _is_owner(node) and not _is_grouped(node)


def _folds_constants(node: GraphNode) -> bool:
    """Whether every output of this reader sees each input channel at every kernel tap."""
    if not node.config.get("use_bias", True):
        return False
    if not kind_named(node.class_name).windowed:
        return True
    kernel_size = node.config["kernel_size"]
    return node.config["padding"] == "valid" or all(k == 1 for k in kernel_size)


class _DeadPlan:
    """One pass: which channels to keep, and the reader weights with constants folded in."""

    def __init__(self, nodes: list[GraphNode], analysis: _Analysis, atol: float):
        self.atol = atol
        self.analysis = analysis
        self.constants = _constant_channels(nodes, analysis.maps, atol)
        self.readers = [n for n in nodes if _is_reader(n)]
        self.reads = {reader.name: self._reads(reader) for reader in self.readers}
        self.keep: dict[str, np.ndarray] = {}
        self.weights: dict[str, list] = {}
        self.unused: dict[str, int] = {}
        self.folded: dict[str, int] = {}
        by_name = {n.name: n for n in nodes}
        removed: dict[str, np.ndarray] = {}
        for members in analysis.groups().values():
            if any(m in analysis.frozen for m in members):
                continue
            removable = self._removable(members, int(by_name[members[0]].output_shape[-1]))
            if removable.all():
                removable[0] = False  # a layer keeps at least one unit
            if removable.any():
                for m in members:
                    self.keep[m] = np.flatnonzero(~removable)
                    removed[m] = removable
        self._fold(removed)

    def _reads(self, reader: GraphNode) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Owner, channel, row-is-zero and constant value of each input index of a reader."""
        channel_map = self.analysis.maps[reader.inputs[0]] if reader.inputs else None
        if channel_map is None:
            channel_map = _fixed(reader.input_shapes[0][-1])
            constants = np.full(channel_map.width, np.nan)
        else:
            constants = self.constants[reader.inputs[0]]
        owner, channel = _index_owners(channel_map)
        if channel_map.positions:
            constants = np.tile(constants, channel_map.positions)
        kernel = _input_first(reader, np.abs(reader.layer.get_weights()[0]))
        rows = kernel.reshape(kernel.shape[0], -1)
        zero = rows.max(axis=1, initial=0.0) <= self.atol
        return owner, channel, zero, constants

    def _removable(self, members: list[str], channels: int) -> np.ndarray:
        removable = np.ones(channels, dtype=bool)
        for reader in self.readers:
            owner, channel, zero, constants = self.reads[reader.name]
            foldable = np.isfinite(constants) & _folds_constants(reader)
            fine = zero | foldable
            for m in members:
                hit = owner == m
                bad = channel[hit & ~fine]
                removable[bad] = False
        return removable

    def _fold(self, removed: Mapping[str, np.ndarray]) -> None:
        """Add c · Σ_taps W[..., i, :] to each reader's bias for removed constant inputs."""
        folded_units: dict[str, set[int]] = {}
        for reader in self.readers:
            owner, channel, zero, constants = self.reads[reader.name]
            gone = np.array(
                [o in removed and bool(removed[o][c]) for o, c in zip(owner, channel, strict=True)],
                dtype=bool,
            )
            fold = gone & ~zero
            if not fold.any():
                continue
            weights = reader.layer.get_weights()
            kernel = _input_first(reader, weights[0]).astype(np.float64)
            taps = kernel.reshape(kernel.shape[0], -1, kernel.shape[-1]).sum(axis=1)
            delta = constants[fold] @ taps[fold]
            weights[1] = (weights[1].astype(np.float64) + delta).astype(weights[1].dtype)
            self.weights[reader.name] = weights
            for o, c in zip(owner[fold], channel[fold], strict=True):
                folded_units.setdefault(o, set()).add(int(c))
        for name, mask in removed.items():
            folds = folded_units.get(name, set())
            self.folded[name] = len(folds)
            self.unused[name] = int(mask.sum()) - len(folds)


def _constant_channels(
    nodes: list[GraphNode], maps: Mapping[str, _ChannelMap], atol: float
) -> dict[str, np.ndarray]:
    """Per tensor, per channel (last axis, before any Flatten): its value where it is the same
    constant at every position and for every input, else NaN."""
    values: dict[str, np.ndarray] = {}
    for node in nodes:
        width = maps[node.name].width
        inputs = [values[name] for name in node.inputs]
        values[node.name] = _node_constants(node, inputs, width, atol)
    return values


def _node_constants(
    node: GraphNode, inputs: list[np.ndarray], width: int, atol: float
) -> np.ndarray:
    kind = kind_named(node.class_name)
    unknown = np.full(width, np.nan)
    if _is_softmax(node):
        return unknown
    if kind.channels == "owns" and not _is_grouped(node):
        return _producer_constants(node, atol, unknown)
    if kind.channels == "concatenates":
        rank = len(node.output_shape)
        on_channels = node.config["axis"] % rank == rank - 1
        joined = np.concatenate(inputs) if inputs else unknown
        return joined if on_channels and joined.shape[0] == width else unknown
    if len(inputs) != 1 or inputs[0].shape[0] != width:
        return unknown
    (inp,) = inputs
    if kind.channels == "normalizes":
        return _batchnorm_constants(node, inp)
    if kind.per_value:
        return _apply_layer(node.layer, inp)
    if kind.keeps_constants:  # a kept Reshape leaves channels as they are
        return inp
    return unknown


def _producer_constants(node: GraphNode, atol: float, unknown: np.ndarray) -> np.ndarray:
    weights = node.layer.get_weights()
    kernel = weights[0]
    zero = np.abs(_output_columns(node, kernel)).max(axis=0, initial=0.0) <= atol
    if not zero.any():
        return unknown
    from edge_prune.training._tf import keras, tf

    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[-1], kernel.dtype)
    activation = keras.activations.get(node.config.get("activation"))
    # A tensor, not a numpy array: some activations (hard_sigmoid) read tensor attributes.
    activated = activation(tf.constant(bias[None, :], dtype=tf.float32))
    return np.where(zero, np.asarray(activated, dtype=np.float64)[0], np.nan)


def _batchnorm_constants(node: GraphNode, inp: np.ndarray) -> np.ndarray:
    bn = node.layer
    gamma = bn.gamma.numpy() if bn.scale else 1.0
    beta = bn.beta.numpy() if bn.center else 0.0
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return (inp - mean) / np.sqrt(var + bn.epsilon) * gamma + beta


def _apply_layer(layer: keras.layers.Layer, inp: np.ndarray) -> np.ndarray:
    """An elementwise layer at inference on one value per channel; NaN stays NaN."""
    known = np.isfinite(inp)
    if not known.any():
        return inp
    out = layer(np.where(known, inp, 0.0)[None, :].astype(np.float32), training=False)
    return np.where(known, np.asarray(out, dtype=np.float64)[0], np.nan)
