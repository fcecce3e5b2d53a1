"""Where a study lives: the embedded journal under the cache directory or an Optuna storage
URL (refused when it names no study, passwords hidden when shown), a journal cut mid-line set
aside, and the digest of what a study searches so that another search cannot join it."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError
from edge_prune.runner import Progress
from edge_prune.search.job import Job
from edge_prune.search.point import SearchOptions
from edge_prune.search.trials import retry_stale
from edge_prune.search.workshop import _fingerprint, inputs_fingerprint

if TYPE_CHECKING:
    from edge_prune.stages import Inputs

# A database trial without a heartbeat for GRACE_SECONDS is lost (its worker's machine died).
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def journal_url(cache: Path) -> str:
    return f"journal:{cache / 'study.journal'}"


def open_storage(url: str):
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
        heartbeat_stale_trial_callback=retry_stale,
        engine_kwargs={"pool_pre_ping": True},
    )


def journal_problem(path: Path) -> str | None:
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
                f"--storage {shown_url(url)}: no database file; expected sqlite:///FILE, e.g. "
                "sqlite:///search.db (a memory database dies with the process)"
            )
        _check_regular_if_there(Path(path), f"--storage {shown_url(url)}")


def _check_regular_if_there(path: Path, label: str) -> None:
    from edge_prune.input_files import check_regular

    if path.exists() or path.is_symlink():
        try:
            check_regular(path, error=ConfigError, label=label)
        except (FileNotFoundError, IsADirectoryError) as e:
            raise ConfigError(f"{label}: {e.strerror}; expected a database file") from None


_SECRET_QUERY = ("password", "passwd", "pwd", "secret", "token", "key")


def shown_url(url: str) -> str:
    """A storage URL without its password (user info and query parameters)."""
    import re

    head, at, tail = url.rpartition("@")
    if at and "/" not in head.partition("://")[2]:
        scheme, _, credentials = head.partition("://")
        if ":" in credentials:
            url = f"{scheme}://{credentials.split(':')[0]}:***@{tail}"
    names = "|".join(_SECRET_QUERY)
    return re.sub(rf"([?&](?:{names})=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


_CONTEXT = "edge_prune_context"


def study_context(inputs: Inputs, options: SearchOptions) -> str:
    return _fingerprint(
        inputs_fingerprint(inputs),
        inputs.config.to_dict(),
        inputs.target.name,
        inputs.target.flash_bytes,
        inputs.target.ram_bytes,
        options.space.to_dict(),
    )


def check_context(study, context: str) -> None:
    found = study.user_attrs.get(_CONTEXT)
    if found is None:
        study.set_user_attr(_CONTEXT, context)
    elif found != context:
        raise ConfigError(
            f"--study {study.study_name}: made by a search of another model, data, target, "
            "config or space; give another --study name"
        )


def sampler_for(job: Job):
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


def open_study(job: Job, progress: Progress, create: bool = False):
    """The study (created when ``create``), with the sampler of the options."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = sampler_for(job)
    if create and job.storage.startswith("journal:"):
        problem = journal_problem(Path(job.storage.removeprefix("journal:")))
        if problem:
            return reset_journal(job, progress, problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = open_storage(job.storage)
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
            return reset_journal(job, progress, e)
        raise ConfigError(f"--storage {shown_url(job.storage)}: {type(e).__name__}: {e}") from None
    except Exception as e:  # SQLAlchemy errors: bad URL, server down, missing driver
        raise ConfigError(
            f"--storage {shown_url(job.storage)}: cannot open the study ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None


def reset_journal(job: Job, progress: Progress, error: Exception | str):
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
    return open_study(job, progress, create=True)
