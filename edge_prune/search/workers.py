"""Local worker processes of a search (``--jobs N``): spawned, each dies with its parent
(``PR_SET_PDEATHSIG``), SIGTERM/SIGINT stop them within :data:`STOP_SECONDS` (what they
finished is in the study)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge_prune._process import die_with_parent
from edge_prune.runner import Progress, stderr_progress

STOP_SECONDS = 4.0  # SIGTERM to SIGKILL for workers that do not stop

Work = Callable[[Any, Progress], None]


def run_workers(work: Work, jobs: Sequence[Any], progress: Progress) -> None:
    """``work(job, progress)`` for each job in a spawned process of its own (``work``: a
    module-level function, ``jobs`` picklable); returns when all have ended."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker_main,
            args=(work, job, index, os.getpid()),
            name=f"edge-prune-search-{index}",
        )
        for index, job in enumerate(jobs)
    ]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except BaseException:
        progress(f"stopping {len(workers)} workers (finished trials are kept)")
        _stop(workers)
        raise
    failed = [f"worker {i} exit code {w.exitcode}" for i, w in enumerate(workers) if w.exitcode]
    if failed:
        progress(f"WARNING: {', '.join(failed)}; the study keeps what they finished")


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


def _worker_main(work: Work, job: Any, index: int, parent: int) -> None:
    """A spawned worker: dies with its parent, stops on SIGTERM/SIGINT after failing its
    running trial (finished ones are in the study)."""
    die_with_parent(parent)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        work(job, _prefixed(index))
    except KeyboardInterrupt:
        os._exit(130)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _prefixed(worker: int) -> Progress:
    return lambda message: stderr_progress(f"[worker {worker}] {message}")
