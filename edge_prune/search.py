"""Search: the smallest model that fits a target within the tolerance of the dense model.

Optuna drives the search (:mod:`edge_prune.search_study`): a two-objective study (flash needed,
loss against the dense model) with the target's flash and RAM and the tolerance as constraints,
over the channel-removal ratio (``structured.ratio``), the final magnitude sparsity
(``prune.final_sparsity``), the cluster count (0 = clustering and LUT compression off), the
pruning schedule (``prune.schedule``: one-shot polynomial decay, iterative prune → fine-tune,
lottery-ticket rewinding) and the LUT index width (``compress.bitwidth``, 0 = the build weighs
every TFLM codec per tensor). Training is spent where it matters:

- the dense model, each channel-removal ratio's model and the rewinding point are made once per
  fingerprint (model, data, library versions, the config keys they depend on) and saved in
  Keras's own format under the cache directory (:mod:`edge_prune.search_cache`), so local
  workers and a later run load them instead of training again;
- each point runs the same stages as ``edge-prune model`` (:attr:`edge_prune.pipeline.Plan.point`,
  reseeded first, every artifact checked on TFLM) with its own config, so
  ``best.toml`` rebuilds the chosen point byte for byte.

A point's figures are those of its own pruned artifact (:func:`point_artifact`): the one the
build deploys, or when the build falls back to the dense float32 model (no pruned artifact
within the tolerance), the pruned artifact that loses least, so the table shows how far it
missed. Flash needed, RAM needed and the fit come from that artifact's footprint verdict, the
same figures ``edge-prune model`` and ``report`` give.

The chosen point (:func:`choose_point`, also used by ``sweep``): the least flash needed among
the points whose artifact runs on TFLM within the tolerance, scores above chance and fits the
target's flash and RAM.

Written to ``OUT/search-<target>/`` (staged, swapped in whole): ``pareto.md``, ``pareto.csv``,
``pareto.json``, ``pareto.png``, ``best.toml`` and ``best/`` (as ``build/<target>/``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_prune.artifacts import staged_directory
from edge_prune.config import PipelineConfig, with_overrides
from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.metrics import Metric
from edge_prune.pipeline import plan
from edge_prune.runner import Progress, quiet, run_stages, stderr_progress
from edge_prune.search_cache import (
    BadCacheEntry,
    load_model_entry,
    locked,
    read_point_entry,
    save_model_entry,
    write_point_entry,
)
from edge_prune.stages.state import ArtifactName, ModelKey
from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.stages import Artifact, BuildState, Inputs

__all__ = [
    "SCHEDULES",
    "PointSpec",
    "SearchOptions",
    "SearchPoint",
    "SearchResult",
    "SearchSpace",
    "choose_point",
    "write_search",
]

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
    on the target, as ``edge-prune model`` and ``report`` compute it.
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

    @property
    def spec(self) -> PointSpec:
        return PointSpec(
            self.structured_ratio, self.final_sparsity, self.clusters, self.schedule, self.bitwidth
        )

    @property
    def eligible(self) -> bool:
        return self.within_tolerance and self.fits_flash and self.fits_ram and self.trusted

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eligible": self.eligible}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SearchPoint:
        """From a record :func:`edge_prune.search_cache.point_problem` accepted."""
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


# ---------------------------------------------------------------------------------- shared


def _fingerprint(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if hasattr(part, "tobytes"):
            digest.update(str(part.shape).encode() + part.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def inputs_fingerprint(inputs: Inputs) -> str:
    """Model file, data and the versions of the libraries that train and convert."""
    from edge_prune.build_report import versions

    model = inputs.model_path
    model_digest = _file_digest(model) if model else "default-cnn"
    return _fingerprint(versions(), model_digest, inputs.allow_lambda, *inputs.data)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


class Workshop:
    """Makes, saves and loads the shared models, and builds points from them.

    Per process, each shared state (scores, the float32 baseline checked on TFLM, what channel
    removal did) is made once; the Keras models are loaded fresh for every point, so a point
    cannot change what the next one starts from.
    """

    def __init__(self, inputs: Inputs, cache: Path, progress: Progress):
        self.inputs, self.cache, self.progress = inputs, Path(cache), progress
        self.base_key = inputs_fingerprint(inputs)
        self._states: dict[str, tuple[BuildState, dict[str, Path]]] = {}
        self.model_name = ""

    def point_key(self, spec: PointSpec) -> str:
        config = spec.config(self.inputs.config)
        return _fingerprint(self.base_key, config.to_dict(), self.inputs.target.name)

    def point(self, spec: PointSpec) -> tuple[SearchPoint, str]:
        """The point (from its valid cache entry, else built) and "cached" or "built"."""
        key = self.point_key(spec)
        directory = self.point_dir(key)
        try:
            record = read_point_entry(directory, key, need_files=False)
        except BadCacheEntry as e:
            self.progress(f"WARNING: cache entry {e}; rebuilding it")
            record = None
        if record is not None:
            return SearchPoint.from_dict(record), "cached"
        return self.build(spec), "built"

    def point_dir(self, key: str) -> Path:
        return self.cache / "points" / key

    def build(self, spec: PointSpec) -> SearchPoint:
        """Run one point's stages in this process; write its cache entry."""
        from edge_prune.build_report import BuildReport
        from edge_prune.deploy import write_artifacts
        from edge_prune.model_io import load_saved_model

        start = time.perf_counter()
        config = spec.config(self.inputs.config)
        shared, paths = self._shared(config)
        models = {name: load_saved_model(path) for name, path in paths.items()}
        if shared.structured is not None:
            structured = replace(shared.structured, model=models[ModelKey.STRUCTURED])
            shared = replace(shared, structured=structured)
        state = replace(shared, models=models).with_config(config)
        state = run_stages(plan(config).point, state, quiet)
        key = self.point_key(spec)
        point = search_point(state, spec, key, round(time.perf_counter() - start, 1))
        with staged_directory(self.point_dir(key)) as staging:
            if state.choice is not None:
                write_artifacts(staging, state, BuildReport.from_state(state))
            write_point_entry(staging, point.to_dict())
        return point

    # -- shared models

    def _shared(self, config: PipelineConfig) -> tuple[BuildState, dict[str, Path]]:
        c = config
        dense_key = _fingerprint(self.base_key, c.train)
        ratio_key = _fingerprint(dense_key, c.structured, c.prune.learning_rate)
        rewind = c.prune.schedule == "rewind"
        key = f"{ratio_key}-{c.prune.rewind_epoch if rewind else ''}"
        if key not in self._states:
            self._states[key] = self._make_state(config, dense_key, ratio_key, rewind)
        return self._states[key]

    def _make_state(
        self, config: PipelineConfig, dense_key: str, ratio_key: str, rewind: bool
    ) -> tuple[BuildState, dict[str, Path]]:
        from edge_prune.stages.state import BuildState
        from edge_prune.stages.training import with_dense, with_structured

        shared = self.cache / "shared"
        paths = {ModelKey.DENSE: shared / f"dense-{dense_key}.keras"}
        dense_only = replace(config, structured=replace(config.structured, ratio=0.0))
        dense, meta = self._entry(paths[ModelKey.DENSE], lambda: self._train_dense(dense_only))
        state = BuildState(self.inputs).with_config(dense_only)
        state = with_dense(state, dense, str(meta.get("training", "")))
        state = run_stages(plan(config).baseline, state, quiet)
        self.model_name = state.model_name
        if config.structured.ratio > 0:
            paths[ModelKey.STRUCTURED] = shared / f"structured-{ratio_key}.keras"
            model, meta = self._entry(
                paths[ModelKey.STRUCTURED], lambda: self._train_structured(state, config)
            )
            result = replace(_structured_result(meta, model), model=None)
            state = with_structured(state, model, result)
        if rewind:
            epoch = config.prune.rewind_epoch
            paths[ModelKey.EARLY] = shared / f"early{epoch}-{dense_key}.keras"
            self._entry(paths[ModelKey.EARLY], lambda: self._train_early(dense_only, epoch))
        return replace(state, models={}), paths

    def _entry(self, path: Path, make) -> tuple[Any, dict[str, Any]]:
        """The model saved at ``path``; made by ``make() -> (model, meta)`` and saved when it
        is missing or bad (with a warning naming it). One process makes it, others wait."""
        with locked(path):
            try:
                entry = load_model_entry(path)
            except BadCacheEntry as e:
                self.progress(f"WARNING: cache entry {e}; making it again")
                entry = None
            if entry is None:
                model, meta = make()
                save_model_entry(path, model, meta)
                entry = load_model_entry(path)
        return entry

    def _train_dense(self, config: PipelineConfig):
        from edge_prune.stages.state import BuildState

        self.progress("  dense model")
        state = BuildState(self.inputs).with_config(config)
        state = run_stages(plan(config).dense, state, _indented(_indented(self.progress)))
        return state.models[ModelKey.DENSE], {"training": state.training}

    def _train_structured(self, dense: BuildState, config: PipelineConfig):
        self.progress(f"  structured model: {config.structured.ratio:.0%} of channels removed")
        state = run_stages(
            plan(config).channels, dense.with_config(config), _indented(self.progress)
        )
        return state.models[ModelKey.STRUCTURED], {"structured": state.structured.to_dict()}

    def _train_early(self, config: PipelineConfig, epoch: int):
        from edge_prune.stages.state import BuildState

        self.progress(f"  dense model at epoch {epoch} (rewinding point)")
        state = BuildState(self.inputs).with_config(config)
        state = run_stages(plan(config).early, state, quiet)
        return state.models[ModelKey.EARLY], {"epoch": epoch}


def _structured_result(meta: dict[str, Any], model):
    from edge_prune.structured import LayerChannels, SkippedLayer, StructuredPruneResult

    raw = meta.get("structured")
    try:
        return StructuredPruneResult(
            model=model,
            criterion=str(raw["criterion"]),
            layers=tuple(
                LayerChannels(
                    str(x["name"]),
                    int(x["kept"]),
                    int(x["total"]),
                    tuple(int(i) for i in x["kept_indices"]),
                    tuple(str(t) for t in x["tied_with"]),
                )
                for x in raw["layers"]
            ),
            skipped=tuple(SkippedLayer(str(x["name"]), str(x["reason"])) for x in raw["skipped"]),
            params_before=int(raw["params_before"]),
            params_after=int(raw["params_after"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BadCacheEntry(f"structured record: {type(e).__name__} {e}") from None


def _indented(progress: Progress) -> Progress:
    return lambda message: progress(f"  {message}")


def point_artifact(state: BuildState) -> Artifact:
    """The point's own artifact: the build's choice unless that is the dense float32 fallback;
    then the pruned artifact TFLM runs that loses least (ties: the smaller)."""
    if state.choice is not None and state.deployable.name != ArtifactName.FLOAT32_DENSE:
        return state.deployable
    runnable = [a for a in state.artifacts if a.verdict and a.name != ArtifactName.FLOAT32_DENSE]
    if not runnable:
        raise NoDeployableArtifactError(f"no pruned artifact runs on TFLM: {state.no_choice}")
    metric, baseline = state.metric, state.baseline_score

    def cost(a: Artifact) -> tuple:
        score = a.check.score
        loss = math.inf if score is None else metric.loss(baseline, score)
        return (loss, len(a.tflite_bytes))

    return min(runnable, key=cost)


def search_point(state: BuildState, spec: PointSpec, key: str, seconds: float) -> SearchPoint:
    """The figures of a built point (see :class:`SearchPoint`)."""
    from edge_prune.choose import _why_not

    artifact = point_artifact(state)
    metric, data = state.metric, state.inputs.data
    tolerance = metric.tolerance(state.config.select)
    verdict, score = artifact.verdict, artifact.check.score
    chance = metric.chance(data.y_train, data.y_test)
    at_chance = score is None or metric.no_better_than_chance(score, chance)
    return SearchPoint(
        key=key,
        structured_ratio=spec.structured_ratio,
        final_sparsity=spec.final_sparsity,
        clusters=spec.clusters,
        schedule=spec.schedule,
        bitwidth=spec.bitwidth,
        measured_sparsity=round(float(state.sparsity.sparsity), 6),
        artifact=artifact.name,
        build_deploys=state.deployable.name if state.choice is not None else "",
        flatbuffer_bytes=len(artifact.tflite_bytes),
        tflm_score=float(score) if score is not None else math.nan,
        loss=round(float(metric.loss(state.baseline_score, score)), 6),
        arena_bytes=verdict.arena_bytes,
        runtime_flash_bytes=verdict.runtime_flash.total_bytes,
        flash_needed_bytes=verdict.flash_needed_bytes,
        ram_needed_bytes=verdict.ram_needed_bytes,
        within_tolerance=_why_not(artifact.check, state.baseline_score, tolerance, metric) is None,
        fits_flash=verdict.fits_flash,
        fits_ram=verdict.fits_ram,
        trusted=not at_chance and state.untrustworthy is None,
        baseline_score=float(state.baseline_score),
        int8_tflm_score=state.artifact(ArtifactName.INT8).check.score,
        seconds=float(seconds),
    )


# ---------------------------------------------------------------------------------- search


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


# ---------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SearchResult:
    """A whole search: the points in the order built, the budgets, the choice."""

    target_name: str
    flash_bytes: int
    ram_bytes: int
    reserved_flash_bytes: int
    reserved_ram_bytes: int
    model_name: str
    data_source: str
    test_samples: int
    metric: Metric
    baseline_score: float  # the dense model as float32 on TFLM
    tolerance: float  # largest allowed loss: accuracy points, or relative error increase
    points: tuple[SearchPoint, ...]
    base_config: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    reused_points: int = 0
    seconds: float = 0.0
    study: dict[str, Any] = field(default_factory=dict)  # name, storage, trials by state
    kind: str = "search"  # or "sweep": every point of a fixed grid

    @property
    def best(self) -> SearchPoint | None:
        return choose_point(self.points)

    @property
    def pareto(self) -> tuple[SearchPoint, ...]:
        """Points no other point beats on flash, RAM and score at once."""
        return tuple(p for p in self.points if not any(_dominates(q, p) for q in self.points))

    def closest(self) -> SearchPoint | None:
        """The point that misses least: distance to the budget first (relative flash and RAM
        excess), then the loss beyond the tolerance."""
        return min(self.points, key=self.miss_score, default=None)

    def miss_score(self, p: SearchPoint) -> tuple[float, float]:
        flash, ram, loss = self.misses(p)
        return (flash / self.flash_bytes + ram / self.ram_bytes, loss)

    def misses(self, p: SearchPoint) -> tuple[int, int, float]:
        """(flash bytes over, RAM bytes over, loss beyond the tolerance)."""
        return (
            max(0, p.flash_needed_bytes - self.flash_bytes),
            max(0, p.ram_needed_bytes - self.ram_bytes),
            max(0.0, round(p.loss - self.tolerance, 4)),
        )

    def conclusion(self) -> str:
        best = self.best
        if best is not None:
            return (
                f"Smallest model for {self.target_name} within {self._tolerance_text()} of the "
                f"dense {self._baseline_text()}: {best.spec.label} → "
                f"{best.artifact}, {best.flatbuffer_bytes:,} B flatbuffer, flash needed "
                f"{best.flash_needed_bytes:,} B of {self.flash_bytes:,}, RAM needed "
                f"{best.ram_needed_bytes:,} B of {self.ram_bytes:,}, TFLM {self.metric.name} "
                f"{self.metric.format(best.tflm_score)}."
            )
        closest = self.closest()
        if closest is None:
            return f"No point was built for {self.target_name}."
        flash, ram, loss = self.misses(closest)
        untrusted = "" if closest.trusted else "; its score is at chance level"
        return (
            f"No point fits {self.target_name} within {self._tolerance_text()} of the dense "
            f"{self._baseline_text()}; closest: {closest.spec.label} ({closest.artifact}), "
            f"which misses by {flash:,} B flash, {ram:,} B RAM and "
            f"{self.metric.format_loss(loss).lstrip('+')} of {self.metric.name}{untrusted}."
        )

    def _tolerance_text(self) -> str:
        return self.metric.format_tolerance(self.tolerance)

    def _baseline_text(self) -> str:
        return f"{self.metric.name} ({self.metric.format(self.baseline_score)})"

    def score_limit(self) -> float:
        """The worst TFLM score within the tolerance."""
        if self.metric.higher_is_better:
            return self.baseline_score - self.tolerance / 100.0
        return self.baseline_score * (1.0 + self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        best, front = self.best, self.pareto
        return {
            "target": self.target_name,
            "model": self.model_name,
            "data": {"source": self.data_source, "test_samples": self.test_samples},
            "metric": {"key": self.metric.key, "name": self.metric.name},
            "baseline_score": self.baseline_score,
            "tolerance": self.tolerance,
            "tolerance_what": self._tolerance_text(),
            "budget": {
                "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes,
                "reserved_flash_bytes": self.reserved_flash_bytes,
                "reserved_ram_bytes": self.reserved_ram_bytes,
            },
            "rule": "least flash needed among points within the tolerance that fit flash and RAM",
            "best": None if best is None else best.to_dict(),
            "conclusion": self.conclusion(),
            "points": [{**p.to_dict(), "pareto": p in front} for p in self.points],
            "base_config": self.base_config,
            "trials": self.trials,
            "study": self.study,
            "timings": {"seconds": self.seconds, "reused_points": self.reused_points},
        }


def _dominates(q: SearchPoint, p: SearchPoint) -> bool:
    no_worse = (
        q.flash_needed_bytes <= p.flash_needed_bytes
        and q.ram_needed_bytes <= p.ram_needed_bytes
        and q.loss <= p.loss
    )
    better = (
        q.flash_needed_bytes < p.flash_needed_bytes
        or q.ram_needed_bytes < p.ram_needed_bytes
        or q.loss < p.loss
    )
    return no_worse and better


# ---------------------------------------------------------------------------------- output


def _columns(result: SearchResult) -> tuple:
    metric = result.metric
    return (
        ("ratio", lambda p: f"{p.structured_ratio:g}"),
        ("sparsity", lambda p: f"{p.final_sparsity:g}"),
        ("clusters", lambda p: str(p.clusters) if p.clusters else "off"),
        ("schedule", lambda p: p.schedule),
        ("artifact", lambda p: p.artifact),
        ("flatbuffer B", lambda p: f"{p.flatbuffer_bytes:,}"),
        ("arena B", lambda p: f"{p.arena_bytes:,}"),
        ("flash needed B", lambda p: f"{p.flash_needed_bytes:,}"),
        ("RAM needed B", lambda p: f"{p.ram_needed_bytes:,}"),
        (f"TFLM {metric.name}", lambda p: metric.format(p.tflm_score)),
        ("loss", lambda p: metric.format_loss(p.loss)),
        ("fits", lambda p: "yes" if p.eligible else ("no" if p.trusted else "no (chance)")),
    )


def render_markdown(result: SearchResult) -> str:
    best, front, metric = result.best, result.pareto, result.metric
    columns = _columns(result)
    header = [name for name, _ in columns] + ["pareto", "mark"]
    ordered = sorted(result.points, key=lambda p: (p.flash_needed_bytes, p.ram_needed_bytes))
    rows = [
        [cell(p) for _, cell in columns]
        + ["yes" if p in front else "", "<- chosen" if p is best else ""]
        for p in ordered
    ]
    lines = [
        f"# edge-prune {result.kind}: {result.model_name} on {result.target_name}",
        "",
        f"**{result.conclusion()}**",
        "",
        *table_lines(header, rows, markdown=True),
        "",
        f"- {metric.name} on TFLM over {result.test_samples} held-out samples of "
        f"{result.data_source}; baseline {metric.format(result.baseline_score)} (the dense "
        f"model as float32 on TFLM); tolerance {result._tolerance_text()}; loss = how much "
        "worse than the baseline.",
        f"- flash needed = flatbuffer + TFLM runtime code + reserved flash "
        f"({result.reserved_flash_bytes:,} B) vs {result.flash_bytes:,} B; RAM needed = "
        "tensor arena on a 32-bit Cortex-M (the verdict's figure, derived from TFLM's "
        f"recorded allocations) + reserved RAM ({result.reserved_ram_bytes:,} B) vs "
        f"{result.ram_bytes:,} B.",
        "- chosen: least flash needed among the points within the tolerance that fit flash "
        "and RAM and score above chance level; pareto: no other point has less flash, less RAM "
        "and a smaller loss at once.",
        f"- {len(result.points)} points ({result.reused_points} from the cache) in "
        f"{result.seconds:.0f} s; Optuna study {result.study.get('name', '?')!r}.",
    ]
    fallbacks = [p for p in result.points if p.build_deploys == ArtifactName.FLOAT32_DENSE]
    if fallbacks:
        lines.append(
            f"- {len(fallbacks)} point(s) have no pruned artifact within the tolerance: their "
            "row shows the pruned artifact that loses least (how far it misses); "
            "`edge-prune model` of such a point would deploy the dense float32 model instead."
        )
    return "\n".join(lines) + "\n"


def render_csv(result: SearchResult) -> str:
    buffer = io.StringIO()
    names = [*(f.name for f in fields(SearchPoint)), "eligible", "pareto", "chosen"]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    best, front = result.best, result.pareto
    for p in result.points:
        writer.writerow({**p.to_dict(), "pareto": p in front, "chosen": p is best})
    return buffer.getvalue()


def render_plot(result: SearchResult) -> bytes:
    """``pareto.png``: flash needed vs TFLM score and RAM needed vs TFLM score, one dot per
    point. The feasible band (within that budget and the tolerance) is shaded in each panel; a
    point drawn in it that misses the *other* budget is a cross labelled so; the chosen point
    is starred. The score axis spans the tolerance band and the points near it
    (:func:`score_axis`); a point beyond it is drawn at its edge as an open triangle. The legend
    sits below the panels, off the points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 5.4), dpi=110)
    FigureCanvasAgg(figure)
    metric = result.metric
    scale = 100.0 if metric.key == "accuracy" else 1.0
    limit = result.score_limit() * scale
    low, high = score_axis(result)
    edge = high if metric.higher_is_better else low
    panels = (
        ("flash needed (KiB)", "flash_needed_bytes", result.flash_bytes, "flash", "RAM"),
        ("RAM needed (KiB)", "ram_needed_bytes", result.ram_bytes, "RAM", "flash"),
    )
    handles: dict[str, Any] = {}
    for index, (label, attribute, budget, what, other) in enumerate(panels, 1):
        axis = figure.add_subplot(1, 2, index)
        levels = (scale, limit, edge, low, high)
        _plot_panel(axis, result, attribute, budget, what, other, levels, handles)
        xs = [getattr(p, attribute) / 1024 for p in result.points] or [1.0]
        right = max(max(xs), budget / 1024) * 1.1
        if right > 20 * min(xs):  # a roomy part: a log axis keeps the points apart
            axis.set_xscale("log")
            axis.set_xlim(min(xs) * 0.8, right)
        else:
            axis.set_xlim(0, right)
        axis.set_ylim(low, high)
        axis.set_xlabel(label)
        unit = " (%)" if metric.key == "accuracy" else ""
        axis.set_ylabel(f"{metric.name} on TFLM{unit}")
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=8)
    figure.suptitle(f"edge-prune {result.kind}: {result.model_name} on {result.target_name}")
    figure.subplots_adjust(bottom=0.26, wspace=0.25)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def score_axis(result: SearchResult) -> tuple[float, float]:
    """The score axis of the plot (percent for accuracy): the tolerance band (baseline to the
    tolerance limit) and the points within three band widths beyond the limit, plus a margin.
    Points further out are drawn at the axis edge, so that one failed point does not squash
    the band where the choice is made."""
    scale = 100.0 if result.metric.key == "accuracy" else 1.0
    baseline, limit = result.baseline_score * scale, result.score_limit() * scale
    band = abs(baseline - limit) or abs(baseline) * 0.01 or 1.0
    worse = -1.0 if result.metric.higher_is_better else 1.0
    far = limit + worse * 3 * band
    scores = [p.tflm_score * scale for p in result.points if math.isfinite(p.tflm_score)]
    shown = [s for s in scores if (s - far) * worse <= 0] + [baseline, limit]
    margin = (max(shown) - min(shown)) * 0.08 or band
    return min(shown) - margin, max(shown) + margin


def _plot_panel(axis, result, attribute, budget, what, other, levels, handles) -> None:
    scale, limit, edge, low, high = levels
    inset = (high - low) * 0.02

    def y(p: SearchPoint) -> float:  # a score beyond the axis is drawn at its edge
        return min(max(p.tflm_score * scale, low + inset), high - inset)

    best = result.best
    fits_other = {"flash": lambda p: p.fits_flash, "RAM": lambda p: p.fits_ram}[other]
    groups = (
        ("fits", "tab:green", "o", lambda p: p.eligible),
        (f"misses {other} (see the {other} panel)", "tab:purple", "x", lambda p: not fits_other(p)),
        ("misses", "tab:gray", "o", lambda p: True),
    )
    left = list(result.points)
    for name, colour, marker, member in groups:
        group = [p for p in left if member(p)]
        left = [p for p in left if p not in group]
        if group:
            handles[name] = axis.scatter(
                [getattr(p, attribute) / 1024 for p in group],
                [y(p) for p in group],
                color=colour,
                marker=marker,
                s=26,
            )
    beyond = [
        p
        for p in result.points
        if math.isfinite(p.tflm_score) and not low + inset <= p.tflm_score * scale <= high - inset
    ]
    if beyond:
        handles["score off the axis (drawn at its edge)"] = axis.scatter(
            [getattr(p, attribute) / 1024 for p in beyond],
            [y(p) for p in beyond],
            facecolors="none",
            edgecolors="black",
            marker="v" if result.metric.higher_is_better else "^",
            s=70,
        )
    if budget > 0:
        xs = [getattr(p, attribute) / 1024 for p in result.points] or [budget / 1024]
        area = [min(min(xs), budget / 1024) * 0.5, budget / 1024]
        handles["feasible band"] = axis.fill_between(
            area, limit, edge, color="tab:green", alpha=0.08
        )
        handles[f"part {what}"] = axis.axvline(budget / 1024, color="tab:orange")
    handles["tolerance limit"] = axis.axhline(limit, color="tab:red", linestyle=":")
    if best is not None:
        handles["chosen"] = axis.scatter(
            [getattr(best, attribute) / 1024],
            [y(best)],
            marker="*",
            s=220,
            color="tab:red",
            zorder=3,
        )


def config_toml(config: PipelineConfig) -> str:
    """``config`` as a TOML file for ``edge-prune model --config``: the keys the user or the
    search set, and the others commented out with their defaults (a key that is set can change
    what the pipeline does, e.g. whether a loaded trained model is trained again)."""
    lines = ["# written by edge-prune search: edge-prune model --config best.toml reproduces it"]
    for section, values in config.to_dict().items():
        lines += ["", f"[{section}]"]
        for key, value in values.items():
            line = f"{key} = {_toml_value(value)}"
            lines.append(line if config.is_set(f"{section}.{key}") else f"# {line} (default)")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"cannot write {value!r} to TOML")
    if isinstance(value, tuple | list):  # prune.block
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_search(
    result: SearchResult,
    point_dirs: dict[str, Path],
    out_dir: str | Path,
    base_config: PipelineConfig,
    progress: Progress = stderr_progress,
) -> Path:
    """Write ``out_dir/<kind>-<target>/`` in one swap; returns it. ``base_config``: the config
    the search started from (``best.toml`` is it with the chosen point's values). A search
    writes ``pareto.*``, a sweep ``sweep.*``."""
    destination = Path(out_dir) / f"{result.kind}-{result.target_name}"
    stem = "pareto" if result.kind == "search" else result.kind
    best = result.best
    with staged_directory(destination) as staging:
        (staging / f"{stem}.md").write_text(render_markdown(result))
        (staging / f"{stem}.csv").write_text(render_csv(result))
        (staging / f"{stem}.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        try:
            (staging / f"{stem}.png").write_bytes(render_plot(result))
        except ImportError:
            progress(f"{stem}.png skipped: matplotlib is not installed (pip install matplotlib)")
        if best is not None:
            (staging / "best.toml").write_text(config_toml(best.spec.config(base_config)))
            shutil.copytree(point_dirs[best.key], staging / "best")
            (staging / "best" / "point.json").unlink()
    return destination
