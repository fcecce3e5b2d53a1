"""SIGTERM/SIGHUP end ``edge-prune`` like Ctrl-C, and the TFLM child never outlives it.

Each test starts ``edge-prune report`` on a fixture in its own process with a private TMPDIR,
makes the TFLM child slow (it honours ``EDGE_PRUNE_TFLM_TEST_SLEEP_S``), waits until the child
is running, signals the parent and checks: exit code and one line for SIGTERM/SIGHUP; for
SIGKILL of the parent, the child dies with it (``PR_SET_PDEATHSIG``) and removes its job
directory; in every case no ``edge-prune-tflm-*`` directory is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import CLI, alive, children, wait_for

from edge_prune.measurement._tflm_child import SLEEP_ENV

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 20.0


def _start_report(tmp_path: Path, cnn_int8_path: Path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(REPO), **{SLEEP_ENV: "60"})
    parent = subprocess.Popen(
        [*CLI, "report", str(cnn_int8_path), "--target", "cortex-m4"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def sleeping_child():
        logs = list(tmpdir.glob("edge-prune-tflm-*/log.txt"))
        if logs and "test sleep" in logs[0].read_text():
            return children(parent.pid)
        return None

    child = wait_for(sleeping_child, "the TFLM child to start", WAIT_S)[0]
    return parent, child, tmpdir


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_the_run_in_one_line_and_leave_nothing(
    signum, tmp_path, cnn_int8_path
):
    parent, child, tmpdir = _start_report(tmp_path, cnn_int8_path)
    parent.send_signal(signum)
    _, err = parent.communicate(timeout=WAIT_S)
    assert parent.returncode == 128 + signum
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"edge-prune: ended by {signal.Signals(signum).name}; no artifact was left half-written"
    ]
    wait_for(lambda: not alive(child), "the TFLM child to end", 5)
    assert list(tmpdir.iterdir()) == []


def test_sigkill_of_the_parent_ends_the_child_and_removes_its_job_dir(tmp_path, cnn_int8_path):
    parent, child, tmpdir = _start_report(tmp_path, cnn_int8_path)
    parent.kill()
    parent.wait(timeout=WAIT_S)
    wait_for(lambda: not alive(child), "the TFLM child to die with its parent", 5)
    wait_for(lambda: list(tmpdir.iterdir()) == [], "the job directory to be removed", 5)


def test_a_job_dir_left_by_a_dead_process_is_removed_on_the_next_run(
    tmp_path, monkeypatch, mlp_float_path
):
    import tempfile

    from edge_prune.measurement import tflm

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    orphan = tmp_path / f"edge-prune-tflm-{int(dead.stdout)}-x1"
    orphan.mkdir()
    (orphan / "model.tflite").write_bytes(b"x")
    mine = tmp_path / f"edge-prune-tflm-{os.getpid()}-x2"  # a live process's: kept
    mine.mkdir()
    tflm.measure_arena(mlp_float_path)
    assert not orphan.exists()
    assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
