"""The workshop that trains, caches and builds the search's models.

The dense model, each channel-removal ratio's model and the rewinding point are made once per
fingerprint (model, data, library versions, the config keys they depend on) and saved in Keras's
own format under the cache directory (:mod:`edge_prune.search.cache`), so local workers and a
later run load them instead of training again. Each point runs the same stages as
``edge-prune model`` (:attr:`edge_prune.pipeline.Plan.point`, reseeded first, every artifact
checked on TFLM) with its own config, so ``best.toml`` rebuilds the chosen point byte for byte.

A point's figures are those of its own pruned artifact (:func:`point_artifact`): the one the
build deploys, or when the build falls back to the dense float32 model (no pruned artifact within
the tolerance), the pruned artifact that loses least, so the table shows how far it missed.
Flash needed, RAM needed and the fit come from that artifact's footprint verdict, the same
figures ``edge-prune model`` and ``report`` give.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_prune.artifacts import staged_directory
from edge_prune.config import PipelineConfig
from edge_prune.errors import NoDeployableArtifactError
from edge_prune.pipeline import plan
from edge_prune.runner import Progress, quiet, run_stages
from edge_prune.search.cache import (
    BadCacheEntry,
    load_model_entry,
    locked,
    read_point_entry,
    save_model_entry,
    write_point_entry,
)
from edge_prune.search.point import PointSpec, SearchPoint
from edge_prune.stages.state import ArtifactName, ModelKey

if TYPE_CHECKING:
    from edge_prune.stages import Artifact, BuildState, Inputs


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
    from edge_prune.measurement.build_report import versions

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
        from edge_prune.deploy import write_artifacts
        from edge_prune.measurement.build_report import BuildReport
        from edge_prune.training.model_io import load_saved_model

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
    from edge_prune.training.structured import LayerChannels, SkippedLayer, StructuredPruneResult

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
    from edge_prune.measurement.choose import _why_not
    from edge_prune.measurement.timing import budget_ms, over_budget

    artifact = point_artifact(state)
    budget = budget_ms(state.inputs.target, state.config.select.max_latency_ms)
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
        ms=round(artifact.time.ms, 4) if artifact.time else None,
        instructions=artifact.time.instructions if artifact.time else None,
        within_time=over_budget(artifact.time, budget) is None,
    )
