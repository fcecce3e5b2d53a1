"""`edge-prune search --jobs 2` under signals: SIGTERM stops it within 5 s keeping the finished
trials; SIGKILL of the parent takes its workers (and their helpers) with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from processes import alive, descendants, wait_for

from edge_prune.data import load_digits

TINY = """
[train]
epochs = 2
[prune]
begin_epoch = 0
end_epoch = 1
epochs = 1
frequency = 5
[structured]
epochs = 1
[compress]
epochs = 0
[select]
tolerance_points = 100.0
"""
CLI = "import sys; from edge_prune import cli; sys.exit(cli.main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("signals")
    (root / "tiny.toml").write_text(TINY)
    digits = load_digits()
    np.savez(
        root / "small.npz",
        x_train=digits.x_train[:320],
        y_train=digits.y_train[:320],
        x_test=digits.x_test[:80],
        y_test=digits.y_test[:80],
    )
    return root


def _start(root: Path, out: Path, log: Path) -> subprocess.Popen:
    args = ["search", "--target", "cortex-m4", "--config", str(root / "tiny.toml")]
    args += ["--data", str(root / "small.npz"), "--out", str(out), "--jobs", "2"]
    args += ["--ratios", "0,0.5", "--sparsities", "0.5,0.8,0.9", "--clusters", "0,8"]
    args += ["--trials", "12"]
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-c", CLI, *args], stderr=stderr)


def _complete_trials(out: Path) -> int:
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(
            str(out / "search-cortex-m4.cache" / "study.journal")
        )
    )
    (name,) = optuna.study.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    return sum(t.state.name == "COMPLETE" for t in study.trials)


def test_sigterm_stops_workers_within_5_s_keeping_finished_trials(inputs, tmp_path):
    log = tmp_path / "stderr"
    process = _start(inputs, tmp_path / "out", log)
    try:
        finished = b"[worker", b"] [1/"
        wait_for(lambda: all(m in log.read_bytes() for m in finished), "a finished trial", 300)
        workers = descendants(process.pid)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        process.kill()
    assert code == 143 and took < 5.0, (code, took, log.read_text()[-2000:])
    wait_for(lambda: not any(alive(p) for p in workers), "the workers to end", 5)
    assert _complete_trials(tmp_path / "out") >= 1


def test_sigkill_of_the_parent_takes_the_workers_with_it(inputs, tmp_path):
    log = tmp_path / "stderr"
    process = _start(inputs, tmp_path / "out", log)
    try:
        wait_for(lambda: len(descendants(process.pid)) >= 2, "two workers", 120)
        time.sleep(8)  # the workers are importing TensorFlow or training by now
        family = descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
    wait_for(lambda: not any(alive(p) for p in family), f"{family} to end", 5)
