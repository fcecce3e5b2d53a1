"""Structured pruning: remove whole Conv1D/Conv2D filters and Dense units, rebuild a smaller model.

Unstructured zeros do not make dense Cortex-M kernels (CMSIS-NN) faster; fewer channels do.
For a tf_keras Sequential or Functional model this module:

1. follows every tensor's channels (last axis) back to the layer that made them. Conv1D/Conv2D
   (groups=1) and Dense make channels and can lose some; DepthwiseConv2D, BatchNormalization,
   1-D and 2-D pooling, activations, Dropout and channel-preserving Reshape pass them on;
   Flatten spreads them over H·W·C rows of the next Dense; Concatenate lays them side by side;
   Add (and a Concatenate on another axis) ties its inputs: their producers share one mask.
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
SimpleRNN) are kept whole, with the channels feeding them, and listed in ``skipped`` too.
The input model is not changed. The returned model is not compiled: compile and fine-tune it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.keras_graph import GraphNode, model_nodes

if TYPE_CHECKING:
    from edge_prune._tf import keras

__all__ = [
    "CRITERIA",
    "LayerChannels",
    "SkippedLayer",
    "StructuredPruneResult",
    "prune_channels",
]

CRITERIA = ("l1", "l2")

_PRODUCERS = {"Conv1D", "Conv2D", "Dense"}
_CONVS = {"Conv1D", "Conv2D"}
_RECURRENT = {"LSTM", "GRU", "SimpleRNN"}
RECURRENT_REASON = "recurrent layer kept whole"
# Layers that keep the last axis as it is (values may change, channel identity does not).
_PASSTHROUGH = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "ZeroPadding1D",
    "ZeroPadding2D",
}
# Of those, the ones that also accept a flattened tensor (elementwise on any shape).
_ELEMENTWISE = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Dropout",
    "GaussianNoise",
    "GaussianDropout",
}
SUPPORTED_LAYERS = frozenset(
    _PRODUCERS
    | _RECURRENT
    | _PASSTHROUGH
    | {"InputLayer", "DepthwiseConv2D", "BatchNormalization", "Flatten", "Reshape", "Add"}
    | {"Concatenate"}
)


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
        lines = [
            f"Structured pruning ({self.criterion.upper()} norm): parameters "
            f"{self.params_before:,} -> {self.params_after:,}, channels "
            f"{self.channels_kept:,}/{self.channels_total:,} kept"
        ]
        width = max((len(layer.name) for layer in self.layers), default=5)
        lines.append(f"  {'layer'.ljust(width)}  kept/total  tied with")
        for layer in self.layers:
            ratio = f"{layer.kept}/{layer.total}"
            lines.append(
                f"  {layer.name.ljust(width)}  {ratio.rjust(10)}  {', '.join(layer.tied_with)}"
            )
        if self.skipped:
            lines.append("Left alone:")
            lines.extend(f"  {s.name}: {s.reason}" for s in self.skipped)
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
        kind, config = node.class_name, node.config
        if kind not in SUPPORTED_LAYERS:
            raise UnsupportedModelError(
                f"layer '{node.name}' is a {kind}: structured pruning supports "
                f"{', '.join(sorted(SUPPORTED_LAYERS))}"
            )
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedModelError(
                f"layer '{node.name}' uses data_format={config['data_format']!r}: only "
                "channels_last is supported"
            )
        if kind == "InputLayer":
            return _fixed(node.output_shape[-1])
        inputs = self._input_maps(node)
        if kind in ("Add", "Concatenate"):
            return self._merge_map(node, inputs)
        (inp,) = inputs
        if inp.positions and kind not in _ELEMENTWISE | _PRODUCERS | {"Flatten"}:
            self._freeze(inp, f"its flattened output goes into {kind} '{node.name}'")
            inp = _fixed(node.input_shapes[0][-1])
        if kind in _CONVS:
            if config.get("groups", 1) != 1:
                self._freeze(inp, f"it feeds grouped {kind} '{node.name}'")
                out = self._new_source(node, config["filters"])
                self.frozen[node.name] = f"grouped {kind} (groups={config['groups']})"
                return out
            return self._new_source(node, config["filters"])
        if kind in _RECURRENT:
            self._freeze(inp, f"it feeds recurrent layer '{node.name}' (kept whole)")
            out = self._new_source(node, config["units"])
            self.frozen[node.name] = RECURRENT_REASON
            return out
        if kind == "Dense":
            return self._new_source(node, config["units"])
        if kind == "DepthwiseConv2D":
            multiplier = config["depth_multiplier"]
            segments = tuple(
                _Segment(s.source, s.length, s.repeat * multiplier) for s in inp.segments
            )
            return _ChannelMap(segments)
        if kind == "BatchNormalization":
            return self._batchnorm_map(node, inp)
        if kind == "Flatten":
            return self._flatten_map(node, inp)
        if kind == "Reshape":
            if node.input_shapes[0][-1] == node.output_shape[-1] and not inp.positions:
                return inp
            self._freeze(inp, f"Reshape '{node.name}' mixes its channels with other axes")
            return _fixed(node.output_shape[-1])
        return inp  # passthrough

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

    def _merge_map(self, node: GraphNode, inputs: list[_ChannelMap]) -> _ChannelMap:
        rank = len(node.output_shape)
        on_channels = node.class_name == "Concatenate" and node.config["axis"] % rank == rank - 1
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
    kernel = node.layer.get_weights()[0]
    flat = kernel.reshape(-1, kernel.shape[-1])
    scores = np.abs(flat).sum(axis=0) if criterion == "l1" else np.sqrt((flat**2).sum(axis=0))
    if len(consumers) == 1 and consumers[0].class_name == "BatchNormalization":
        scores = scores * _batchnorm_scale(consumers[0])
    return scores.astype(np.float64)


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


def _sliced_weights(node: GraphNode, kept_in: np.ndarray, kept_out: np.ndarray) -> list:
    weights = node.layer.get_weights()
    if node.class_name in _RECURRENT:
        return weights  # kept whole, and so are the channels feeding it
    if node.class_name == "Conv1D":
        weights[0] = weights[0][:, kept_in, :][..., kept_out]
    elif node.class_name == "Conv2D":
        weights[0] = weights[0][:, :, kept_in, :][..., kept_out]
    elif node.class_name == "DepthwiseConv2D":
        weights[0] = weights[0][:, :, kept_in, :]
    elif node.class_name == "Dense":
        weights[0] = weights[0][kept_in, :][:, kept_out]
    else:  # BatchNormalization: every weight is per channel
        return [w[kept_out] for w in weights]
    if len(weights) > 1:
        weights[1] = weights[1][kept_out]
    return weights


def _rebuild(
    model: keras.Model,
    nodes: list[GraphNode],
    maps: Mapping[str, _ChannelMap],
    keep: Mapping[str, np.ndarray],
) -> keras.Model:
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        layer_config = entry["config"]
        name = layer_config["name"]
        if name in keep:
            key = "filters" if entry["class_name"] in _CONVS else "units"
            layer_config[key] = int(len(keep[name]))
        elif entry["class_name"] == "Reshape":
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
            node, _kept_indices(in_map, keep), _kept_indices(maps[node.name], keep)
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
    producers = [n.name for n in nodes if n.class_name in _PRODUCERS]
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
            if by_name[p].class_name in _PRODUCERS
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
    key = "filters" if node.class_name in _CONVS else "units"
    total = int(node.config[key])
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
