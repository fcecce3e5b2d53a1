"""Points of the search: what one point changes in the pipeline config (:class:`PointSpec`), the
space the study samples (:class:`SearchSpace`), a built point's figures (:class:`SearchPoint`),
the choice among points (:func:`choose_point`, also used by ``sweep``) and a search's options.

The chosen point: the least flash needed among the points whose artifact runs on TFLM within the
tolerance, scores above chance and fits the target's flash and RAM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from edge_prune.config import PipelineConfig, with_overrides
from edge_prune.errors import ConfigError

SCHEDULES = ("polynomial", "iterative", "rewind")
RATIOS = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875)
SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
CLUSTERS = (0, 4, 8, 16)  # 0: clustering off
BITWIDTHS = (0, 2, 3, 4)  # 0: the build weighs LUT, pruning bitmask and Huffman per tensor


# ---------------------------------------------------------------------------------- points


@dataclass(frozen=True, order=True)
class PointSpec:
    """One point of the search: what it changes in the pipeline config. ``bitwidth`` is kept
    only where it means something (clusters on, and at most ``2**bitwidth`` of them)."""

    structured_ratio: float
    final_sparsity: float
    clusters: int  # 0: clustering and LUT compression off
    schedule: str = "polynomial"
    bitwidth: int = 0

    def __post_init__(self):
        if not self.clusters or self.clusters > 2**self.bitwidth:
            object.__setattr__(self, "bitwidth", 0)

    @property
    def valid(self) -> bool:
        # Rewinding resets to the dense model's early weights: only without channel removal.
        return not (self.schedule == "rewind" and self.structured_ratio > 0)

    def config(self, base: PipelineConfig) -> PipelineConfig:
        """``base`` with this point's values."""
        overrides: dict[str, Any] = {
            "structured.ratio": self.structured_ratio,
            "prune.final_sparsity": self.final_sparsity,
            "prune.initial_sparsity": min(base.prune.initial_sparsity, self.final_sparsity),
            "prune.schedule": self.schedule,
            "compress.enabled": self.clusters > 0,
        }
        if self.clusters:
            overrides["compress.clusters"] = self.clusters
            overrides["compress.bitwidth"] = self.bitwidth
        return with_overrides(base, overrides, f"search point {self.label}")

    @property
    def label(self) -> str:
        clusters = f"{self.clusters} clusters" if self.clusters else "no clustering"
        if self.bitwidth:
            clusters += f" ({self.bitwidth}-bit LUT)"
        return (
            f"ratio {self.structured_ratio:g}, sparsity {self.final_sparsity:g}, {clusters}, "
            f"{self.schedule}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """The values each dimension may take (the study samples among them)."""

    ratios: tuple[float, ...] = RATIOS
    sparsities: tuple[float, ...] = SPARSITIES
    clusters: tuple[int, ...] = CLUSTERS
    schedules: tuple[str, ...] = ("polynomial",)
    bitwidths: tuple[int, ...] = (0,)

    def __post_init__(self):
        for name, values, ok, expected in (
            ("ratios", self.ratios, lambda v: 0 <= v < 1, "channel ratios in [0, 1)"),
            ("sparsities", self.sparsities, lambda v: 0 <= v < 1, "final sparsities in [0, 1)"),
            ("clusters", self.clusters, lambda v: v == 0 or 2 <= v <= 16, "0 or 2 to 16"),
            ("schedules", self.schedules, lambda v: v in SCHEDULES, f"one of {SCHEDULES}"),
            ("bitwidths", self.bitwidths, lambda v: v in BITWIDTHS, f"one of {BITWIDTHS}"),
        ):
            if not values or not all(ok(v) for v in values):
                raise ConfigError(f"--{name}: got {values!r}, expected {expected}")
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ConfigError(f"--{name}: {', '.join(map(str, repeated))} given more than once")
        if not self.specs():
            raise ConfigError(
                "--schedules rewind: rewinding needs channel ratio 0, which --ratios "
                f"{','.join(f'{r:g}' for r in self.ratios)} does not include"
            )

    def specs(self) -> list[PointSpec]:
        """Every distinct valid point of the space."""
        specs = {
            PointSpec(r, s, c, schedule, b)
            for schedule in self.schedules
            for r in self.ratios
            for s in self.sparsities
            for c in self.clusters
            for b in self.bitwidths
        }
        return sorted(s for s in specs if s.valid)

    def to_dict(self) -> dict[str, list]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class SearchPoint:
    """One built point. Sizes in bytes; scores are the data's metric on the held-out set.

    ``artifact``: the point's own pruned artifact (:func:`point_artifact`), whose figures these
    are; ``build_deploys``: what ``edge-prune model --config`` of this point deploys ("" when
    nothing qualifies; "float32-dense" when it falls back to the dense model). ``tflm_score``:
    the data's metric on TFLM (top-1 accuracy, or mean squared error for regression);
    ``loss``: how much worse than the dense float32 model (accuracy points, or the relative
    error increase). ``trusted``: the dense model and this artifact score above chance level.
    ``flash_needed_bytes``, ``ram_needed_bytes``, ``fits_*``: the artifact's footprint verdict
    on the target, as ``edge-prune model`` and ``report`` compute it. ``ms``, ``instructions``,
    ``within_time``: its time figure and whether it meets the time budget (a constraint like
    flash and RAM).
    """

    key: str
    structured_ratio: float
    final_sparsity: float
    clusters: int
    schedule: str
    measured_sparsity: float
    artifact: str
    build_deploys: str
    flatbuffer_bytes: int
    tflm_score: float
    loss: float
    arena_bytes: int
    runtime_flash_bytes: int
    flash_needed_bytes: int
    ram_needed_bytes: int
    within_tolerance: bool
    fits_flash: bool
    fits_ram: bool
    trusted: bool
    bitwidth: int = 0
    baseline_score: float = 0.0  # the dense model as float32 on TFLM
    int8_tflm_score: float | None = None  # the pruned model as int8 (dense storage) on TFLM
    seconds: float = 0.0
    ms: float | None = None  # time per inference on the target (timing.TimeFigure.ms)
    instructions: int | None = None  # per inference, from the calibrated per-op costs
    within_time: bool = True  # within the time budget (select.max_latency_ms, latency_ms)

    @property
    def spec(self) -> PointSpec:
        return PointSpec(
            self.structured_ratio, self.final_sparsity, self.clusters, self.schedule, self.bitwidth
        )

    @property
    def eligible(self) -> bool:
        fits = self.fits_flash and self.fits_ram and self.within_time
        return self.within_tolerance and fits and self.trusted

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eligible": self.eligible}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SearchPoint:
        """From a record :func:`edge_prune.search.cache.point_problem` accepted."""
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


class Choosable(Protocol):
    eligible: bool
    flash_needed_bytes: int | None
    ram_needed_bytes: int | None


def choose_point(points: Iterable[Choosable]) -> Choosable | None:
    """The point to deploy: least flash needed among those that fit flash and RAM within the
    tolerance (``eligible``); ties go to less RAM, then to the earlier point. None if none."""
    eligible = [p for p in points if p.eligible]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (p.flash_needed_bytes, p.ram_needed_bytes or 0))


@dataclass(frozen=True)
class SearchOptions:
    """How much to build and how: ``trials`` points, ``jobs`` local worker processes;
    ``storage``: an Optuna storage URL (None: the embedded journal under the cache directory);
    ``study``: the study name (None: one derived from the inputs, target, config and space);
    ``grid``: build every point of the space (``sweep``) instead of sampling it."""

    trials: int = 20
    jobs: int = 1
    space: SearchSpace = field(default_factory=SearchSpace)
    storage: str | None = None
    study: str | None = None
    grid: bool = False  # every point of the space, in a seeded order (Optuna's GridSampler)

    def __post_init__(self):
        for name in ("trials", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{name}: got {value!r}, expected an integer >= 1")
