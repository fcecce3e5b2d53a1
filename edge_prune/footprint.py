"""Flash and RAM of a ``.tflite`` model on a microcontroller, and whether it fits a target.

What is measured and what is estimated:

- flatbuffer bytes: measured (the file as it is flashed).
- tensor arena: measured with the real TFLM interpreter in a child process
  (:mod:`edge_prune.tflm`): the smallest ``arena_size`` that allocates and runs one inference on
  this 64-bit host, and the head (non-persistent, same on a 32-bit MCU) / tail (persistent,
  larger here than on a 32-bit MCU) split that TFLM's recording allocator prints.
- TFLM runtime code: an ESTIMATE = framework + one kernel per op used, from
  ``edge_prune/data/tflm_kernel_flash.toml`` (derivation in ``bench/kernel_flash_table.py``),
  unless the target gives its own figure (``[runtime]`` in its TOML file).

A model that TFLM cannot run (no kernel for one of its ops, e.g. DENSIFY of a sparse-encoded
model) is measured at rest only and never fits.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edge_prune import tflm
from edge_prune.targets import Target
from edge_prune.tflite_file import load_bytes, read_model

KERNEL_TABLE_PATH = Path(__file__).resolve().parent / "data" / "tflm_kernel_flash.toml"
TABLE_SOURCE = (
    "edge-prune estimate: TFLM framework 9,732 B on Cortex-M3 (TFLM examples/memory_footprint/"
    "README.md) + per-op kernel sizes from tflite_micro's x86-64 symbols scaled to Cortex-M "
    "(bench/kernel_flash_table.py)"
)


@dataclass(frozen=True)
class KernelTable:
    framework_bytes: int
    default_kernel_bytes: int
    kernel_bytes: dict[str, int]
    source: str


@dataclass(frozen=True)
class RuntimeFlash:
    """TFLM runtime code in flash for one model: framework + one kernel per op type used.

    ``measured`` is True only when the figure comes from a measurement on a device given by the
    target file (``runtime_flash_bytes``); otherwise it is edge-prune's estimate.
    """

    total_bytes: int
    framework_bytes: int
    kernel_bytes: dict[str, int]
    defaulted_ops: tuple[str, ...]
    measured: bool
    source: str

    def to_dict(self) -> dict:
        return {
            "what": "TFLM runtime code in flash (framework + kernels of the ops used)",
            "kind": "measured on device (target file)" if self.measured else "estimate",
            "total_bytes": self.total_bytes,
            "framework_bytes": self.framework_bytes,
            "kernel_bytes": dict(self.kernel_bytes),
            "ops_given_default_size": list(self.defaulted_ops),
            "source": self.source,
        }


@dataclass(frozen=True)
class Footprint:
    """What a model needs, independent of any target.

    ``flatbuffer_bytes`` is the file; ``arena`` is None when TFLM cannot run the model, and then
    ``missing_op`` names the op it has no kernel for.
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

    @property
    def arena_bytes(self) -> int | None:
        """Smallest working ``arena_size`` measured on this host (None if TFLM cannot run it)."""
        return self.arena.smallest_arena_bytes if self.arena else None

    def to_dict(self) -> dict:
        return {
            "model": self.source,
            "flatbuffer_bytes": self.flatbuffer_bytes,
            "flatbuffer_what": "the .tflite file as flashed (measured)",
            "ops": list(self.ops),
            "operator_count": self.operator_count,
            "sparse_tensor_count": self.sparse_tensor_count,
            "runs_on_tflm": self.runs_on_tflm,
            "missing_op": self.missing_op,
            "arena": _arena_dict(self.arena),
            "runtime_flash": self.runtime_flash.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    """Does the model fit ``target``: flash and RAM needed against what the part has.

    flash needed = flatbuffer + TFLM runtime code + reserved flash; RAM needed = tensor arena
    (smallest working arena_size, host) + reserved RAM. Headroom = part size - needed (negative
    when it does not fit); percent of the part size.
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
    def status(self) -> str:
        if not self.runs_on_tflm:
            return f"does not run on TFLM: {self.missing_op}"
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
                "runtime_kind": self.runtime_flash.to_dict()["kind"],
                "reserved_bytes": self.target.reserved_flash_bytes,
                "needed_bytes": self.flash_needed_bytes,
                "available_bytes": self.target.flash_bytes,
                "headroom_bytes": self.flash_headroom_bytes,
                "headroom_percent": round(self.flash_headroom_percent, 2),
                "fits": self.fits_flash,
            },
            "ram": {
                "what": "tensor arena (smallest working arena_size, measured on a 64-bit host) "
                "+ reserved RAM, vs the part's RAM",
                "arena_bytes": self.arena_bytes,
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
    given, TFLM is not run again.
    """
    info = read_model(model)  # rejects what is not a readable TFLite flatbuffer, naming the file
    data, default_label = load_bytes(model)
    label = label or default_label
    missing_op = None
    if arena is None:
        try:
            arena = tflm.measure_arena(data, timeout_s=timeout_s, label=label)
        except tflm.MissingOpError as e:
            missing_op = e.op
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
    )


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
    )


def runtime_flash(ops: tuple[str, ...] | list[str], target: Target | None = None) -> RuntimeFlash:
    """TFLM runtime code for ``ops``: the target's figures where it has them, else the estimate."""
    table = kernel_table()
    overrides = target.runtime if target else None
    if overrides and overrides.runtime_flash_bytes is not None:
        return RuntimeFlash(
            total_bytes=overrides.runtime_flash_bytes,
            framework_bytes=overrides.runtime_flash_bytes,
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
    return RuntimeFlash(
        total_bytes=framework + sum(kernels.values()),
        framework_bytes=framework,
        kernel_bytes=kernels,
        defaulted_ops=defaulted,
        measured=False,
        source=source,
    )


@lru_cache(maxsize=1)
def kernel_table() -> KernelTable:
    """The per-op kernel flash ESTIMATE shipped with edge-prune."""
    with open(KERNEL_TABLE_PATH, "rb") as f:
        data = tomllib.load(f)
    return KernelTable(
        framework_bytes=int(data["framework_bytes"]),
        default_kernel_bytes=int(data["default_kernel_bytes"]),
        kernel_bytes={op: int(n) for op, n in data["kernel_bytes"].items()},
        source=TABLE_SOURCE,
    )


def _arena_dict(arena: tflm.ArenaMeasurement | None) -> dict | None:
    if arena is None:
        return None
    return {
        "what": "TFLM tensor arena, measured on this 64-bit host",
        "smallest_arena_bytes": arena.smallest_arena_bytes,
        "smallest_arena_what": "smallest arena_size that allocated and ran one inference",
        "recorded_total_bytes": arena.recorded_total_bytes,
        "recorded_head_bytes": arena.recorded_head_bytes,
        "recorded_head_what": "non-persistent tensors (memory plan); same on a 32-bit MCU",
        "recorded_tail_bytes": arena.recorded_tail_bytes,
        "recorded_tail_what": "persistent structures; smaller on a 32-bit MCU",
        "recorded_by": "TFLM RecordingMicroAllocator (print_allocations)",
        "recorded_with_arena_bytes": arena.recorded_with_arena_bytes,
    }
