"""Run the TFLM interpreter (``tflite_micro``) in a child process, so it cannot take us down.

TFLM segfaults on some malformed flatbuffers and aborts on some valid ones (degenerate
quantization parameters, see FIELD_NOTES). Every call here copies the model to a temporary
directory, starts ``python -m edge_prune._tflm_child`` on it with a time limit, and turns what
went wrong into an error that says what happened: the op TFLM has no kernel for
(:class:`MissingOpError`), the signal that killed the interpreter, its exit code, or the timeout.

Two services:

- :func:`measure_arena`: the smallest ``arena_size`` with which the model allocates and runs one
  inference (inputs all zeros) on this host, and the arena use that TFLM's own
  ``RecordingMicroAllocator`` prints ("Arena allocation total/head/tail").
- :func:`run`: invoke the model once per sample and return the stacked outputs.

This module never imports TensorFlow, and imports ``tflite_micro`` only in the child.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_prune.errors import DataError, ModelFileError, TFLMError
from edge_prune.tflite_file import check_identifier, load_bytes

_CHILD_MODULE = "edge_prune._tflm_child"
_STAGE_MARK = "@@edge-prune-stage "
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)

MEASURE_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 600.0


class MissingOpError(TFLMError):
    """TFLM has no kernel for an operator the model uses (e.g. DENSIFY of a sparse model)."""

    def __init__(self, message: str, op: str):
        super().__init__(message)
        self.op = op


class TFLMTimeoutError(TFLMError):
    """The TFLM interpreter did not finish within the time limit (the child was killed)."""


@dataclass(frozen=True)
class ArenaMeasurement:
    """Tensor arena of one model, measured by the TFLM interpreter on this (64-bit) host.

    ``recorded_*`` are what TFLM's ``RecordingMicroAllocator`` prints after one inference:
    head = non-persistent tensors (the memory plan; the same on a 32-bit MCU), tail =
    persistent structures (pointer-sized fields, so larger here than on a 32-bit Cortex-M),
    total = head + tail, printed after one inference with ``arena_size =
    recorded_with_arena_bytes`` (alignment padding varies by a few bytes with arena_size).
    ``smallest_arena_bytes`` is the smallest ``arena_size`` that let the model allocate and run
    one inference here; it also holds what TFLM places in the arena before recording starts
    (the allocator and memory planner objects, alignment).
    """

    smallest_arena_bytes: int
    recorded_total_bytes: int
    recorded_head_bytes: int
    recorded_tail_bytes: int
    recorded_with_arena_bytes: int
    allocation_lines: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "smallest_arena_bytes": self.smallest_arena_bytes,
            "recorded_with_arena_bytes": self.recorded_with_arena_bytes,
            "recorded_total_bytes": self.recorded_total_bytes,
            "recorded_head_bytes": self.recorded_head_bytes,
            "recorded_tail_bytes": self.recorded_tail_bytes,
            "allocation_lines": list(self.allocation_lines),
        }


def measure_arena(
    model: bytes | str | Path, *, timeout_s: float = MEASURE_TIMEOUT_S, label: str | None = None
) -> ArenaMeasurement:
    """Measure the tensor arena the model needs; raise MissingOpError if TFLM cannot run it."""
    data, label = _model_bytes(model, label)
    result = _measure_in_child(data, label, timeout_s)
    recorded = result["recorded_arena_bytes"]
    if set(recorded) != {"total", "head", "tail"}:
        raise TFLMError(
            f"{label}: TFLM print_allocations gave no 'Arena allocation total/head/tail' lines "
            f"(got {result['allocation_lines'][:3]})"
        )
    return ArenaMeasurement(
        smallest_arena_bytes=int(result["smallest_arena_bytes"]),
        recorded_total_bytes=recorded["total"],
        recorded_head_bytes=recorded["head"],
        recorded_tail_bytes=recorded["tail"],
        recorded_with_arena_bytes=int(result["recorded_with_arena_bytes"]),
        allocation_lines=tuple(result["allocation_lines"]),
    )


def run(
    model: bytes | str | Path,
    x: np.ndarray,
    *,
    arena_bytes: int | None = None,
    output_index: int = 0,
    timeout_s: float = RUN_TIMEOUT_S,
    label: str | None = None,
) -> np.ndarray:
    """Invoke the model once per sample of ``x`` (first axis = batch); stack its outputs.

    ``x`` must already have the model input's dtype (nothing is quantized here) and
    ``x.shape[1:]`` must hold as many values as the model input. ``arena_bytes=None`` starts at
    1 MiB and grows until the model allocates. Returns output ``output_index`` of every
    sample, stacked along a new first axis.
    """
    data, label = _model_bytes(model, label)
    x = np.asarray(x)
    request = {"task": "run", "arena_bytes": arena_bytes, "output_index": output_index}
    with tempfile.TemporaryDirectory(prefix="edge-prune-tflm-") as tmp:
        job = Path(tmp)
        np.savez(job / "input.npz", x=x)
        _run_child_in(job, request, data, label, timeout_s)
        with np.load(job / "output.npz") as outputs:
            return outputs["y"]


_BISECT = re.compile(r"bisect failing=(\d+) working=(\d+)")
_PROBE = re.compile(r"(?:allocate|invoke) arena_size=(\d+)")
MAX_CRASH_RESTARTS = 8


def _measure_in_child(data: bytes, label: str, timeout_s: float) -> dict:
    """Run the arena search; a crash on a probe below a known working size means "too small".

    TFLM can crash (not fail cleanly) when the arena is too small; the search then goes on in a
    new child above the size that crashed. A crash anywhere else is an error.
    """
    request: dict = {"task": "measure"}
    deadline = time.monotonic() + timeout_s  # one time limit for all attempts together
    for _ in range(MAX_CRASH_RESTARTS + 1):
        with tempfile.TemporaryDirectory(prefix="edge-prune-tflm-") as tmp:
            job = Path(tmp)
            try:
                left = _left(deadline, timeout_s, label)
                return _run_child_in(job, request, data, label, left, timeout_s)
            except TFLMError as crash:
                bounds = _bisect_crash(job)
                if bounds is None or isinstance(crash, (MissingOpError, TFLMTimeoutError)):
                    raise
        request = {
            "task": "measure",
            "failing_arena_bytes": bounds[0],
            "working_arena_bytes": bounds[1],
        }
    raise TFLMError(
        f"{label}: TFLM crashed on {MAX_CRASH_RESTARTS + 1} arena sizes while searching for "
        "the smallest arena"
    )


def _left(deadline: float, timeout_s: float, label: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TFLMTimeoutError(f"{label}: TFLM arena search did not finish within {timeout_s:g} s")
    return left


def _bisect_crash(job: Path) -> tuple[int, int] | None:
    """``(crashed size, working size)`` when the child died on a bisection probe, else None."""
    stages, _ = _child_log(job) or ([], [])
    bisects = [i for i, stage in enumerate(stages) if _BISECT.fullmatch(stage)]
    if not bisects:
        return None
    after = stages[bisects[-1] + 1 :]
    probes = [_PROBE.fullmatch(stage) for stage in after]
    if not probes or not all(probes):
        return None
    working = int(_BISECT.fullmatch(stages[bisects[-1]]).group(2))
    return int(probes[0].group(1)), working


def _model_bytes(model: bytes | str | Path, label: str | None) -> tuple[bytes, str]:
    data, default_label = load_bytes(model)
    label = label or default_label
    check_identifier(data, label)
    return data, label


def _run_child(request: dict, data: bytes, label: str, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="edge-prune-tflm-") as tmp:
        return _run_child_in(Path(tmp), request, data, label, timeout_s)


def _run_child_in(
    job: Path,
    request: dict,
    data: bytes,
    label: str,
    timeout_s: float,
    stated_timeout_s: float | None = None,
) -> dict:
    """Run the child on ``job``; ``stated_timeout_s`` is the limit the user set, when
    ``timeout_s`` is only what is left of it."""
    (job / "model.tflite").write_bytes(data)
    (job / "request.json").write_text(json.dumps(request))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", _CHILD_MODULE, str(job)]
    try:
        completed = subprocess.run(
            command, env=env, timeout=timeout_s, capture_output=True, check=False
        )
    except subprocess.TimeoutExpired:
        stage, _ = _read_log(job)
        raise TFLMTimeoutError(
            f"{label}: TFLM interpreter did not finish within "
            f"{stated_timeout_s or timeout_s:g} s ({stage}); "
            "the child process was killed"
        ) from None
    if completed.returncode != 0:
        raise TFLMError(_crash_message(job, label, completed))
    result = json.loads((job / "result.json").read_text())
    return _checked(result, label)


def _checked(result: dict, label: str) -> dict:
    status = result["status"]
    if status == "ok":
        return result
    if status == "missing_op":
        op = result["op"]
        raise MissingOpError(
            f"{label}: does not run on TFLM: no kernel for op {op} "
            f"(TFLM: \"Didn't find op for builtin opcode '{op}'\")",
            op,
        )
    if status == "corrupted":
        raise ModelFileError(
            f"{label}: truncated or corrupted TFLite flatbuffer "
            f"(TFLM's reader: {result['message']})"
        )
    if status == "bad_input":
        raise DataError(f"{label}: {result['message']}")
    detail = "; ".join(result.get("log_tail", [])[-3:]) or "no message"
    raise TFLMError(f"{label}: TFLM could not allocate or run the model: {detail}")


def _crash_message(job: Path, label: str, completed: subprocess.CompletedProcess) -> str:
    stage, messages = _read_log(job)
    code = completed.returncode
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    said = "; ".join(messages[-3:]) or "no message"
    return (
        f"{label}: TFLM interpreter {how} ({stage}); the model is malformed or TFLM cannot "
        f"handle it; last output: {said}"
    )


def _child_log(job: Path) -> tuple[list[str], list[str]] | None:
    """The stages the child announced and the other lines it printed; None if it wrote none."""
    try:
        text = (job / "log.txt").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    stages, messages = [], []
    for line in text.splitlines():
        if line.startswith(_STAGE_MARK):
            stages.append(line[len(_STAGE_MARK) :])
        elif line.strip():
            messages.append(line.strip())
    return stages, messages


def _read_log(job: Path) -> tuple[str, list[str]]:
    """Return the last stage the child reached and the messages it printed."""
    log = _child_log(job)
    if log is None:
        return "before it started", []
    stages, messages = log
    return (f"during {stages[-1]}" if stages else "while starting"), messages


@dataclass(frozen=True)
class TFLMRun:
    """Outputs of one model over a batch of samples, and the arena TFLM recorded for it."""

    outputs: np.ndarray | None
    arena: ArenaMeasurement


def execute(
    model: bytes | str | Path,
    x: np.ndarray | None = None,
    *,
    label: str | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> TFLMRun:
    data, label = _model_bytes(model, label)
    outputs = None if x is None else run(data, x, label=label, timeout_s=timeout_s)
    return TFLMRun(outputs, measure_arena(data, label=label))
