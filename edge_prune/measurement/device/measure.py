"""``edge-prune device``: the model's firmware files on a real TFLM build, run in QEMU.

:func:`measure` compiles the firmware files ``edge-prune report --emit-c`` writes
(``model_data.cc/.h``, ``model_ops.h`` and FIRMWARE.md's code, taken from a build directory as
they are, or generated with :func:`edge_prune.measurement.firmware.firmware_sources` for a bare
``.tflite``) plus the harness ``harness/device_main.cc`` for the target's core, links them with
the TFLM objects of the model's ops, splits the map file (model / TFLM runtime / harness), runs
the samples on the core's QEMU machine and compares every output byte with the host TFLM
interpreter (:mod:`edge_prune.measurement.tflm`, in a child process) given the same quantized
inputs.

In the same QEMU run the harness bisects the smallest arena with which a plain
``MicroInterpreter`` allocates and gives sample 0's outputs, reads ``arena_used_bytes()``, and
times each inference with the board's timer under ``-icount shift=0`` (1 ns of virtual time per
emulated instruction; a 2,000,002-instruction loop calibrates ticks to instructions). These are
instructions emulated by QEMU, not cycles of a real core.

Inputs: a build directory's ``heldout.npz`` (written by ``edge-prune model``), ``data`` (an
``.npz`` with ``x_test`` or ``x``), or seeded random values over the input's range. Float values
go through FIRMWARE.md's ``Run...`` function, which quantizes on the device; the host applies
the same float32 arithmetic (divide, ``lround``, clamp) before its interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_prune._process import die_with
from edge_prune.artifacts import write_atomic
from edge_prune.errors import DataError, ModelFileError
from edge_prune.measurement.device import build
from edge_prune.measurement.device.config import DeviceConfig, core_from_target
from edge_prune.measurement.device.link import (
    Workspace,
    digest,
    group_totals,
    harness_file,
    split_sections,
)
from edge_prune.measurement.device.runtime import sparse_kernel_sections
from edge_prune.measurement.device.toolchain import TflmTree, Toolchain
from edge_prune.measurement.firmware import (
    DATA_HEADER,
    DATA_SOURCE,
    GUIDE,
    OPS_HEADER,
    SPARSE_OPS,
    SPARSE_SOURCES,
    c_identifier,
    camel_prefix,
    firmware_sources,
)
from edge_prune.measurement.host_tflm import HostTflm, host_tflm
from edge_prune.measurement.targets import Target
from edge_prune.measurement.tflite_file import ModelInfo, read_model

HELDOUT_FILE = "heldout.npz"
DEFAULT_SAMPLES = 8
MAX_SAMPLES = 1024  # linked into the firmware with the model: a bound on its flash
QEMU_TIMEOUT_S = 300.0
CALIBRATION_INSTRUCTIONS = 2_000_002  # the harness loop: ldr + 1,000,000 x (subs, bne) + 1
_FLOAT_INPUT_TYPES = ("INT8", "FLOAT32")
FLOAT_TOLERANCE = 1e-5  # relative, float32 outputs only: the device's libm is not the host's


@dataclass(frozen=True)
class Samples:
    """What the device and the host are given: ``values`` (float32, one row per sample, fed to
    FIRMWARE.md's Run function) or ``raw`` (the input tensors' bytes), and where they came from."""

    source: str
    values: np.ndarray | None = None
    raw: list[bytes] | None = None

    @property
    def count(self) -> int:
        return len(self.values) if self.values is not None else len(self.raw or [])


@dataclass(frozen=True)
class DeviceResult:
    """One ``edge-prune device`` measurement; see :meth:`to_dict` for the report's keys."""

    model: str
    target: str
    config: DeviceConfig
    machine: str | None
    size_only_reason: str | None
    samples: int
    samples_source: str
    outputs_equal_host: bool | None
    max_abs_score_diff: float | None
    model_flash_bytes: int
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    harness_flash_bytes: int
    groups: dict[str, dict[str, int]]
    configured_arena_bytes: int | None
    arena_min_bytes: int | None
    arena_used_bytes: int | None
    instructions_per_inference: int | None
    instructions_per_sample: list[int] = field(default_factory=list)
    # byte for byte, or float32 outputs within FLOAT_TOLERANCE (device and host libm differ)
    outputs_within_tolerance: bool | None = None
    instructions_per_tick: float | None = None
    # Per operator of one inference (sample 0): (op name, instructions); default builds only.
    instructions_per_op: list[tuple[str, int]] = field(default_factory=list)
    available_flash_bytes: int = 0
    available_ram_bytes: int = 0
    fits: bool = False
    ran: bool = False
    problem: str | None = None
    arena_probe_note: str | None = None
    tflm_commit: str | None = None
    # The host interpreter the outputs are compared with: the tflite-micro wheel and its commit.
    host_tflm: HostTflm = HostTflm(version=None, commit=None)
    # Why instructions_per_inference is None (None when it was counted).
    instructions_missing: str | None = None
    compiler_version: str = ""
    flags: tuple[str, ...] = ()
    elf: str = ""
    compiled_objects: int = 0
    machine_note: str | None = None  # the figures come from another core's machine, FPU-less

    @property
    def tflm_commits_differ(self) -> bool | None:
        """True when the device's TFLM tree and the host's wheel were built from different
        commits (outputs are then compared across two TFLM versions); None when one is unknown."""
        same = self.host_tflm.same_commit(self.tflm_commit)
        return None if same is None else not same

    # edge-prune's sparse kernels (edge_prune_sparse*.o), counted in runtime_flash_bytes
    sparse_kernel_flash_bytes: int = 0

    @property
    def ok(self) -> bool:
        """Exit 0: fits, and (when it runs on QEMU) ran with outputs equal to the host's: byte
        for byte, or for float32 outputs within FLOAT_TOLERANCE relative."""
        if self.machine is None:
            return self.fits and self.problem is None
        return self.fits and bool(self.outputs_equal_host or self.outputs_within_tolerance)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "target": self.target,
            "core": self.config.core,
            "kernels": self.config.kernels,
            "build_type": self.config.build_type,
            "machine": self.machine,
            "machine_note": self.machine_note,
            "size_only_reason": self.size_only_reason,
            "samples": self.samples,
            "samples_source": self.samples_source,
            "outputs_equal_host": self.outputs_equal_host,
            "outputs_within_tolerance": self.outputs_within_tolerance,
            "float_tolerance": FLOAT_TOLERANCE,
            "max_abs_score_diff": self.max_abs_score_diff,
            "model_flash_bytes": self.model_flash_bytes,
            "runtime_flash_bytes": self.runtime_flash_bytes,
            "runtime_ram_bytes": self.runtime_ram_bytes,
            "harness_flash_bytes": self.harness_flash_bytes,
            "groups": self.groups,
            "configured_arena_bytes": self.configured_arena_bytes,
            "arena_min_bytes": self.arena_min_bytes,
            "arena_used_bytes": self.arena_used_bytes,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_per_sample": self.instructions_per_sample,
            "instructions_per_tick": self.instructions_per_tick,
            "instructions_per_op": [[op, n] for op, n in self.instructions_per_op],
            "instructions_note": "instructions emulated by QEMU (-icount shift=0), not cycles",
            "instructions_missing": self.instructions_missing,
            "available_flash_bytes": self.available_flash_bytes,
            "available_ram_bytes": self.available_ram_bytes,
            "fits": self.fits,
            "ran": self.ran,
            "problem": self.problem,
            "arena_probe_note": self.arena_probe_note,
            "tflm_commit": self.tflm_commit,
            "host_tflm_version": self.host_tflm.version,
            "host_tflm_commit": self.host_tflm.commit,
            "tflm_commits_differ": self.tflm_commits_differ,
            "compiler_version": self.compiler_version,
            "flags": list(self.flags),
            "elf": self.elf,
            "compiled_objects": self.compiled_objects,
            "sparse_kernel_flash_bytes": self.sparse_kernel_flash_bytes,
        }


@dataclass(frozen=True)
class _Model:
    """The model to build: its bytes, parsed info, name, firmware files and samples source."""

    path: Path
    data: bytes
    info: ModelInfo
    name: str
    files: dict[str, str]
    heldout: Path | None


def measure(
    model: str | Path,
    target: Target,
    tree: TflmTree,
    *,
    kernels: str | None = None,
    build_type: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    data: str | Path | None = None,
    toolchain: Toolchain | None = None,
    progress: build.Progress | None = None,
    timeout_s: float = QEMU_TIMEOUT_S,
) -> DeviceResult:
    """Build ``model`` (a ``.tflite`` or an ``edge-prune model`` build directory) for
    ``target``'s core with TFLM ``kernels`` and ``build_type`` (default: the target's
    ``tflm_kernels`` and ``tflm_build_type``), run it on QEMU when the core has a machine, and
    measure; see the module doc."""
    config = DeviceConfig(
        target.tflm_arch or core_from_target(target.core),
        kernels or target.tflm_kernels,
        build_type or target.tflm_build_type,
    )
    source = _load_model(Path(model), target, config)
    chosen = _samples(source, data, samples)
    host = _host_outputs(source, chosen)
    space = Workspace(tree, config, toolchain, progress)
    space.ensure_ops([op for op in source.info.op_types if op not in SPARSE_OPS])
    directory = space.directory / "models" / digest(source.data, *sorted(source.files.values()),
                                                    _samples_key(chosen))  # fmt: skip
    with build.config_lock(directory):  # one process per firmware directory
        elf = _build_firmware(space, directory, source, chosen, host.arena_bytes)
    baseline = space.baseline()
    groups = split_sections(elf.sections, baseline.sections, [DATA_SOURCE.replace(".cc", ".o")])
    kernels = _sparse_kernel_sections(groups)
    totals = group_totals(groups)
    machine = config.machine
    run = _run_qemu(space, elf.elf, timeout_s) if machine else None
    result = _result(source, target, space, config, chosen, host, totals, run, elf)
    return replace(result, sparse_kernel_flash_bytes=sum(s.flash_bytes for s in kernels))


def _sparse_kernel_sections(groups: dict[str, list]) -> list:
    """Move edge-prune's sparse kernels (compiled with the firmware) from the harness group to
    the runtime: they are kernels the model needs, like TFLM's."""
    kernels = sparse_kernel_sections(groups["harness"])
    groups["harness"] = [s for s in groups["harness"] if s not in kernels]
    groups["runtime"] += kernels
    return kernels


# --------------------------------------------------------------------------- the model


def _load_model(path: Path, target: Target, config: DeviceConfig) -> _Model:
    """A build directory or ``--emit-c`` folder (:func:`_load_folder`) or a bare ``.tflite``.
    Only regular files are read."""
    if path.is_dir():
        return _load_folder(path, target, config)
    data = _read_file(path, "no such file or build directory")
    info = read_model(data)
    generated = _generated(data, path.stem, target, config)
    return _Model(path, data, info, path.stem, generated, None)


def _load_folder(path: Path, target: Target, config: DeviceConfig) -> _Model:
    """A build directory (model.tflite beside the firmware files) or an ``--emit-c`` folder
    (the firmware files alone: the model is the array in model_data.cc)."""
    names = (DATA_HEADER, DATA_SOURCE, OPS_HEADER, GUIDE)
    present = all(_exists(path / name) for name in names)
    tflite = path / "model.tflite"
    if _exists(tflite):
        data = _read_file(tflite)
    elif _exists(path / DATA_SOURCE):
        tflite = path / DATA_SOURCE
        data = model_bytes_from_source(_read_text(tflite), tflite)
    else:
        raise ModelFileError(
            f"{path}: expected model.tflite (a build directory) or {DATA_SOURCE} (an --emit-c "
            "folder); found neither"
        )
    info = read_model(data)
    files = {n: _read_text(path / n) for n in names} if present else {}
    files |= {n: _read_text(path / n) for n in SPARSE_SOURCES if _exists(path / n)}
    name = _name_from_files(files) if present else "model"
    if not present:
        files = _generated(data, name, target, config)
    heldout = path / HELDOUT_FILE  # read (regular files only) when the samples are chosen
    return _Model(tflite, data, info, name, files, heldout if _exists(heldout) else None)


_ARRAY = re.compile(r"_model_data\[\]\s*=\s*\{(.*?)\};", re.S)
_ARRAY_LEN = re.compile(r"_model_data_len\s*=\s*(\d+)\s*;")


def model_bytes_from_source(text: str, where: Path | str = DATA_SOURCE) -> bytes:
    """The flatbuffer held by a generated model_data.cc (its ``g_<name>_model_data`` array)."""
    array, length = _ARRAY.search(text), _ARRAY_LEN.search(text)
    if array is None or length is None:
        raise ModelFileError(f"{where}: no g_<name>_model_data array and _len in it")
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{1,2})\b", array.group(1)))
    if len(data) != int(length.group(1)):
        raise ModelFileError(
            f"{where}: the array holds {len(data)} bytes, its _len says {length.group(1)}"
        )
    return data


def _read_file(path: Path, missing: str = "no such file") -> bytes:
    from edge_prune.input_files import MAX_MODEL_BYTES, read_input

    try:
        return read_input(path, limit=MAX_MODEL_BYTES, error=ModelFileError)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: a directory; expected a file") from None


def _read_text(path: Path) -> str:
    return _read_file(path).decode("utf-8", errors="replace")


def _exists(path: Path) -> bool:
    """Present as a file name (a FIFO or a link too: reading it says what is wrong)."""
    return (path.exists() and not path.is_dir()) or path.is_symlink()


def _name_from_files(files: dict[str, str]) -> str:
    match = re.search(r"\bg_(\w+)_model_data\[\]", files[DATA_SOURCE])
    if not match:
        raise ModelFileError(f"{DATA_SOURCE}: no g_<name>_model_data array in it")
    return match.group(1)


def _generated(data: bytes, name: str, target: Target, config: DeviceConfig) -> dict[str, str]:
    """The firmware files of a bare ``.tflite``, with the arena the verdict counts for the
    target built with this core and kernel set
    (:func:`edge_prune.measurement.footprint.target_arena`)."""
    from edge_prune.measurement import tflm
    from edge_prune.measurement.firmware import HOST_ARENA_NOTE, verdict_arena_note
    from edge_prune.measurement.footprint import measure as measure_footprint
    from edge_prune.measurement.footprint import verdict_for

    arena = tflm.measure_arena(data, label=name)  # a model TFLM cannot run stops here
    built = replace(target, tflm_kernels=config.kernels)
    verdict = verdict_for(measure_footprint(data, arena=arena, label=name), built)
    note = HOST_ARENA_NOTE if verdict.arena_bytes is None else verdict_arena_note(verdict)
    return firmware_sources(data, name, arena_bytes=verdict.arena_bytes, arena_note=note).files


def firmware_code(guide: str) -> str:
    """The C++ block of FIRMWARE.md (what a user pastes into the application)."""
    match = re.search(r"```cpp\n(.*?)```", guide, re.S)
    if not match:
        raise ModelFileError(f"{GUIDE}: no ```cpp block (the model did not run on TFLM?)")
    return match.group(1)


# --------------------------------------------------------------------------- samples


def _samples(model: _Model, data: str | Path | None, count: int) -> Samples:
    if not 1 <= count <= MAX_SAMPLES:
        raise DataError(f"--samples: expected 1 to {MAX_SAMPLES}, got {count}")
    inputs = model.info.input_tensors
    float_mode = len(inputs) == 1 and inputs[0].dtype in _FLOAT_INPUT_TYPES
    if data is not None or model.heldout is not None:
        path = Path(data) if data is not None else model.heldout
        if not float_mode:
            raise DataError(
                f"{path}: sample files need a model with one int8 or float32 input; "
                f"this one has {len(inputs)} input(s) of {[t.dtype for t in inputs]}"
            )
        x = _read_x(path)
        elements = int(np.prod(inputs[0].shape))
        if x[0].size != elements:
            raise DataError(
                f"{path}: a sample has {x[0].size} values, the model's input {elements}"
            )
        return Samples(str(path), values=x[:count].reshape(-1, elements).astype(np.float32))
    rng = np.random.default_rng(0)
    if float_mode:
        t = inputs[0]
        elements = int(np.prod(t.shape))
        if t.dtype == "INT8" and t.scale:
            low, high = t.scale[0] * (-128 - t.zero_point[0]), t.scale[0] * (127 - t.zero_point[0])
        else:
            low, high = -1.0, 1.0
        values = rng.uniform(low, high, (count, elements)).astype(np.float32)
        return Samples(f"{count} seeded random inputs over [{low:.4g}, {high:.4g}]", values=values)
    raw = [b"".join(_random_tensor(rng, t) for t in inputs) for _ in range(count)]
    return Samples(f"{count} seeded random input tensors (raw bytes)", raw=raw)


def _read_x(path: Path) -> np.ndarray:
    """``x_test`` (or ``x``) of an .npz: at least one sample of finite real numbers."""
    import io
    import zipfile

    from edge_prune.input_files import MAX_MODEL_BYTES, read_input

    try:
        raw = read_input(path, limit=MAX_MODEL_BYTES, error=DataError)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise DataError(f"{path}: {e.strerror}; expected an .npz with x_test (or x)") from None
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array (.npy); expected an .npz with x_test (or x)")
        with loaded as f:
            key = "x_test" if "x_test" in f.files else "x" if "x" in f.files else None
            if key is None:
                raise DataError(f"{path}: expected an array x_test (or x); found {f.files}")
            x = np.asarray(f[key])
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    except MemoryError as e:
        raise DataError(f"{path}: an array is too large to load ({e})") from None
    if x.ndim < 1 or len(x) == 0 or x.dtype.kind not in "fiub" or not np.isfinite(x).all():
        raise DataError(
            f"{path}: {key} must hold at least one sample of finite real numbers "
            f"(got dtype {x.dtype}, shape {x.shape})"
        )
    return x


_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
                "FLOAT32": np.float32}  # fmt: skip


def _random_tensor(rng, tensor) -> bytes:
    dtype = _NUMPY_TYPES.get(tensor.dtype)
    if dtype is None:
        raise DataError(f"input {tensor.name!r}: no random inputs for type {tensor.dtype}")
    size = int(np.prod(tensor.shape))
    if dtype is np.float32:
        return rng.uniform(-1, 1, size).astype("<f4").tobytes()
    info = np.iinfo(dtype)
    return (
        rng.integers(info.min, info.max + 1, size)
        .astype(np.dtype(dtype).newbyteorder("<"))
        .tobytes()
    )


def _samples_key(samples: Samples) -> bytes:
    if samples.values is not None:
        return samples.values.tobytes()
    return b"".join(samples.raw or [])


def quantize_like_firmware(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """FIRMWARE.md's input quantization: float32 ``value / scale``, ``lround``, + zero point,
    clamp to int8, in the same arithmetic as the device."""
    q = (values.astype(np.float32) / np.float32(scale)).astype(np.float64)
    rounded = np.sign(q) * np.floor(np.abs(q) + 0.5)
    return np.clip(rounded + zero_point, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------- the host


@dataclass(frozen=True)
class _Host:
    outputs: list[list[bytes]]  # per sample, per output tensor
    scores: list[list[np.ndarray]]
    arena_bytes: int


def _host_inputs(model: _Model, samples: Samples) -> np.ndarray:
    inputs = model.info.input_tensors
    if samples.values is not None:
        t = inputs[0]
        values = samples.values.reshape(-1, *t.shape[1:]) if t.shape else samples.values
        if t.dtype == "INT8":
            return quantize_like_firmware(values, t.scale[0], t.zero_point[0])
        return values.astype(np.float32)
    t = inputs[0]
    dtype = np.dtype(_NUMPY_TYPES[t.dtype]).newbyteorder("<")
    return np.stack([np.frombuffer(r, dtype).reshape(t.shape[1:] or (1,)) for r in samples.raw])


def _host_outputs(model: _Model, samples: Samples) -> _Host:
    from edge_prune.measurement import tflm

    if samples.raw is not None and len(model.info.input_tensors) > 1:
        raise DataError("host comparison: models with several inputs are not supported yet")
    x = _host_inputs(model, samples)
    per_output, arena = [], 0
    for index in range(len(model.info.output_tensors)):
        run = tflm.execute(model.data, x, label=model.name, output_index=index)
        per_output.append(np.asarray(run.outputs))
        arena = run.arena.verdict_bytes
    little = [np.asarray(o).astype(o.dtype.newbyteorder("<")) for o in per_output]
    outputs = [[o[s].tobytes() for o in little] for s in range(samples.count)]
    tensors = model.info.output_tensors
    scores = [
        [_dequantize(o[s], t) for o, t in zip(per_output, tensors, strict=True)]
        for s in range(samples.count)
    ]
    return _Host(outputs, scores, arena)


def _dequantize(values: np.ndarray, tensor) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if tensor.scale and tensor.dtype != "FLOAT32":
        return tensor.scale[0] * (values - tensor.zero_point[0])
    return values


# --------------------------------------------------------------------------- the firmware


def _build_firmware(space: Workspace, directory: Path, model: _Model, samples: Samples,
                    host_arena: int):  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for name in (DATA_HEADER, DATA_SOURCE, OPS_HEADER):
        _write(directory / name, model.files[name])
    _write(directory / "firmware_md.cc", firmware_code(model.files[GUIDE]))
    _write(directory / "device_glue.h", _glue(model, samples, space, host_arena))
    script = space.linker_script(directory)
    objects = [space.startup_object(directory)]
    kernels = [name for name in SPARSE_SOURCES if name in model.files]
    for name in kernels:
        _write(directory / name, model.files[name])
    compiled = [name for name in kernels if name.endswith(".cc")]
    for name in (DATA_SOURCE, "firmware_md.cc", *compiled):
        objects.append(space.compile_cxx(directory / name, directory / name.replace(".cc", ".o"),
                                         [directory]))  # fmt: skip
    objects.append(space.compile_cxx(harness_file("device_main.cc"), directory / "main.o",
                                     [directory]))  # fmt: skip
    return space.link(objects, directory / "firmware.elf", script)


def _write(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text)


def _glue(model: _Model, samples: Samples, space: Workspace, host_arena: int) -> str:
    camel = camel_prefix(c_identifier(model.name))
    prefix = c_identifier(model.name)
    output_bytes = sum(_tensor_bytes(t) for t in model.info.output_tensors)
    ram = space.machine.ram_length
    probe = min(max(2 * host_arena, host_arena + 16384), ram // 3)
    lines = [
        "// Generated by edge-prune device: the model's names for the harness, and the samples.",
        "#pragma once",
        f'#include "{DATA_HEADER}"',
        f'#include "{OPS_HEADER}"',
        f"#define EP_SETUP SetUp{camel}",
        f"#define EP_RUN Run{camel}",
        f"#define EP_REGISTER {camel}RegisterOps",
        f"#define EP_RESOLVER {camel}OpResolver",
        f"#define EP_MODEL g_{prefix}_model_data",
        f"#define EP_PROBE_ARENA_BYTES {probe}",
        f"#define EP_MAX_OUTPUT_BYTES {max(output_bytes, 1)}",
        f"#define EP_FLOAT_INPUT {1 if samples.values is not None else 0}",
        f"constexpr int kEpSamples = {samples.count};",
    ]
    if space.machine.timer_base is not None and space.machine.timer_kind == "fpgaio":
        lines.append(f"#define EP_COUNTER_ADDR {space.machine.timer_base + 0x18:#x}u")
    elif space.machine.timer_base is not None:
        lines.append(f"#define EP_TIMER_BASE {space.machine.timer_base:#x}u")
    if samples.values is not None:
        rows = ",\n".join("  {" + ", ".join(_float(v) for v in row) + "}" for row in samples.values)
        lines.append(
            f"const float kEpSampleValues[{samples.count}][{samples.values.shape[1]}] = {{"
        )
        lines += [rows, "};"]
    else:
        width = len(samples.raw[0])
        rows = ",\n".join("  {" + ", ".join(str(b) for b in r) + "}" for r in samples.raw)
        lines.append(f"const unsigned char kEpSampleBytes[{samples.count}][{width}] = {{")
        lines += [rows, "};"]
    return "\n".join(lines) + "\n"


def _float(value: float) -> str:
    text = f"{float(np.float32(value)):.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


_SIZES = {"INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4,
          "FLOAT32": 4, "INT64": 8, "FLOAT64": 8, "BOOL": 1, "FLOAT16": 2}  # fmt: skip


def _tensor_bytes(tensor) -> int:
    return int(np.prod(tensor.shape)) * _SIZES.get(tensor.dtype, 8)


# --------------------------------------------------------------------------- QEMU


@dataclass(frozen=True)
class QemuRun:
    """What the harness printed: calibration ticks, per-sample status/ticks/output bytes, the
    arena figures; ``problem`` says what went wrong (timeout, crash, setup failed)."""

    calibration_ticks: int | None
    arena_used_bytes: int | None
    samples: list[tuple[int, int, list[bytes]]]
    arena_min_bytes: int | None
    probe_used_bytes: int | None
    done: bool
    problem: str | None
    profile: list[tuple[str, int]] = field(default_factory=list)  # (op name, ticks) per op
    probe_asserts: str | None = None


def qemu_command(space: Workspace, elf: Path) -> list[str]:
    return [space.toolchain.qemu, "-M", space.machine.name, "-nographic", "-monitor", "none",
            "-serial", "none", "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0", "-kernel", str(elf)]  # fmt: skip


def _run_qemu(space: Workspace, elf: Path, timeout_s: float) -> QemuRun:
    try:
        done = subprocess.run(qemu_command(space, elf), capture_output=True, text=True,
                              preexec_fn=die_with(os.getpid()),
                              timeout=timeout_s, errors="replace")  # fmt: skip
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        return parse_harness(text or "", f"QEMU did not finish within {timeout_s:g} s")
    problem = None if done.returncode == 0 else f"QEMU exited with code {done.returncode}"
    if done.returncode == 1:  # startup.c's fault handler: semihosting exit, RunTimeErrorUnknown
        problem += " (the firmware faulted)"
    if done.returncode != 0 and done.stderr.strip():
        problem += ": " + done.stderr.strip().splitlines()[-1]
    return parse_harness(done.stdout, problem)


def parse_harness(text: str, problem: str | None = None) -> QemuRun:
    """Parse the harness's output lines (see harness/device_main.cc)."""
    calibration = _int(r"^calibration (\d+)$", text)
    used = _int(r"^arena_used_bytes (\d+)$", text)
    samples = [
        (int(m.group(1)), int(m.group(2)), [bytes.fromhex(h) for h in m.group(3).split()])
        for m in re.finditer(r"^sample \d+ status (-?\d+) ticks (\d+) out(.*)$", text, re.M)
    ]
    probe = re.search(r"^probe arena_min (\d+) used (\d+)$", text, re.M)
    profile = [
        (m.group(1), int(m.group(2))) for m in re.finditer(r"^profile \d+ (\S+) (\d+)$", text, re.M)
    ]
    done = bool(re.search(r"^DONE$", text, re.M))
    failed = re.search(r"^assertion failed: (.*)$", text, re.M)
    if problem is None and failed:
        problem = f"TFLM assertion failed: {failed.group(1)}"
    halted = re.search(r"^TFLM halted: (.*)$", text, re.M)
    if problem is None and halted:
        problem = f"TFLM halted: {halted.group(1)}"
    if problem is None and "setup failed" in text:
        problem = "SetUp failed: FIRMWARE.md's SetUp returned nullptr, no inference ran"
        said = _tflm_log(text.split("setup failed")[0])
        problem += (
            f"; TFLM said: {said}"
            if said
            else " (arena too small, an op not registered, or a kernel's Prepare failed)"
        )
    if problem is None and not done:
        problem = "the firmware stopped before DONE (a fault?)"
    if problem is not None and "TFLM said" not in problem and not samples:
        said = _tflm_log(text)
        if said:
            problem += f"; TFLM said: {said}"
    return QemuRun(
        calibration_ticks=calibration,
        arena_used_bytes=used,
        samples=samples,
        arena_min_bytes=int(probe.group(1)) if probe else None,
        probe_used_bytes=int(probe.group(2)) if probe else None,
        done=done,
        problem=problem,
        profile=profile,
        probe_asserts=_probe_note(text),
    )


_PROTOCOL = re.compile(r"^(calibration|arena_used_bytes|sample|probe|DONE)\b")


def _tflm_log(text: str) -> str:
    """The last lines TFLM logged (DebugLog goes to the console), without the harness's own."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _PROTOCOL.match(ln)]
    return " | ".join(lines[-3:])[:300]


def _probe_note(text: str) -> str | None:
    """What went wrong at arena sizes the probe counted as not working, if anything did."""
    notes = []
    null = re.search(r"^probe null_writes (\d+)$", text, re.M)
    if null:
        notes.append(f"{null.group(1)} wrote through a null pointer")
    faults = re.search(r"^probe faults (\d+) first pc (0x[0-9a-f]+)$", text, re.M)
    if faults:
        notes.append(f"{faults.group(1)} faulted (first at pc {faults.group(2)})")
    asserts = re.search(r"^probe asserts (\d+) first (.*)$", text, re.M)
    if asserts:
        notes.append(f"{asserts.group(1)} hit an assert (first: {asserts.group(2)})")
    if not notes:
        return None
    return "arena sizes tried by the probe that " + " and ".join(notes) + ": counted as failing"


def _int(pattern: str, text: str) -> int | None:
    match = re.search(pattern, text, re.M)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- the result


def _result(model, target, space, config, samples, host, totals, run, elf) -> DeviceResult:
    flash = totals["model"]["flash_bytes"] + totals["runtime"]["flash_bytes"]
    configured = _configured_arena(model.files[DATA_HEADER])
    common = dict(
        model=str(model.path),
        target=target.name,
        config=config,
        machine=config.machine.name if config.machine else None,
        machine_note=config.machine_note,
        samples=samples.count,
        samples_source=samples.source,
        model_flash_bytes=totals["model"]["flash_bytes"],
        runtime_flash_bytes=totals["runtime"]["flash_bytes"],
        runtime_ram_bytes=totals["runtime"]["ram_bytes"],
        harness_flash_bytes=totals["harness"]["flash_bytes"],
        groups=totals,
        configured_arena_bytes=configured,
        available_flash_bytes=target.available_flash_bytes,
        available_ram_bytes=target.available_ram_bytes,
        tflm_commit=space.tree.commit,
        host_tflm=host_tflm(),
        compiler_version=space.toolchain.gcc_version,
        flags=space.flags.cxx,
        elf=str(elf.elf),
        compiled_objects=len(space.compiled),
    )
    if run is None:
        arena = configured or host.arena_bytes
        fits = flash <= target.available_flash_bytes and (
            arena + totals["runtime"]["ram_bytes"] <= target.available_ram_bytes
        )
        return DeviceResult(**common, size_only_reason=_size_only_reason(config),
                            outputs_equal_host=None, max_abs_score_diff=None,
                            arena_min_bytes=None, arena_used_bytes=None,
                            instructions_per_inference=None, fits=fits,
                            instructions_missing="size only: not run")  # fmt: skip
    equal, close, diff = _compare(run, host, model)
    ratio = CALIBRATION_INSTRUCTIONS / run.calibration_ticks if run.calibration_ticks else None
    per_sample = [round(t * ratio) for _, t, _ in run.samples] if ratio else []
    ram_needed = (run.arena_min_bytes or 0) + totals["runtime"]["ram_bytes"]
    fits = flash <= target.available_flash_bytes and ram_needed <= target.available_ram_bytes
    return DeviceResult(
        **common,
        size_only_reason=None,
        outputs_equal_host=equal,
        outputs_within_tolerance=close,
        max_abs_score_diff=diff,
        arena_min_bytes=run.arena_min_bytes,
        arena_used_bytes=run.arena_used_bytes,
        instructions_per_inference=round(sum(per_sample) / len(per_sample)) if per_sample else None,
        instructions_per_sample=per_sample,
        instructions_per_tick=round(ratio, 3) if ratio else None,
        instructions_missing=None if per_sample else _instructions_missing(run, config),
        instructions_per_op=[(op, round(t * ratio)) for op, t in run.profile] if ratio else [],
        fits=fits and run.arena_min_bytes is not None,
        ran=run.done and bool(run.samples),
        problem=run.problem,
        arena_probe_note=run.probe_asserts,
    )


def _instructions_missing(run: QemuRun, config: DeviceConfig) -> str:
    """Why a run on QEMU counted no instructions per inference."""
    if config.machine.timer_base is None:
        return f"QEMU machine {config.machine.name}: the harness reads no timer on it"
    if not run.samples:
        return "no inference ran" + (f" ({run.problem})" if run.problem else "")
    return "the timer calibration read no ticks"


def _size_only_reason(config: DeviceConfig) -> str:
    return (
        f"{config.core}: QEMU 7.2 has no machine with this core (and refuses -cpu overrides); "
        "measured for size only"
    )


def _configured_arena(header: str) -> int | None:
    match = re.search(r"TensorArenaSize = (\d+);", header)
    return int(match.group(1)) if match else None


def _compare(run: QemuRun, host: _Host, model: _Model) -> tuple[bool, bool, float | None]:
    """(byte for byte equal, equal or float32 outputs within FLOAT_TOLERANCE, max |score diff|)."""
    if len(run.samples) != len(host.outputs) or any(status != 0 for status, _, _ in run.samples):
        return False, False, None
    equal, close, diff = True, True, 0.0
    for (_, _, device), expected, scores in zip(
        run.samples, host.outputs, host.scores, strict=True
    ):
        if len(device) != len(expected):
            return False, False, None
        tensors = model.info.output_tensors
        for got, wanted, want, tensor in zip(device, expected, scores, tensors, strict=True):
            if len(got) != _tensor_bytes(tensor):
                return False, False, None
            dtype = np.dtype(_NUMPY_TYPES.get(tensor.dtype, np.int8)).newbyteorder("<")
            values = _dequantize(np.frombuffer(got, dtype), tensor)
            error = np.abs(values - want.reshape(-1))
            diff = max(diff, float(np.max(error)) if values.size else 0.0)
            same = got == wanted
            equal = equal and same
            bound = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(want.reshape(-1)))
            close = close and (same or (tensor.dtype == "FLOAT32" and bool(np.all(error <= bound))))
    return equal, close, diff
