"""Child side of :mod:`edge_prune.tflm`: runs the TFLM interpreter where a crash is harmless.

Started as ``python -m edge_prune._tflm_child JOB_DIR``. ``JOB_DIR/request.json`` says what to do
(``"measure"`` or ``"run"``), ``JOB_DIR/model.tflite`` holds the model and, for ``"run"``,
``JOB_DIR/input.npz`` the samples. The answer is written to ``JOB_DIR/result.json`` (and
``output.npz``). File descriptors 1 and 2 go to ``JOB_DIR/log.txt`` for the whole run, because
TFLM prints its messages (and ``print_allocations``) from C, not through Python; stage markers
are written to the same log so the parent can say where a crash happened.

Imports only the standard library, numpy and tflite_micro: never TensorFlow, never the rest of
edge-prune.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import struct
import sys
from pathlib import Path

STAGE_MARK = "@@edge-prune-stage "
_FLATBUFFER_ERRORS = (
    struct.error,
    IndexError,
    ValueError,
    TypeError,
    UnicodeDecodeError,
    OverflowError,
    RecursionError,
    MemoryError,
)
_LIBC = ctypes.CDLL(None)
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
_OUT_OF_ARENA = (
    "Failed to allocate",
    "missing:",
    "Failed starting model allocation",
    "Too many buffers",
)
# Upper bound of the arena search: a model that needs more than this is not an MCU model.
MAX_ARENA_BYTES = 1 << 30
FIRST_ARENA_BYTES = 1 << 20


class _Log:
    """Reads what TFLM wrote to fds 1 and 2 since the last call."""

    def __init__(self, path: Path):
        self._reader = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115

    def new_text(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        _LIBC.fflush(None)
        return self._reader.read()


class _AllocationFailed(Exception):
    def __init__(self, kind: str, op: str | None, log: str):
        super().__init__(kind)
        self.kind = kind  # "missing_op" | "arena_too_small" | "other"
        self.op = op
        self.log = log


def _stage(name: str) -> None:
    os.write(2, f"{STAGE_MARK}{name}\n".encode())


def _redirect_output(log_path: Path) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _input_count(model: bytes) -> int:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema.Model.GetRootAs(model, 0).Subgraphs(0).InputsLength()


def _details(details: dict) -> dict:
    import numpy as np

    quant = details.get("quantization_parameters", {})
    return {
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "scales": [float(s) for s in quant.get("scales", [])],
        "zero_points": [int(z) for z in quant.get("zero_points", [])],
    }


def _classify_failure(log: str) -> _AllocationFailed:
    missing = _MISSING_OP.search(log)
    if missing:
        return _AllocationFailed("missing_op", missing.group(1), log)
    if any(marker in log for marker in _OUT_OF_ARENA):
        return _AllocationFailed("arena_too_small", None, log)
    return _AllocationFailed("other", None, log)


def _make_interpreter(model: bytes, arena_bytes: int, log: _Log):
    from tflite_micro.python.tflite_micro import runtime

    log.new_text()
    try:
        return runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    except RuntimeError as e:
        failure = _classify_failure(log.new_text() + f"\n{e}")
        raise failure from None


def _invoke_zeros(interpreter, n_inputs: int) -> None:
    import numpy as np

    for i in range(n_inputs):
        d = interpreter.get_input_details(i)
        shape = [max(int(s), 1) for s in d["shape"]]
        interpreter.set_input(np.zeros(shape, dtype=d["dtype"]), i)
    interpreter.invoke()


def _try_arena(model: bytes, arena_bytes: int, n_inputs: int, log: _Log):
    """Allocate and run one inference with ``arena_bytes``; return the interpreter or raise."""
    _stage(f"allocate arena_size={arena_bytes}")
    interpreter = _make_interpreter(model, arena_bytes, log)
    _stage(f"invoke arena_size={arena_bytes}")
    try:
        _invoke_zeros(interpreter, n_inputs)
    except RuntimeError as e:
        failure = _classify_failure(log.new_text() + f"\n{e}")
        raise failure from None
    return interpreter


def _first_working_arena(model: bytes, n_inputs: int, log: _Log) -> tuple[object, int]:
    arena = FIRST_ARENA_BYTES
    while True:
        try:
            return _try_arena(model, arena, n_inputs, log), arena
        except _AllocationFailed as failure:
            if failure.kind != "arena_too_small" or arena >= MAX_ARENA_BYTES:
                raise
            arena *= 4


def _smallest_arena(model: bytes, n_inputs: int, works: int, log: _Log, failing: int = 0) -> int:
    """Bisect for the smallest arena_size that allocates and runs one inference.

    Each step is announced as a stage, so that when a too-small arena crashes the process
    (seen: SIGSEGV on an int8 MLP) the parent can start again above it (``failing``).
    """
    working = works
    while working - failing > 1:
        _stage(f"bisect failing={failing} working={working}")
        middle = (failing + working) // 2
        try:
            interpreter = _try_arena(model, middle, n_inputs, log)
            del interpreter
            working = middle
        except _AllocationFailed:
            # It ran with a larger arena, so a failure here is the arena being too small,
            # whatever TFLM's message (e.g. "Too many buffers" from the memory planner).
            failing = middle
    return working


def _recorded_allocations(interpreter, log: _Log) -> dict:
    _stage("print_allocations")
    log.new_text()
    interpreter.print_allocations()
    text = log.new_text()
    arena = {kind: int(n) for kind, n in _ARENA_LINE.findall(text)}
    lines = [
        line.strip()
        for line in text.splitlines()
        if "RecordingMicroAllocator" in line and not line.startswith(STAGE_MARK)
    ]
    return {"arena": arena, "lines": lines}


def _failure_result(failure: _AllocationFailed) -> dict:
    lines = [ln for ln in failure.log.splitlines() if ln.strip() and STAGE_MARK not in ln]
    return {"status": failure.kind, "op": failure.op, "log_tail": lines[-6:]}


def measure(model: bytes, log: _Log, request: dict) -> dict:
    _stage("read flatbuffer")
    n_inputs = _input_count(model)
    try:
        interpreter, works = _first_working_arena(model, n_inputs, log)
        # Recorded with a power-of-two arena: the alignment padding TFLM counts in the total
        # depends a little (a few bytes) on arena_size.
        recorded = _recorded_allocations(interpreter, log)
        inputs = [_details(interpreter.get_input_details(i)) for i in range(n_inputs)]
        del interpreter
        failing = int(request.get("failing_arena_bytes", 0))
        working = min(works, int(request.get("working_arena_bytes", works)))
        smallest = _smallest_arena(model, n_inputs, working, log, failing)
    except _AllocationFailed as failure:
        return _failure_result(failure)
    return {
        "status": "ok",
        "smallest_arena_bytes": smallest,
        "recorded_with_arena_bytes": works,
        "recorded_arena_bytes": recorded["arena"],
        "allocation_lines": recorded["lines"],
        "inputs": inputs,
    }


def run(model: bytes, job: Path, request: dict, log: _Log) -> dict:
    import numpy as np

    x = np.load(job / "input.npz")["x"]
    try:
        if request.get("arena_bytes"):
            _stage(f"allocate arena_size={request['arena_bytes']}")
            interpreter = _make_interpreter(model, int(request["arena_bytes"]), log)
        else:
            interpreter, _ = _first_working_arena(model, _input_count(model), log)
    except _AllocationFailed as failure:
        return _failure_result(failure)
    expected = interpreter.get_input_details(0)
    shape = [max(int(s), 1) for s in expected["shape"]]
    dtype = np.dtype(expected["dtype"])
    problem = _input_problem(x, shape, dtype)
    if problem:
        return {"status": "bad_input", "message": problem}
    index = int(request.get("output_index", 0))
    outputs = []
    for n, sample in enumerate(x):
        _stage(f"invoke sample={n}")
        interpreter.set_input(sample.reshape(shape), 0)
        try:
            interpreter.invoke()
        except RuntimeError as e:
            return _failure_result(_classify_failure(log.new_text() + f"\n{e}"))
        outputs.append(np.array(interpreter.get_output(index)))
    stacked = np.stack(outputs) if outputs else np.zeros((0,), dtype=dtype)
    np.savez(job / "output.npz", y=stacked)
    return {"status": "ok", "input": _details(expected)}


def _input_problem(x, shape: list[int], dtype) -> str | None:
    per_sample = 1
    for d in shape:
        per_sample *= d
    if x.dtype != dtype:
        return f"input dtype is {x.dtype.name}, the model expects {dtype.name}"
    if x.ndim < 1 or x[0:1].size != per_sample * min(len(x), 1):
        return (
            f"input samples have shape {tuple(x.shape[1:])}, the model expects "
            f"{per_sample} values per sample (input shape {tuple(shape)})"
        )
    return None


def main(argv: list[str]) -> int:
    job = Path(argv[1])
    _redirect_output(job / "log.txt")
    log = _Log(job / "log.txt")
    request = json.loads((job / "request.json").read_text())
    model = (job / "model.tflite").read_bytes()
    _stage("import tflite_micro")
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401

    tasks = {
        "measure": lambda: measure(model, log, request),
        "run": lambda: run(model, job, request, log),
    }
    try:
        result = tasks[request["task"]]()
    except _FLATBUFFER_ERRORS as e:
        # The Python flatbuffer reader of tflite_micro (used before the C++ interpreter) hit
        # an offset or length outside the file.
        result = {"status": "corrupted", "message": f"{type(e).__name__}: {e}"}
    _stage("done")
    (job / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
