"""Flash and RAM of a ``.tflite`` model on a microcontroller, and whether it fits a target.

What is measured and what is estimated:

- flatbuffer bytes: measured (the file as it is flashed).
- tensor arena: measured with the real TFLM interpreter in a child process
  (:mod:`edge_prune.measurement.tflm`): the smallest ``arena_size`` that allocates and runs one
  inference on this 64-bit host, the arena a firmware's MicroInterpreter needs on a 32-bit Cortex-M
  with TFLM's reference kernels derived from TFLM's recorded allocations, and the head
  (non-persistent, same on a 32-bit MCU) / tail (persistent) split that TFLM's recording
  allocator prints. These are inputs. The verdict's arena is the target's: the 32-bit
  reference-kernel figure, or for a target built with CMSIS-NN kernels that figure with the
  scratch buffers and persistent data those kernels add, derived per operator
  (:mod:`edge_prune.measurement.cmsis_nn_scratch`). Every output shows that one figure.
- TFLM runtime code: the target's own figure (``[runtime]`` in its TOML file), else the table
  measured on a real Cortex-M build of TFLM for the target's core, kernel set and build type
  (:mod:`edge_prune.measurement.runtime_tables`): framework + the kernels of the model's own op
  set, a DECODE kernel and edge-prune's sparse kernels included (a table without the sparse ops
  adds a labelled constant for them). A core no build covers gets a labelled bound.

A model that TFLM cannot run (no kernel for one of its ops, e.g. DENSIFY of a sparse-encoded
model; an op that fails to prepare; an interpreter abort or crash; the time limit) is measured
at rest only, says why, and never fits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_prune.errors import TFLMError
from edge_prune.measurement import (
    cmsis_nn_faults,
    cmsis_nn_lstm,
    cmsis_nn_scratch,
    runtime_tables,
    tflm,
)
from edge_prune.measurement.targets import Target
from edge_prune.measurement.tflite_file import ModelInfo, load_bytes, read_model


@dataclass(frozen=True)
class RuntimeFlash:
    """TFLM runtime code in flash for one model: framework + the kernels of its op set.

    ``total_bytes`` is the one figure a verdict uses. ``measured``: from a Cortex-M build table
    (``from_table``) or the target file, with every op covered; otherwise a bound and
    ``bound_rule`` says how it was made. ``estimate_bytes`` and ``upper_bound_bytes`` equal
    ``total_bytes`` (kept for readers of older reports). ``framework_bytes``: the framework
    alone (None when only the whole runtime is known: a target file's ``runtime_flash_bytes``).
    ``kernel_bytes``: what each op adds to the framework alone.
    """

    total_bytes: int
    estimate_bytes: int
    upper_bound_bytes: int
    framework_bytes: int | None
    kernel_bytes: dict[str, int]
    defaulted_ops: tuple[str, ...]
    measured: bool
    source: str
    bound_rule: str = ""
    from_table: bool = False  # from a Cortex-M build table (edge_prune.measurement.runtime_tables)
    # How far linked firmwares were from the table the figure comes from; None: not known.
    error: runtime_tables.TableError | None = None

    @property
    def error_bytes(self) -> int:
        """How many bytes more a linked firmware's runtime may take than ``total_bytes``."""
        return self.error.above_bytes(self.total_bytes) if self.error else 0

    @property
    def kind(self) -> str:
        if not self.measured:
            return "upper bound"
        return "measured on a Cortex-M build" if self.from_table else "measured (target file)"

    def to_dict(self) -> dict:
        return {
            "what": "TFLM runtime code in flash (framework + kernels of the ops used)",
            "kind": self.kind,
            "total_bytes": self.total_bytes,
            "total_what": f"the figure the verdict uses: {self.kind}",
            "estimate_bytes": self.estimate_bytes,
            "upper_bound_bytes": self.upper_bound_bytes,
            "upper_bound_rule": self.bound_rule,
            "framework_bytes": self.framework_bytes,
            "framework_what": "TFLM framework code alone, without kernels"
            if self.framework_bytes is not None
            else "not known separately: the target file gives only the whole runtime",
            "kernel_bytes": dict(self.kernel_bytes),
            "ops_given_default_size": list(self.defaulted_ops),
            "source": self.source,
            "error": self.error.to_dict() if self.error else None,
            "error_bytes": self.error_bytes,
            "error_what": "bytes a linked firmware's runtime may take beyond total_bytes"
            if self.error
            else "not known: the figure is not from a measured table",
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
    computes_in_float: bool = False  # operators compute in float32 (ModelInfo.computes_in_float)
    # Arena a CMSIS-NN build needs for its LSTM kernel sums (measure.cmsis_nn_lstm).
    cmsis_nn_lstm_bytes: int = 0
    # DECODE outputs a CMSIS-NN kernel reads in Prepare: such a build stops in SetUp on them.
    cmsis_nn_decoded_reads: tuple[str, ...] = ()
    model_info: ModelInfo | None = field(default=None, repr=False, compare=False)

    @property
    def arena_host_bytes(self) -> int | None:
        """The arena figure measured on this host: an ``arena_size`` with which the model
        allocated and ran (see :class:`~edge_prune.measurement.tflm.ArenaMeasurement`); None if
        TFLM cannot run it."""
        return self.arena.arena_bytes if self.arena else None

    @property
    def arena_device_bytes(self) -> int | None:
        """The arena estimated for a 32-bit MCU, when the measurement gives one."""
        return self.arena.device_total_bytes if self.arena else None

    @property
    def arena_bytes(self) -> int | None:
        """The 32-bit arena with TFLM's reference kernels, an input of the verdict's figure;
        :func:`target_arena` gives the one a verdict for a target uses."""
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
            "cmsis_nn_decoded_reads": list(self.cmsis_nn_decoded_reads),
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
    # What the verdict must say beside fits / does not fit (software float, thin margins).
    warnings: tuple[str, ...] = ()
    lstm_kernel_sums_bytes: int = 0  # in arena_bytes: CMSIS-NN LSTM kernel sums (cmsis_nn_lstm)
    kernel_arena: cmsis_nn_scratch.KernelArena | None = None
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

    def _ram_what(self) -> str:
        if self.arena_bytes is None:
            return "tensor arena: unknown (TFLM did not run the model) + reserved RAM"
        what = arena_what(self.target, self.kernel_arena)
        if self.lstm_kernel_sums_bytes:
            what += (
                f", + {self.lstm_kernel_sums_bytes:,} B of CMSIS-NN LSTM kernel sums, allocated "
                "while its temporaries are alive"
            )
        return f"{what} + reserved RAM, vs the part's RAM"

    def _arena_inputs(self) -> dict:
        inputs = {
            "host_64bit_bytes": self.arena_host_bytes,
            "host_64bit_what": "input: smallest arena_size that ran on this 64-bit host",
            "reference_32bit_bytes": self.arena_device_bytes,
            "reference_32bit_what": "input: 32-bit Cortex-M arena with TFLM reference kernels",
        }
        if self.kernel_arena is not None:
            inputs["cmsis_nn"] = self.kernel_arena.to_dict()
        return inputs

    def to_dict(self) -> dict:
        return {
            "target": self.target.name,
            "part": self.target.part,
            "status": self.status,
            "fits": self.fits,
            "warnings": list(self.warnings),
            "runs_on_tflm": self.runs_on_tflm,
            "missing_op": self.missing_op,
            "flash": {
                "what": "flatbuffer + TFLM runtime code + reserved flash, vs the part's flash",
                "flatbuffer_bytes": self.flatbuffer_bytes,
                "runtime_bytes": self.runtime_flash.total_bytes,
                "runtime_kind": self.runtime_flash.kind,
                "runtime_estimate_bytes": self.runtime_flash.estimate_bytes,
                "runtime_upper_bound_bytes": self.runtime_flash.upper_bound_bytes,
                "runtime_error": (
                    self.runtime_flash.error.to_dict() if self.runtime_flash.error else None
                ),
                "runtime_error_bytes": self.runtime_flash.error_bytes,
                "reserved_bytes": self.target.reserved_flash_bytes,
                "needed_bytes": self.flash_needed_bytes,
                "available_bytes": self.target.flash_bytes,
                "headroom_bytes": self.flash_headroom_bytes,
                "headroom_percent": round(self.flash_headroom_percent, 2),
                "fits": self.fits_flash,
            },
            "ram": {
                "what": self._ram_what(),
                "arena_bytes": self.arena_bytes,
                "arena_what": "the arena the verdict uses; model_data.h's k<Model>TensorArenaSize",
                "arena_inputs": self._arena_inputs(),
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
        model_info=info,
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
        computes_in_float=info.computes_in_float,
        cmsis_nn_lstm_bytes=cmsis_nn_lstm.kernel_sum_bytes(info),
        cmsis_nn_decoded_reads=_cmsis_nn_decoded_reads(data, info.op_types),
    )


def _cmsis_nn_decoded_reads(data: bytes, ops: tuple[str, ...]) -> tuple[str, ...]:
    if not any(op.endswith("TFLM_DECODE") for op in ops):
        return ()
    from edge_prune.measurement.codecs.constant_inputs import cmsis_nn_decoded_reads

    return cmsis_nn_decoded_reads(data)


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


def target_arena(
    footprint: Footprint, target: Target
) -> tuple[int | None, cmsis_nn_scratch.KernelArena | None]:
    """The arena a firmware for ``target`` needs, the one figure its verdict and every output
    use: the 32-bit reference-kernel figure, or for a target built with CMSIS-NN kernels that
    figure plus what those kernels add for this model on the target's core (derived per
    operator, :mod:`edge_prune.measurement.cmsis_nn_scratch`, and the LSTM kernel sums it
    allocates in Prepare); and that derivation."""
    if footprint.arena is None:
        return None, None
    if target.tflm_kernels != "cmsis-nn":
        return footprint.arena.verdict_bytes, None
    info = footprint.model_info
    if info is None:
        raise ValueError(f"{footprint.source}: footprint has no model info for CMSIS-NN kernels")
    features = cmsis_nn_scratch.features_of(target.tflm_arch)
    arena, kernel = cmsis_nn_scratch.arena_bytes(footprint.arena, info, features)
    return arena + lstm_kernel_sums(footprint, target), kernel


def lstm_kernel_sums(footprint: Footprint, target: Target) -> int:
    """Bytes of LSTM kernel sums a CMSIS-NN build allocates while the LSTM's temporaries are
    alive (:mod:`edge_prune.measurement.cmsis_nn_lstm`); part of :func:`target_arena`."""
    if footprint.arena is None or target.tflm_kernels != "cmsis-nn":
        return 0
    return footprint.cmsis_nn_lstm_bytes


def arena_what(target: Target, kernel: cmsis_nn_scratch.KernelArena | None) -> str:
    """What the verdict's arena figure is, in one line."""
    if kernel is None:
        return (
            "tensor arena on a 32-bit Cortex-M, TFLM reference kernels (derived from TFLM's "
            "recorded allocations)"
        )
    return (
        "tensor arena on a 32-bit Cortex-M, TFLM CMSIS-NN kernels "
        f"({kernel.features.upper()} code path of {target.tflm_arch or target.core}): the "
        f"reference-kernel figure {kernel.head_extra_bytes:+,} B of planned scratch + "
        f"{kernel.tail_extra_bytes:,} B persistent kernel data, derived per operator"
        + (f" ({kernel.note})" if kernel.note else "")
        + _planning_peak_text(kernel)
    )


def _planning_peak_text(kernel: cmsis_nn_scratch.KernelArena) -> str:
    if kernel.planning_peak_bytes is None:
        return ""
    return (
        f"; larger, and the figure: {kernel.planning_peak_bytes:,} B held while TFLM plans the "
        "arena (its planning arrays, with these kernels' data and scratch requests)"
    )


def verdict_for(footprint: Footprint, target: Target) -> Verdict:
    """The verdict of ``footprint`` on ``target``: flash = flatbuffer + runtime code of its op
    set for the target's TFLM build + reserved flash; RAM = the target's 32-bit arena
    (:func:`target_arena`) + reserved RAM."""
    runtime = runtime_flash(footprint.ops, target)
    flash_needed = footprint.flatbuffer_bytes + runtime.total_bytes + target.reserved_flash_bytes
    arena, kernel = target_arena(footprint, target)
    lstm_sums = lstm_kernel_sums(footprint, target)
    ram_needed = None if arena is None else arena + target.reserved_ram_bytes
    flash_headroom = target.flash_bytes - flash_needed
    runs, failure = footprint.runs_on_tflm, footprint.failure_reason
    if runs and target.tflm_kernels == "cmsis-nn" and footprint.cmsis_nn_decoded_reads:
        runs, failure = False, _cmsis_nn_failure(footprint.cmsis_nn_decoded_reads)
    faults = _cmsis_nn_faults(footprint, target) if runs else ()
    if faults:
        runs, failure = False, _cmsis_nn_fault(faults)
    return Verdict(
        lstm_kernel_sums_bytes=lstm_sums,
        warnings=(
            *_float_warning(footprint, target),
            *_margin_warning(runtime, flash_headroom),
        ),
        target=target,
        runs_on_tflm=runs,
        missing_op=footprint.missing_op,
        flatbuffer_bytes=footprint.flatbuffer_bytes,
        runtime_flash=runtime,
        flash_needed_bytes=flash_needed,
        ram_needed_bytes=ram_needed,
        arena_bytes=arena,
        fits_flash=flash_needed <= target.flash_bytes,
        fits_ram=ram_needed is not None and ram_needed <= target.ram_bytes,
        failure_reason=failure,
        arena_host_bytes=footprint.arena_host_bytes,
        arena_device_bytes=footprint.arena_device_bytes,
        kernel_arena=kernel,
    )


def _cmsis_nn_failure(reads: tuple[str, ...]) -> str:
    more = f" (and {len(reads) - 1} more)" if len(reads) > 1 else ""
    return (
        "not with this target's cmsis-nn kernels, which read compressed tensors in Prepare and "
        f"stop in SetUp: {reads[0]}{more}"
    )


def _cmsis_nn_faults(footprint: Footprint, target: Target) -> tuple[str, ...]:
    if target.tflm_kernels != "cmsis-nn" or footprint.model_info is None:
        return ()
    features = cmsis_nn_scratch.features_of(target.tflm_arch)
    return cmsis_nn_faults.wrong_outputs(footprint.model_info, features)


def _cmsis_nn_fault(faults: tuple[str, ...]) -> str:
    more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
    return (
        "not with this target's cmsis-nn kernels, whose outputs differ from TFLM's reference "
        f'kernels: {faults[0]}{more}; build with tflm_kernels = "reference"'
    )


def _float_warning(footprint: Footprint, target: Target) -> list[str]:
    if not footprint.computes_in_float or target.has_fpu:
        return []
    return [
        f"software floating point: the model computes in float32 and the {target.core} of "
        f"{target.part} has no FPU, so every float operation is a library call (many times "
        "slower than int8); deploy an int8 model"
    ]


def _margin_warning(runtime: RuntimeFlash, flash_headroom: int) -> list[str]:
    error = runtime.error_bytes
    if flash_headroom < 0 or flash_headroom >= error:
        return []
    return [
        f"flash headroom {flash_headroom:,} B is inside the runtime code figure's error: a "
        f"linked firmware may take up to {error:,} B more (linked vs table: "
        f"{runtime.error.describe()}); measure it with `edge-prune device`"
    ]


def runtime_flash(ops: tuple[str, ...] | list[str], target: Target | None = None) -> RuntimeFlash:
    """TFLM runtime code in flash for ``ops`` (framework + the kernels of the ops).

    In order: the target file's own ``[runtime]`` figures (the user's measurement, whole or per
    op); the table measured on a Cortex-M build of the target's core, kernel set and build type
    (:mod:`edge_prune.measurement.runtime_tables`; an op it lacks is counted at the table's largest
    single-op cost, a labelled bound); for a core no build covers (or no target), the largest
    figure of this op set over every shipped build (a labelled bound).
    """
    overrides = target.runtime if target else None
    if overrides and overrides.runtime_flash_bytes is not None:
        measured = overrides.runtime_flash_bytes
        return RuntimeFlash(
            total_bytes=measured,
            estimate_bytes=measured,
            upper_bound_bytes=measured,
            framework_bytes=None,  # the figure is framework + kernels together
            kernel_bytes={},
            defaulted_ops=(),
            measured=True,
            source=overrides.source or f"target file {target.path}",
        )
    if overrides:
        return _overridden_runtime(ops, target)
    return _table_or_bound(ops, target)


def _table_or_bound(ops, target: Target | None) -> RuntimeFlash:
    table = _target_table(target)
    if table is not None:
        return _table_runtime(table, ops)
    tables = runtime_tables.shipped_tables()
    if not tables:
        raise runtime_tables.RuntimeTableError(
            f"no TFLM runtime table in {runtime_tables.TABLES_DIR}: the package is incomplete"
        )
    largest = max(tables, key=lambda t: t.runtime_bytes(ops)[0])
    figure = _table_runtime(largest, ops)
    core = f"the core of {target.name} ({target.core})" if target else "an unnamed target"
    return replace(
        figure,
        measured=False,
        bound_rule=(
            f"no build covers {core}: the largest figure of this op set over the "
            f"{len(tables)} measured Cortex-M builds ({largest.key})"
            + (f"; {figure.bound_rule}" if figure.bound_rule else "")
        ),
    )


def _target_table(target: Target | None) -> runtime_tables.RuntimeTable | None:
    if target is None or target.tflm_arch is None:
        return None
    return runtime_tables.load_table(target.tflm_arch, target.tflm_kernels, target.tflm_build_type)


# What edge-prune's sparse kernels (EDGE_PRUNE_SPARSE_FC and _CONV) add to TFLM's framework
# alone: their own code (5,277 B with both ops) and the TFLM and libgcc code only they pull in
# (QuantizeMultiplier's double arithmetic, activation ranges, padding). Measured from the link
# maps of cortex-m4+fp CMSIS-NN default builds (edge-prune device, gcc 12.2 -Os, 2026-12-07):
# runtime flash minus the table's framework (+ RESHAPE) = 8,736 B (FC only), 8,766 B (FC and
# CONV). Used only with a table that does not measure the sparse ops (a labelled bound, counted
# once for any sparse op): a table that does counts their sections in the union with the other
# ops' (bench/device_tables.py links one firmware per sparse op).
SPARSE_KERNELS_BYTES = 8_766
SPARSE_KERNELS_SOURCE = "cortex-m4+fp CMSIS-NN default build, link map (bench/sparse.py)"
# The same for the int4 ops (EDGE_PRUNE_SPARSE_FC_INT4 and _CONV_INT4), measured from the link
# maps of runtime firmwares (edge_prune.measurement.device.runtime_flash_for_ops: the ops
# registered with AddCustom, linked --gc-sections) on the cortex-m4+fp CMSIS-NN default build
# (gcc 12.2 -Os, 2026-12-07): alone, runtime flash minus the framework's link = 7,859 B (FC_INT4
# only), 8,731 B (both int4 ops; their own objects 5,159 B, the int8 kernels' option and index
# checks they build on 869 B, the rest TFLM and libgcc code); beside both int8 sparse ops they
# add 5,366 B (13,629 B for all four vs 8,263 B). Used until a runtime table measures them.
SPARSE_INT4_KERNELS_BYTES = 8_731
SPARSE_INT4_BESIDE_INT8_BYTES = 5_366
SPARSE_INT4_KERNELS_SOURCE = (
    "cortex-m4+fp CMSIS-NN default build, link map of a runtime firmware (-Os)"
)


def _table_runtime(table: runtime_tables.RuntimeTable, ops) -> RuntimeFlash:
    """The op set's figure from ``table``: the union of the sections of the framework and of
    each op, edge-prune's sparse ops included when the table measures them (code they share
    with TFLM's kernels counted once); else the sparse ops the table lacks add
    SPARSE_KERNELS_BYTES (int8 ops) / SPARSE_INT4_KERNELS_BYTES (int4 ops), labelled."""
    sparse = [op for op in dict.fromkeys(ops) if op in _sparse_ops()]
    missing = [op for op in sparse if op not in table.ops]
    if not missing:
        return _tflm_table_runtime(table, ops)
    int4 = _sparse_int4_ops()
    missing8 = [op for op in missing if op not in int4]
    missing4 = [op for op in missing if op in int4]
    figure = _tflm_table_runtime(table, [op for op in ops if op not in missing])
    kernels = dict(figure.kernel_bytes)
    rules, extra = [], 0
    if missing8:
        extra += SPARSE_KERNELS_BYTES
        kernels |= {missing8[0]: SPARSE_KERNELS_BYTES} | {op: 0 for op in missing8[1:]}
        rules.append(
            f"{', '.join(missing8)}: edge-prune's sparse kernels, not in the {table.key} table: "
            f"{SPARSE_KERNELS_BYTES:,} B once (measured on a {SPARSE_KERNELS_SOURCE})"
        )
    if missing4:
        beside = any(op not in int4 for op in sparse)
        size = SPARSE_INT4_BESIDE_INT8_BYTES if beside else SPARSE_INT4_KERNELS_BYTES
        extra += size
        kernels |= {missing4[0]: size} | {op: 0 for op in missing4[1:]}
        rules.append(
            f"{', '.join(missing4)}: edge-prune's int4 sparse kernels, not in the {table.key} "
            f"table: {size:,} B once{' beside the int8 sparse ops' if beside else ''} (measured "
            f"on a {SPARSE_INT4_KERNELS_SOURCE})"
        )
    total = figure.total_bytes + extra
    return replace(
        figure,
        total_bytes=total,
        estimate_bytes=total,
        upper_bound_bytes=total,
        kernel_bytes=kernels,
        measured=False,
        bound_rule="; ".join(r for r in (figure.bound_rule, *rules) if r),
    )


def _sparse_ops() -> frozenset[str]:
    from edge_prune.measurement.sparse.format import CUSTOM_OPS

    return frozenset(f"CUSTOM:{name}" for name in CUSTOM_OPS.values()) | _sparse_int4_ops()


def _sparse_int4_ops() -> frozenset[str]:
    from edge_prune.measurement.sparse.format import CUSTOM_OPS_INT4

    return frozenset(f"CUSTOM:{name}" for name in CUSTOM_OPS_INT4.values())


def _tflm_table_runtime(table: runtime_tables.RuntimeTable, ops) -> RuntimeFlash:
    total, uncovered = table.runtime_bytes(ops)
    covered = [op for op in dict.fromkeys(ops) if op not in uncovered]
    kernels = {op: table.op_bytes(op) for op in covered}
    kernels |= {op: table.largest_op_bytes() for op in uncovered}
    rule = ""
    if uncovered:
        rule = (
            f"{', '.join(uncovered)} not in the table: counted at its largest single-op cost, "
            f"{table.largest_op_bytes():,} B each"
        )
    return RuntimeFlash(
        total_bytes=total,
        estimate_bytes=total,
        upper_bound_bytes=total,
        framework_bytes=table.framework_bytes,
        kernel_bytes=kernels,
        defaulted_ops=uncovered,
        measured=not uncovered,
        source=table.source(),
        bound_rule=rule,
        from_table=True,
        error=runtime_tables.table_error(table.key),
    )


def _overridden_runtime(ops, target: Target) -> RuntimeFlash:
    """The target file's own per-op figures (``[runtime]`` framework/kernel bytes) over the
    measured table's (or bound's) per-op figures. Summed per op, shared helpers count once per
    op that links them: on the safe side. Measured when the file gives the framework and every
    op."""
    base = _table_or_bound(ops, target)
    overrides = target.runtime
    framework = overrides.framework_flash_bytes
    framework = base.framework_bytes if framework is None else framework
    custom = overrides.kernel_flash_bytes
    kernels = {op: custom.get(op, base.kernel_bytes.get(op, 0)) for op in dict.fromkeys(ops)}
    all_given = overrides.framework_flash_bytes is not None and set(ops) <= set(custom)
    total = framework + sum(kernels.values())
    return RuntimeFlash(
        total_bytes=total,
        estimate_bytes=total,
        upper_bound_bytes=total,
        framework_bytes=framework,
        kernel_bytes=kernels,
        defaulted_ops=() if all_given else base.defaulted_ops,
        measured=all_given or base.measured,
        source=f"{target.path} [runtime]"
        + (f" ({overrides.source})" if overrides.source else "")
        + ("" if all_given else f" over {base.source}"),
        bound_rule="" if all_given else base.bound_rule,
        from_table=not all_given and base.from_table,
    )


def _arena_dict(arena: tflm.ArenaMeasurement | None) -> dict | None:
    if arena is None:
        return None
    return {
        "what": "TFLM tensor arena, measured on this 64-bit host with reference kernels: inputs "
        "of each target's arena (targets[].ram.arena_bytes), not verdict figures",
        "host_64bit_bytes": arena.arena_bytes,
        "host_64bit_what": "input: an arena_size with which TFLM allocated and ran the model "
        "here, from one recorded run (recorded total + planning space + alignment; verified by "
        "running it)",
        "reference_32bit_bytes": arena.device_total_bytes,
        "reference_32bit_what": "input: arena a firmware's MicroInterpreter needs on a 32-bit "
        "Cortex-M with TFLM reference kernels, from the recorded allocations with measured "
        "32-bit struct sizes; a target's arena starts from it",
        "recorded_total_bytes": arena.recorded_total_bytes,
        "recorded_head_bytes": arena.recorded_head_bytes,
        "recorded_head_what": "non-persistent tensors (memory plan); same on a 32-bit MCU",
        "recorded_tail_bytes": arena.recorded_tail_bytes,
        "recorded_tail_what": "persistent structures; differs on a 32-bit MCU",
        "recorded_by": "TFLM RecordingMicroAllocator (print_allocations)",
        "recorded_with_arena_bytes": arena.recorded_with_arena_bytes,
    }
