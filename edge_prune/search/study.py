"""The search as an Optuna study: objectives, sampling, the loop a worker runs and the result
read back (where the study lives: :mod:`~edge_prune.search.storage`; its trials as points and
lost trials: :mod:`~edge_prune.search.trials`; worker processes: :mod:`~edge_prune.search.workers`).

- **Objectives and constraints.** Each trial samples a :class:`~edge_prune.search.point.PointSpec`
  and builds it (:class:`~edge_prune.search.workshop.Workshop`); its values are (flash needed, loss)
  to minimise; its constraints (``Trial.set_constraint``, Optuna 5's form of ``constraints_func``;
  feasible when all <= 0) are the flash and
  RAM excess over the part, each relative to the part, the loss beyond the tolerance (in
  accuracy points / 100, or relative error) and 1 when the score is at chance level. Optuna's
  constrained TPE ranks infeasible trials by their total violation, so the search walks toward
  the budget before it cares about loss; the first trials are two anchors (the middle and the
  compact end of the space), then ``startup`` random ones.
- **Storage.** By default a journal file under the cache directory (``study.journal``): the
  same command again resumes the study; ``--storage URL --study NAME`` puts it in a database
  (``postgresql://...``; ``mysql://``, ``sqlite:///`` likewise), so commands on several
  machines share one study. The study records the digest of what it searches (model, data,
  target, base config, space): another search cannot join it by mistake.
- **Workers.** ``--jobs N`` starts N worker processes on the study (1: this process). A worker
  dies with its parent (``PR_SET_PDEATHSIG``); SIGTERM/SIGINT stop the workers within
  :data:`STOP_SECONDS`, finished trials kept. A trial whose point another worker is building
  is pruned and sampled again; one whose point is already in the study takes its values
  without building (``twin_of``), and does not count toward ``--trials``.
- **Lost trials.** Each trial records its worker (host and process id). A RUNNING trial whose
  worker is gone (its process on this host no longer exists; on a database, no heartbeat for
  ``grace_period`` seconds; in the embedded journal, any trial of an earlier run) is failed and
  its point queued to be built once more, before the workers count what the study holds and
  after they end, so a killed worker costs its point's time, never the point.
- **Trust.** Each trial keeps its point record and its digest; records that fail the checks
  of :func:`~edge_prune.search.cache.point_problem` are left out with a warning naming the
  trial, and their point is queued to be built again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_prune.errors import EdgePruneError
from edge_prune.runner import Progress, stderr_progress
from edge_prune.search.cache import BadCacheEntry, read_point_entry, record_digest
from edge_prune.search.job import Job
from edge_prune.search.point import PointSpec, SearchOptions, SearchPoint, SearchSpace, choose_point
from edge_prune.search.result import SearchResult
from edge_prune.search.storage import (
    check_context,
    check_storage,
    journal_url,
    open_study,
    shown_url,
    study_context,
)
from edge_prune.search.trials import (
    CLAIM,
    DIGEST,
    POINT,
    TWIN,
    WORKER,
    counts,
    params_of,
    points_of,
    record_of,
    recover_lost,
    requeue_bad_records,
    requeue_interrupted,
    spec_from_params,
    study_points,
    trial_label,
    worker_id,
)
from edge_prune.search.workers import run_workers
from edge_prune.search.workshop import Workshop

if TYPE_CHECKING:
    import optuna

    from edge_prune.stages import Inputs

__all__ = ["run_search", "run_study"]


# ------------------------------------------------------------------------------- running


def run_search(
    inputs: Inputs,
    options: SearchOptions,
    cache_dir: str | Path,
    progress: Progress = stderr_progress,
) -> tuple[SearchResult, dict[str, Path]]:
    """Run (or resume) the study until ``options.trials`` points are built (:func:`run_study`
    with the standard :class:`~edge_prune.search.workshop.Workshop`). Returns the result and each
    point's directory by key."""
    return run_study(inputs, options, Path(cache_dir), progress)


def run_study(
    inputs: Inputs,
    options: SearchOptions,
    cache: Path,
    progress: Progress = stderr_progress,
    factory: type = Workshop,
) -> tuple[SearchResult, dict[str, Path]]:
    """Create or resume the study, run the workers until ``options.trials`` points are in it,
    read the result back. Returns the result and the local directory of the chosen point."""
    start = time.perf_counter()
    context = study_context(inputs, options)
    check_storage(options.storage)
    storage = options.storage or journal_url(cache)
    name = options.study or f"search-{inputs.target.name}-{context[:12]}"
    job = Job(inputs, options, cache, storage, name, inputs.config.train.seed, factory=factory)
    study = open_study(job, progress, create=True)
    check_context(study, context)
    recover_lost(study, progress, exclusive=options.storage is None)
    requeue_bad_records(study, options.space, progress)
    requeue_interrupted(study, progress)
    if not study.trials and not options.grid:
        for anchor in _anchors(options.space):
            study.enqueue_trial(params_of(anchor), skip_if_exists=True)
    before = study_points(study, quiet=True)
    progress(
        f"edge-prune search: {options.trials} points on {inputs.data.source} for "
        f"{inputs.target.name}, {options.jobs} worker(s), study {name!r} "
        f"({'resumed, ' + str(len(before)) + ' points in it' if before else 'new'})"
    )
    if options.jobs == 1:
        work(job, progress, start)
    else:
        run_workers(work, [replace(job, worker=i) for i in range(options.jobs)], progress)
        if recover_lost(study, progress):  # a worker was killed: build its point here
            work(job, progress, start)
    return _result(inputs, options, cache, study, job, len(before), start, progress)


def work(job: Job, progress: Progress = stderr_progress, start: float | None = None) -> None:
    """One worker: trials until the study holds ``trials`` points, or the space is used up."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(job, progress)
    workshop = job.factory(job.inputs, job.cache, progress)
    options, start = job.options, start or time.perf_counter()
    size = len(options.space.specs())
    built_here = 0
    done: list = []
    for _attempt in range(3 * options.trials + 20):
        recover_lost(study, progress)
        built, running = counts(study)
        if built + running >= options.trials or built >= size:
            return
        done.clear()
        study.optimize(
            lambda t: _objective(t, job, workshop),
            n_trials=1,
            catch=(EdgePruneError,),
            callbacks=[lambda _study, frozen: done.append(frozen)],  # noqa: B023
        )
        trial = done[0] if done else None
        if trial is not None and trial.state.name == "COMPLETE" and TWIN not in trial.user_attrs:
            built_here += 1
            _say(progress, job, study, trial, start, built_here)
        elif trial is not None and trial.state.name == "FAIL":
            error = trial.user_attrs.get("error", "see above")
            progress(f"trial {trial.number} ({trial_label(trial)}) failed: {error}")


def _objective(trial: optuna.Trial, job: Job, workshop: Workshop) -> tuple[float, float]:
    import optuna

    trial.set_user_attr(WORKER, worker_id())
    spec = _suggest(trial, job.options.space)
    # Written once every parameter is: from here on other workers see which point it builds.
    trial.set_user_attr(CLAIM, spec.label)
    twin = _twin(trial, spec)
    if twin is not None and twin.state.name == "RUNNING":
        raise optuna.TrialPruned(f"trial {twin.number} is building {spec.label}")
    if twin is not None and twin.state.name == "FAIL":  # the build refused it: not again
        raise optuna.TrialPruned(f"trial {twin.number} failed on {spec.label}")
    if twin is not None:  # already in the study: its values, nothing built
        record = twin.user_attrs[POINT]
        trial.set_user_attr(TWIN, twin.number)
    else:
        try:
            point, how = workshop.point(spec)
        except EdgePruneError as e:
            trial.set_user_attr("error", str(e)[:500])
            raise
        record = point.to_dict()
        trial.set_user_attr("how", how)
    trial.set_user_attr(POINT, record)
    trial.set_user_attr(DIGEST, record_digest(record))
    for name, value in _constraints_of(record, job).items():
        trial.set_constraint(name, value)
    return float(record["flash_needed_bytes"]), float(record["loss"])


def _constraints_of(record: dict[str, Any], job: Job) -> dict[str, float]:
    """<= 0 when satisfied: flash and RAM over the part (relative), loss over the tolerance,
    chance level."""
    from edge_prune.measurement.metrics import metric_for

    target = job.inputs.target
    metric = metric_for(job.inputs.data.y_train)
    tolerance = metric.tolerance(job.inputs.config.select)
    scale = 100.0 if metric.key == "accuracy" else 1.0
    return {
        "flash": (record["flash_needed_bytes"] - target.flash_bytes) / target.flash_bytes,
        "ram": (record["ram_needed_bytes"] - target.ram_bytes) / target.ram_bytes,
        "tolerance": (record["loss"] - tolerance) / scale,
        "chance": 0.0 if record["trusted"] else 1.0,
    }


def _suggest(trial: optuna.Trial, space: SearchSpace) -> PointSpec:
    schedule = trial.suggest_categorical("schedule", list(space.schedules))
    # Choices never depend on another parameter (Optuna keeps one distribution per name):
    # rewinding has no ratio to choose, a width too narrow for the clusters means "auto".
    ratio = 0.0
    if schedule != "rewind":
        ratio = trial.suggest_categorical("structured_ratio", list(space.ratios))
    clusters = trial.suggest_categorical("clusters", list(space.clusters))
    bitwidth = trial.suggest_categorical("bitwidth", list(space.bitwidths)) if clusters else 0
    sparsity = trial.suggest_categorical("final_sparsity", list(space.sparsities))
    return PointSpec(ratio, sparsity, clusters, schedule, bitwidth if clusters else 0)


def _twin(trial: optuna.Trial, spec: PointSpec):
    """Another trial of the same point (not a twin itself): complete or refused, or running
    with the point claimed, whatever its number.

    Each trial claims its point (``claims``) before it looks. Of two trials on one point, the
    one that claims second looks after both claims exist and steps back; so at most one
    builds (both may step back: the point is sampled again later). A running trial counts only
    once claimed, so its parameters are never read half-written."""
    from optuna.trial import TrialState

    states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL)
    for other in trial.study.get_trials(deepcopy=False, states=states):
        if other.number == trial.number or TWIN in other.user_attrs:
            continue
        if other.state == TrialState.RUNNING:
            if other.user_attrs.get(CLAIM) == spec.label:
                return other
            continue
        if other.state == TrialState.FAIL and "error" not in other.user_attrs:
            continue  # interrupted, not refused: built again
        if other.state == TrialState.COMPLETE and record_of(other) is None:
            continue
        with contextlib.suppress(KeyError, ValueError, TypeError):
            if spec_from_params(other.params) == spec:
                return other
    return None


def _anchors(space: SearchSpace) -> list[PointSpec]:
    """A third of the way along the ratios and sparsities (a point that usually keeps the
    accuracy), then halfway (a more compact one); the middle cluster count."""
    specs = []
    clusters = sorted(space.clusters)
    middle = clusters[min(len(clusters) - 1, len(clusters) // 2)]
    for at in (1 / 3, 0.5):
        ratio, sparsity = (
            v[min(len(v) - 1, int(len(v) * at))] for v in (space.ratios, space.sparsities)
        )
        schedule = space.schedules[0]
        spec = PointSpec(0.0 if schedule == "rewind" else ratio, sparsity, middle, schedule,
                         space.bitwidths[0])  # fmt: skip
        if spec not in specs:
            specs.append(spec)
    return specs


# ------------------------------------------------------------------------------- storage


# ------------------------------------------------------------------------------- workers


def _say(progress, job: Job, study, trial, start: float, built_here: int) -> None:
    points = study_points(study)
    point = SearchPoint.from_dict(trial.user_attrs[POINT])
    best = choose_point(points)
    trials, jobs = job.options.trials, job.options.jobs
    elapsed = time.perf_counter() - start
    left = elapsed / max(built_here, 1) * max(0, trials - len(points)) / jobs
    status = "fits" if point.eligible else _misses(point)
    best_text = (
        f"best {best.flash_needed_bytes:,} B flash ({best.spec.label})" if best else "best: none"
    )
    progress(
        f"[{len(points)}/{trials}] {trial.user_attrs.get('how', 'built')} {point.spec.label}: "
        f"{point.artifact} {point.flatbuffer_bytes:,} B, flash needed "
        f"{point.flash_needed_bytes:,} B, TFLM loss {point.loss:+.4g}, {status}; {best_text}; "
        f"about {left / 60:.1f} min left"
    )


def _misses(point: SearchPoint) -> str:
    what = [
        kind
        for kind, ok in (
            ("flash", point.fits_flash),
            ("RAM", point.fits_ram),
            ("the tolerance", point.within_tolerance),
            ("chance level", point.trusted),
        )
        if not ok
    ]
    return "misses " + ", ".join(what)


# ------------------------------------------------------------------------------- result


def _result(
    inputs: Inputs,
    options: SearchOptions,
    cache: Path,
    study,
    job: Job,
    reused: int,
    start: float,
    progress: Progress,
) -> tuple[SearchResult, dict[str, Path]]:
    from edge_prune.measurement.metrics import metric_for

    numbered = points_of(study.get_trials(deepcopy=False))
    points = tuple(p for _, p in numbered)
    workshop = job.factory(inputs, cache, progress)
    dirs: dict[str, Path] = {}
    best = choose_point(points)
    if best is not None:
        dirs[best.key] = _local_point_dir(workshop, best, progress)
    metric = metric_for(inputs.data.y_train)
    baseline = points[0].baseline_score if points else 0.0
    by_state: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
    result = SearchResult(
        target_name=inputs.target.name,
        flash_bytes=inputs.target.flash_bytes,
        ram_bytes=inputs.target.ram_bytes,
        reserved_flash_bytes=inputs.target.reserved_flash_bytes,
        reserved_ram_bytes=inputs.target.reserved_ram_bytes,
        model_name=workshop.model_name or _model_name(inputs),
        data_source=inputs.data.source,
        test_samples=int(len(inputs.data.y_test)),
        metric=metric,
        baseline_score=baseline,
        tolerance=metric.tolerance(inputs.config.select),
        points=points,
        base_config=inputs.config.to_dict(),
        trials=options.trials,
        reused_points=reused,
        seconds=round(time.perf_counter() - start, 1),
        study={
            "name": job.study,
            "storage": shown_url(job.storage),
            "trials_by_state": by_state,
            "trial_of_point": {p.key: n for n, p in numbered},
        },
        kind="sweep" if options.grid else "search",
    )
    return result, dirs


def _model_name(inputs: Inputs) -> str:
    return inputs.model_path.stem if inputs.model_path else "default CNN"


def _local_point_dir(workshop: Workshop, point: SearchPoint, progress: Progress) -> Path:
    """The chosen point's build on this machine: its cache entry if sound and the same point,
    else built here (a point another machine built, or a bad entry, named in a warning)."""
    directory = workshop.point_dir(point.key)
    try:
        record = read_point_entry(directory, point.key, need_files=True)
    except BadCacheEntry as e:
        progress(f"WARNING: cache entry {e}; rebuilding it")
        record = None
    if record is not None and _same(record, point.to_dict()):
        return directory
    if record is not None:
        progress(f"WARNING: cache entry {directory}: differs from the study's record; rebuilding")
    else:
        progress(f"  building the chosen point here: {point.spec.label}")
    rebuilt = workshop.build(point.spec)
    if not _same(rebuilt.to_dict(), point.to_dict()):
        progress("WARNING: the chosen point rebuilt here differs from the study's record")
    return directory


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a | {"seconds": 0.0} == b | {"seconds": 0.0}
