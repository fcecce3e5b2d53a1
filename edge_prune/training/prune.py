"""Magnitude pruning while training: schedule, wrap, callbacks, stages, strip, sparsity report.

Built on tfmot's ``prune_low_magnitude`` (tfmot 0.8.1), which needs a ``tf_keras`` Sequential or
Functional model. Typical use::

    import edge_prune
    schedule = edge_prune.PruningSchedule.polynomial_decay(0.8, end_step=500)
    pruned = edge_prune.prune(model, schedule, optimizer="adam", loss=..., metrics=["accuracy"])
    pruned.fit(x, y, epochs=5)               # or model.fit(..., callbacks=pruned.callbacks)
    small = edge_prune.strip(pruned)         # an ordinary tf_keras model, zeros stay zero
    print(edge_prune.sparsity_report(small))

Steps are optimizer steps (batches) counted from the start of pruning: tfmot numbers the first
training batch 1 and recomputes the masks during batch ``s`` when ``s`` is a pruning step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_prune.errors import ConfigError, DataError, UnsupportedModelError
from edge_prune.training._tf import keras, prune_registry, pruning_wrapper, tf, tfmot
from edge_prune.training.schedule import MByNSparsity, PruningSchedule, check_int, check_sparsity

_sparsity = tfmot.sparsity.keras

# tfmot's m-by-n mask generator handles rank-2 (Dense) and rank-4 (Conv2D) kernels only
# (pruning_utils.weights_rearrange).
_M_BY_N_TYPES = (keras.layers.Dense, keras.layers.Conv2D)


# --------------------------------------------------------------------------- model checks


def check_model(model: object, argument: str = "model") -> None:
    """Raise ``UnsupportedModelError`` unless ``model`` is a built tf_keras Sequential or Functional
    model (not Keras 3, not subclassed)."""
    if not isinstance(model, keras.Model):
        module = type(model).__module__
        if module.split(".")[0] == "keras":
            raise UnsupportedModelError(
                f"{argument} is a Keras 3 model ({module}.{type(model).__name__}); tfmot "
                "pruning needs Keras 2: build it with `import tf_keras as keras`"
            )
        raise UnsupportedModelError(
            f"{argument} must be a tf_keras Sequential or Functional model, got "
            f"{module}.{type(model).__name__}"
        )
    if not (isinstance(model, keras.Sequential) or model._is_graph_network):
        raise UnsupportedModelError(
            f"{argument} is a subclassed model ({type(model).__name__}); tfmot can only prune "
            "Sequential or Functional models: use keras.Sequential or keras.Model(inputs, outputs)"
        )
    if not model.built:
        raise UnsupportedModelError(
            f"{argument} ({model.name}) is not built: give its first layer an input shape "
            "(keras.Input) or call model.build(input_shape)"
        )


def _unwrap(value: keras.Model | PrunedModel | StagedPruning) -> keras.Model:
    return value.model if isinstance(value, PrunedModel | StagedPruning) else value


# --------------------------------------------------------------------------- prune


@dataclass(frozen=True)
class PrunedModel:
    """A model wrapped for pruning and what ``fit`` needs for it.

    ``callbacks`` builds fresh callbacks on each access: ``UpdatePruningStep`` (required by
    tfmot) and, when ``log_dir`` was given, :class:`SparsityLog` plus tfmot's
    ``PruningSummaries`` (TensorBoard logs; only when the ``tensorboard`` package is installed,
    which TensorFlow 2.21 does not install). ``pruned_layers`` are the
    wrapped layers; ``unpruned_layers`` hold weights that stay dense (excluded or unsupported).
    """

    model: keras.Model
    schedule: PruningSchedule
    pruned_layers: tuple[str, ...]
    unpruned_layers: tuple[str, ...]
    log_dir: str | None = None

    @property
    def callbacks(self) -> list[keras.callbacks.Callback]:
        callbacks: list[keras.callbacks.Callback] = [_sparsity.UpdatePruningStep()]
        if self.log_dir:
            callbacks.append(SparsityLog(self.log_dir))
            if importlib.util.find_spec("tensorboard") is not None:
                callbacks.append(_sparsity.PruningSummaries(log_dir=self.log_dir))
        return callbacks

    def fit(self, *args, callbacks: Sequence[keras.callbacks.Callback] = (), **kwargs):
        """``model.fit`` with the pruning callbacks added to ``callbacks``."""
        if not self.model._is_compiled:
            raise ConfigError(
                "the pruned model is not compiled: pass optimizer= and loss= to prune(), or call "
                "pruned.model.compile(...) (tfmot drops the optimizer when it wraps a model)"
            )
        return self.model.fit(*args, callbacks=[*callbacks, *self.callbacks], **kwargs)


class SparsityLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch to ``<log_dir>/sparsity.jsonl``: epoch, pruning step and
    the mask sparsity of each pruned weight (the fraction of weights the mask zeroes)."""

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.path = Path(log_dir) / "sparsity.jsonl"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        wrappers = _wrappers(self.model)
        masks = {
            f"{w.layer.name}/{_short_name(weight)}": 1.0 - float(np.mean(mask.numpy()))
            for w in wrappers
            for weight, mask, _ in w.pruning_vars
        }
        step = int(wrappers[0].pruning_step.numpy()) if wrappers else 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": epoch, "step": step, "sparsity": masks}) + "\n")


def prune(
    model: keras.Model,
    schedule: PruningSchedule,
    *,
    exclude_layers: Iterable[str] = (),
    exclude_types: Iterable[type | str] = (),
    optimizer: str | keras.optimizers.Optimizer | None = None,
    loss: str | keras.losses.Loss | Callable | None = None,
    metrics: Sequence[str | keras.metrics.Metric] | None = None,
    log_dir: str | None = None,
    prune_depthwise: bool = False,
    block: tuple[int, int] = (1, 1),
) -> PrunedModel:
    """Wrap ``model``'s prunable layers with tfmot's magnitude pruning; ``model`` is not changed.

    Each layer is cloned with its weights, so the original keeps its own. Layers named in
    ``exclude_layers`` or of a type in ``exclude_types`` (classes or class names) stay dense, as
    do layers tfmot cannot prune (they are listed in ``unpruned_layers`` and a warning says so).

    tfmot never prunes DepthwiseConv2D kernels (its ``prune_registry.py`` lists no prunable
    weight for them), so a model with depthwise layers ends below the schedule's sparsity over
    all its kernels: a :class:`SparsityHeldBackWarning` gives both numbers.
    ``prune_depthwise=True`` prunes the depthwise kernels too, to the same schedule (not with an
    m-by-n schedule, which tfmot applies to Dense and Conv2D kernels only).

    ``block=(1, k)`` prunes in blocks of k consecutive input channels of one output channel (the
    TFLite filter's innermost axis, which the sparse kernels compute in blocks): tfmot's
    ``block_size=(k, 1)`` on the Keras kernel ``[in, out]`` of Dense layers. tfmot pools blocks
    over 2-D kernels only, so a Conv2D (1x1 or KxK) or a Conv1D (groups 1, channels last, input
    channels a multiple of k) is pruned as a :class:`BlockPrunableConv2D` / ``Conv1D``, whose
    kernel is the 2-D ``[kh * kw * in, out]`` matrix the convolution reshapes; other layers
    stay unstructured.

    tfmot drops the optimizer. The wrapped model is compiled with ``optimizer``/``loss``/
    ``metrics`` when ``optimizer`` is given; otherwise, if ``model`` was compiled, with a fresh
    optimizer of the same configuration and the same loss and metrics; otherwise compile
    ``result.model`` yourself before ``fit``.
    """
    check_model(model)
    if _wrappers(model):
        raise UnsupportedModelError(
            f"model {model.name} is already wrapped for pruning: strip it first "
            "(edge_prune.strip) or keep training the wrapped model"
        )
    if not isinstance(schedule, PruningSchedule):
        raise ConfigError(f"schedule must be a PruningSchedule, got {type(schedule).__name__}")
    if not isinstance(prune_depthwise, bool):
        raise ConfigError(f"prune_depthwise must be True or False, got {prune_depthwise!r}")
    excluded_names = _check_excluded_names(model, exclude_layers)
    excluded_types = _resolve_types(exclude_types)
    arguments = schedule.wrapper_arguments()
    block_size = _block_size(block, schedule)
    clones: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    pruned: list[str] = []
    unpruned: dict[str, str] = {}

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            check_model(layer, argument=f"nested model {layer.name!r}")
            return keras.models.clone_model(layer, clone_function=clone_layer)
        reason = _reason_not_to_prune(layer, excluded_names, excluded_types, schedule)
        depthwise = prune_depthwise and reason is not None and _is_plain_depthwise(layer)
        depthwise = depthwise and not isinstance(schedule, MByNSparsity)  # Dense/Conv2D only
        if depthwise and reason.startswith("tfmot prunes no weight"):
            reason = None
            copy = PrunableDepthwiseConv2D.from_config(layer.get_config())
        elif reason is None and _block_conv_class(layer, block_size):
            copy = _block_conv_class(layer, block_size).from_config(layer.get_config())
        else:
            copy = _copy_layer(layer)
        clones.append((layer, copy))
        if reason is None:
            pruned.append(layer.name)
            blocks = _takes_blocks(copy, block_size) and _blocks_fit(layer, block_size[0])
            extra = {"block_size": block_size} if blocks else {}
            return pruning_wrapper.PruneLowMagnitude(copy, **arguments, **extra)
        if layer.weights:
            unpruned[layer.name] = reason
        return copy

    try:
        wrapped = keras.models.clone_model(model, clone_function=clone_layer)
    except ValueError as e:
        raise UnsupportedModelError(f"model {model.name}: tfmot cannot wrap it: {e}") from e
    for original, copy in clones:
        copy.set_weights(_weights_in_shapes(original.get_weights(), copy))
    _warn_unsupported(unpruned)
    _warn_held_back(wrapped, model, unpruned, schedule)
    _compile_like(wrapped, model, optimizer, loss, metrics)
    return PrunedModel(wrapped, schedule, tuple(pruned), tuple(unpruned), log_dir)


def _block_size(block, schedule: PruningSchedule) -> tuple[int, int]:
    """tfmot's ``block_size`` on a Keras kernel ``[in, out]`` for TFLite blocks ``(1, k)``."""
    if (
        not isinstance(block, tuple | list)
        or len(block) != 2
        or block[0] != 1
        or not isinstance(block[1], int)
        or block[1] < 1
    ):
        raise ConfigError(f"block must be (1, k) with k >= 1, got {block!r}")
    if block[1] > 1 and isinstance(schedule, MByNSparsity):
        raise ConfigError("block pruning and an m-by-n schedule exclude each other")
    return (block[1], 1)


def _takes_blocks(layer: keras.layers.Layer, block_size: tuple[int, int]) -> bool:
    if block_size == (1, 1):
        return False
    return isinstance(layer, keras.layers.Dense | _BlockPrunableConv)


def _block_conv_class(layer: keras.layers.Layer, block_size: tuple[int, int]):
    """The block-prunable class for a Conv2D (1x1 too: tfmot refuses block sizes on any
    kernel that is not 2-D) or a Conv1D whose input channels divide into blocks; else None."""
    k = block_size[0]
    classes = {keras.layers.Conv2D: BlockPrunableConv2D, keras.layers.Conv1D: BlockPrunableConv1D}
    kind = classes.get(type(layer))
    if k == 1 or kind is None or not layer.built:
        return None
    plain = layer.groups == 1 and layer.data_format == "channels_last" and layer.padding != "causal"
    fits = int(layer.kernel.shape[-2]) % k == 0 and _blocks_fit(layer, k)
    return kind if plain and fits else None


def _blocks_fit(layer: keras.layers.Layer, k: int) -> bool:
    """tfmot's block pooling squeezes away a dimension of size 1 and then fails: the 2-D kernel
    ``[rows, out]`` needs at least two blocks of ``k`` rows and two output channels."""
    shape = tuple(int(d) for d in layer.kernel.shape)
    rows = int(np.prod(shape[:-1]))
    return -(-rows // k) >= 2 and shape[-1] >= 2


def _weights_in_shapes(weights: list[np.ndarray], layer: keras.layers.Layer) -> list[np.ndarray]:
    """``weights`` reshaped to ``layer``'s (a block-prunable conv holds its kernel in 2-D)."""
    return [np.reshape(w, tuple(v.shape)) for w, v in zip(weights, layer.weights, strict=True)]


def _copy_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    try:
        return layer.__class__.from_config(layer.get_config())
    except (NotImplementedError, TypeError, ValueError) as e:
        raise UnsupportedModelError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be re-created from its "
            f"config, which prune() needs to copy it: implement get_config() ({e})"
        ) from e


def _check_excluded_names(model: keras.Model, names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        names = (names,)
    names = frozenset(names)
    known = {layer.name for layer in _all_layers(model)}
    unknown = sorted(names - known)
    if unknown:
        raise ConfigError(
            f"exclude_layers: no layer named {', '.join(map(repr, unknown))} in model "
            f"{model.name}; its layers are {', '.join(sorted(known))}"
        )
    return names


def _resolve_types(types: Iterable[type | str]) -> tuple[tuple[type, ...], frozenset[str]]:
    if isinstance(types, str | type):
        types = (types,)
    classes, class_names = [], []
    for t in types:
        if isinstance(t, type):
            classes.append(t)
        elif isinstance(t, str):
            class_names.append(t)
        else:
            raise ConfigError(
                f"exclude_types entries must be layer classes or class names, got {t!r}"
            )
    return tuple(classes), frozenset(class_names)


def _reason_not_to_prune(layer, excluded_names, excluded_types, schedule) -> str | None:
    classes, class_names = excluded_types
    if not layer.weights or isinstance(layer, keras.layers.InputLayer):
        return "no weights"
    if layer.name in excluded_names:
        return "excluded by name"
    if isinstance(layer, classes) or type(layer).__name__ in class_names:
        return "excluded by type"
    if not (prune_registry.PruneRegistry.supports(layer) or hasattr(layer, "get_prunable_weights")):
        return f"tfmot cannot prune {type(layer).__name__}"
    registered = prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP.get(type(layer))
    if registered is not None and not registered:
        # e.g. BatchNormalization; DepthwiseConv2D too (tfmot prune_registry.py).
        return f"tfmot prunes no weight of {type(layer).__name__}"
    if isinstance(schedule, MByNSparsity) and type(layer) not in _M_BY_N_TYPES:
        return f"m-by-n sparsity applies to Dense and Conv2D only, not {type(layer).__name__}"
    return None


class SparsityHeldBackWarning(UserWarning):
    """Weights tfmot cannot prune keep the model's kernels below the schedule's sparsity."""


class PrunableDepthwiseConv2D(keras.layers.DepthwiseConv2D, tfmot.sparsity.keras.PrunableLayer):
    """DepthwiseConv2D whose depthwise kernel tfmot prunes (opt-in: ``prune_depthwise=True``).

    tfmot's ``PruneLowMagnitude`` wraps any ``PrunableLayer`` and masks the weights that
    ``get_prunable_weights`` returns; :func:`strip` turns it back into a DepthwiseConv2D.
    """

    def get_prunable_weights(self) -> list[tf.Variable]:
        return [self.depthwise_kernel]


class _BlockPrunableConv(tfmot.sparsity.keras.PrunableLayer):
    """A convolution whose kernel variable is the 2-D matrix ``[kh * kw * in, out]``, reshaped to
    the kernel at each call: tfmot's block pooling (2-D only) then groups consecutive input
    channels of one kernel position, the blocks the sparse kernels compute. Channels last,
    groups 1, not causal (:func:`_block_conv_class` checks); :func:`strip` turns it back into the
    plain layer with the same kernel."""

    def build(self, input_shape):  # base_conv.Conv.build, with the kernel stored in 2-D
        input_shape = tf.TensorShape(input_shape)
        channels = self._get_input_channel(input_shape)
        self._kernel_shape = (*self.kernel_size, channels, self.filters)
        self.compute_output_shape(input_shape)
        self.kernel_rows = self.add_weight(
            name="kernel",
            shape=(int(np.prod(self._kernel_shape[:-1])), self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            trainable=True,
            dtype=self.dtype,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
                dtype=self.dtype,
            )
        self.input_spec = keras.layers.InputSpec(
            min_ndim=self.rank + 2, axes={self._get_channel_axis(): channels}
        )
        keras.layers.Layer.build(self, input_shape)

    @property
    def kernel(self):
        return tf.reshape(self.kernel_rows, self._kernel_shape)

    def get_prunable_weights(self) -> list[tf.Variable]:
        return [self.kernel_rows]


class BlockPrunableConv2D(_BlockPrunableConv, keras.layers.Conv2D):
    """Conv2D (KxK) pruned in blocks of input channels: see :class:`_BlockPrunableConv`."""


class BlockPrunableConv1D(_BlockPrunableConv, keras.layers.Conv1D):
    """Conv1D pruned in blocks of input channels: see :class:`_BlockPrunableConv`."""


def _is_plain_depthwise(layer: keras.layers.Layer) -> bool:
    return type(layer) is keras.layers.DepthwiseConv2D


def _warn_held_back(
    wrapped: keras.Model, model: keras.Model, unpruned: dict[str, str], schedule: PruningSchedule
) -> None:
    """Warn with numbers when kernels tfmot cannot prune lower the sparsity over all kernels."""
    held = {
        layer.name: sum(int(np.prod(w.shape)) for w in layer.weights if "kernel" in w.name)
        for layer in _all_layers(model)
        if unpruned.get(layer.name, "").startswith("tfmot")
    }
    held = {name: count for name, count in held.items() if count}
    if not held:
        return
    pruned = sum(int(np.prod(w.shape)) for x in _wrappers(wrapped) for w, _, _ in x.pruning_vars)
    asked = schedule.target_sparsity
    reached = asked * pruned / (pruned + sum(held.values()))
    listing = ", ".join(f"{name} ({count:,} weights)" for name, count in held.items())
    depthwise = any(_is_plain_depthwise(x) for x in _all_layers(model) if x.name in held)
    depthwise = depthwise and not isinstance(schedule, MByNSparsity)
    hint = "; pass prune_depthwise=True to prune the depthwise kernels too" if depthwise else ""
    warnings.warn(
        f"sparsity held back: asked {asked:.1%} but the kernels will reach {reached:.1%} "
        f"({pruned:,} prunable weights, {sum(held.values()):,} that tfmot does not prune: "
        f"{listing}){hint}",
        SparsityHeldBackWarning,
        stacklevel=3,
    )


def _warn_unsupported(unpruned: dict[str, str]) -> None:
    unsupported = {n: r for n, r in unpruned.items() if r.startswith("tfmot cannot")}
    if unsupported:
        listing = "; ".join(f"{name}: {reason}" for name, reason in unsupported.items())
        warnings.warn(f"layers left dense: {listing}", stacklevel=3)


def _compile_like(wrapped, original, optimizer, loss, metrics) -> None:
    if optimizer is not None:
        wrapped.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return
    if loss is not None or metrics is not None:
        raise ConfigError("loss/metrics given without optimizer: pass optimizer= as well")
    if not original._is_compiled or original.optimizer is None:
        return
    args = original._get_compile_args()
    old = args["optimizer"]
    args["optimizer"] = type(old).from_config(old.get_config())
    wrapped.compile(**args)


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
    return layers


# --------------------------------------------------------------------------- strip


def strip(model: keras.Model | PrunedModel) -> keras.Model:
    """Remove the pruning wrappers: an ordinary tf_keras model of the same architecture.

    The masks are applied to the weights first, so every pruned weight is exactly zero even
    if training stopped mid-epoch. The result shares its layers (and weights) with ``model``.
    """
    model = _unwrap(model)
    check_model(model)
    for wrapper in _wrappers(model):
        for weight, mask, _ in wrapper.pruning_vars:
            weight.assign(weight * tf.cast(mask, weight.dtype))
    stripped = _sparsity.strip_pruning(model)
    if not any(_plain_class(x) for x in _all_layers(stripped)):
        return stripped
    return _plain_layers(stripped)


def _plain_class(layer: keras.layers.Layer):
    """The Keras class an edge-prune prunable layer stands for (None for any other layer)."""
    for mine, plain in (
        (PrunableDepthwiseConv2D, keras.layers.DepthwiseConv2D),
        (BlockPrunableConv2D, keras.layers.Conv2D),
        (BlockPrunableConv1D, keras.layers.Conv1D),
    ):
        if isinstance(layer, mine):
            return plain
    return None


def _plain_layers(model: keras.Model) -> keras.Model:
    """``model`` with each edge-prune prunable layer replaced by the Keras layer it stands for
    (same weights), so the stripped model needs no edge-prune class to be saved or loaded."""

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone_layer)
        if _plain_class(layer) is None:
            return layer
        plain = _plain_class(layer).from_config(layer.get_config())
        copies.append((layer, plain))
        return plain

    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    plain_model = keras.models.clone_model(model, clone_function=clone_layer)
    for layer, plain in copies:
        plain.set_weights(_weights_in_shapes(layer.get_weights(), plain))
    return plain_model


def _wrappers(model: keras.Model) -> list[pruning_wrapper.PruneLowMagnitude]:
    return [
        layer
        for layer in _all_layers(model)
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude)
    ]


def is_pruning_wrapped(model: keras.Model) -> bool:
    """True if ``model`` still holds tfmot pruning wrappers (it must be stripped to deploy)."""
    return bool(_wrappers(_unwrap(model)))


# --------------------------------------------------------------------------- sparsity report


@dataclass(frozen=True)
class WeightSparsity:
    """Zeros in one weight tensor of one layer."""

    layer: str
    weight: str
    shape: tuple[int, ...]
    zeros: int
    total: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "weight": self.weight,
            "shape": list(self.shape),
            "zeros": self.zeros,
            "total": self.total,
            "sparsity": self.sparsity,
        }


@dataclass(frozen=True)
class SparsityReport:
    """Exact zeros per weight tensor and for the whole model.

    Counts every weight variable of the Keras model (kernels, biases, normalization
    statistics), as stored in Keras; pruning wrappers' masks and counters are not counted.
    The TFLite converter may fold some weights into others (BatchNorm into Conv2D).
    """

    model: str
    rows: tuple[WeightSparsity, ...]

    @property
    def zeros(self) -> int:
        return sum(r.zeros for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def layer(self, name: str, weight: str = "kernel") -> WeightSparsity:
        """The row of ``name``'s ``weight``; ``KeyError`` if there is none."""
        for row in self.rows:
            if row.layer == name and row.weight == weight:
                return row
        raise KeyError(f"{name}/{weight}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "layers": [r.to_dict() for r in self.rows],
            "zeros": self.zeros,
            "total": self.total,
            "sparsity": self.sparsity,
        }

    def __str__(self) -> str:
        cells = [
            (r.layer, r.weight, str(r.shape), _sparsity_text(r.zeros, r.total)) for r in self.rows
        ]
        cells.append(("total", "", "", _sparsity_text(self.zeros, self.total)))
        header = ("layer", "weight", "shape", "")
        widths = [max(len(c[i]) for c in [header, *cells]) for i in range(3)]
        lines = [f"Sparsity of {self.model}"]
        for row in [header, *cells]:
            lines.append(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[3]
            )
        return "\n".join(line.rstrip() for line in lines)


def _sparsity_text(zeros: int, total: int) -> str:
    percent = 100 * zeros / total if total else 0.0
    shown = f"{percent:.1f}".removesuffix(".0")
    return f"Sparsity: {zeros}/{total} ({shown}%)"


def sparsity_report(model: keras.Model | PrunedModel) -> SparsityReport:
    """Count exact zeros per weight of ``model`` (stripped or still wrapped for pruning)."""
    model = _unwrap(model)
    check_model(model)
    return SparsityReport(model.name, tuple(_weight_rows(model, prefix="")))


def _short_name(weight) -> str:
    """``kernel`` for the variable ``dense/kernel:0``."""
    return weight.name.split("/")[-1].split(":")[0]


def _weight_rows(model: keras.Model, prefix: str) -> list[WeightSparsity]:
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows.extend(_weight_rows(layer, prefix=f"{prefix}{layer.name}/"))
            continue
        inner = layer.layer if isinstance(layer, pruning_wrapper.PruneLowMagnitude) else layer
        for weight in inner.weights:
            values = np.asarray(weight.numpy())
            rows.append(
                WeightSparsity(
                    layer=prefix + inner.name,
                    weight=_short_name(weight),
                    shape=tuple(values.shape),
                    zeros=int(np.count_nonzero(values == 0)),
                    total=int(values.size),
                )
            )
    return rows


# --------------------------------------------------------------------------- iterative


FitFunction = Callable[[keras.Model, list, int], object]


@dataclass(frozen=True)
class StageResult:
    """One stage of :func:`prune_in_stages`: its target and the sparsity reached after it."""

    target_sparsity: float
    prune_steps: int
    fine_tune_steps: int
    report: SparsityReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_sparsity": self.target_sparsity,
            "prune_steps": self.prune_steps,
            "fine_tune_steps": self.fine_tune_steps,
            "sparsity": self.report.sparsity,
            "report": self.report.to_dict(),
        }


@dataclass(frozen=True)
class StagedPruning:
    """Result of :func:`prune_in_stages`: the stripped model and one result per stage."""

    model: keras.Model
    stages: tuple[StageResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s.to_dict() for s in self.stages]}


def prune_in_stages(
    model: keras.Model,
    stages: Sequence[float] = (0.5, 0.7, 0.85),
    *,
    loss: str | keras.losses.Loss | Callable,
    metrics: Sequence[str | keras.metrics.Metric] | None = None,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    batch_size: int = 32,
    fit: FitFunction | None = None,
    steps_per_epoch: int | None = None,
    prune_epochs: int = 2,
    fine_tune_epochs: int = 1,
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
    optimizer: str = "adam",
    exclude_layers: Iterable[str] = (),
    exclude_types: Iterable[type | str] = (),
    rewind_to_epoch: int | None = None,
    early_weights: Sequence[np.ndarray] | None = None,
    block: tuple[int, int] = (1, 1),
) -> StagedPruning:
    """Prune in stages (prune → retrain → prune ...), e.g. 50% → 70% → 85%.

    Each stage wraps the model again, raises its sparsity from the previous stage's target to
    this stage's along a polynomial decay for ``prune_epochs`` at ``learning_rate``, then
    fine-tunes with the masks held for ``fine_tune_epochs`` at ``fine_tune_learning_rate``,
    and strips the wrappers. ``optimizer`` names a tf_keras optimizer, made fresh per phase.
    ``block`` prunes in blocks of input channels at every stage, as :func:`prune` does.

    Data: either ``x``/``y`` arrays (trained with ``batch_size``, shuffled), or a ``fit``
    callable ``fit(model, callbacks, epochs)`` that calls ``model.fit(..., callbacks=callbacks,
    epochs=epochs)`` on your data, plus its ``steps_per_epoch``. Returns the stripped model.

    Lottery-ticket rewinding (Frankle and Carbin, ICLR 2019; rewinding to an early epoch rather
    than to initialisation: Frankle et al., "Linear Mode Connectivity and the Lottery Ticket
    Hypothesis", ICML 2020): with ``rewind_to_epoch=k`` and ``early_weights`` (the model's
    weights at the end of epoch k of its dense training, recorded by passing
    ``ep.record_weights(k)`` to that ``fit`` and taking its ``.weights``), each stage strips,
    resets the surviving weights to their epoch-k values and retrains them for
    ``fine_tune_epochs`` with the pruned weights held at zero.
    """
    check_model(model)
    targets = _check_stages(stages)
    _check_rewind(rewind_to_epoch, early_weights, fine_tune_epochs)
    fit, steps_per_epoch = _fit_function(x, y, batch_size, fit, steps_per_epoch)
    check_int("prune_epochs", prune_epochs, minimum=1)
    check_int("fine_tune_epochs", fine_tune_epochs, minimum=0)
    prune_steps = prune_epochs * steps_per_epoch
    if prune_steps < 2:
        raise ConfigError(
            f"prune_epochs x steps_per_epoch must be at least 2 steps, got {prune_steps}"
        )
    results = []
    previous = 0.0
    for target in targets:
        # begin_step=1: tfmot's first training step is 1, so the previous stage's zeros are
        # masked from the first batch on instead of regrowing until the first pruning step.
        schedule = PruningSchedule.polynomial_decay(
            target, initial_sparsity=previous, begin_step=1, end_step=prune_steps
        )
        pruned = prune(
            model,
            schedule,
            exclude_layers=exclude_layers,
            exclude_types=exclude_types,
            optimizer=_optimizer(optimizer, learning_rate),
            loss=loss,
            metrics=metrics,
            block=block,
        )
        fit(pruned.model, pruned.callbacks, prune_epochs)
        if early_weights is not None:
            model = _rewound_and_retrained(
                strip(pruned), early_weights, fit, fine_tune_epochs,
                _optimizer(optimizer, fine_tune_learning_rate), loss, metrics,
            )  # fmt: skip
        else:
            if fine_tune_epochs:
                pruned.model.compile(
                    optimizer=_optimizer(optimizer, fine_tune_learning_rate),
                    loss=loss,
                    metrics=metrics,
                )
                fit(pruned.model, pruned.callbacks, fine_tune_epochs)
            model = strip(pruned)
        results.append(
            StageResult(
                target, prune_steps, fine_tune_epochs * steps_per_epoch, sparsity_report(model)
            )
        )
        previous = target
    return StagedPruning(model, tuple(results))


def _check_rewind(rewind_to_epoch, early_weights, fine_tune_epochs: int) -> None:
    if (rewind_to_epoch is None) != (early_weights is None):
        raise ConfigError(
            "rewind_to_epoch and early_weights go together: record the weights with "
            "ep.record_weights(k) in the dense fit and pass rewind_to_epoch=k, "
            "early_weights=callback.weights"
        )
    if rewind_to_epoch is not None:
        check_int("rewind_to_epoch", rewind_to_epoch, minimum=0)
        check_int("fine_tune_epochs", fine_tune_epochs, minimum=1)


def _rewound_and_retrained(model, early_weights, fit, epochs, optimizer, loss, metrics):
    from edge_prune.training.rewind import fixed_mask_callback, rewind

    rewound, masks = rewind(model, early_weights)
    rewound.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    fit(rewound, [fixed_mask_callback(masks)], epochs)
    return rewound


def _check_stages(stages: Sequence[float]) -> tuple[float, ...]:
    targets = tuple(stages)
    if not targets:
        raise ConfigError("stages must hold at least one target sparsity, got none")
    for i, target in enumerate(targets):
        check_sparsity(f"stages[{i}]", target)
    if any(b <= a for a, b in zip(targets, targets[1:], strict=False)):
        raise ConfigError(f"stages must increase, got {targets}")
    return targets


def _fit_function(x, y, batch_size, fit, steps_per_epoch) -> tuple[FitFunction, int]:
    if fit is not None:
        if x is not None or y is not None:
            raise ConfigError("give either x/y arrays or a fit callable, not both")
        if steps_per_epoch is None:
            raise ConfigError("steps_per_epoch is required with a fit callable")
        check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        return fit, steps_per_epoch
    if x is None or y is None:
        raise ConfigError("give x and y arrays, or a fit callable with steps_per_epoch")
    check_int("batch_size", batch_size, minimum=1)
    if len(x) != len(y):
        raise DataError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")

    def fit_arrays(model: keras.Model, callbacks: list, epochs: int) -> keras.callbacks.History:
        return model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=0)

    return fit_arrays, math.ceil(len(x) / batch_size)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        return keras.optimizers.get(
            {"class_name": name, "config": {"learning_rate": learning_rate}}
        )
    except ValueError as e:
        raise ConfigError(f"optimizer: unknown tf_keras optimizer {name!r}") from e
