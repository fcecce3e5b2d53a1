"""The study's trials as records of points: what a trial stores (its point record and digest,
its worker, twin and claim), reading points back, the records that fail their checks queued
again, and lost trials: a RUNNING trial whose worker is gone (its process on this host no longer
exists; on a database, no heartbeat for the grace period; in the embedded journal, any trial of
an earlier run) is failed and its point queued to be built once more."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

from edge_prune._process import is_alive
from edge_prune.runner import Progress
from edge_prune.search.cache import point_problem, record_digest
from edge_prune.search.point import PointSpec, SearchPoint, SearchSpace

if TYPE_CHECKING:
    pass

POINT, DIGEST, TWIN, CLAIM = "point", "point_sha256", "twin_of", "claims"


WORKER, LOST, RETRY_OF = "worker", "lost", "retry_of"


def spec_from_params(params: dict[str, Any]) -> PointSpec:
    return PointSpec(
        float(params.get("structured_ratio", 0.0)),
        float(params["final_sparsity"]),
        int(params["clusters"]),
        str(params["schedule"]),
        int(params.get("bitwidth", 0)),
    )


def params_of(spec: PointSpec) -> dict[str, Any]:
    params: dict[str, Any] = {"schedule": spec.schedule}
    if spec.schedule != "rewind":
        params["structured_ratio"] = spec.structured_ratio
    params |= {"clusters": spec.clusters, "final_sparsity": spec.final_sparsity}
    if spec.clusters:
        params["bitwidth"] = spec.bitwidth
    return params


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_gone(trial) -> bool:
    """The trial's worker ran on this host and its process no longer exists."""
    host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
    return (
        host == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not is_alive(int(pid))
    )


def recover_lost(study, progress: Progress, exclusive: bool = False) -> int:
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
            fail_stale_trials(study)  # calls retry_stale for each
    return lost


def _fail_lost(study, trial, progress: Progress, why: str) -> int:
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, LOST, why)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except Exception:  # another process failed it first
        return 0
    progress(f"  trial {trial.number} ({trial_label(trial)}) lost ({why}): marked failed")
    _retry(study, trial, progress)
    return 1


def _retry(study, trial, progress: Progress) -> None:
    """Queue the lost trial's point again, once (not when the trial was itself a retry)."""
    if RETRY_OF in trial.user_attrs or CLAIM not in trial.user_attrs:
        return  # a retry already, or lost before its point was chosen: sampled anew
    with contextlib.suppress(KeyError, ValueError, TypeError):
        params = params_of(spec_from_params(trial.params))
        study.enqueue_trial(params, user_attrs={RETRY_OF: trial.number})
        progress(f"  its point {trial_label(trial)} is queued to be built again")


def retry_stale(study, frozen) -> None:
    """``failed_trial_callback`` of the database storage: a trial whose heartbeat stopped."""
    _retry(study, frozen, lambda _m: None)


def requeue_interrupted(study, progress: Progress) -> None:
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
        study.enqueue_trial(params_of(spec))
        held.add(spec)
        progress(f"  trial {trial.number} ({spec.label}) was interrupted: queued again")


def _spec_or_none(params: dict) -> PointSpec | None:
    try:
        return spec_from_params(params)
    except (KeyError, ValueError, TypeError):
        return None


def record_of(trial) -> dict[str, Any] | None:
    """The trial's point record if it is sound and unchanged, else None."""
    record = trial.user_attrs.get(POINT)
    if point_problem(record) is not None:
        return None
    if trial.user_attrs.get(DIGEST) != record_digest(record):
        return None
    return record


def requeue_bad_records(study, space: SearchSpace, progress: Progress) -> None:
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if TWIN in trial.user_attrs or record_of(trial) is not None:
            continue
        record = trial.user_attrs.get(POINT)
        why = point_problem(record) or "its digest does not match its record"
        progress(f"WARNING: study trial {trial.number}: {why}; left out and built again")
        with contextlib.suppress(KeyError, ValueError, TypeError):
            study.enqueue_trial(params_of(spec_from_params(trial.params)))


def counts(study) -> tuple[int, int]:
    """(points in the study + points the build refused, trials running)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    refused = set()
    for t in trials:
        if t.state == TrialState.FAIL and "error" in t.user_attrs:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                refused.add(spec_from_params(t.params))
    return len(points_of(trials)) + len(refused), running


def points_of(trials) -> list[tuple[int, SearchPoint]]:
    """(trial number, point) of the sound complete trials, first trial of each point."""
    seen, points = set(), []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state.name != "COMPLETE" or TWIN in trial.user_attrs:
            continue
        record = record_of(trial)
        if record is not None and record["key"] not in seen:
            seen.add(record["key"])
            points.append((trial.number, SearchPoint.from_dict(record)))
    return points


def study_points(study, quiet: bool = False) -> list[SearchPoint]:
    return [p for _, p in points_of(study.get_trials(deepcopy=False))]


def trial_label(trial) -> str:
    try:
        return spec_from_params(trial.params).label
    except (KeyError, ValueError, TypeError):
        return "no point"
