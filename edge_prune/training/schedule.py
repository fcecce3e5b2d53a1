"""Pruning schedules: when and how much to prune, checked when built.

Modelled on tfmot's ``pruning_schedule.py`` (tfmot 0.8.1): a base class with
``get_config``/``from_config`` and one subclass per schedule. Each schedule turns itself into
the keyword arguments of tfmot's ``PruneLowMagnitude`` wrapper. Build one with the class
methods of :class:`PruningSchedule` (``polynomial_decay``, ``from_epochs``,
``constant_sparsity``, ``m_by_n_sparsity``) or the subclasses directly.

Steps are optimizer steps (batches) counted from the start of pruning: tfmot numbers the first
training batch 1 and recomputes the masks during batch ``s`` when ``s`` is a pruning step. All
the schedule rules live here; :func:`schedule_from_config` checks a ``[prune]`` config section
against the number of steps per epoch of the data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from edge_prune.errors import ConfigError

__all__ = [
    "ConstantSparsity",
    "MByNSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "schedule_from_config",
]

_MAX_AUTO_FREQUENCY = 100  # tfmot's default frequency
_MIN_MASK_UPDATES = 10


class PruningSchedule:
    """Base class of the schedules; the class methods build the common ones.

    ``kind`` names the schedule in ``to_dict``; ``target_sparsity`` is the sparsity it ends at.
    """

    kind: ClassVar[str]
    _KINDS: ClassVar[dict[str, type[PruningSchedule]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        PruningSchedule._KINDS[cls.kind] = cls

    # -- constructors

    @staticmethod
    def polynomial_decay(
        final_sparsity: float,
        *,
        end_step: int,
        begin_step: int = 0,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
        frequency: int | None = None,
    ) -> PolynomialDecay:
        """Polynomial decay from ``begin_step`` to ``end_step``.

        ``frequency=None`` picks the largest divisor of ``end_step - begin_step`` that gives at
        least 10 mask updates and is at most 100 (tfmot's default), so the final sparsity falls
        on a pruning step.
        """
        if frequency is None:
            frequency = _auto_frequency(end_step - begin_step)
        return PolynomialDecay(
            final_sparsity, end_step, begin_step, initial_sparsity, power, frequency
        )

    @staticmethod
    def from_epochs(
        final_sparsity: float,
        *,
        steps_per_epoch: int,
        end_epoch: int,
        begin_epoch: int = 0,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
        frequency: int | None = None,
    ) -> PolynomialDecay:
        """Polynomial decay given in epochs: ``step = epoch * steps_per_epoch``.

        With an explicit ``frequency`` that does not divide the span, ``end_step`` is rounded
        down to the last pruning step, so that the final sparsity is still applied.
        """
        check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        check_int("begin_epoch", begin_epoch, minimum=0)
        check_int("end_epoch", end_epoch, minimum=0)
        if end_epoch <= begin_epoch:
            raise ConfigError(
                f"end_epoch must be greater than begin_epoch, got end_epoch={end_epoch} and "
                f"begin_epoch={begin_epoch}"
            )
        begin_step = begin_epoch * steps_per_epoch
        span = (end_epoch - begin_epoch) * steps_per_epoch
        if frequency is None:
            frequency = _auto_frequency(span)
        check_int("frequency", frequency, minimum=1)
        if frequency > span:
            raise ConfigError(
                f"frequency must be at most the pruning span of {span} steps "
                f"({end_epoch - begin_epoch} epochs x {steps_per_epoch} steps), got {frequency}"
            )
        return PruningSchedule.polynomial_decay(
            final_sparsity,
            end_step=begin_step + (span // frequency) * frequency,
            begin_step=begin_step,
            initial_sparsity=initial_sparsity,
            power=power,
            frequency=frequency,
        )

    @staticmethod
    def constant_sparsity(
        sparsity: float, *, begin_step: int = 0, end_step: int = -1, frequency: int = 100
    ) -> ConstantSparsity:
        """The same target at every pruning step (``end_step=-1``: until training stops)."""
        return ConstantSparsity(sparsity, begin_step, end_step, frequency)

    @staticmethod
    def m_by_n_sparsity(m: int = 2, n: int = 4) -> MByNSparsity:
        """``m`` zeros in every ``n`` consecutive weights (structured, e.g. 2:4)."""
        return MByNSparsity((m, n))

    # -- serialization (tfmot's get_config/from_config, and a flat dict with "kind")

    def get_config(self) -> dict[str, Any]:
        """``{"class_name": ..., "config": {constructor arguments}}``, as tfmot's schedules."""
        config = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {"class_name": type(self).__name__, "config": _json_ready(config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningSchedule:
        """The schedule :meth:`get_config` described."""
        by_class = {k.__name__: k for k in PruningSchedule._KINDS.values()}
        name = config.get("class_name") if isinstance(config, dict) else None
        if name not in by_class:
            raise ConfigError(
                f"pruning schedule: class_name must be one of {', '.join(sorted(by_class))}, "
                f"got {name!r}"
            )
        return _build(by_class[name], config.get("config", {}))

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments and ``kind``, JSON-ready."""
        return {"kind": self.kind, **self.get_config()["config"]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PruningSchedule:
        """The schedule :meth:`to_dict` described (``kind`` defaults to polynomial_decay)."""
        values = dict(values)
        kind = values.pop("kind", PolynomialDecay.kind)
        if kind not in PruningSchedule._KINDS:
            raise ConfigError(
                f"pruning schedule: kind must be one of {', '.join(PruningSchedule._KINDS)}, "
                f"got {kind!r}"
            )
        return _build(PruningSchedule._KINDS[kind], values)

    # -- use

    @property
    def target_sparsity(self) -> float:
        """The sparsity the schedule ends at."""
        raise NotImplementedError

    def wrapper_arguments(self) -> dict[str, Any]:
        """Keyword arguments for tfmot's ``prune_low_magnitude`` / ``PruneLowMagnitude``."""
        raise NotImplementedError


@dataclass(frozen=True)
class PolynomialDecay(PruningSchedule):
    """Sparsity rises from ``initial_sparsity`` at ``begin_step`` to ``final_sparsity`` at
    ``end_step`` along ``1 - (1 - t)**power``, masks recomputed every ``frequency`` steps, then
    held (tfmot ``PolynomialDecay``)."""

    kind: ClassVar[str] = "polynomial_decay"
    final_sparsity: float = 0.8
    end_step: int = 1000
    begin_step: int = 0
    initial_sparsity: float = 0.0
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self) -> None:
        check_sparsity("final_sparsity", self.final_sparsity)
        check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_steps(self.begin_step, self.end_step, self.frequency)
        _check_end_after_begin(self.begin_step, self.end_step)
        if self.initial_sparsity > self.final_sparsity:
            raise ConfigError(
                f"initial_sparsity must not exceed final_sparsity, got {self.initial_sparsity} "
                f"> {self.final_sparsity}"
            )
        if isinstance(self.power, bool) or not isinstance(self.power, int | float):
            raise ConfigError(f"power must be a number > 0, got {self.power!r}")
        if not self.power > 0:
            raise ConfigError(f"power must be a number > 0, got {self.power!r}")
        span = self.end_step - self.begin_step
        if span % self.frequency:
            # tfmot prunes only at begin_step + k * frequency <= end_step: the final sparsity
            # would never be applied.
            raise ConfigError(
                f"end_step - begin_step ({span}) must be a multiple of frequency "
                f"({self.frequency}), or the final sparsity is never applied; try frequency="
                f"{_auto_frequency(span)}"
            )

    @property
    def target_sparsity(self) -> float:
        return self.final_sparsity

    def wrapper_arguments(self) -> dict[str, Any]:
        from edge_prune.training._tf import tfmot

        schedule = tfmot.sparsity.keras.PolynomialDecay(
            self.initial_sparsity,
            self.final_sparsity,
            self.begin_step,
            self.end_step,
            self.power,
            self.frequency,
        )
        return {"pruning_schedule": schedule}


@dataclass(frozen=True)
class ConstantSparsity(PruningSchedule):
    """``final_sparsity`` at every pruning step from ``begin_step`` to ``end_step`` (``-1``:
    until training stops), tfmot ``ConstantSparsity``."""

    kind: ClassVar[str] = "constant"
    final_sparsity: float = 0.5
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self) -> None:
        check_sparsity("final_sparsity", self.final_sparsity)
        _check_steps(self.begin_step, self.end_step, self.frequency)
        if self.end_step != -1:
            _check_end_after_begin(self.begin_step, self.end_step)

    @property
    def target_sparsity(self) -> float:
        return self.final_sparsity

    def wrapper_arguments(self) -> dict[str, Any]:
        from edge_prune.training._tf import tfmot

        schedule = tfmot.sparsity.keras.ConstantSparsity(
            self.final_sparsity, self.begin_step, self.end_step, self.frequency
        )
        return {"pruning_schedule": schedule}


@dataclass(frozen=True)
class MByNSparsity(PruningSchedule):
    """``m`` zeros in every ``n`` consecutive weights of Dense/Conv2D kernels (2:4 gives 50%),
    set once at the first training step (tfmot's ``sparsity_m_by_n``)."""

    kind: ClassVar[str] = "m_by_n"
    m_by_n: tuple[int, int] = (2, 4)

    def __post_init__(self) -> None:
        value = self.m_by_n
        if isinstance(value, list):
            object.__setattr__(self, "m_by_n", value := tuple(value))
        ok = (
            isinstance(value, tuple)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 0 < value[0] < value[1]
        )
        if not ok:
            raise ConfigError(
                f"m_by_n must be a tuple (m, n) of integers with 0 < m < n, got {value!r}"
            )

    @property
    def target_sparsity(self) -> float:
        m, n = self.m_by_n
        return m / n

    def wrapper_arguments(self) -> dict[str, Any]:
        from edge_prune.training._tf import tfmot

        # tfmot ignores the schedule's sparsity for m-by-n; it only needs a schedule object.
        return {
            "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(self.target_sparsity, 0),
            "sparsity_m_by_n": self.m_by_n,
        }


# --------------------------------------------------------------------------- config


class PruneSection(Protocol):
    """The ``[prune]`` fields a schedule is made of (``edge_prune.config.PruneConfig``)."""

    initial_sparsity: float
    final_sparsity: float
    begin_epoch: int
    end_epoch: int
    epochs: int
    power: float
    frequency: int


def schedule_from_config(
    prune: PruneSection, steps_per_epoch: int, source: str = "config"
) -> PolynomialDecay:
    """The polynomial-decay schedule a ``[prune]`` section gives with ``steps_per_epoch``.

    Checks every schedule rule (sparsities in [0, 1), initial <= final, begin < end epoch <=
    epochs, frequency within the pruning span); the ``ConfigError`` names ``source`` and the
    ``prune.<key>``. Call it with the data's steps per epoch before training starts.
    """
    check_prune_section(prune, source)
    try:
        return PruningSchedule.from_epochs(
            prune.final_sparsity,
            steps_per_epoch=steps_per_epoch,
            end_epoch=prune.end_epoch,
            begin_epoch=prune.begin_epoch,
            initial_sparsity=prune.initial_sparsity,
            power=prune.power,
            frequency=prune.frequency,
        )
    except ConfigError as e:
        raise ConfigError(
            f"{source}: 'prune' with {steps_per_epoch} steps per epoch: {_prefixed(str(e))}"
        ) from e


def check_prune_section(prune: PruneSection, source: str = "config") -> None:
    """The schedule rules that need no data: begin < end epoch <= epochs, initial <= final.

    The config loader calls it (so a bad file is refused when read); :func:`schedule_from_config`
    calls it again before the checks that need the steps per epoch.
    """
    if prune.end_epoch <= prune.begin_epoch:
        raise ConfigError(
            f"{source}: 'prune.end_epoch' ({prune.end_epoch}) must be after 'prune.begin_epoch' "
            f"({prune.begin_epoch})"
        )
    if prune.end_epoch > prune.epochs:
        raise ConfigError(
            f"{source}: 'prune.end_epoch' ({prune.end_epoch}) must not exceed 'prune.epochs' "
            f"({prune.epochs}): the schedule would never reach its final sparsity"
        )
    if prune.initial_sparsity > prune.final_sparsity:
        raise ConfigError(
            f"{source}: 'prune.initial_sparsity' must not exceed final_sparsity, got "
            f"{prune.initial_sparsity} > {prune.final_sparsity}"
        )


def _prefixed(message: str) -> str:
    """``frequency must be ...`` -> ``'prune.frequency' must be ...`` (messages start with the
    argument's name, which is the config key)."""
    name, _, rest = message.partition(" ")
    return f"'prune.{name}' {rest}"


# --------------------------------------------------------------------------- checks


def _build(cls: type[PruningSchedule], values: dict[str, Any]) -> PruningSchedule:
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"pruning schedule: {e}") from e


def _json_ready(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def check_sparsity(name: str, value: float) -> None:
    """``ConfigError`` naming ``name`` unless ``value`` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def check_int(name: str, value: int, minimum: int) -> None:
    """``ConfigError`` naming ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_steps(begin_step: int, end_step: int, frequency: int) -> None:
    check_int("begin_step", begin_step, minimum=0)
    check_int("frequency", frequency, minimum=1)
    check_int("end_step", end_step, minimum=-1)


def _check_end_after_begin(begin_step: int, end_step: int) -> None:
    if end_step <= begin_step:
        raise ConfigError(
            f"end_step must be greater than begin_step, got end_step={end_step} and "
            f"begin_step={begin_step}"
        )


def _auto_frequency(span: int) -> int:
    if isinstance(span, bool) or not isinstance(span, int | np.integer) or span < 1:
        return 1  # the constructor reports the bad steps
    # At least _MIN_MASK_UPDATES updates so the decay is gradual, and the final step on the grid.
    limit = max(1, min(_MAX_AUTO_FREQUENCY, span // _MIN_MASK_UPDATES))
    return max(d for d in range(1, limit + 1) if span % d == 0)
