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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_prune._tf import keras, tf, tfmot
from edge_prune.errors import ConfigError, DataError, UnsupportedModelError

_sparsity = tfmot.sparsity.keras

# tfmot internals for per-layer wrapping and mask access, which its public names do not expose.
# Imported after edge_prune._tf, so TF_USE_LEGACY_KERAS is already set.
from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    prune_registry,
    pruning_wrapper,
)

KINDS = ("polynomial_decay", "constant", "m_by_n")
_MAX_AUTO_FREQUENCY = 100  # tfmot's default frequency
_MIN_MASK_UPDATES = 10
# tfmot's m-by-n mask generator handles rank-2 (Dense) and rank-4 (Conv2D) kernels only
# (pruning_utils.weights_rearrange).
_M_BY_N_TYPES = (keras.layers.Dense, keras.layers.Conv2D)


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class PruningSchedule:
    """When and how much to prune; validated on construction (``ConfigError`` names the field).

    ``kind``:
      * ``"polynomial_decay"``: sparsity rises from ``initial_sparsity`` at ``begin_step`` to
        ``final_sparsity`` at ``end_step`` along ``1 - (1 - t)**power``, masks recomputed every
        ``frequency`` steps, then held.
      * ``"constant"``: ``final_sparsity`` at every pruning step from ``begin_step`` to
        ``end_step`` (``-1``: until training stops).
      * ``"m_by_n"``: ``m`` zeros in every ``n`` consecutive weights of Dense/Conv2D kernels
        (2:4 gives 50%), set once at the first training step; the other fields are not used.

    Build one with :meth:`polynomial_decay`, :meth:`from_epochs`, :meth:`constant_sparsity` or
    :meth:`m_by_n_sparsity`.
    """

    kind: str = "polynomial_decay"
    final_sparsity: float = 0.8
    initial_sparsity: float = 0.0
    begin_step: int = 0
    end_step: int = 1000
    power: float = 3.0
    frequency: int = 100
    m_by_n: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "m_by_n":
            _check_m_by_n(self.m_by_n)
            return
        if self.m_by_n is not None:
            raise ConfigError(f"m_by_n is only used with kind='m_by_n', got kind={self.kind!r}")
        _check_sparsity("final_sparsity", self.final_sparsity)
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_int("begin_step", self.begin_step, minimum=0)
        _check_int("frequency", self.frequency, minimum=1)
        _check_int("end_step", self.end_step, minimum=-1)
        if self.kind == "constant" and self.end_step == -1:
            return
        if self.end_step <= self.begin_step:
            raise ConfigError(
                f"end_step must be greater than begin_step, got end_step={self.end_step} and "
                f"begin_step={self.begin_step}"
            )
        if self.kind == "polynomial_decay":
            _check_polynomial(self)

    # -- constructors

    @classmethod
    def polynomial_decay(
        cls,
        final_sparsity: float,
        *,
        end_step: int,
        begin_step: int = 0,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
        frequency: int | None = None,
    ) -> PruningSchedule:
        """Polynomial decay from ``begin_step`` to ``end_step``.

        ``frequency=None`` picks the largest divisor of ``end_step - begin_step`` that gives at
        least 10 mask updates and is at most 100 (tfmot's default), so the final sparsity falls
        on a pruning step.
        """
        if frequency is None:
            frequency = _auto_frequency(end_step - begin_step)
        return cls(
            "polynomial_decay",
            final_sparsity,
            initial_sparsity,
            begin_step,
            end_step,
            power,
            frequency,
        )

    @classmethod
    def from_epochs(
        cls,
        final_sparsity: float,
        *,
        steps_per_epoch: int,
        end_epoch: int,
        begin_epoch: int = 0,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
        frequency: int | None = None,
    ) -> PruningSchedule:
        """Polynomial decay given in epochs: ``step = epoch * steps_per_epoch``.

        With an explicit ``frequency`` that does not divide the span, ``end_step`` is rounded
        down to the last pruning step, so that the final sparsity is still applied.
        """
        _check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        _check_int("begin_epoch", begin_epoch, minimum=0)
        _check_int("end_epoch", end_epoch, minimum=0)
        if end_epoch <= begin_epoch:
            raise ConfigError(
                f"end_epoch must be greater than begin_epoch, got end_epoch={end_epoch} and "
                f"begin_epoch={begin_epoch}"
            )
        begin_step = begin_epoch * steps_per_epoch
        span = (end_epoch - begin_epoch) * steps_per_epoch
        if frequency is None:
            frequency = _auto_frequency(span)
        _check_int("frequency", frequency, minimum=1)
        if frequency > span:
            raise ConfigError(
                f"frequency must be at most the pruning span of {span} steps "
                f"({end_epoch - begin_epoch} epochs x {steps_per_epoch} steps), got {frequency}"
            )
        end_step = begin_step + (span // frequency) * frequency
        return cls.polynomial_decay(
            final_sparsity,
            end_step=end_step,
            begin_step=begin_step,
            initial_sparsity=initial_sparsity,
            power=power,
            frequency=frequency,
        )

    @classmethod
    def constant_sparsity(
        cls, sparsity: float, *, begin_step: int = 0, end_step: int = -1, frequency: int = 100
    ) -> PruningSchedule:
        """The same target at every pruning step (``end_step=-1``: until training stops)."""
        return cls("constant", sparsity, sparsity, begin_step, end_step, frequency=frequency)

    @classmethod
    def m_by_n_sparsity(cls, m: int = 2, n: int = 4) -> PruningSchedule:
        """``m`` zeros in every ``n`` consecutive weights (structured, e.g. 2:4)."""
        return cls("m_by_n", final_sparsity=m / n if n else 0.0, m_by_n=(m, n))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PruningSchedule:
        values = dict(values)
        if values.get("m_by_n") is not None:
            values["m_by_n"] = tuple(values["m_by_n"])
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(f"pruning schedule: {e}") from e

    # -- use

    @property
    def target_sparsity(self) -> float:
        """The sparsity the schedule ends at (``m / n`` for m-by-n)."""
        if self.kind == "m_by_n":
            m, n = self.m_by_n
            return m / n
        return self.final_sparsity

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["m_by_n"] = list(self.m_by_n) if self.m_by_n else None
        return values

    def wrapper_arguments(self) -> dict[str, Any]:
        """Keyword arguments for tfmot's ``prune_low_magnitude`` / ``PruneLowMagnitude``."""
        if self.kind == "m_by_n":
            # tfmot ignores the schedule's sparsity for m-by-n; it only needs a schedule object.
            return {
                "pruning_schedule": _sparsity.ConstantSparsity(self.target_sparsity, 0),
                "sparsity_m_by_n": self.m_by_n,
            }
        if self.kind == "constant":
            schedule = _sparsity.ConstantSparsity(
                self.final_sparsity, self.begin_step, self.end_step, self.frequency
            )
        else:
            schedule = _sparsity.PolynomialDecay(
                self.initial_sparsity,
                self.final_sparsity,
                self.begin_step,
                self.end_step,
                self.power,
                self.frequency,
            )
        return {"pruning_schedule": schedule}


def _check_sparsity(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_m_by_n(m_by_n) -> None:
    ok = (
        isinstance(m_by_n, tuple)
        and len(m_by_n) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in m_by_n)
        and 0 < m_by_n[0] < m_by_n[1]
    )
    if not ok:
        raise ConfigError(
            f"m_by_n must be a tuple (m, n) of integers with 0 < m < n, got {m_by_n!r}"
        )


def _check_polynomial(schedule: PruningSchedule) -> None:
    if schedule.initial_sparsity > schedule.final_sparsity:
        raise ConfigError(
            f"initial_sparsity must not exceed final_sparsity, got {schedule.initial_sparsity} "
            f"> {schedule.final_sparsity}"
        )
    if isinstance(schedule.power, bool) or not schedule.power > 0:
        raise ConfigError(f"power must be a number > 0, got {schedule.power!r}")
    span = schedule.end_step - schedule.begin_step
    if span % schedule.frequency:
        # tfmot prunes only at begin_step + k * frequency <= end_step: the final sparsity would
        # never be applied.
        raise ConfigError(
            f"end_step - begin_step ({span}) must be a multiple of frequency "
            f"({schedule.frequency}), or the final sparsity is never applied; try frequency="
            f"{_auto_frequency(span)}"
        )


def _auto_frequency(span: int) -> int:
    if isinstance(span, bool) or not isinstance(span, int | np.integer) or span < 1:
        return 1  # the constructor reports the bad steps
    # At least _MIN_MASK_UPDATES updates so the decay is gradual, and the final step on the grid.
    limit = max(1, min(_MAX_AUTO_FREQUENCY, span // _MIN_MASK_UPDATES))
    return max(d for d in range(1, limit + 1) if span % d == 0)


# --------------------------------------------------------------------------- model checks


def check_model(model: Any, argument: str = "model") -> None:
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


def _unwrap(value: Any) -> Any:
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
    optimizer: Any = None,
    loss: Any = None,
    metrics: Any = None,
    log_dir: str | None = None,
) -> PrunedModel:
    """Wrap ``model``'s prunable layers with tfmot's magnitude pruning; ``model`` is not changed.

    Each layer is cloned with its weights, so the original keeps its own. Layers named in
    ``exclude_layers`` or of a type in ``exclude_types`` (classes or class names) stay dense, as
    do layers tfmot cannot prune (they are listed in ``unpruned_layers`` and a warning says so).

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
    excluded_names = _check_excluded_names(model, exclude_layers)
    excluded_types = _resolve_types(exclude_types)
    arguments = schedule.wrapper_arguments()
    clones: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    pruned: list[str] = []
    unpruned: dict[str, str] = {}

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            check_model(layer, argument=f"nested model {layer.name!r}")
            return keras.models.clone_model(layer, clone_function=clone_layer)
        copy = _copy_layer(layer)
        clones.append((layer, copy))
        reason = _reason_not_to_prune(layer, excluded_names, excluded_types, schedule)
        if reason is None:
            pruned.append(layer.name)
            return pruning_wrapper.PruneLowMagnitude(copy, **arguments)
        if layer.weights:
            unpruned[layer.name] = reason
        return copy

    try:
        wrapped = keras.models.clone_model(model, clone_function=clone_layer)
    except ValueError as e:
        raise UnsupportedModelError(f"model {model.name}: tfmot cannot wrap it: {e}") from e
    for original, copy in clones:
        copy.set_weights(original.get_weights())
    _warn_unsupported(unpruned)
    _compile_like(wrapped, model, optimizer, loss, metrics)
    return PrunedModel(wrapped, schedule, tuple(pruned), tuple(unpruned), log_dir)


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
    if schedule.kind == "m_by_n" and type(layer) not in _M_BY_N_TYPES:
        return f"m-by-n sparsity applies to Dense and Conv2D only, not {type(layer).__name__}"
    return None


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
    return _sparsity.strip_pruning(model)


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


FitFunction = Callable[[keras.Model, list, int], Any]


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
    loss: Any,
    metrics: Any = None,
    x: Any = None,
    y: Any = None,
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
) -> StagedPruning:
    """Prune in stages (prune → retrain → prune ...), e.g. 50% → 70% → 85%.

    Each stage wraps the model again, raises its sparsity from the previous stage's target to
    this stage's along a polynomial decay for ``prune_epochs`` at ``learning_rate``, then
    fine-tunes with the masks held for ``fine_tune_epochs`` at ``fine_tune_learning_rate``,
    and strips the wrappers. ``optimizer`` names a tf_keras optimizer, made fresh per phase.

    Data: either ``x``/``y`` arrays (trained with ``batch_size``, shuffled), or a ``fit``
    callable ``fit(model, callbacks, epochs)`` that calls ``model.fit(..., callbacks=callbacks,
    epochs=epochs)`` on your data, plus its ``steps_per_epoch``. Returns the stripped model.
    """
    check_model(model)
    targets = _check_stages(stages)
    fit, steps_per_epoch = _fit_function(x, y, batch_size, fit, steps_per_epoch)
    _check_int("prune_epochs", prune_epochs, minimum=1)
    _check_int("fine_tune_epochs", fine_tune_epochs, minimum=0)
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
        )
        fit(pruned.model, pruned.callbacks, prune_epochs)
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


def _check_stages(stages: Sequence[float]) -> tuple[float, ...]:
    targets = tuple(stages)
    if not targets:
        raise ConfigError("stages must hold at least one target sparsity, got none")
    for i, target in enumerate(targets):
        _check_sparsity(f"stages[{i}]", target)
    if any(b <= a for a, b in zip(targets, targets[1:], strict=False)):
        raise ConfigError(f"stages must increase, got {targets}")
    return targets


def _fit_function(x, y, batch_size, fit, steps_per_epoch) -> tuple[FitFunction, int]:
    if fit is not None:
        if x is not None or y is not None:
            raise ConfigError("give either x/y arrays or a fit callable, not both")
        if steps_per_epoch is None:
            raise ConfigError("steps_per_epoch is required with a fit callable")
        _check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        return fit, steps_per_epoch
    if x is None or y is None:
        raise ConfigError("give x and y arrays, or a fit callable with steps_per_epoch")
    _check_int("batch_size", batch_size, minimum=1)
    if len(x) != len(y):
        raise DataError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")

    def fit_arrays(model: keras.Model, callbacks: list, epochs: int) -> Any:
        return model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=0)

    return fit_arrays, math.ceil(len(x) / batch_size)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        return keras.optimizers.get(
            {"class_name": name, "config": {"learning_rate": learning_rate}}
        )
    except ValueError as e:
        raise ConfigError(f"optimizer: unknown tf_keras optimizer {name!r}") from e
