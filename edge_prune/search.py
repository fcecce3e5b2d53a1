"""Search: the smallest model that fits a target within the tolerance of the dense model.

The search varies the channel-removal ratio (``structured.ratio``), the final magnitude
sparsity (``prune.final_sparsity``), the cluster count (0 = clustering and LUT compression off)
and the pruning schedule (one-shot polynomial decay, iterative prune → fine-tune, lottery-ticket
rewinding). Training is spent where it matters:

- the dense model and its float32 baseline are made once, each channel-removal ratio's model
  once (saved with ``model.save`` under the cache directory, so parallel workers and a later
  run load them instead of training again);
- a coarse grid is built first, then rounds of neighbours (one step along each dimension's
  ladder) of the two best points, until ``trials`` points are built or no neighbour is new.

Each point runs the same stages as ``edge-prune model`` (:data:`edge_prune.pipeline.POINT_STAGES`
after seeding, every artifact checked on TFLM) with its own config, so ``best.toml`` rebuilds the
chosen point byte for byte. The chosen point (:func:`choose_point`, also used by ``sweep``): the
least flash needed among the points whose deployable artifact runs on TFLM within the tolerance
and fits the target's flash and RAM.

Written to ``OUT/search-<target>/`` (staged, swapped in whole): ``pareto.md``, ``pareto.csv``,
``pareto.json``, ``pareto.png``, ``best.toml`` and ``best/`` (as ``build/<target>/``). Points
already built are kept in ``OUT/search-<target>.cache/`` keyed by their config, model, data and
target: an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pickle
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_prune.artifacts import staged_directory, write_atomic
from edge_prune.config import PipelineConfig, with_overrides
from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.metrics import Metric
from edge_prune.pipeline import BASELINE, SEED, STRUCTURED, TRAIN
from edge_prune.runner import Progress, Stage, quiet, run_stages, stderr_progress
from edge_prune.tables import table_lines

if TYPE_CHECKING:
    from edge_prune.pipeline import BuildState, Inputs

__all__ = [
    "SCHEDULES",
    "PointSpec",
    "SearchPoint",
    "SearchResult",
    "SearchSpace",
    "choose_point",
    "run_search",
    "write_search",
]

SCHEDULES = ("polynomial", "iterative", "rewind")
# Ladders the refinement steps along (sorted); the coarse grid is a subset of each.
RATIO_LADDER = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875)
SPARSITY_LADDER = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
CLUSTER_LADDER = (0, 16, 8, 4)  # 0: clustering off; then fewer values = smaller LUT index
REWIND_EPOCH = 1  # Frankle et al. (ICML 2020) rewind to an early epoch rather than to init
ITERATIVE_STEPS = 3


# ---------------------------------------------------------------------------------- points


@dataclass(frozen=True, order=True)
class PointSpec:
    """One point of the search: what it changes in the pipeline config."""

    structured_ratio: float
    final_sparsity: float
    clusters: int  # 0: clustering and LUT compression off
    schedule: str = "polynomial"

    def config(self, base: PipelineConfig) -> PipelineConfig:
        """``base`` with this point's values (``compress.bitwidth`` widened if it cannot hold
        the clusters)."""
        overrides: dict[str, Any] = {
            "structured.ratio": self.structured_ratio,
            "prune.final_sparsity": self.final_sparsity,
            "prune.initial_sparsity": min(base.prune.initial_sparsity, self.final_sparsity),
            "compress.enabled": self.clusters > 0,
        }
        if self.clusters:
            overrides["compress.clusters"] = self.clusters
            if base.compress.bitwidth and self.clusters > 2**base.compress.bitwidth:
                overrides["compress.bitwidth"] = 0
        return with_overrides(base, overrides, f"search point {self.label}")

    @property
    def label(self) -> str:
        clusters = f"{self.clusters} clusters" if self.clusters else "no clustering"
        return (
            f"ratio {self.structured_ratio:g}, sparsity {self.final_sparsity:g}, {clusters}, "
            f"{self.schedule}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """The coarse grid and the ladders refinement steps along."""

    ratios: tuple[float, ...] = (0.0, 0.5, 0.75)
    sparsities: tuple[float, ...] = (0.5, 0.8)
    clusters: tuple[int, ...] = (0, 8)
    schedules: tuple[str, ...] = ("polynomial",)

    def __post_init__(self):
        for name, values, ok, expected in (
            ("ratios", self.ratios, lambda v: 0 <= v < 1, "fractions in [0, 1)"),
            ("sparsities", self.sparsities, lambda v: 0 <= v < 1, "fractions in [0, 1)"),
            ("clusters", self.clusters, lambda v: v == 0 or 2 <= v <= 16, "0 or 2 to 16"),
            ("schedules", self.schedules, lambda v: v in SCHEDULES, f"one of {SCHEDULES}"),
        ):
            if not values or not all(ok(v) for v in values):
                raise ConfigError(f"search {name}: got {values!r}, expected {expected}")

    def ladder(self, name: str) -> tuple:
        base = {"structured_ratio": RATIO_LADDER, "final_sparsity": SPARSITY_LADDER}
        base["clusters"] = CLUSTER_LADDER
        own = {"structured_ratio": self.ratios, "final_sparsity": self.sparsities}
        own["clusters"] = self.clusters
        if name == "clusters":
            values = list(dict.fromkeys((*CLUSTER_LADDER, *self.clusters)))
            return tuple([0, *sorted((v for v in values if v), reverse=True)])
        return tuple(sorted(set(base[name]) | set(own[name])))

    def coarse(self) -> list[PointSpec]:
        specs = [
            PointSpec(r, s, c, schedule)
            for schedule in self.schedules
            for r in self.ratios
            for s in self.sparsities
            for c in self.clusters
        ]
        return [s for s in specs if _valid(s)]


def _valid(spec: PointSpec) -> bool:
    # Rewinding resets to the dense model's early weights: only without channel removal.
    return not (spec.schedule == "rewind" and spec.structured_ratio > 0)


@dataclass(frozen=True)
class SearchPoint:
    """One built point. Sizes in bytes; accuracies are top-1 fractions on the held-out set.

    ``deployable`` is the artifact chosen as ``edge-prune model`` chooses it. When no artifact
    runs on TFLM within the tolerance, the figures are those of the best-scoring artifact that
    runs (``within_tolerance`` False). ``tflm_score``: the data's metric on TFLM (top-1 accuracy,
    or mean squared error for regression); ``loss``: how much worse than the dense float32 model
    (accuracy points, or the relative error increase). ``trusted``: the pipeline's check against
    chance level passed. ``flash_needed_bytes`` = flatbuffer + TFLM runtime code + reserved
    flash; ``ram_needed_bytes`` = TFLM arena (64-bit host) + reserved RAM.
    """

    key: str
    structured_ratio: float
    final_sparsity: float
    clusters: int
    schedule: str
    measured_sparsity: float
    deployable: str
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
    int8_tflm_score: float | None = None  # the pruned model as int8 (dense storage) on TFLM
    seconds: float = 0.0

    @property
    def spec(self) -> PointSpec:
        return PointSpec(self.structured_ratio, self.final_sparsity, self.clusters, self.schedule)

    @property
    def eligible(self) -> bool:
        return self.within_tolerance and self.fits_flash and self.fits_ram and self.trusted

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eligible": self.eligible}


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

    @property
    def best(self) -> SearchPoint | None:
        return choose_point(self.points)

    @property
    def ram_budget_bytes(self) -> int:
        """RAM left for the TFLM arena: part RAM - reserved RAM."""
        return self.ram_bytes - self.reserved_ram_bytes

    @property
    def flash_budget_bytes(self) -> int:
        """Flash left for the flatbuffer: part flash - reserved - TFLM runtime code (the largest
        runtime figure of the points: the line is conservative)."""
        runtime = max((p.runtime_flash_bytes for p in self.points), default=0)
        return self.flash_bytes - self.reserved_flash_bytes - runtime

    @property
    def pareto(self) -> tuple[SearchPoint, ...]:
        """Points no other point beats on flash, RAM and score at once."""
        return tuple(p for p in self.points if not any(_dominates(q, p) for q in self.points))

    def closest(self) -> SearchPoint | None:
        """The point that misses least: relative flash and RAM excess plus the loss beyond the
        tolerance (in hundredths of accuracy points, or of the relative error)."""
        return min(self.points, key=self._miss_score, default=None)

    def _miss_score(self, p: SearchPoint) -> float:
        flash, ram, loss = self.misses(p)
        scale = 100.0 if self.metric.key == "accuracy" else 1.0
        return flash / self.flash_bytes + ram / self.ram_bytes + loss / scale

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
                f"{best.deployable}, {best.flatbuffer_bytes:,} B flatbuffer, flash needed "
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
            f"{self._baseline_text()}; closest: {closest.spec.label} ({closest.deployable}), "
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
                "flash_for_flatbuffer_bytes": self.flash_budget_bytes,
                "ram_for_arena_bytes": self.ram_budget_bytes,
            },
            "rule": "least flash needed among points within the tolerance that fit flash and RAM",
            "best": None if best is None else best.to_dict(),
            "conclusion": self.conclusion(),
            "points": [{**p.to_dict(), "pareto": p in front} for p in self.points],
            "base_config": self.base_config,
            "trials": self.trials,
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


# ---------------------------------------------------------------------------------- stages


def _iterative_prune_stage(state: BuildState, progress: Progress) -> BuildState:
    """Prune → fine-tune in :data:`ITERATIVE_STEPS` steps of equal density ratio, in the epochs
    the one-shot schedule uses (``prune.epochs``)."""
    from edge_prune.prune import prune_in_stages, sparsity_report
    from edge_prune.train import copy_model, keras_score, loss_for, metrics_for

    config, data = state.config, state.inputs.data
    p = config.prune
    density = 1.0 - p.final_sparsity
    targets = [round(1.0 - density ** ((i + 1) / ITERATIVE_STEPS), 4) for i in range(3)]
    targets = sorted(set(t for t in targets if t > 0)) or [p.final_sparsity]
    per_step = max(2, p.epochs // len(targets))
    staged = prune_in_stages(
        copy_model(state.base),
        targets,
        loss=loss_for(state.base, data),
        metrics=metrics_for(data),
        x=data.x_train,
        y=data.y_train,
        batch_size=config.train.batch_size,
        prune_epochs=per_step // 2,
        fine_tune_epochs=per_step - per_step // 2,
        learning_rate=p.learning_rate,
        fine_tune_learning_rate=p.learning_rate / 10,
    )
    pruned = staged.model
    sparsity = sparsity_report(pruned)
    score = keras_score(pruned, data)
    progress(
        f"  iterative {targets}: {sparsity.sparsity:.1%} sparse, Keras {state.metric.name} "
        f"{state.metric.format(score)}"
    )
    return replace(
        state,
        models={**state.models, "pruned": pruned},
        sparsity=sparsity,
        scores={**state.scores, "pruned_keras": score},
    )


ITERATIVE_PRUNE = Stage(
    "prune",
    _iterative_prune_stage,
    lambda s: f"iterative pruning to {s.config.prune.final_sparsity:.0%} (prune → fine-tune)",
)


def point_stages(schedule: str) -> tuple[Stage, ...]:
    """The stage list of one point: ``POINT_STAGES`` with the schedule's pruning stage."""
    from edge_prune.pipeline import POINT_STAGES
    from edge_prune.rewind import REWIND

    stages = list(POINT_STAGES)
    at = next(i for i, s in enumerate(stages) if s.name == "prune")
    if schedule == "iterative":
        stages[at] = ITERATIVE_PRUNE
    elif schedule == "rewind":
        stages.insert(at + 1, REWIND)
    return tuple(stages)


# ---------------------------------------------------------------------------------- shared


@dataclass(frozen=True)
class _Shared:
    """What the shared stages made, without Keras models (picklable), and where they are."""

    state: BuildState  # models={}, structured.model=None
    model_paths: dict[str, str]


def _fingerprint(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if hasattr(part, "tobytes"):
            digest.update(str(part.shape).encode() + part.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _inputs_fingerprint(inputs: Inputs) -> str:
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


class _Workshop:
    """Makes and caches the shared models: the dense one once, each ratio's once."""

    def __init__(self, inputs: Inputs, cache: Path, progress: Progress):
        self.inputs, self.cache, self.progress = inputs, cache, progress
        self.base_key = _inputs_fingerprint(inputs)
        self._dense: BuildState | None = None
        self._shared: dict[tuple[float, bool], _Shared] = {}
        self.model_name = ""

    def shared(self, spec: PointSpec, config: PipelineConfig) -> _Shared:
        key = (spec.structured_ratio, spec.schedule == "rewind")
        if key not in self._shared:
            self._shared[key] = self._load_or_make(config, rewind=key[1])
        return self._shared[key]

    def _load_or_make(self, config: PipelineConfig, rewind: bool) -> _Shared:
        c = config
        dense_key = _fingerprint(self.base_key, c.train)
        ratio_key = _fingerprint(
            dense_key, c.structured, c.prune.learning_rate, c.select, self.inputs.target.name
        )
        record = self.cache / "shared" / f"{ratio_key}.pkl"
        paths = {"dense": self.cache / "shared" / f"dense-{dense_key}.keras"}
        if c.structured.ratio > 0:
            paths["structured"] = self.cache / "shared" / f"structured-{ratio_key}.keras"
        if rewind:
            paths["early"] = self.cache / "shared" / f"early{REWIND_EPOCH}-{dense_key}.keras"
        if not (record.exists() and all(p.exists() for p in paths.values())):
            self._make(config, record, paths)
        state, self.model_name = pickle.loads(record.read_bytes())
        return _Shared(replace(state, inputs=self.inputs), {k: str(v) for k, v in paths.items()})

    def _make(self, config: PipelineConfig, record: Path, paths: dict[str, Path]) -> None:
        dense = self._dense_state(config)
        say = _indented(self.progress)
        if "structured" in paths:
            say(f"structured model: {config.structured.ratio:.0%} of channels removed")
        state = run_stages(RATIO_STAGES, dense.with_config(config), _indented(say))
        for name in ("dense", "structured"):
            if name in paths and not paths[name].exists():
                _save_model(state.models[name], paths[name])
        if "early" in paths and not paths["early"].exists():
            from edge_prune.rewind import early_model

            _save_model(early_model(state.inputs, REWIND_EPOCH, quiet), paths["early"])
        structured = state.structured and replace(state.structured, model=None)
        light = replace(state, models={}, structured=structured, inputs=None)
        write_atomic(record, pickle.dumps((light, state.model_name)))

    def _dense_state(self, config: PipelineConfig) -> BuildState:
        from edge_prune.pipeline import BuildState

        if self._dense is None:
            self.progress("  dense model and float32 baseline")
            dense_only = replace(config, structured=replace(config.structured, ratio=0.0))
            state = BuildState(self.inputs).with_config(dense_only)
            self._dense = run_stages(DENSE_STAGES, state, _indented(_indented(self.progress)))
            d = self._dense
            self.progress(
                f"  dense {d.metric.name}: Keras {d.metric.format(d.scores['dense_keras'])}, "
                f"float32 on TFLM {d.metric.format(d.baseline_score)}"
            )
        return self._dense


DENSE_STAGES = (TRAIN, BASELINE)
# Reseeded before channel removal, as each point is before pruning: a ratio's model does not
# depend on which ratios were made before it in the same process.
RATIO_STAGES = (SEED, STRUCTURED)


def _save_model(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)


def _indented(progress: Progress) -> Progress:
    return lambda message: progress(f"  {message}")


# ---------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class _PointTask:
    spec: PointSpec
    config: PipelineConfig
    key: str
    shared: _Shared
    inputs: Inputs
    point_dir: str


def _build_point(task: _PointTask) -> SearchPoint:
    """Run one point's stages (in this process or a spawned worker); write its cache entry."""
    from edge_prune.build_report import report_dict
    from edge_prune.deploy import write_artifacts
    from edge_prune.model_io import load_saved_model

    start = time.perf_counter()
    models = {name: load_saved_model(path) for name, path in task.shared.model_paths.items()}
    shared = task.shared.state
    if shared.structured is not None:
        structured = replace(shared.structured, model=models["structured"])
        shared = replace(shared, structured=structured)
    state = replace(shared, inputs=task.inputs, models=models).with_config(task.config)
    state = run_stages(point_stages(task.spec.schedule), state, quiet)
    point = _search_point(state, task, round(time.perf_counter() - start, 1))
    directory = Path(task.point_dir)
    with staged_directory(directory) as staging:
        if state.choice is not None:
            write_artifacts(staging, state, report_dict(state))
        (staging / "point.json").write_text(json.dumps(point.to_dict(), indent=2) + "\n")
    return point


def _search_point(state: BuildState, task: _PointTask, seconds: float) -> SearchPoint:
    if state.choice is not None:
        chosen = state.deployable
    else:  # nothing within the tolerance: report the best-scoring artifact TFLM runs
        runnable = [a for a in state.artifacts if a.verdict and a.name != "float32-dense"]
        if not runnable:
            raise NoDeployableArtifactError(f"search point {task.spec.label}: {state.no_choice}")
        metric = state.metric
        chosen = min(runnable, key=lambda a: metric.loss(state.baseline_score, a.check.score))
    verdict = chosen.verdict
    score = chosen.check.score
    spec = task.spec
    return SearchPoint(
        key=task.key,
        structured_ratio=spec.structured_ratio,
        final_sparsity=spec.final_sparsity,
        clusters=spec.clusters,
        schedule=spec.schedule,
        measured_sparsity=round(state.sparsity.sparsity, 6),
        deployable=chosen.name,
        flatbuffer_bytes=len(chosen.tflite_bytes),
        tflm_score=score,
        loss=round(float(state.metric.loss(state.baseline_score, score)), 6),
        arena_bytes=verdict.arena_bytes,
        runtime_flash_bytes=verdict.runtime_flash.total_bytes,
        flash_needed_bytes=verdict.flash_needed_bytes,
        ram_needed_bytes=verdict.ram_needed_bytes,
        within_tolerance=state.choice is not None,
        fits_flash=verdict.fits_flash,
        fits_ram=verdict.fits_ram,
        trusted=state.untrustworthy is None,
        int8_tflm_score=state.artifact("int8").check.score,
        seconds=seconds,
    )


def _cached_point(point_dir: Path) -> SearchPoint | None:
    record = point_dir / "point.json"
    if not record.exists():
        return None
    raw = json.loads(record.read_text())
    return SearchPoint(**{f.name: raw[f.name] for f in fields(SearchPoint) if f.name in raw})


# ---------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchOptions:
    """How much to build and how: ``trials`` points at most, ``jobs`` worker processes."""

    trials: int = 20
    jobs: int = 1
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self):
        for name in ("trials", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{name}: got {value!r}, expected an integer >= 1")


def run_search(
    inputs: Inputs,
    options: SearchOptions,
    cache_dir: str | Path,
    progress: Progress = stderr_progress,
) -> tuple[SearchResult, dict[str, Path]]:
    """Build up to ``options.trials`` points (coarse grid, then refinement); see the module
    docstring. Returns the result and each point's cache directory by key."""
    from edge_prune.metrics import metric_for

    start = time.perf_counter()
    metric = metric_for(inputs.data.y_train)
    cache = Path(cache_dir)
    workshop = _Workshop(inputs, cache, progress)
    space = options.space
    built: dict[PointSpec, SearchPoint] = {}
    dirs: dict[str, Path] = {}
    reused = 0
    baseline: list[float] = []
    progress(
        f"edge-prune search: up to {options.trials} points on {inputs.data.source} for "
        f"{inputs.target.name}, {options.jobs} job(s)"
    )
    batch = space.coarse()[: options.trials]
    while batch:
        tasks = [_task(inputs, workshop, spec, cache) for spec in batch]
        baseline.append(tasks[0].shared.state.baseline_score)
        todo = []
        for task in tasks:
            cached = _cached_point(Path(task.point_dir))
            dirs[task.key] = Path(task.point_dir)
            if cached is None:
                todo.append(task)
            else:
                built[task.spec], reused = cached, reused + 1
                _report(progress, built, cached, options.trials, start, "cached")
        for task, point in zip(todo, _run_tasks(todo, options.jobs), strict=True):
            built[task.spec] = point
            _report(progress, built, point, options.trials, start, "built")
        batch = _refine(built, space, options.trials - len(built))
    result = SearchResult(
        target_name=inputs.target.name,
        flash_bytes=inputs.target.flash_bytes,
        ram_bytes=inputs.target.ram_bytes,
        reserved_flash_bytes=inputs.target.reserved_flash_bytes,
        reserved_ram_bytes=inputs.target.reserved_ram_bytes,
        model_name=workshop.model_name,
        data_source=inputs.data.source,
        test_samples=int(len(inputs.data.y_test)),
        metric=metric,
        baseline_score=baseline[0] if baseline else 0.0,
        tolerance=metric.tolerance(inputs.config.select),
        points=tuple(built.values()),
        base_config=inputs.config.to_dict(),
        trials=options.trials,
        reused_points=reused,
        seconds=round(time.perf_counter() - start, 1),
    )
    return result, dirs


def _task(inputs: Inputs, workshop: _Workshop, spec: PointSpec, cache: Path) -> _PointTask:
    config = spec.config(inputs.config)
    key = _fingerprint(
        workshop.base_key, config.to_dict(), spec.schedule, asdict(inputs.target), REWIND_EPOCH
    )
    shared = workshop.shared(spec, config)
    return _PointTask(spec, config, key, shared, inputs, str(cache / "points" / key))


def _run_tasks(tasks: Sequence[_PointTask], jobs: int) -> Iterable[SearchPoint]:
    """Points in order; with ``jobs`` > 1 in spawned processes (each reseeds per point)."""
    if jobs == 1 or len(tasks) <= 1:
        return (_build_point(t) for t in tasks)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
        return list(pool.map(_build_point, tasks))


def _report(
    progress: Progress,
    built: dict[PointSpec, SearchPoint],
    point: SearchPoint,
    trials: int,
    start: float,
    how: str,
) -> None:
    best = choose_point(built.values())
    elapsed = time.perf_counter() - start
    left = elapsed / len(built) * (trials - len(built))
    status = "fits" if point.eligible else "outside the tolerance or at chance level"
    if point.within_tolerance and not point.eligible:
        status = "does not fit " + " and ".join(
            kind for kind, ok in (("flash", point.fits_flash), ("RAM", point.fits_ram)) if not ok
        )
    best_text = (
        f"best {best.flash_needed_bytes:,} B flash ({best.spec.label})" if best else "best: none"
    )
    progress(
        f"[{len(built)}/{trials}] {how} {point.spec.label}: {point.deployable} "
        f"{point.flatbuffer_bytes:,} B, TFLM loss {point.loss:+.4g}, {status}; {best_text}; "
        f"about {left / 60:.1f} min left at most"
    )


def _refine(
    built: dict[PointSpec, SearchPoint], space: SearchSpace, budget: int
) -> list[PointSpec]:
    """The next round: unbuilt neighbours of the two leading points, at most ``budget``."""
    if budget <= 0:
        return []
    ranked = sorted(built.values(), key=_rank)
    batch: list[PointSpec] = []
    for leader in ranked[:2]:
        for spec in _neighbours(leader.spec, space):
            if spec not in built and spec not in batch and _valid(spec):
                batch.append(spec)
    return batch[:budget]


def _rank(p: SearchPoint) -> tuple:
    """Eligible points by flash needed; then the others by how far they miss."""
    if p.eligible:
        return (0, p.flash_needed_bytes, p.ram_needed_bytes)
    over_tolerance = 0 if p.within_tolerance else 1
    return (1, over_tolerance, p.loss, p.flash_needed_bytes + p.ram_needed_bytes)


def _neighbours(spec: PointSpec, space: SearchSpace) -> list[PointSpec]:
    out = []
    for name in ("structured_ratio", "final_sparsity", "clusters"):
        ladder = space.ladder(name)
        value = getattr(spec, name)
        at = ladder.index(value)
        for step in (1, -1):  # larger ratio/sparsity/fewer clusters first: the smaller side
            if 0 <= at + step < len(ladder):
                out.append(replace(spec, **{name: ladder[at + step]}))
    return out


# ---------------------------------------------------------------------------------- output


def _columns(result: SearchResult) -> tuple:
    metric = result.metric
    return (
        ("ratio", lambda p: f"{p.structured_ratio:g}"),
        ("sparsity", lambda p: f"{p.final_sparsity:g}"),
        ("clusters", lambda p: str(p.clusters) if p.clusters else "off"),
        ("schedule", lambda p: p.schedule),
        ("deployable", lambda p: p.deployable),
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
        f"# edge-prune search: {result.model_name} on {result.target_name}",
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
        f"TFLM arena (64-bit host) + reserved RAM ({result.reserved_ram_bytes:,} B) vs "
        f"{result.ram_bytes:,} B.",
        "- chosen: least flash needed among the points within the tolerance that fit flash "
        "and RAM and score above chance level; pareto: no other point has less flash, less RAM "
        "and a smaller loss at once.",
        f"- {len(result.points)} points ({result.reused_points} from the cache) in "
        f"{result.seconds:.0f} s.",
    ]
    if any(p.deployable == "float32-dense" for p in result.points):
        lines.append(
            "- deployable float32-dense: no pruned artifact of that point stays within the "
            "tolerance, so its build falls back to the dense float32 model."
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
    """``pareto.png``: flatbuffer vs TFLM score and arena vs TFLM score, one dot per point; the
    feasible region (within the budget and the tolerance) shaded, the chosen point starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.6), dpi=110)
    FigureCanvasAgg(figure)
    metric = result.metric
    scale = 100.0 if metric.key == "accuracy" else 1.0
    limit = result.score_limit() * scale
    scores = [p.tflm_score * scale for p in result.points] + [limit]
    low, high = min(scores), max(scores)
    margin = (high - low) * 0.15 or 1.0
    edge = high + margin if metric.higher_is_better else max(low - margin, 0.0)
    best = result.best
    panels = (
        ("flatbuffer (KiB)", "flatbuffer_bytes", result.flash_budget_bytes, "flash for model"),
        ("TFLM arena (KiB)", "arena_bytes", result.ram_budget_bytes, "RAM for arena"),
    )
    for index, (label, attribute, budget, what) in enumerate(panels, 1):
        axis = figure.add_subplot(1, 2, index)
        for fits, colour, name in ((True, "tab:green", "fits"), (False, "tab:gray", "misses")):
            group = [p for p in result.points if p.eligible == fits]
            axis.scatter(
                [getattr(p, attribute) / 1024 for p in group],
                [p.tflm_score * scale for p in group],
                color=colour,
                s=22,
                label=name,
            )
        xs = [getattr(p, attribute) / 1024 for p in result.points if getattr(p, attribute)]
        xs = xs or [1.0]
        if budget > 0:
            area = [min(xs) * 0.5, budget / 1024]
            axis.fill_between(area, limit, edge, color="tab:green", alpha=0.08, label="feasible")
            line = f"{what} {budget / 1024:,.0f} KiB"
            axis.axvline(budget / 1024, color="tab:orange", label=line)
        axis.axhline(limit, color="tab:red", linestyle=":", label="tolerance limit")
        if best is not None:
            axis.scatter(
                [getattr(best, attribute) / 1024],
                [best.tflm_score * scale],
                marker="*",
                s=220,
                color="tab:red",
                label="chosen",
                zorder=3,
            )
        right = max(max(xs), budget / 1024) * 1.1
        if right > 20 * min(xs):  # a roomy part: a log axis keeps the points apart
            axis.set_xscale("log")
            axis.set_xlim(min(x for x in xs if x > 0) * 0.8, right)
        else:
            axis.set_xlim(0, right)
        axis.set_ylim(min(low - margin, edge), max(high + margin, edge))
        axis.set_xlabel(label)
        unit = " (%)" if metric.key == "accuracy" else ""
        axis.set_ylabel(f"{metric.name} on TFLM{unit}")
        axis.legend(fontsize=7, loc="best")
    figure.suptitle(f"edge-prune search: {result.model_name} on {result.target_name}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
    return repr(value)


def write_search(
    result: SearchResult,
    point_dirs: dict[str, Path],
    out_dir: str | Path,
    base_config: PipelineConfig,
    progress: Progress = stderr_progress,
) -> Path:
    """Write ``out_dir/search-<target>/`` in one swap; returns it. ``base_config``: the config
    the search started from (``best.toml`` is it with the chosen point's values)."""
    destination = Path(out_dir) / f"search-{result.target_name}"
    best = result.best
    with staged_directory(destination) as staging:
        (staging / "pareto.md").write_text(render_markdown(result))
        (staging / "pareto.csv").write_text(render_csv(result))
        (staging / "pareto.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        try:
            (staging / "pareto.png").write_bytes(render_plot(result))
        except ImportError:
            progress("pareto.png skipped: matplotlib is not installed (pip install matplotlib)")
        if best is not None:
            text = config_toml(best.spec.config(base_config))
            if best.schedule != "polynomial":
                text = f"# prune schedule: {best.schedule} (not a config key yet)\n" + text
            (staging / "best.toml").write_text(text)
            shutil.copytree(point_dirs[best.key], staging / "best")
            (staging / "best" / "point.json").unlink()
    return destination
