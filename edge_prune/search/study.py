"""The search as an Optuna study: storage, sampler, workers, and the result read back from it.

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
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_prune._process import die_with_parent, is_alive
from edge_prune.errors import ConfigError, EdgePruneError
from edge_prune.runner import Progress, stderr_progress
from edge_prune.search.cache import BadCacheEntry, point_problem, read_point_entry, record_digest
from edge_prune.search.point import PointSpec, SearchOptions, SearchPoint, SearchSpace, choose_point
from edge_prune.search.result import SearchResult
from edge_prune.search.workshop import Workshop, _fingerprint, inputs_fingerprint

if TYPE_CHECKING:
    import optuna

    from edge_prune.stages import Inputs

__all__ = ["STOP_SECONDS", "run_search", "run_study", "spec_from_params"]

STOP_SECONDS = 4.0  # SIGTERM to SIGKILL for workers that do not stop
# A database trial without a heartbeat for GRACE_SECONDS is lost (its worker's machine died).
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
_POINT, _DIGEST, _TWIN, _CLAIM = "point", "point_sha256", "twin_of", "claims"
_WORKER, _LOST, _RETRY_OF = "worker", "lost", "retry_of"
_CONTEXT = "edge_prune_context"


@dataclass(frozen=True)
class _Job:
    """What a worker needs (picklable: it crosses to spawned processes)."""

    inputs: Inputs
    options: SearchOptions
    cache: Path
    storage: str
    study: str
    seed: int
    worker: int = 0
    factory: type = Workshop  # builds the points (tests pass a stand-in)


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
    context = _context(inputs, options)
    check_storage(options.storage)
    storage = options.storage or _journal_url(cache)
    name = options.study or f"search-{inputs.target.name}-{context[:12]}"
    job = _Job(inputs, options, cache, storage, name, inputs.config.train.seed, factory=factory)
    study = _open(job, progress, create=True)
    _check_context(study, context)
    _recover_lost(study, progress, exclusive=options.storage is None)
    _requeue_bad_records(study, options.space, progress)
    _requeue_interrupted(study, progress)
    if not study.trials and not options.grid:
        for anchor in _anchors(options.space):
            study.enqueue_trial(_params(anchor), skip_if_exists=True)
    before = _points(study, quiet=True)
    progress(
        f"edge-prune search: {options.trials} points on {inputs.data.source} for "
        f"{inputs.target.name}, {options.jobs} worker(s), study {name!r} "
        f"({'resumed, ' + str(len(before)) + ' points in it' if before else 'new'})"
    )
    if options.jobs == 1:
        work(job, progress, start)
    else:
        _run_workers(job, options.jobs, progress)
        if _recover_lost(study, progress):  # a worker was killed: build its point here
            work(job, progress, start)
    return _result(inputs, options, cache, study, job, len(before), start, progress)


def work(job: _Job, progress: Progress = stderr_progress, start: float | None = None) -> None:
    """One worker: trials until the study holds ``trials`` points, or the space is used up."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _open(job, progress)
    workshop = job.factory(job.inputs, job.cache, progress)
    options, start = job.options, start or time.perf_counter()
    size = len(options.space.specs())
    built_here = 0
    done: list = []
    for _attempt in range(3 * options.trials + 20):
        _recover_lost(study, progress)
        built, running = _counts(study)
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
        if trial is not None and trial.state.name == "COMPLETE" and _TWIN not in trial.user_attrs:
            built_here += 1
            _say(progress, job, study, trial, start, built_here)
        elif trial is not None and trial.state.name == "FAIL":
            error = trial.user_attrs.get("error", "see above")
            progress(f"trial {trial.number} ({_label(trial)}) failed: {error}")


def _label(trial) -> str:
    try:
        return spec_from_params(trial.params).label
    except (KeyError, ValueError, TypeError):
        return "no point"


def _objective(trial: optuna.Trial, job: _Job, workshop: Workshop) -> tuple[float, float]:
    import optuna

    trial.set_user_attr(_WORKER, _worker_id())
    spec = _suggest(trial, job.options.space)
    # Written once every parameter is: from here on other workers see which point it builds.
    trial.set_user_attr(_CLAIM, spec.label)
    twin = _twin(trial, spec)
    if twin is not None and twin.state.name == "RUNNING":
        raise optuna.TrialPruned(f"trial {twin.number} is building {spec.label}")
    if twin is not None and twin.state.name == "FAIL":  # the build refused it: not again
        raise optuna.TrialPruned(f"trial {twin.number} failed on {spec.label}")
    if twin is not None:  # already in the study: its values, nothing built
        record = twin.user_attrs[_POINT]
        trial.set_user_attr(_TWIN, twin.number)
    else:
        try:
            point, how = workshop.point(spec)
        except EdgePruneError as e:
            trial.set_user_attr("error", str(e)[:500])
            raise
        record = point.to_dict()
        trial.set_user_attr("how", how)
    trial.set_user_attr(_POINT, record)
    trial.set_user_attr(_DIGEST, record_digest(record))
    for name, value in _constraints_of(record, job).items():
        trial.set_constraint(name, value)
    return float(record["flash_needed_bytes"]), float(record["loss"])


def _constraints_of(record: dict[str, Any], job: _Job) -> dict[str, float]:
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


def spec_from_params(params: dict[str, Any]) -> PointSpec:
    return PointSpec(
        float(params.get("structured_ratio", 0.0)),
        float(params["final_sparsity"]),
        int(params["clusters"]),
        str(params["schedule"]),
        int(params.get("bitwidth", 0)),
    )


def _params(spec: PointSpec) -> dict[str, Any]:
    params: dict[str, Any] = {"schedule": spec.schedule}
    if spec.schedule != "rewind":
        params["structured_ratio"] = spec.structured_ratio
    params |= {"clusters": spec.clusters, "final_sparsity": spec.final_sparsity}
    if spec.clusters:
        params["bitwidth"] = spec.bitwidth
    return params


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
        if other.number == trial.number or _TWIN in other.user_attrs:
            continue
        if other.state == TrialState.RUNNING:
            if other.user_attrs.get(_CLAIM) == spec.label:
                return other
            continue
        if other.state == TrialState.FAIL and "error" not in other.user_attrs:
            continue  # interrupted, not refused: built again
        if other.state == TrialState.COMPLETE and _record(other) is None:
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


def _journal_url(cache: Path) -> str:
    return f"journal:{cache / 'study.journal'}"


def _storage(url: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("redis"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=_retry_stale,
        engine_kwargs={"pool_pre_ping": True},
    )


def _sampler(job: _Job):
    import optuna

    space = job.options.space
    if job.options.grid:
        grid: dict[str, list] = {"schedule": list(space.schedules)}
        if space.schedules != ("rewind",):
            grid["structured_ratio"] = list(space.ratios)
        grid["clusters"] = list(space.clusters)
        if any(space.clusters):
            grid["bitwidth"] = list(space.bitwidths)
        grid["final_sparsity"] = list(space.sparsities)
        return optuna.samplers.GridSampler(grid, seed=job.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=job.seed + job.worker,
            n_startup_trials=max(4, job.options.trials // 4),
            multivariate=True,
        )


def _open(job: _Job, progress: Progress, create: bool = False):
    """The study (created when ``create``), with the sampler of the options."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = _sampler(job)
    if create and job.storage.startswith("journal:"):
        problem = _journal_problem(Path(job.storage.removeprefix("journal:")))
        if problem:
            return _reset_journal(job, progress, problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _storage(job.storage)
        if create:
            return optuna.create_study(
                storage=storage,
                study_name=job.study,
                directions=["minimize", "minimize"],
                sampler=sampler,
                load_if_exists=True,
            )
        return optuna.load_study(study_name=job.study, storage=storage, sampler=sampler)
    except (ValueError, KeyError, OSError, ImportError) as e:
        if create and job.storage.startswith("journal:") and not isinstance(e, ImportError):
            return _reset_journal(job, progress, e)
        raise ConfigError(f"--storage {_shown(job.storage)}: {type(e).__name__}: {e}") from None
    except Exception as e:  # SQLAlchemy errors: bad URL, server down, missing driver
        raise ConfigError(
            f"--storage {_shown(job.storage)}: cannot open the study ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None


def _journal_problem(path: Path) -> str | None:
    """Why the embedded journal would not read back (a line cut short or not JSON), or None.
    Optuna reads past a last line without its newline and appends after it, which joins two
    records into one line the next run cannot parse. A FIFO or a device is refused unread."""
    import json

    from edge_prune.input_files import MAX_MODEL_BYTES, read_input

    if not (path.exists() or path.is_symlink()):
        return None
    try:
        data = read_input(path, limit=MAX_MODEL_BYTES, error=ConfigError, label=f"{path}")
    except (FileNotFoundError, IsADirectoryError) as e:
        raise ConfigError(f"{path}: {e.strerror}; expected the study's journal file") from None
    if data and not data.endswith(b"\n"):
        return "its last line is cut short"
    for number, line in enumerate(data.splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            return f"line {number} is not a JSON record"
    return None


def _reset_journal(job: _Job, progress: Progress, error: Exception | str):
    """An embedded journal that does not read back: set aside (named), start a new one; the
    points cache still holds every point built, so nothing is trained again."""
    path = Path(job.storage.removeprefix("journal:"))
    aside = path.with_name(f"{path.name}.bad-{int(time.time())}")
    path.replace(aside)
    why = error if isinstance(error, str) else type(error).__name__
    progress(
        f"WARNING: cache entry {path}: unreadable ({why}); moved to "
        f"{aside.name}, starting a new study (points already built are reused)"
    )
    return _open(job, progress, create=True)


def check_storage(url: str | None) -> None:
    """Refuse a ``--storage`` that cannot name a study: empty, a SQLite URL without a file,
    a SQLite file that is a FIFO or a device."""
    if url is None:
        return
    if not url.strip():
        raise ConfigError(
            "--storage: empty URL; give a database URL (postgresql://user@host/db, "
            "sqlite:///search.db) or leave --storage out for the journal file in the cache"
        )
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("///").split("?", 1)[0]
        if not path or path == ":memory:" or not url.startswith("sqlite:///"):
            raise ConfigError(
                f"--storage {_shown(url)}: no database file; expected sqlite:///FILE, e.g. "
                "sqlite:///search.db (a memory database dies with the process)"
            )
        _check_regular_if_there(Path(path), f"--storage {_shown(url)}")


def _check_regular_if_there(path: Path, label: str) -> None:
    from edge_prune.input_files import check_regular

    if path.exists() or path.is_symlink():
        try:
            check_regular(path, error=ConfigError, label=label)
        except (FileNotFoundError, IsADirectoryError) as e:
            raise ConfigError(f"{label}: {e.strerror}; expected a database file") from None


_SECRET_QUERY = ("password", "passwd", "pwd", "secret", "token", "key")


def _shown(url: str) -> str:
    """A storage URL without its password (user info and query parameters)."""
    import re

    head, at, tail = url.rpartition("@")
    if at and "/" not in head.partition("://")[2]:
        scheme, _, credentials = head.partition("://")
        if ":" in credentials:
            url = f"{scheme}://{credentials.split(':')[0]}:***@{tail}"
    names = "|".join(_SECRET_QUERY)
    return re.sub(rf"([?&](?:{names})=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def _context(inputs: Inputs, options: SearchOptions) -> str:
    return _fingerprint(
        inputs_fingerprint(inputs),
        inputs.config.to_dict(),
        inputs.target.name,
        inputs.target.flash_bytes,
        inputs.target.ram_bytes,
        options.space.to_dict(),
    )


def _check_context(study, context: str) -> None:
    found = study.user_attrs.get(_CONTEXT)
    if found is None:
        study.set_user_attr(_CONTEXT, context)
    elif found != context:
        raise ConfigError(
            f"--study {study.study_name}: made by a search of another model, data, target, "
            "config or space; give another --study name"
        )


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_gone(trial) -> bool:
    """The trial's worker ran on this host and its process no longer exists."""
    host, _, pid = str(trial.user_attrs.get(_WORKER, "")).rpartition(":")
    return (
        host == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not is_alive(int(pid))
    )


def _recover_lost(study, progress: Progress, exclusive: bool = False) -> int:
    """Fail the RUNNING trials whose worker is gone (``exclusive``: every RUNNING trial, the
    embedded journal of an earlier run) and queue each one's point once more; on a database
    also the trials whose heartbeat stopped. Returns how many were failed."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    lost = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if exclusive or _worker_gone(trial):
            lost += _fail_lost(study, trial, progress, "its worker is gone")
    with contextlib.suppress(Exception):  # storages without heartbeats
        if getattr(study._storage, "heartbeat_interval", None):
            fail_stale_trials(study)  # calls _retry_stale for each
    return lost


def _fail_lost(study, trial, progress: Progress, why: str) -> int:
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, _LOST, why)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except Exception:  # another process failed it first
        return 0
    progress(f"  trial {trial.number} ({_label(trial)}) lost ({why}): marked failed")
    _retry(study, trial, progress)
    return 1


def _retry(study, trial, progress: Progress) -> None:
    """Queue the lost trial's point again, once (not when the trial was itself a retry)."""
    if _RETRY_OF in trial.user_attrs or _CLAIM not in trial.user_attrs:
        return  # a retry already, or lost before its point was chosen: sampled anew
    with contextlib.suppress(KeyError, ValueError, TypeError):
        params = _params(spec_from_params(trial.params))
        study.enqueue_trial(params, user_attrs={_RETRY_OF: trial.number})
        progress(f"  its point {_label(trial)} is queued to be built again")


def _retry_stale(study, frozen) -> None:
    """``failed_trial_callback`` of the database storage: a trial whose heartbeat stopped."""
    _retry(study, frozen, lambda _m: None)


def _requeue_interrupted(study, progress: Progress) -> None:
    """The points of trials a Ctrl-C (or a kill) stopped, queued again first in their order,
    unless another trial holds or waits for them: a resumed search builds the same points in
    the same order (an interrupted anchor included)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    held = {
        _spec_or_none(t.params)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    }
    for trial in trials:
        if trial.state != TrialState.FAIL or "error" in trial.user_attrs:
            continue
        spec = _spec_or_none(trial.params)
        if spec is None or spec in held:
            continue
        study.enqueue_trial(_params(spec))
        held.add(spec)
        progress(f"  trial {trial.number} ({spec.label}) was interrupted: queued again")


def _spec_or_none(params: dict) -> PointSpec | None:
    try:
        return spec_from_params(params)
    except (KeyError, ValueError, TypeError):
        return None


def _record(trial) -> dict[str, Any] | None:
    """The trial's point record if it is sound and unchanged, else None."""
    record = trial.user_attrs.get(_POINT)
    if point_problem(record) is not None:
        return None
    if trial.user_attrs.get(_DIGEST) != record_digest(record):
        return None
    return record


def _requeue_bad_records(study, space: SearchSpace, progress: Progress) -> None:
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if _TWIN in trial.user_attrs or _record(trial) is not None:
            continue
        record = trial.user_attrs.get(_POINT)
        why = point_problem(record) or "its digest does not match its record"
        progress(f"WARNING: study trial {trial.number}: {why}; left out and built again")
        with contextlib.suppress(KeyError, ValueError, TypeError):
            study.enqueue_trial(_params(spec_from_params(trial.params)))


def _counts(study) -> tuple[int, int]:
    """(points in the study + points the build refused, trials running)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    refused = set()
    for t in trials:
        if t.state == TrialState.FAIL and "error" in t.user_attrs:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                refused.add(spec_from_params(t.params))
    return len(_points_of(trials)) + len(refused), running


def _points_of(trials) -> list[tuple[int, SearchPoint]]:
    """(trial number, point) of the sound complete trials, first trial of each point."""
    seen, points = set(), []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state.name != "COMPLETE" or _TWIN in trial.user_attrs:
            continue
        record = _record(trial)
        if record is not None and record["key"] not in seen:
            seen.add(record["key"])
            points.append((trial.number, SearchPoint.from_dict(record)))
    return points


def _points(study, quiet: bool = False) -> list[SearchPoint]:
    return [p for _, p in _points_of(study.get_trials(deepcopy=False))]


# ------------------------------------------------------------------------------- workers


def _run_workers(job: _Job, jobs: int, progress: Progress) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker_main,
            args=(_with_worker(job, index), os.getpid()),
            name=f"edge-prune-search-{index}",
        )
        for index in range(jobs)
    ]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except BaseException:
        progress(f"stopping {jobs} workers (finished trials are kept)")
        _stop(workers)
        raise
    failed = [f"worker {i} exit code {w.exitcode}" for i, w in enumerate(workers) if w.exitcode]
    if failed:
        progress(f"WARNING: {', '.join(failed)}; the study keeps what they finished")


def _with_worker(job: _Job, index: int) -> _Job:
    from dataclasses import replace

    return replace(job, worker=index)


def _stop(workers) -> None:
    """SIGTERM every worker; SIGKILL what still runs after :data:`STOP_SECONDS`."""
    for w in workers:
        if w.is_alive() and w.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.is_alive():
            w.kill()
            w.join(1.0)


def _worker_main(job: _Job, parent: int) -> None:
    """A spawned worker: dies with its parent, stops on SIGTERM/SIGINT after failing its
    running trial (finished ones are in the study)."""
    die_with_parent(parent)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        work(job, _prefixed(job.worker))
    except KeyboardInterrupt:
        os._exit(130)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _prefixed(worker: int) -> Progress:
    return lambda message: stderr_progress(f"[worker {worker}] {message}")


def _say(progress, job: _Job, study, trial, start: float, built_here: int) -> None:
    points = _points(study)
    point = SearchPoint.from_dict(trial.user_attrs[_POINT])
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
    job: _Job,
    reused: int,
    start: float,
    progress: Progress,
) -> tuple[SearchResult, dict[str, Path]]:
    from edge_prune.measurement.metrics import metric_for

    numbered = _points_of(study.get_trials(deepcopy=False))
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
            "storage": _shown(job.storage),
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
