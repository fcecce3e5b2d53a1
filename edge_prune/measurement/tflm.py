"""Run the TFLM interpreter (``tflite_micro``) in a child process, so it cannot take us down.

TFLM segfaults on some malformed flatbuffers and aborts on some valid ones (degenerate
quantization parameters; also on arenas just below the size a model needs). :func:`execute`
copies the model to a temporary job directory, starts ``python -m
edge_prune.measurement._tflm_child`` on it once, with a time limit, and turns what went wrong into
an error that says what happened: the op TFLM has no kernel for (:class:`MissingOpError`), the op a
kernel refused to prepare (:class:`TFLMPrepareError`), the signal that killed the interpreter, its
exit code, or the timeout (:class:`TFLMTimeoutError`).

One child per artifact allocates, records the arena with TFLM's ``RecordingMicroAllocator``,
runs every sample and checks the arena figure it reports by allocating with exactly that size.
:func:`run` and :func:`measure_arena` are thin calls of :func:`execute`.

The child dies with this process (``PR_SET_PDEATHSIG``) and removes its job directory; job
directories of processes that are gone are removed on the next call.

This module never imports TensorFlow, and imports ``tflite_micro`` only in the child.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_prune._process import is_alive
from edge_prune.data import DATA_DIR
from edge_prune.errors import (
    ConfigError,
    DataError,
    EdgePruneError,
    MissingOpError,
    ModelFileError,
    TFLMError,
    TFLMPrepareError,
    TFLMTimeoutError,
)
from edge_prune.measurement.tflite_file import check_identifier, load_bytes

__all__ = [
    "ArenaMeasurement",
    "MissingOpError",
    "TFLMPrepareError",
    "TFLMRun",
    "TFLMTimeoutError",
    "execute",
    "measure_arena",
    "parse_timeout",
    "run",
]

_CHILD_MODULE = "edge_prune.measurement._tflm_child"
_STAGE_MARK = "@@edge-prune-stage "
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
_JOB_PREFIX = "edge-prune-tflm-"

MEASURE_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 600.0

STRUCT_SIZES_PATH = DATA_DIR / "tflm_struct_sizes.toml"
# RecordingMicroAllocator's per-category lines (recording_micro_allocator.cc) whose allocations
# are one structure each -> the structure (sizes in STRUCT_SIZES_PATH).
_STRUCT_CATEGORIES = {
    "TfLiteEvalTensor data": "TfLiteEvalTensor",
    "Persistent TfLiteTensor data": "TfLiteTensor",
    "NodeAndRegistration struct": "NodeAndRegistration",
}
# Two allocations per tensor: a TfLiteAffineQuantization and a zero-point TfLiteIntArray (ints
# only, the same size on both).
_QUANTIZATION_CATEGORY = "Persistent TfLiteTensor quantization data"
# GreedyMemoryPlanner::per_buffer_size() (memory_planner/greedy_memory_planner.h:100-107): a
# BufferRequirements (4 ints), an int in buffer_sizes_sorted_ and one in buffer_ids_sorted_, a
# ListEntry (3 ints) and an int in buffer_offsets_: 10 ints per planned buffer, the same on both
# word sizes. Init (greedy_memory_planner.cc:69) makes room for free bytes / this many buffers;
# AddBuffer (:87) fails with "Too many buffers" past that.
_PLANNER_BYTES_PER_BUFFER = 40
# kMaxScratchBuffersPerOp (micro_allocator.h): scratch requests the head holds while planning.
_MAX_SCRATCH_BUFFERS_PER_OP = 12
_ARENA_ALIGNMENT = 16  # MicroArenaBufferAlignment()
TARGET_KERNELS = "TFLM reference kernels"


@dataclass(frozen=True)
class StructSizes:
    """sizeof of TFLM's arena structures on the 64-bit host and a 32-bit Cortex-M, measured by
    ``bench/tflm_struct_sizes.py`` (``host[name]``, ``device[name]``)."""

    tflm_commit: str
    host_compiler: str
    device_compiler: str
    host: dict
    device: dict
    kernel_op_data: dict  # op -> (host bytes, device bytes) of the OpData its kernel allocates

    def saving(self, name: str) -> int:
        return self.host[name] - self.device[name]

    def kernel_saving(self, op: str) -> int:
        """Bytes one node of ``op`` saves on the device in its kernel's OpData (0: op not in
        the table, counted at its host size). The OpData is a persistent buffer aligned to 16
        bytes: the saving is at most the difference of the sizes and at most that of the
        aligned sizes (CONV_2D: 80 -> 56 B saves 16, not 24)."""
        host, device = self.kernel_op_data.get(op, (0, 0))
        return min(host - device, _align(host) - _align(device))


@lru_cache(maxsize=1)
def struct_sizes() -> StructSizes:
    with open(STRUCT_SIZES_PATH, "rb") as f:
        data = tomllib.load(f)
    sizes = data["sizes"]
    return StructSizes(
        tflm_commit=data["tflm_commit"],
        host_compiler=data["compilers"]["host"]["version"],
        device_compiler=data["compilers"]["device"]["version"],
        host={name: int(s["host"]) for name, s in sizes.items()},
        device={name: int(s["device"]) for name, s in sizes.items()},
        kernel_op_data={
            op: (int(s["host"]), int(s["device"])) for op, s in data["kernel_op_data"].items()
        },
    )


@dataclass(frozen=True)
class AllocationCategory:
    """One per-category line of ``print_allocations``: what one kind of structure took."""

    name: str
    used_bytes: int  # with alignment padding
    requested_bytes: int
    count: int

    def device_saving_bytes(self) -> int:
        """Bytes this category takes on the 64-bit host and not on a 32-bit Cortex-M: its
        structures at their measured 32-bit size (kernel buffers: see
        :meth:`ArenaMeasurement.device_tail_bytes`)."""
        sizes = struct_sizes()
        if self.name in _STRUCT_CATEGORIES:
            return self.count * sizes.saving(_STRUCT_CATEGORIES[self.name])
        if self.name == _QUANTIZATION_CATEGORY:
            return (self.count // 2) * sizes.saving("TfLiteAffineQuantization")
        return 0


@dataclass(frozen=True)
class ModelCounts:
    """What the arena's planning depends on: tensors (all subgraphs), tensors the planner places
    (no constant data), inputs and outputs of subgraph 0, subgraphs."""

    tensors: int
    planned: int
    inputs: int
    outputs: int
    subgraphs: int
    op_nodes: tuple[tuple[str, int], ...] = ()  # operators per op name
    # per operator: (tensors, quantized tensors, quantization channels) its Prepare may hold
    node_temps: tuple[tuple[int, int, int], ...] = ()


def _align(n: int) -> int:
    return -(-n // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT


def _framework_saving(subgraphs: int) -> int:
    """Allocator objects in the tail: tflite_micro's Python interpreter records with
    RecordingMicroAllocator + RecordingSingleArenaBufferAllocator; a firmware's
    MicroInterpreter uses MicroAllocator + SingleArenaBufferAllocator (micro_allocator.cc)."""
    s = struct_sizes()
    host = s.host["RecordingSingleArenaBufferAllocator"] + s.host["RecordingMicroAllocator"]
    device = s.device["SingleArenaBufferAllocator"] + s.device["MicroAllocator"]
    shared = ("GreedyMemoryPlanner", "MicroBuiltinDataAllocator")
    return (
        host
        - device
        + sum(s.saving(n) for n in shared)
        + subgraphs * s.saving("SubgraphAllocations")
    )


@dataclass(frozen=True)
class ArenaMeasurement:
    """Tensor arena of one model, from one recorded TFLM run on this (64-bit) host.

    ``recorded_*`` are what TFLM's ``RecordingMicroAllocator`` prints after one inference with
    ``arena_size = recorded_with_arena_bytes``: head = non-persistent tensors (the memory plan;
    the same on a 32-bit MCU), tail = persistent structures (pointer-sized fields, so smaller on
    a 32-bit Cortex-M), total = head + tail.

    ``arena_bytes`` is an ``arena_size`` with which the model allocated and ran one inference
    here, checked in the same run: the recorded tail, plus the larger of the recorded head and
    what TFLM holds in the head only while it plans the arena, plus the arena start alignment.
    It is at least the smallest working ``arena_size`` on this host.

    ``device_total_bytes`` is the arena a firmware's ``MicroInterpreter`` needs on a 32-bit
    Cortex-M (TFLM reference kernels), derived from the recorded allocations: the tail with each
    counted structure at its 32-bit size (measured, ``edge_prune/data/tflm_struct_sizes.toml``),
    the plain allocator objects instead of the recording ones, and each kernel's OpData at its
    measured 32-bit size (ops not in the table at their host size); plus the head and one
    alignment unit, or, when larger, what planning holds in the head (scratch requests, one
    ``AllocationInfo`` per tensor, the greedy planner's per-buffer arrays) before the
    interpreter adds its input and output tensors to the tail. Checked on QEMU against the
    smallest working arena of 12 models (tests/test_arena_32bit.py): never below it, within
    5% + 64 B of it. :attr:`verdict_bytes` is this figure (the host's is larger: 64-bit tail).
    """

    arena_bytes: int
    recorded_total_bytes: int
    recorded_head_bytes: int
    recorded_tail_bytes: int
    recorded_with_arena_bytes: int
    allocation_lines: tuple[str, ...]
    categories: tuple[AllocationCategory, ...] = ()
    counts: ModelCounts | None = None
    arena_bisected: bool = False  # arena_bytes is the host's smallest working size (16 B)

    def _category(self, name: str) -> AllocationCategory | None:
        return next((c for c in self.categories if c.name == name), None)

    @property
    def device_tail_bytes(self) -> int:
        """The persistent tail of a firmware's MicroInterpreter on a 32-bit Cortex-M."""
        sizes = struct_sizes()
        counts = self.counts or ModelCounts(0, 0, 0, 0, 1)
        saving = (
            sum(c.device_saving_bytes() for c in self.categories)
            + _framework_saving(counts.subgraphs)
            # kernel buffers: the interpreter's input/output pointer arrays, kernels' OpData
            + (counts.inputs + counts.outputs) * sizes.saving("pointer")
            + sum(n * sizes.kernel_saving(op) for op, n in counts.op_nodes)
        )
        return self.recorded_tail_bytes - saving

    def _device_io_tail_bytes(self) -> int:
        """What the interpreter adds to the tail after planning: its input and output
        TfLiteTensors, their quantization and the two pointer arrays (32-bit)."""
        sizes, counts = struct_sizes(), self.counts
        tensors = self._category("Persistent TfLiteTensor data")
        quant = self._category(_QUANTIZATION_CATEGORY)
        io = (counts.inputs + counts.outputs) * sizes.device["pointer"]
        if tensors:
            io += tensors.count * sizes.device["TfLiteTensor"]
        if quant:
            io += quant.requested_bytes - quant.device_saving_bytes()
        return io

    def device_planning_bytes(self, tail_extra: int = 0, scratch_requests: int = 0) -> int:
        """Arena in use while TFLM plans the memory on a 32-bit Cortex-M (0: counts unknown).

        Planning holds in the head the scratch requests, one ``AllocationInfo`` per tensor and
        the greedy planner's per-buffer arrays. When the host's planning needed more than that
        estimate (its first arena candidate failed; ``arena_bytes`` is then the host's
        smallest working size, bisected), the figure is the host's smallest size less the
        32-bit savings of the tail and of the per-tensor planning structures.

        ``tail_extra`` and ``scratch_requests``: persistent bytes and scratch buffer requests
        another kernel set (CMSIS-NN) adds to the reference kernels' (each request is one more
        ``ScratchBufferRequest``, ``AllocationInfo`` and planned buffer while planning)."""
        if self.counts is None:
            return 0
        sizes, counts = struct_sizes(), self.counts
        device_tail = self.device_tail_bytes + tail_extra
        per_request = (
            sizes.device["ScratchBufferRequest"]
            + sizes.device["AllocationInfo"]
            + _PLANNER_BYTES_PER_BUFFER
        )
        if self.arena_bisected:
            return (
                self.arena_bytes
                + tail_extra
                + scratch_requests * per_request
                - (self.recorded_tail_bytes - self.device_tail_bytes)
                - counts.tensors * sizes.saving("AllocationInfo")
                - _MAX_SCRATCH_BUFFERS_PER_OP * sizes.saving("ScratchBufferRequest")
            )
        head = (
            _MAX_SCRATCH_BUFFERS_PER_OP * sizes.device["ScratchBufferRequest"]
            + counts.subgraphs * sizes.device["pointer"]
            + counts.tensors * sizes.device["AllocationInfo"]
            + counts.planned * _PLANNER_BYTES_PER_BUFFER
            + scratch_requests * per_request
        )
        return _align(device_tail - self._device_io_tail_bytes()) + _align(head)

    def device_prepare_bytes(self, tail_extra: int = 0, scratch_requests: int = 0) -> int:
        """Arena in use while an edge-prune sparse op's Prepare holds its temporary tensors on a
        32-bit Cortex-M (0: none, or counts unknown): the persistent tail, the head's scratch
        request buffer,
        and the operator's temporary TfLiteTensors with their quantization (TFLM copies the
        zero points, one int32 per channel, into temporary memory: 1,204 B for a 300-channel
        per-channel filter). A temporary allocation that does not fit fails Prepare. Bound:
        the whole tail before the interpreter's input and output tensors (the sparse ops keep
        their persistent data from Init, so theirs is there already) and every input and
        output of the operator held at once."""
        if self.counts is None or not self.counts.node_temps:
            return 0
        sizes = struct_sizes()
        tensor, quant = sizes.device["TfLiteTensor"], sizes.device["TfLiteAffineQuantization"]
        temps = max(
            tensors * tensor + quantized * (quant + 4) + 4 * channels
            for tensors, quantized, channels in self.counts.node_temps
        )
        requests = (_MAX_SCRATCH_BUFFERS_PER_OP + scratch_requests) * sizes.device[
            "ScratchBufferRequest"
        ]
        tail = self.device_tail_bytes + tail_extra - self._device_io_tail_bytes()
        return _align(tail) + _align(requests) + temps + _ARENA_ALIGNMENT

    @property
    def device_total_bytes(self) -> int:
        """The smallest arena estimated to work on a 32-bit Cortex-M (reference kernels)."""
        return self.device_total_with()

    def device_total_with(
        self, *, tail_extra: int = 0, head_extra: int = 0, scratch_requests: int = 0
    ) -> int:
        """The 32-bit figure for a kernel set that keeps ``tail_extra`` more persistent bytes,
        plans a head ``head_extra`` bytes larger and makes ``scratch_requests`` more scratch
        requests than the reference kernels (all 0: the reference kernels' figure)."""
        # + one alignment unit: the allocator aligns the tail's end down to 16 bytes, and the
        # smallest working arena was 8-12 B above arena_used_bytes() on every model measured.
        final = (
            _align(self.device_tail_bytes + tail_extra)
            + _align(self.recorded_head_bytes + head_extra)
            + _ARENA_ALIGNMENT
        )
        return max(
            final,
            self.device_planning_bytes(tail_extra, scratch_requests),
            self.device_prepare_bytes(tail_extra, scratch_requests),
        )

    @property
    def verdict_bytes(self) -> int:
        """The arena a fit verdict counts: the 32-bit figure."""
        return self.device_total_bytes

    def to_dict(self) -> dict:
        return {
            "arena_bytes": self.arena_bytes,
            "verdict_bytes": self.verdict_bytes,
            "device_total_bytes": self.device_total_bytes,
            "device_tail_bytes": self.device_tail_bytes,
            "device_kernels": TARGET_KERNELS,
            "recorded_with_arena_bytes": self.recorded_with_arena_bytes,
            "recorded_total_bytes": self.recorded_total_bytes,
            "recorded_head_bytes": self.recorded_head_bytes,
            "recorded_tail_bytes": self.recorded_tail_bytes,
            "allocation_lines": list(self.allocation_lines),
        }


@dataclass(frozen=True)
class TFLMRun:
    """What one child run of a model gave: the stacked outputs (None without samples), the
    arena, and the input tensors as TFLM sees them (shape, dtype, scales, zero points)."""

    outputs: np.ndarray | None
    arena: ArenaMeasurement
    inputs: tuple[dict, ...]


def parse_timeout(text: str, what: str = "--timeout") -> float:
    """A time limit in seconds from ``text``: a finite number > 0, else ConfigError."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}: expected a finite number of seconds > 0, got {text!r}")
    return value


def execute(
    model: bytes | str | Path,
    x: np.ndarray | None = None,
    *,
    label: str | None = None,
    timeout_s: float | None = None,
    arena_bytes: int | None = None,
    output_index: int = 0,
) -> TFLMRun:
    """Run the model in ONE TFLM child: allocate, record the arena, invoke every sample of
    ``x`` (first axis = batch; already in the model input's dtype) or one all-zero input when
    ``x`` is None, and check the arena figure.

    ``arena_bytes=None`` allocates with 1 MiB (4x more until it fits); otherwise with exactly
    that size. Output ``output_index`` of every sample is stacked along a new first axis.
    ``timeout_s`` limits the whole child run (default: 120 s without samples, 600 s with).
    """
    data, label = _model_bytes(model, label)
    if timeout_s is None:
        timeout_s = MEASURE_TIMEOUT_S if x is None else RUN_TIMEOUT_S
    request = {"arena_bytes": arena_bytes, "output_index": output_index}
    with _job_dir() as job:
        if x is not None:
            np.savez(job / "input.npz", x=np.asarray(x))
        deadline = time.monotonic() + timeout_s
        result = _run_verified(job, request, data, label, timeout_s)
        if result.get("arena_failed_bytes"):
            result["arena_bytes"] = _bisect_arena(
                job, data, label, result["arena_failed_bytes"], result["arena_bytes"], deadline
            )
            result["arena_bisected"] = True
        outputs = None
        if x is not None:
            with np.load(job / "output.npz") as saved:
                outputs = saved["y"]
    return TFLMRun(outputs=outputs, arena=_arena(result, label), inputs=tuple(result["inputs"]))


def measure_arena(
    model: bytes | str | Path, *, timeout_s: float = MEASURE_TIMEOUT_S, label: str | None = None
) -> ArenaMeasurement:
    """The arena the model needs (one all-zero inference); MissingOpError if TFLM cannot run it."""
    return execute(model, label=label, timeout_s=timeout_s).arena


def run(
    model: bytes | str | Path,
    x: np.ndarray,
    *,
    arena_bytes: int | None = None,
    output_index: int = 0,
    timeout_s: float = RUN_TIMEOUT_S,
    label: str | None = None,
) -> np.ndarray:
    """Invoke the model once per sample of ``x``; return output ``output_index`` of every
    sample, stacked (see :func:`execute`)."""
    result = execute(
        model,
        np.asarray(x),
        label=label,
        timeout_s=timeout_s,
        arena_bytes=arena_bytes,
        output_index=output_index,
    )
    return result.outputs


MAX_BISECT_STEPS = 8


def _bisect_arena(job: Path, data: bytes, label: str, failed: int, works: int, deadline) -> int:
    """The smallest working arena between ``failed`` and ``works`` (to 16 bytes), one child per
    size: TFLM can crash, not fail cleanly, on an arena just too small (seen: SIGSEGV on a
    per-channel int8 MLP 16 bytes below its smallest size), and a crash counts as too small."""
    for _ in range(MAX_BISECT_STEPS):
        middle = -(-((failed + works) // 2) // 16) * 16
        left = deadline - time.monotonic()
        if works - failed <= 16 or middle >= works or left <= 0:
            break
        request = {"arena_bytes": middle, "probe_only": True}
        try:
            _run_child_in(job, request, data, label, left)
            works = middle
        except TFLMError:
            failed = middle
        (job / "log.txt").unlink(missing_ok=True)
    return works


def _arena(result: dict, label: str) -> ArenaMeasurement:
    recorded = result["recorded_arena_bytes"]
    if set(recorded) != {"total", "head", "tail"} or "arena_bytes" not in result:
        raise TFLMError(
            f"{label}: TFLM print_allocations gave no 'Arena allocation total/head/tail' lines "
            f"(got {result['allocation_lines'][:3]})"
        )
    return ArenaMeasurement(
        arena_bytes=int(result["arena_bytes"]),
        recorded_total_bytes=recorded["total"],
        recorded_head_bytes=recorded["head"],
        recorded_tail_bytes=recorded["tail"],
        recorded_with_arena_bytes=int(result["recorded_with_arena_bytes"]),
        allocation_lines=tuple(result["allocation_lines"]),
        categories=tuple(AllocationCategory(**c) for c in result["categories"]),
        counts=_model_counts(result),
        arena_bisected=bool(result.get("arena_bisected", False)),
    )


def _model_counts(result: dict) -> ModelCounts | None:
    if "model_counts" not in result:
        return None
    counts = dict(result["model_counts"])
    counts["op_nodes"] = tuple(sorted(counts.get("op_nodes", {}).items()))
    counts["node_temps"] = tuple(tuple(row) for row in counts.get("node_temps", ()))
    return ModelCounts(**counts)


class _job_dir:  # noqa: N801 - used like tempfile.TemporaryDirectory
    """A job directory ``edge-prune-tflm-<pid>-*`` in the temp dir; on entry, removes those
    of processes that no longer exist (left behind when this process was SIGKILLed while its
    child was busy in C code)."""

    def __enter__(self) -> Path:
        _remove_orphan_jobs()
        self.path = Path(tempfile.mkdtemp(prefix=f"{_JOB_PREFIX}{os.getpid()}-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _remove_orphan_jobs() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{_JOB_PREFIX}*-*"):
        pid = path.name[len(_JOB_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not is_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


MAX_VERIFY_RETRIES = 2


def _run_verified(job: Path, request: dict, data: bytes, label: str, timeout_s: float) -> dict:
    """Run the child; if it crashed while checking its arena figure (TFLM can crash, not fail
    cleanly, on an arena just too small), run it again with a larger planning margin. All
    attempts together stay within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for retry in range(MAX_VERIFY_RETRIES + 1):
        left = deadline - time.monotonic() if retry else timeout_s
        if left <= 0:
            raise TFLMTimeoutError(
                f"{label}: TFLM interpreter did not finish within {timeout_s:g} s"
            )
        try:
            return _run_child_in(
                job, request | {"scale": 2**retry}, data, label, left, stated_timeout_s=timeout_s
            )
        except TFLMError as e:
            stage, _ = _read_log(job)
            if type(e) is not TFLMError or not stage.startswith("during verify"):
                raise
            if retry == MAX_VERIFY_RETRIES:
                raise
            (job / "log.txt").unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _model_bytes(model: bytes | str | Path, label: str | None) -> tuple[bytes, str]:
    data, default_label = load_bytes(model)
    label = label or default_label
    check_identifier(data, label)
    return data, label


def _run_child_in(
    job: Path,
    request: dict,
    data: bytes,
    label: str,
    timeout_s: float,
    *,
    stated_timeout_s: float | None = None,
) -> dict:
    """Run the child on ``job`` and return its checked result; ``stated_timeout_s`` is the
    limit the caller set, when ``timeout_s`` is only what is left of it."""
    (job / "model.tflite").write_bytes(data)
    libraries = _custom_libraries(data, label)
    if libraries:
        request = request | {"custom_libraries": libraries}
    (job / "request.json").write_text(json.dumps(request))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", _CHILD_MODULE, str(job), str(os.getpid())]
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


def _custom_libraries(data: bytes, label: str) -> list[dict]:
    """The host library of edge-prune's sparse kernels when the model uses them (built once per
    process; cached on disk by content digest)."""
    from edge_prune.measurement.sparse import native

    if not native.uses_sparse_ops(data):
        return []
    try:
        path = _sparse_library()
    except EdgePruneError as e:
        raise MissingOpError(
            f"{label}: uses edge-prune's sparse kernels ({', '.join(native.CUSTOM_OPS)}) and "
            f"TFLM's host interpreter cannot load them: {e}",
            native.CUSTOM_OPS[0],
        ) from e
    return [{"path": str(path), "registerer": native.REGISTERER, "ops": list(native.CUSTOM_OPS)}]


@lru_cache(maxsize=4)
def _sparse_library_for(tree: str | None) -> Path:
    from edge_prune.measurement.sparse import native

    return native.host_library(tree)


def _sparse_library() -> Path:
    return _sparse_library_for(os.environ.get("EDGE_PRUNE_TFLM"))


def _checked(result: dict, label: str) -> dict:
    status = result["status"]
    if status == "ok":
        return result
    if status == "missing_op":
        op = result["op"]
        raise MissingOpError(f"{label}: does not run on TFLM: {_missing_op_text(op)}", op)
    if status == "prepare_failed":
        op = result["op"]
        raise TFLMPrepareError(
            f"{label}: TFLM could not prepare operator {op} (its kernel rejected the tensors; "
            f"TFLM: {'; '.join(result.get('log_tail', [])[-2:]) or 'no message'})",
            op.split(" ")[0],
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


def _missing_op_text(op: str) -> str:
    """Why TFLM cannot run a model with ``op`` (a builtin name or ``CUSTOM:<custom_code>``)."""
    if not op.startswith("CUSTOM:"):
        return f"no kernel for op {op} (TFLM: \"Didn't find op for builtin opcode '{op}'\")"
    code = op.removeprefix("CUSTOM:")
    named = f"custom op {code!r} ({op})" if code else "a custom op without a custom_code"
    return (
        f"no kernel for {named}: TFLM's host interpreter has none for it, so the arena cannot "
        'be measured (TFLM: "Failed to get registration from op code CUSTOM")'
    )


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
