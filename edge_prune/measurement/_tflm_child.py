"""Child side of :mod:`edge_prune.measurement.tflm`: runs the TFLM interpreter where a crash is
harmless.

Started as ``python -m edge_prune.measurement._tflm_child JOB_DIR``. ``JOB_DIR/request.json`` says
what to do, ``JOB_DIR/model.tflite`` holds the model and ``JOB_DIR/input.npz`` (optional) the
samples. One run does everything for one artifact: allocate, record the arena with TFLM's
``RecordingMicroAllocator``, run the samples (or one all-zero input), then check that the arena
figure it reports is enough by allocating and running once more with exactly that size.
The answer is written to ``JOB_DIR/result.json`` (and ``output.npz``). File descriptors 1 and 2
go to ``JOB_DIR/log.txt``, because TFLM prints its messages (and ``print_allocations``) from C,
not through Python; stage markers are written to the same log so the parent can say where a
crash happened.

The child dies with its parent (``PR_SET_PDEATHSIG``) and then removes its job directory.

Imports only the standard library, numpy and tflite_micro: never TensorFlow, never the rest of
edge-prune.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import struct
import sys
import time
from pathlib import Path

from edge_prune._process import die_with_parent

STAGE_MARK = "@@edge-prune-stage "
# Test hooks: seconds to sleep before importing TFLM (to test signals on a slow child); abort
# while checking the arena figure with the first margin (as TFLM does on some too-small arenas).
SLEEP_ENV = "EDGE_PRUNE_TFLM_TEST_SLEEP_S"
ABORT_VERIFY_ENV = "EDGE_PRUNE_TFLM_TEST_ABORT_VERIFY"
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
_LIBC = ctypes.CDLL(None, use_errno=True)
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
# "'TfLiteEvalTensor data' used 168 bytes with alignment overhead (requested 168 bytes for 7
# allocations)" (RecordingMicroAllocator::PrintRecordedAllocation,
# tensorflow/lite/micro/recording_micro_allocator.cc)
_CATEGORY_LINE = re.compile(
    r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) "
)
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
# A custom op without a registered kernel: GetRegistrationFromOpCode (micro_op_resolver.cc)
# logs nothing, then MicroInterpreter::PrepareNodeAndRegistrationDataFromFlatbuffer
# (micro_interpreter.cc) logs only "Failed to get registration from op code CUSTOM".
_NO_CUSTOM_REGISTRATION = "Failed to get registration from op code CUSTOM"
# The custom ops tflite_micro's host interpreter registers (python_ops_resolver.cc: AddDecode;
# its AddEthosU registers nothing in a build without an Ethos-U driver).
HOST_CUSTOM_OPS = ("TFLM_DECODE",)
# Custom ops of shared libraries the parent asked for (request "custom_libraries": path, the
# registerer's name and its ops), loaded with RTLD_GLOBAL so that the interpreter's dlsym finds
# the registerer (python/tflite_micro/interpreter_wrapper.cc, AddCustomOpRegistererByName).
_REGISTERERS: list[str] = []
_LIBRARY_OPS: list[str] = []
# MicroInterpreterGraph::PrepareSubgraphs (tensorflow/lite/micro/micro_interpreter_graph.cc):
# "Node DEQUANTIZE (number 0f) failed to prepare with status 1"
_PREPARE_FAILED = re.compile(r"Node (\S+) \(number (\d+)f?\) failed to prepare")
_OUT_OF_ARENA = (
    "Failed to allocate",
    "missing:",
    "Failed starting model allocation",
    "Too many buffers",
)
# Upper bound of the arena search: a model that needs more than this is not an MCU model.
MAX_ARENA_BYTES = 1 << 30
FIRST_ARENA_BYTES = 1 << 20
# MicroArenaBufferAlignment(), tensorflow/lite/micro/micro_arena_constants.h
ARENA_ALIGNMENT_BYTES = 16
# What TFLM holds in the head only while it plans the arena, so the recorded figures miss it
# (MicroAllocator::CommitStaticMemoryPlan, tensorflow/lite/micro/micro_allocator.cc; 64-bit
# host): the scratch-buffer request slots (kMaxScratchBuffersPerOp = 12, 16 B each), one
# AllocationInfo per tensor (32 B, micro_allocation_info.h) and the GreedyMemoryPlanner's
# per-buffer scratch for each tensor it places (40 B, greedy_memory_planner.h).
PLANNING_FIXED_BYTES = 12 * 16
PLANNING_BYTES_PER_TENSOR = 32
PLANNING_BYTES_PER_PLANNED_TENSOR = 40
MAX_VERIFY_STEPS = 4  # then the arena figure is 2.4x the first candidate


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
        self.kind = kind  # "missing_op" | "prepare_failed" | "arena_too_small" | "other"
        self.op = op
        self.log = log


def _stage(name: str) -> None:
    os.write(2, f"{STAGE_MARK}{name}\n".encode())


def _redirect_output(log_path: Path) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _die_with_parent(job: Path, parent_pid: int) -> None:
    """Get SIGTERM when the parent dies (even by SIGKILL), then remove the job directory."""

    def on_term(signum, frame):
        shutil.rmtree(job, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # end as killed by the signal, as without this handler

    signal.signal(signal.SIGTERM, on_term)
    if os.getppid() != parent_pid:  # the parent died already
        on_term(signal.SIGTERM, None)
    die_with_parent(parent_pid, signal.SIGTERM)


def _model_counts(model: bytes) -> tuple[int, int, int, int, int]:
    """``(inputs of subgraph 0, tensors, tensors without constant data, outputs of subgraph
    0, subgraphs)`` (tensors of all subgraphs)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    buffers = root.BuffersLength()
    graphs = [root.Subgraphs(i) for i in range(root.SubgraphsLength())]
    tensors = [g.Tensors(j) for g in graphs for j in range(g.TensorsLength())]

    def constant(t) -> bool:
        b = t.Buffer()
        return 0 < b < buffers and (root.Buffers(b).DataLength() > 0 or root.Buffers(b).Size() > 1)

    planned = sum(not constant(t) for t in tensors)
    return graphs[0].InputsLength(), len(tensors), planned, graphs[0].OutputsLength(), len(graphs)


def _op_nodes(model: bytes) -> dict[str, int]:
    """Operators per op name (builtin name, or CUSTOM:<custom code>), all subgraphs."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    root = schema.Model.GetRootAs(model, 0)
    nodes: dict[str, int] = {}
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            code = root.OperatorCodes(graph.Operators(i).OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'').decode('utf-8', 'replace')}"
            nodes[name] = nodes.get(name, 0) + 1
    return nodes


def _node_temps(model: bytes) -> list[list[int]]:
    """Per edge-prune sparse operator (distinct rows), what its Prepare holds as temporary
    TfLiteTensors: ``[tensors, quantized tensors, their quantization channels]`` over its
    inputs and outputs (TFLM's AllocateTempTfLiteTensor also copies a quantized tensor's zero
    points, one int32 per channel, into temporary memory). Only these ops: they keep their
    persistent data from Init, so the whole tail is in place while their temporaries are
    held; TFLM's kernels take theirs in Prepare, after the temporaries (the derivation without
    this term is held against device runs)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    rows = set()
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = root.OperatorCodes(op.OpcodeIndex()).CustomCode() or b""
            if not code.startswith(b"EDGE_PRUNE_SPARSE"):
                continue
            indices = [op.Inputs(j) for j in range(op.InputsLength())]
            indices += [op.Outputs(j) for j in range(op.OutputsLength())]
            tensors = quantized = channels = 0
            for index in indices:
                if index < 0:
                    continue
                tensors += 1
                q = graph.Tensors(index).Quantization()
                if q is not None and q.ScaleLength() > 0 and q.ZeroPointLength() > 0:
                    quantized += 1
                    channels += q.ScaleLength()
            rows.add((tensors, quantized, channels))
    return [list(row) for row in sorted(rows)]


def _details(details: dict) -> dict:
    import numpy as np

    quant = details.get("quantization_parameters", {})
    return {
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "scales": [float(s) for s in quant.get("scales", [])],
        "zero_points": [int(z) for z in quant.get("zero_points", [])],
    }


def _classify_failure(log: str, model: bytes | None = None) -> _AllocationFailed:
    missing = _MISSING_OP.search(log)
    if missing:
        return _AllocationFailed("missing_op", missing.group(1), log)
    if _NO_CUSTOM_REGISTRATION in log and model is not None:
        return _AllocationFailed("missing_op", _unregistered_custom_op(model), log)
    if any(marker in log for marker in _OUT_OF_ARENA):
        return _AllocationFailed("arena_too_small", None, log)
    prepare = _PREPARE_FAILED.search(log)
    if prepare:
        return _AllocationFailed("prepare_failed", f"{prepare.group(1)} #{prepare.group(2)}", log)
    return _AllocationFailed("other", None, log)


def _unregistered_custom_op(model: bytes) -> str:
    """``CUSTOM:<custom_code>`` of the first custom operator, in the order TFLM registers
    operators (subgraph by subgraph), that the host interpreter has no kernel for."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            code = root.OperatorCodes(graph.Operators(i).OpcodeIndex())
            if (
                max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                != schema.BuiltinOperator.CUSTOM
            ):
                continue
            name = (code.CustomCode() or b"").decode("utf-8", "replace")
            if name not in HOST_CUSTOM_OPS and name not in _LIBRARY_OPS:
                return f"CUSTOM:{name}"
    return "CUSTOM:"


def _make_interpreter(model: bytes, arena_bytes: int, log: _Log):
    from tflite_micro.python.tflite_micro import runtime

    log.new_text()
    try:
        if _REGISTERERS:
            return runtime.Interpreter.from_bytes(
                model, arena_size=arena_bytes, custom_op_registerers=list(_REGISTERERS)
            )
        return runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    except RuntimeError as e:
        failure = _classify_failure(log.new_text() + f"\n{e}", model)
        raise failure from None


def _invoke_zeros(interpreter, n_inputs: int, log: _Log) -> None:
    import numpy as np

    for i in range(n_inputs):
        d = interpreter.get_input_details(i)
        shape = [max(int(s), 1) for s in d["shape"]]
        interpreter.set_input(np.zeros(shape, dtype=d["dtype"]), i)
    _invoke(interpreter, log)


def _invoke(interpreter, log: _Log) -> None:
    try:
        interpreter.invoke()
    except RuntimeError as e:
        failure = _classify_failure(log.new_text() + f"\n{e}")
        raise failure from None


def _try_arena(model: bytes, arena_bytes: int, n_inputs: int, log: _Log):
    """Allocate and run one inference with ``arena_bytes``; return the interpreter or raise."""
    _stage(f"allocate arena_size={arena_bytes}")
    interpreter = _make_interpreter(model, arena_bytes, log)
    _stage(f"invoke arena_size={arena_bytes}")
    _invoke_zeros(interpreter, n_inputs, log)
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


def _recorded_allocations(interpreter, log: _Log) -> dict:
    _stage("print_allocations")
    log.new_text()
    interpreter.print_allocations()
    text = log.new_text()
    lines = [
        line.strip()
        for line in text.splitlines()
        if "RecordingMicroAllocator" in line and not line.startswith(STAGE_MARK)
    ]
    categories = [
        {"name": name, "used_bytes": int(used), "requested_bytes": int(req), "count": int(n)}
        for name, used, req, n in _CATEGORY_LINE.findall(text)
    ]
    arena = {kind: int(n) for kind, n in _ARENA_LINE.findall(text)}
    return {"arena": arena, "lines": lines, "categories": categories}


def _align_up(n: int) -> int:
    return -(-n // ARENA_ALIGNMENT_BYTES) * ARENA_ALIGNMENT_BYTES


def _first_candidate(recorded: dict, counts: tuple[int, int], scale: int) -> int:
    """Recorded tail + the larger of the recorded head and what planning holds in the head
    (``scale`` times the estimate) + the arena start alignment."""
    tensors, planned = counts
    planning_bytes = scale * (
        PLANNING_FIXED_BYTES
        + PLANNING_BYTES_PER_TENSOR * tensors
        + PLANNING_BYTES_PER_PLANNED_TENSOR * planned
    )
    head = max(_align_up(recorded["head"]), _align_up(planning_bytes))
    return _align_up(recorded["tail"]) + head + ARENA_ALIGNMENT_BYTES


def _enough_arena(
    model, n_inputs: int, recorded: dict, counts, scale: int, log: _Log
) -> tuple[int, int | None]:
    """The first candidate, checked by allocating and running with exactly that size; grown by
    a quarter (at most a few times) if TFLM says it is too small. Returns the size that worked
    and the last size that failed (None when the first candidate worked)."""
    candidate = _first_candidate(recorded, counts, scale)
    failed = None
    for _ in range(MAX_VERIFY_STEPS):
        _stage(f"verify arena_size={candidate}")
        if scale == 1 and os.environ.get(ABORT_VERIFY_ENV):
            os.abort()
        try:
            interpreter = _try_arena(model, candidate, n_inputs, log)
            del interpreter
            return candidate, failed
        except _AllocationFailed:
            # The model allocated and ran with a larger arena, so any failure here is the size:
            # a kernel that cannot get its persistent buffers says so as a failed prepare (seen
            # with per-channel FULLY_CONNECTED: "kernel_util.cc ... failed to prepare").
            failed = candidate
        candidate = _align_up(candidate + candidate // 4)
    raise _AllocationFailed(
        "other", None, f"no arena up to {candidate} bytes worked ({recorded} recorded)"
    )


def probe(model: bytes, arena_bytes: int, log: _Log) -> dict:
    """Only: does the model allocate and run one all-zero inference with ``arena_bytes``?"""
    n_inputs = _model_counts(model)[0]
    try:
        _try_arena(model, arena_bytes, n_inputs, log)
    except _AllocationFailed as failure:
        return _failure_result(failure)
    return {"status": "ok"}


def _failure_result(failure: _AllocationFailed) -> dict:
    lines = [ln for ln in failure.log.splitlines() if ln.strip() and STAGE_MARK not in ln]
    return {"status": failure.kind, "op": failure.op, "log_tail": lines[-6:]}


def _run_samples(interpreter, x, index: int, log: _Log):
    import numpy as np

    expected = interpreter.get_input_details(0)
    shape = [max(int(s), 1) for s in expected["shape"]]
    dtype = np.dtype(expected["dtype"])
    problem = _input_problem(x, shape, dtype)
    if problem:
        return None, problem
    outputs = []
    for n, sample in enumerate(x):
        _stage(f"invoke sample={n}")
        # Each sample is its own inference: a converted LSTM keeps its state in variable
        # tensors that survive Invoke(); MicroInterpreter::Reset() zeroes them again.
        interpreter.reset()
        interpreter.set_input(sample.reshape(shape), 0)
        _invoke(interpreter, log)
        outputs.append(np.array(interpreter.get_output(index)))
    stacked = np.stack(outputs) if outputs else np.zeros((0,), dtype=dtype)
    return stacked, None


def execute(model: bytes, job: Path, request: dict, log: _Log) -> dict:
    """Allocate (at ``arena_bytes`` or the first power-of-4 size from 1 MiB that works), record
    the arena, run the samples, and check the arena figure."""
    import numpy as np

    _stage("read flatbuffer")
    n_inputs, tensors, planned, n_outputs, subgraphs = _model_counts(model)
    counts = (tensors, planned)
    try:
        if request.get("arena_bytes"):
            interpreter = _try_arena(model, int(request["arena_bytes"]), n_inputs, log)
            works = int(request["arena_bytes"])
        else:
            interpreter, works = _first_working_arena(model, n_inputs, log)
        recorded = _recorded_allocations(interpreter, log)
        inputs = [_details(interpreter.get_input_details(i)) for i in range(n_inputs)]
        result = {"status": "ok", "inputs": inputs}
        if (job / "input.npz").exists():
            x = np.load(job / "input.npz")["x"]
            y, problem = _run_samples(interpreter, x, int(request.get("output_index", 0)), log)
            if problem:
                return {"status": "bad_input", "message": problem}
            np.savez(job / "output.npz", y=y)
        del interpreter
        if set(recorded["arena"]) == {"total", "head", "tail"}:
            result["arena_bytes"], result["arena_failed_bytes"] = _enough_arena(
                model, n_inputs, recorded["arena"], counts, int(request.get("scale", 1)), log
            )
    except _AllocationFailed as failure:
        return _failure_result(failure)
    return result | {
        "recorded_with_arena_bytes": works,
        "recorded_arena_bytes": recorded["arena"],
        "allocation_lines": recorded["lines"],
        "categories": recorded["categories"],
        "model_counts": {
            "tensors": tensors,
            "planned": planned,
            "inputs": n_inputs,
            "outputs": n_outputs,
            "subgraphs": subgraphs,
            "op_nodes": _op_nodes(model),
            "node_temps": _node_temps(model),
        },
    }


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


def _load_libraries(libraries: list[dict]) -> None:
    for library in libraries:
        _stage(f"load {library['path']}")
        ctypes.CDLL(library["path"], mode=ctypes.RTLD_GLOBAL)
        _REGISTERERS.append(library["registerer"])
        _LIBRARY_OPS.extend(library["ops"])


def main(argv: list[str]) -> int:
    job = Path(argv[1])
    _die_with_parent(job, int(argv[2]) if len(argv) > 2 else os.getppid())
    _redirect_output(job / "log.txt")
    log = _Log(job / "log.txt")
    request = json.loads((job / "request.json").read_text())
    model = (job / "model.tflite").read_bytes()
    if os.environ.get(SLEEP_ENV):
        _stage("test sleep")
        time.sleep(float(os.environ[SLEEP_ENV]))
    _stage("import tflite_micro")
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401

    _load_libraries(request.get("custom_libraries", []))
    try:
        if request.get("probe_only"):
            result = probe(model, int(request["arena_bytes"]), log)
        else:
            result = execute(model, job, request, log)
    except _FLATBUFFER_ERRORS as e:
        # The Python flatbuffer reader of tflite_micro (used before the C++ interpreter) hit
        # an offset or length outside the file.
        result = {"status": "corrupted", "message": f"{type(e).__name__}: {e}"}
    _stage("done")
    (job / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
