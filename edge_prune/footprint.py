"""Flash and RAM of a ``.tflite`` model on a microcontroller, and whether it fits a target.

What is measured and what is estimated:

- flatbuffer bytes: measured (the file as it is flashed).
- tensor arena: measured with the real TFLM interpreter in a child process
  (:mod:`edge_prune.tflm`): the smallest ``arena_size`` that allocates and runs one inference on
  this 64-bit host, the arena a firmware's MicroInterpreter needs on a 32-bit Cortex-M derived
  from TFLM's recorded allocations (what the verdict uses), and the head (non-persistent, same
  on a 32-bit MCU) / tail (persistent) split that TFLM's recording allocator prints.
- TFLM runtime code: the target's own figure measured on the device (``[runtime]`` in its TOML
  file), else a range: low = an ESTIMATE (framework + one kernel per op used, from
  ``edge_prune/data/tflm_kernel_flash.toml``, derived in ``bench/kernel_flash_table.py``),
  high = an UPPER BOUND calibrated against runtime code measured on a board (that estimate
  came out several times too low). The verdict uses the upper bound.

A model that TFLM cannot run (no kernel for one of its ops, e.g. DENSIFY of a sparse-encoded
model; an op that fails to prepare; an interpreter abort or crash; the time limit) is measured
at rest only, says why, and never fits.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edge_prune import tflm
from edge_prune.errors import TFLMError
from edge_prune.targets import Target
from edge_prune.tflite_file import load_bytes, read_model

KERNEL_TABLE_PATH = Path(__file__).resolve().parent / "data" / "tflm_kernel_flash.toml"
TABLE_SOURCE = (
    "edge-prune estimate: TFLM framework 9,732 B on Cortex-M3 (TFLM examples/memory_footprint/"
    "README.md) + per-op kernel sizes from tflite_micro's x86-64 symbols scaled to Cortex-M "
    "(bench/kernel_flash_table.py)"
)


@dataclass(frozen=True)
class UpperBound:
    """Calibration of the runtime estimate against runtime code measured on a device.

    bound = max(estimate x ``ratio``, ``floor_bytes``): ``ratio`` is the largest measured /
    estimate seen on the calibration op sets, ``floor_bytes`` the measured figure itself.
    """

    ratio: float
    floor_bytes: int
    measured_on: str
    source: str

    def bound_bytes(self, estimate_bytes: int) -> int:
        return max(math.ceil(estimate_bytes * self.ratio), self.floor_bytes)


@dataclass(frozen=True)
class KernelTable:
    framework_bytes: int
    default_kernel_bytes: int
    kernel_bytes: dict[str, int]
    source: str
    upper_bound: UpperBound


@dataclass(frozen=True)
class RuntimeFlash:
    """TFLM runtime code in flash for one model: framework + one kernel per op type used.

    ``total_bytes`` is the one figure a verdict uses: the device measurement when the target
    file gives one (``measured``), otherwise the calibrated UPPER BOUND. ``estimate_bytes``
    (per-op estimate from host symbol sizes, the low end) and ``upper_bound_bytes`` (the high
    end) give the range; with a device measurement all three are that measurement.
    """

    total_bytes: int
    estimate_bytes: int
    upper_bound_bytes: int
    framework_bytes: int
    kernel_bytes: dict[str, int]
    defaulted_ops: tuple[str, ...]
    measured: bool
    source: str
    bound_rule: str = ""

    @property
    def kind(self) -> str:
        return "measured on device (target file)" if self.measured else "upper bound"

    def to_dict(self) -> dict:
        return {
            "what": "TFLM runtime code in flash (framework + kernels of the ops used)",
            "kind": self.kind,
            "total_bytes": self.total_bytes,
            "total_what": "the figure the verdict uses: "
            + ("measured on the device" if self.measured else "the upper bound"),
            "estimate_bytes": self.estimate_bytes,
            "upper_bound_bytes": self.upper_bound_bytes,
            "upper_bound_rule": self.bound_rule,
            "framework_bytes": self.framework_bytes,
            "kernel_bytes": dict(self.kernel_bytes),
            "ops_given_default_size": list(self.defaulted_ops),
            "source": self.source,
        }


@dataclass(frozen=True)
class Footprint:
    """What a model needs, independent of any target.

    ``flatbuffer_bytes`` is the file; ``arena`` is None when TFLM cannot run the model, and then
    ``tflm_failure`` says why (``missing_op`` names the op TFLM has no kernel for, if that was
    the reason). ``runtime_flash`` is the estimate and bound for a target without a device
    measurement.
    """

    source: str
    flatbuffer_bytes: int
    ops: tuple[str, ...]
    operator_count: int
    sparse_tensor_count: int
    runs_on_tflm: bool
    missing_op: str | None
    arena: tflm.ArenaMeasurement | None
    runtime_flash: RuntimeFlash
    tflm_failure: str | None = None
    tflm_failure_kind: str | None = None
    sha256: str = ""

    @property
    def arena_host_bytes(self) -> int | None:
        """The arena figure measured on this host: an ``arena_size`` with which the model
        allocated and ran (see :class:`~edge_prune.tflm.ArenaMeasurement`); None if TFLM cannot
        run it."""
        return self.arena.arena_bytes if self.arena else None

    @property
    def arena_device_bytes(self) -> int | None:
        """The arena estimated for a 32-bit MCU, when the measurement gives one."""
        return self.arena.device_total_bytes if self.arena else None

    @property
    def arena_bytes(self) -> int | None:
        """The arena a verdict uses: the 32-bit figure (reference kernels)."""
        if self.arena is None:
            return None
        return self.arena.verdict_bytes

    @property
    def failure_reason(self) -> str | None:
        """Why TFLM cannot run the model, short enough for a verdict line."""
        if self.runs_on_tflm:
            return None
        return self.missing_op or self.tflm_failure_kind or "failed"

    def to_dict(self) -> dict:
        return {
            "model": self.source,
            "sha256": self.sha256,
            "flatbuffer_bytes": self.flatbuffer_bytes,
            "flatbuffer_what": "the .tflite file as flashed (measured)",
            "ops": list(self.ops),
            "operator_count": self.operator_count,
            "sparse_tensor_count": self.sparse_tensor_count,
            "runs_on_tflm": self.runs_on_tflm,
            "missing_op": self.missing_op,
            "tflm_failure": self.tflm_failure,
            "tflm_failure_kind": self.tflm_failure_kind,
            "arena": _arena_dict(self.arena),
            "runtime_flash": self.runtime_flash.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    """Does the model fit ``target``: flash and RAM needed against what the part has.

    flash needed = flatbuffer + TFLM runtime code (device measurement, else the upper bound) +
    reserved flash; RAM needed = tensor arena on a 32-bit Cortex-M (derived from the host's
    recorded allocations) + reserved RAM. Headroom = part size - needed (negative when it does
    not fit); percent of the part size.
    """

    target: Target
    runs_on_tflm: bool
    missing_op: str | None
    flatbuffer_bytes: int
    runtime_flash: RuntimeFlash
    flash_needed_bytes: int
    ram_needed_bytes: int | None
    arena_bytes: int | None
    fits_flash: bool
    fits_ram: bool
    failure_reason: str | None = None
    arena_host_bytes: int | None = None
    arena_device_bytes: int | None = None
    fits: bool = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "fits", self.runs_on_tflm and self.fits_flash and self.fits_ram)

    @property
    def flash_headroom_bytes(self) -> int:
        return self.target.flash_bytes - self.flash_needed_bytes

    @property
    def ram_headroom_bytes(self) -> int | None:
        if self.ram_needed_bytes is None:
            return None
        return self.target.ram_bytes - self.ram_needed_bytes

    @property
    def flash_headroom_percent(self) -> float:
        return 100.0 * self.flash_headroom_bytes / self.target.flash_bytes

    @property
    def ram_headroom_percent(self) -> float | None:
        if self.ram_headroom_bytes is None:
            return None
        return 100.0 * self.ram_headroom_bytes / self.target.ram_bytes

    @property
    def flash_used_percent(self) -> float:
        return 100.0 * self.flash_needed_bytes / self.target.flash_bytes

    @property
    def ram_used_percent(self) -> float | None:
        if self.ram_needed_bytes is None:
            return None
        return 100.0 * self.ram_needed_bytes / self.target.ram_bytes

    @property
    def status(self) -> str:
        if not self.runs_on_tflm:
            return f"does not run on TFLM: {self.failure_reason or self.missing_op}"
        if self.fits:
            return "fits"
        short = [
            kind for kind, ok in (("flash", self.fits_flash), ("RAM", self.fits_ram)) if not ok
        ]
        return f"does not fit ({' and '.join(short)})"

    def to_dict(self) -> dict:
        return {
            "target": self.target.name,
            "part": self.target.part,
            "status": self.status,
            "fits": self.fits,
            "runs_on_tflm": self.runs_on_tflm,
            "missing_op": self.missing_op,
            "flash": {
                "what": "flatbuffer + TFLM runtime code + reserved flash, vs the part's flash",
                "flatbuffer_bytes": self.flatbuffer_bytes,
                "runtime_bytes": self.runtime_flash.total_bytes,
                "runtime_kind": self.runtime_flash.kind,
                "runtime_estimate_bytes": self.runtime_flash.estimate_bytes,
                "runtime_upper_bound_bytes": self.runtime_flash.upper_bound_bytes,
                "reserved_bytes": self.target.reserved_flash_bytes,
                "needed_bytes": self.flash_needed_bytes,
                "available_bytes": self.target.flash_bytes,
                "headroom_bytes": self.flash_headroom_bytes,
                "headroom_percent": round(self.flash_headroom_percent, 2),
                "fits": self.fits_flash,
            },
            "ram": {
                "what": "tensor arena on a 32-bit Cortex-M (derived from TFLM's recorded "
                "allocations, reference kernels) + reserved RAM, vs the part's RAM",
                "arena_bytes": self.arena_bytes,
                "arena_host_bytes": self.arena_host_bytes,
                "arena_device_bytes": self.arena_device_bytes,
                "reserved_bytes": self.target.reserved_ram_bytes,
                "needed_bytes": self.ram_needed_bytes,
                "available_bytes": self.target.ram_bytes,
                "headroom_bytes": self.ram_headroom_bytes,
                "headroom_percent": (
                    None
                    if self.ram_headroom_percent is None
                    else round(self.ram_headroom_percent, 2)
                ),
                "fits": self.fits_ram,
            },
            "runtime_flash": self.runtime_flash.to_dict(),
        }


def measure(
    model: bytes | bytearray | str | Path,
    *,
    timeout_s: float = tflm.MEASURE_TIMEOUT_S,
    arena: tflm.ArenaMeasurement | None = None,
    label: str | None = None,
) -> Footprint:
    """Measure a model (bytes or path): flatbuffer, ops, arena in TFLM, runtime estimate.

    ``arena``: a measurement TFLM already made of this model (e.g. while checking its outputs);
    given, TFLM is not run again. An unreadable file raises
    :class:`~edge_prune.errors.ModelFileError`. A readable model that TFLM cannot run (no kernel
    for an op, an op that fails to prepare, an abort or crash of the interpreter, the time
    limit) is measured at rest and says why in ``tflm_failure``.
    """
    info = read_model(model)  # rejects what is not a readable TFLite flatbuffer, naming the file
    data, default_label = load_bytes(model)
    label = label or default_label
    missing_op, failure, kind = None, None, None
    if arena is None:
        try:
            arena = tflm.measure_arena(data, timeout_s=timeout_s, label=label)
        except tflm.MissingOpError as e:
            missing_op, failure, kind = e.op, _without_label(str(e), label), "missing op"
        except TFLMError as e:
            failure, kind = _without_label(str(e), label), _failure_kind(e)
    return Footprint(
        source=label,
        flatbuffer_bytes=info.size_bytes,
        ops=info.op_types,
        operator_count=len(info.operators),
        sparse_tensor_count=len(info.sparse_tensors),
        runs_on_tflm=arena is not None,
        missing_op=missing_op,
        arena=arena,
        runtime_flash=runtime_flash(info.op_types),
        tflm_failure=failure,
        tflm_failure_kind=kind,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _without_label(message: str, label: str) -> str:
    return message.removeprefix(f"{label}: ")


def _failure_kind(error: TFLMError) -> str:
    """A few words for a verdict line: timeout, the signal, op prepare failure, or refusal."""
    if isinstance(error, tflm.TFLMTimeoutError):
        return "timed out"
    if type(error).__name__ == "TFLMPrepareError":
        return "an op failed to prepare"
    signal_name = re.search(r"killed by (SIG[A-Z]+|signal \d+)", str(error))
    if signal_name:
        return f"interpreter killed by {signal_name.group(1)}"
    if "exited with code" in str(error):
        return "interpreter exited abnormally"
    return "could not allocate or run"


def check(footprint: Footprint, target: Target) -> Verdict:
    """The verdict of ``footprint`` on ``target``."""
    runtime = runtime_flash(footprint.ops, target)
    flash_needed = footprint.flatbuffer_bytes + runtime.total_bytes + target.reserved_flash_bytes
    arena = footprint.arena_bytes
    ram_needed = None if arena is None else arena + target.reserved_ram_bytes
    return Verdict(
        target=target,
        runs_on_tflm=footprint.runs_on_tflm,
        missing_op=footprint.missing_op,
        flatbuffer_bytes=footprint.flatbuffer_bytes,
        runtime_flash=runtime,
        flash_needed_bytes=flash_needed,
        ram_needed_bytes=ram_needed,
        arena_bytes=arena,
        fits_flash=flash_needed <= target.flash_bytes,
        fits_ram=ram_needed is not None and ram_needed <= target.ram_bytes,
        failure_reason=footprint.failure_reason,
        arena_host_bytes=footprint.arena_host_bytes,
        arena_device_bytes=footprint.arena_device_bytes,
    )


def runtime_flash(ops: tuple[str, ...] | list[str], target: Target | None = None) -> RuntimeFlash:
    """TFLM runtime code for ``ops``: the target's device figure where it has one, else the
    calibrated upper bound of the per-op estimate (the estimate itself is kept as the low end).

    A target that gives the framework and every op used (``[runtime]`` per-op figures) counts
    as measured: their sum is used as is.
    """
    table = kernel_table()
    overrides = target.runtime if target else None
    if overrides and overrides.runtime_flash_bytes is not None:
        measured = overrides.runtime_flash_bytes
        return RuntimeFlash(
            total_bytes=measured,
            estimate_bytes=measured,
            upper_bound_bytes=measured,
            framework_bytes=measured,
            kernel_bytes={},
            defaulted_ops=(),
            measured=True,
            source=overrides.source or f"target file {target.path}",
        )
    custom = overrides.kernel_flash_bytes if overrides else {}
    framework = table.framework_bytes
    if overrides and overrides.framework_flash_bytes is not None:
        framework = overrides.framework_flash_bytes
    kernels = {
        op: custom.get(op, table.kernel_bytes.get(op, table.default_kernel_bytes)) for op in ops
    }
    defaulted = tuple(op for op in ops if op not in custom and op not in table.kernel_bytes)
    source = table.source
    if overrides and (custom or overrides.framework_flash_bytes is not None):
        source += f"; overridden by {target.path}" + (
            f" ({overrides.source})" if overrides.source else ""
        )
    if defaulted:
        source += f"; {', '.join(defaulted)} not in the table: {table.default_kernel_bytes} B each"
    estimate = framework + sum(kernels.values())
    all_given = bool(
        overrides and overrides.framework_flash_bytes is not None and set(ops) <= set(custom)
    )
    bound = table.upper_bound
    upper = estimate if all_given else bound.bound_bytes(estimate)
    return RuntimeFlash(
        total_bytes=upper,
        estimate_bytes=estimate,
        upper_bound_bytes=upper,
        framework_bytes=framework,
        kernel_bytes=kernels,
        defaulted_ops=defaulted,
        measured=all_given,
        source=source,
        bound_rule="" if all_given else bound_rule(bound),
    )


def bound_rule(bound: UpperBound) -> str:
    return (
        f"max(estimate x {bound.ratio:.2f}, {bound.floor_bytes:,} B): {bound.ratio:.2f} is the "
        f"largest ratio of the runtime measured on the {bound.measured_on} "
        f"({bound.floor_bytes:,} B, {bound.source}) to the estimate of the same op sets"
    )


@lru_cache(maxsize=1)
def kernel_table() -> KernelTable:
    """The per-op kernel flash ESTIMATE shipped with edge-prune, and its calibrated bound."""
    with open(KERNEL_TABLE_PATH, "rb") as f:
        data = tomllib.load(f)
    bound = data["upper_bound"]
    return KernelTable(
        framework_bytes=int(data["framework_bytes"]),
        default_kernel_bytes=int(data["default_kernel_bytes"]),
        kernel_bytes={op: int(n) for op, n in data["kernel_bytes"].items()},
        source=TABLE_SOURCE,
        upper_bound=UpperBound(
            ratio=float(bound["ratio"]),
            floor_bytes=int(bound["floor_bytes"]),
            measured_on=str(bound["measured_on"]),
            source=str(bound["measured_source"]),
        ),
    )


def _arena_dict(arena: tflm.ArenaMeasurement | None) -> dict | None:
    if arena is None:
        return None
    return {
        "what": "TFLM tensor arena, measured on this 64-bit host",
        "arena_bytes": arena.arena_bytes,
        "arena_what": "an arena_size with which TFLM allocated and ran the model, from one "
        "recorded run (recorded total + planning space + alignment; verified by running it)",
        "device_total_bytes": arena.device_total_bytes,
        "device_total_what": "arena a firmware's MicroInterpreter needs on a 32-bit Cortex-M, "
        "TFLM reference kernels: the recorded allocations with measured 32-bit struct sizes "
        "(never below the device minimum on the models checked on QEMU)",
        "device_kernels": tflm.TARGET_KERNELS,
        "verdict_bytes": arena.verdict_bytes,
        "verdict_what": "the arena the verdict uses: the 32-bit figure",
        "recorded_total_bytes": arena.recorded_total_bytes,
        "recorded_head_bytes": arena.recorded_head_bytes,
        "recorded_head_what": "non-persistent tensors (memory plan); same on a 32-bit MCU",
        "recorded_tail_bytes": arena.recorded_tail_bytes,
        "recorded_tail_what": "persistent structures; differs on a 32-bit MCU",
        "recorded_by": "TFLM RecordingMicroAllocator (print_allocations)",
        "recorded_with_arena_bytes": arena.recorded_with_arena_bytes,
    }
