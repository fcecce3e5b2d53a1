"""Interrupted and repeated runs, and budgets at the edge.

- ``edge-prune model`` killed (SIGINT, SIGKILL) while it runs leaves ``OUT/<target>/`` as it
  was (absent, or the previous complete run), a run after that completes, and two runs with the
  same seed write byte-identical ``.tflite`` files and C arrays (fast config, 240 samples).
- The one window where a kill can land between "before" and "complete" is the directory swap;
  it is hit on purpose by killing a process inside :func:`staged_directory`.
- ``edge-prune report`` gives exit 0 for a target the model fits with 0 bytes to spare and 1 for
  targets one byte too small (flash, RAM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from processes import CLI

from edge_prune.artifacts import staged_directory
from edge_prune.cli import main

TARGET = "cortex-m4"
# Every key that shapes the run is given, so that changed defaults do not slow this test down.
FAST = """
[train]
epochs = 2
batch_size = 32
seed = 0
[structured]
ratio = 0.25
epochs = 1
[prune]
final_sparsity = 0.6
epochs = 2
end_epoch = 1
frequency = 2
[compress]
enabled = true
clusters = 8
epochs = 1
[select]
tolerance_points = 100.0
"""
RUN_TIMEOUT_S = 400


def _snapshot(out: Path) -> dict[str, bytes] | None:
    """Every file of ``out/<target>/`` by name, or None when the directory is absent."""
    directory = out / TARGET
    if not directory.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _command(root: Path, out: Path) -> list[str]:
    return [*CLI, "model", "--target", TARGET,
            "--config", str(root / "fast.toml"), "--data", str(root / "small.npz"),
            "--out", str(out)]  # fmt: skip


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own group: SIGKILL reaches the TFLM child too
        preexec_fn=_sigint_as_at_a_terminal,
    )  # fmt: skip


def _sigint_as_at_a_terminal() -> None:
    """A test run started in the background by a shell without job control (``make test &``,
    some CI steps) passes SIGINT on as ignored, and Python then leaves it ignored; a user's
    shell gives the command the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, stderr


def _run_and_kill(command: list[str], when_line_has: str, sig: signal.Signals) -> tuple[int, str]:
    """Start a run, send ``sig`` when a progress line contains ``when_line_has``."""
    process = _start(command)
    lines: list[str] = []  # its stderr, read as it comes by a thread
    reader = threading.Thread(target=_read_lines, args=(process.stderr, lines))
    reader.start()
    try:
        if _wait_for_line(lines, when_line_has, reader):
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)
            else:  # one Ctrl-C must stop it: a second one while it exits would kill it (-2)
                process.send_signal(sig)
        process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join()
    return process.returncode, "".join(lines)


def _read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _wait_for_line(lines: list[str], text: str, reader: threading.Thread) -> bool:
    """Whether a line with ``text`` came before the run closed its stderr."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        finished = not reader.is_alive()
        if any(text in line for line in lines):
            return True
        if finished:
            return False
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two complete runs with the same seed into two directories, each next to an interrupted
    run (two at a time, to use both cores):

    1. complete run into ``a/``   |  run into ``b/`` killed (SIGKILL) at magnitude pruning
    2. run into ``a/`` interrupted (SIGINT) at channel removal  |  complete run into ``b/``
    """
    from edge_prune.data import load_digits

    root = tmp_path_factory.mktemp("interrupt")
    (root / "fast.toml").write_text(FAST)
    digits = load_digits()  # a small slice keeps each run short
    np.savez(root / "small.npz", x_train=digits.x_train[:240], y_train=digits.y_train[:240],
             x_test=digits.x_test[:60], y_test=digits.y_test[:60])  # fmt: skip
    a, b = root / "a", root / "b"
    record = {}
    first = _start(_command(root, a))
    record["killed"] = _run_and_kill(_command(root, b), "] magnitude pruning", signal.SIGKILL)
    record["after_killed"] = _snapshot(b)
    record["first"] = _finish(first)
    record["after_first"] = _snapshot(a)
    second = _start(_command(root, b))
    record["interrupted"] = _run_and_kill(_command(root, a), "] structured pruning", signal.SIGINT)
    record["after_interrupted"] = _snapshot(a)
    record["second"] = _finish(second)
    record["after_second"] = _snapshot(b)
    record["entries"] = tuple(
        sorted(p.name for p in d.iterdir()) if d.exists() else None for d in (a, b)
    )
    return record


def test_run_killed_before_any_complete_run_leaves_no_target_directory(runs):
    code, stderr = runs["killed"]
    assert code == -signal.SIGKILL, stderr
    assert runs["after_killed"] is None


def test_complete_run_writes_every_artifact(runs):
    code, stderr = runs["first"]
    assert code == 0, stderr[-2000:]
    assert {"model.tflite", "model_data.cc", "model_data.h", "report.json", "report.md"} <= set(
        runs["after_first"]
    )


def test_ctrl_c_exits_130_and_leaves_the_previous_artifacts_byte_for_byte(runs):
    code, stderr = runs["interrupted"]
    assert code == 130, stderr[-2000:]
    assert stderr.rstrip().endswith("interrupted; no artifact was left half-written")
    assert runs["after_interrupted"] == runs["after_first"]


def test_run_after_a_killed_run_completes_and_no_staging_is_left(runs):
    code, stderr = runs["second"]
    assert code == 0, stderr[-2000:]
    assert set(runs["after_second"]) == set(runs["after_first"])
    assert runs["entries"] == ([TARGET], [TARGET])


def test_same_seed_gives_byte_identical_tflite_files_and_c_arrays(runs):
    first, second = runs["after_first"], runs["after_second"]
    reproducible = [n for n in first if n.endswith((".tflite", ".cc", ".h"))]
    assert len(reproducible) >= 5
    assert [n for n in reproducible if first[n] != second[n]] == []
    # report.json differs only in the wall times it records
    a, b = (json.loads(r["report.json"]) for r in (first, second))
    a.pop("timings_s"), b.pop("timings_s")
    assert a == b


# --------------------------------------------------------------------------- the swap window

_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from edge_prune import artifacts

    destination, when = Path(sys.argv[1]), sys.argv[2]
    exchange = artifacts._rename_exchange

    def exchange_then_die(a, b):
        done = exchange(a, b)
        os.kill(os.getpid(), signal.SIGKILL)

    if when == "after-swap":
        artifacts._rename_exchange = exchange_then_die
    with artifacts.staged_directory(destination) as staging:
        (staging / "model.tflite").write_bytes(b"new model")
        with open(staging / "report.json", "wb") as f:
            f.write(b'{"half": ')
            f.flush()
            if when == "mid-write":
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(b"1}")
    """
)


def _previous_run(destination: Path) -> None:
    with staged_directory(destination) as staging:
        (staging / "model.tflite").write_bytes(b"old model")
        (staging / "report.json").write_bytes(b'{"old": 1}')


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("mid-write", {"model.tflite": b"old model", "report.json": b'{"old": 1}'}),
        ("after-swap", {"model.tflite": b"new model", "report.json": b'{"half": 1}'}),
    ],
)
def test_kill_inside_the_artifact_swap_leaves_old_or_new_and_the_next_run_cleans_up(
    tmp_path, when, expected
):
    destination = tmp_path / "out" / TARGET
    _previous_run(destination)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(destination), when], check=False
    )
    assert killed.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in destination.iterdir()} == expected
    leftovers = [p.name for p in destination.parent.iterdir() if p.name != TARGET]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{TARGET}.staging-")
    with staged_directory(destination) as staging:
        (staging / "model.tflite").write_bytes(b"next model")
    assert [p.name for p in destination.parent.iterdir()] == [TARGET]
    assert (destination / "model.tflite").read_bytes() == b"next model"


# --------------------------------------------------------------------------- budget edges


def _report(capsys, model: Path, *targets: Path) -> tuple[int, dict]:
    argv = ["report", str(model), "--format", "json"]
    for target in targets:
        argv += ["--target", str(target)]
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_fit_by_zero_bytes_exits_0_and_one_byte_short_exits_1(
    capsys, monkeypatch, target_file, cnn_int8_path
):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    roomy = target_file("roomy")
    code, first = _report(capsys, cnn_int8_path, roomy)
    assert code == 0
    flash = first["targets"][0]["flash"]["needed_bytes"]
    ram = first["targets"][0]["ram"]["needed_bytes"]
    exact = target_file("exact", flash_bytes=flash, ram_bytes=ram)
    code, report = _report(capsys, cnn_int8_path, exact)
    assert code == 0
    verdict = report["targets"][0]
    assert verdict["flash"]["headroom_bytes"] == 0 and verdict["ram"]["headroom_bytes"] == 0
    flash_short = target_file("flash-short", flash_bytes=flash - 1, ram_bytes=ram)
    ram_short = target_file("ram-short", flash_bytes=flash, ram_bytes=ram - 1)
    code, report = _report(capsys, cnn_int8_path, exact, flash_short, ram_short)
    assert code == 1
    by_name = {t["target"]: t for t in report["targets"]}
    assert by_name["exact"]["fits"] is True
    assert by_name["flash-short"]["status"] == "does not fit (flash)"
    assert by_name["flash-short"]["flash"]["headroom_bytes"] == -1
    assert by_name["ram-short"]["status"] == "does not fit (RAM)"
    assert by_name["ram-short"]["ram"]["headroom_bytes"] == -1
    code, _ = _report(capsys, cnn_int8_path, flash_short)
    assert code == 1
