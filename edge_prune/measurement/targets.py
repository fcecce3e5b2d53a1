"""The target catalogue: one TOML file per microcontroller, loaded into a frozen :class:`Target`.

The file stem is the target name (``targets/cortex-m4.toml`` is ``cortex-m4``). The catalogue is
the repository's ``targets/`` directory, or ``$EDGE_PRUNE_TARGETS_DIR``, or a directory given by
the caller; a path to a ``.toml`` file anywhere on disk works too.

Sizes are bytes. ``flash_bytes``/``ram_bytes`` are what the part has (datasheet);
``reserved_*_bytes`` are what the application keeps for itself (firmware, stack, RTOS, radio),
so the model and TFLM get ``flash_bytes - reserved_flash_bytes`` and
``ram_bytes - reserved_ram_bytes``. Every key is checked: a missing, unknown or mistyped key
is a :class:`~edge_prune.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge_prune.errors import ConfigError, TargetNotFoundError

TARGETS_DIR_ENV = "EDGE_PRUNE_TARGETS_DIR"
_REPO_TARGETS_DIR = Path(__file__).resolve().parents[2] / "targets"

_REQUIRED_INTS = ("clock_hz", "flash_bytes", "ram_bytes", "reserved_flash_bytes",
                  "reserved_ram_bytes")  # fmt: skip
_REQUIRED_STRS = ("part", "board", "core")
_OPTIONAL_STRS = ("source", "notes")
_OPTIONAL_NUMBERS = ("latency_ms",)  # the time budget of one inference, milliseconds
_TFLM_CHOICES = {
    "tflm_kernels": ("reference", "cmsis-nn"),
    "tflm_build_type": ("default", "release"),
}
# TFLM's cortex_m_generic TARGET_ARCH for a target's core. A Cortex-M7 is built with its FPU
# (+fp): the M7 parts in the catalogue have one.
TFLM_ARCH_BY_CORE = {
    "Cortex-M0+": "cortex-m0plus",
    "Cortex-M3": "cortex-m3",
    "Cortex-M4": "cortex-m4",
    "Cortex-M4F": "cortex-m4+fp",
    "Cortex-M7": "cortex-m7+fp",
    "Cortex-M33": "cortex-m33",
    "Cortex-M55": "cortex-m55",
}
# Whether a core has a floating-point unit, when the target file does not say (key ``fpu``).
# Armv6-M (M0+) and Armv7-M M3 have none; "Cortex-M4" is the part without one (nRF52810),
# "Cortex-M4F" the one with (Arm Cortex-M4 Technical Reference Manual, "FPU"). The FPU of an
# M33 or M55 is optional in the architecture: the catalogue's parts (nRF5340, Alif Ensemble)
# have it; ESP32-S3's Xtensa LX7 has a single-precision FPU (ESP32-S3 datasheet).
FPU_BY_CORE = {
    "Cortex-M0+": False,
    "Cortex-M3": False,
    "Cortex-M4": False,
    "Cortex-M4F": True,
    "Cortex-M7": True,
    "Cortex-M33": True,
    "Cortex-M55": True,
    "Xtensa LX7": True,
}
_OPTIONAL_BOOLS = ("fpu",)
_TABLES = ("runtime", "throughput")
_RUNTIME_INTS = ("framework_flash_bytes", "runtime_flash_bytes")
_RUNTIME_KEYS = (*_RUNTIME_INTS, "kernel_flash_bytes", "source")
_THROUGHPUT_KEYS = ("macs_per_cycle", "us_per_call", "source")
# Sizes and clocks fit 32 bits: a Cortex-M or ESP32 addresses 4 GiB in all.
_MAX_SIZE = 2**32


@dataclass(frozen=True)
class Throughput:
    """Measured speed of TFLM kernels on a target: MACs per cycle per op, fixed cost per call."""

    macs_per_cycle: dict[str, float]
    us_per_call: dict[str, float]
    source: str

    def to_dict(self) -> dict:
        return {
            "macs_per_cycle": dict(self.macs_per_cycle),
            "us_per_call": dict(self.us_per_call),
            "source": self.source,
        }


@dataclass(frozen=True)
class RuntimeFlash:
    """Per-target overrides of the TFLM runtime code estimate (bytes of flash).

    ``runtime_flash_bytes`` replaces the whole estimate (framework + kernels) with one figure,
    ``framework_flash_bytes`` the framework part, ``kernel_flash_bytes`` single ops.
    """

    framework_flash_bytes: int | None = None
    runtime_flash_bytes: int | None = None
    kernel_flash_bytes: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "framework_flash_bytes": self.framework_flash_bytes,
            "runtime_flash_bytes": self.runtime_flash_bytes,
            "kernel_flash_bytes": dict(self.kernel_flash_bytes),
            "source": self.source,
        }


@dataclass(frozen=True)
class Target:
    """A microcontroller and what of it is left for the model: sizes in bytes, clock in Hz."""

    name: str
    path: str
    part: str
    board: str
    core: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    reserved_flash_bytes: int
    reserved_ram_bytes: int
    source: str = ""
    notes: str = ""
    runtime: RuntimeFlash | None = None
    throughput: Throughput | None = None
    tflm_kernels: str = "reference"  # the TFLM kernel set a firmware for this part builds
    tflm_build_type: str = "default"  # TFLM's BUILD_TYPE
    fpu: bool | None = None  # None: from the core (FPU_BY_CORE)
    latency_ms: float | None = None  # time budget of one inference; None: no budget

    @property
    def has_fpu(self) -> bool:
        """True when the core computes float32 in hardware; an unknown core counts as without."""
        return self.fpu if self.fpu is not None else FPU_BY_CORE.get(self.core, False)

    @property
    def tflm_arch(self) -> str | None:
        """TFLM's TARGET_ARCH for this core, None for a core TFLM's Cortex-M build lacks."""
        return TFLM_ARCH_BY_CORE.get(self.core)

    @property
    def available_flash_bytes(self) -> int:
        """Flash left for the model flatbuffer and the TFLM runtime."""
        return self.flash_bytes - self.reserved_flash_bytes

    @property
    def available_ram_bytes(self) -> int:
        """RAM left for the TFLM tensor arena."""
        return self.ram_bytes - self.reserved_ram_bytes

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "part": self.part,
            "board": self.board,
            "core": self.core,
            "clock_hz": self.clock_hz,
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "reserved_flash_bytes": self.reserved_flash_bytes,
            "reserved_ram_bytes": self.reserved_ram_bytes,
            "source": self.source,
            "notes": self.notes,
            "runtime": self.runtime.to_dict() if self.runtime else None,
            "tflm_arch": self.tflm_arch,
            "tflm_kernels": self.tflm_kernels,
            "tflm_build_type": self.tflm_build_type,
            "fpu": self.has_fpu,
            "throughput": self.throughput.to_dict() if self.throughput else None,
            "latency_ms": self.latency_ms,
        }

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.part} ({self.core}, {self.clock_hz / 1e6:g} MHz), "
            f"flash {self.flash_bytes:,} B ({self.reserved_flash_bytes:,} reserved), "
            f"RAM {self.ram_bytes:,} B ({self.reserved_ram_bytes:,} reserved)"
        )


def targets_dir(directory: str | Path | None = None) -> Path:
    """The catalogue directory: ``directory``, else ``$EDGE_PRUNE_TARGETS_DIR``, else the repo's."""
    if directory is not None:
        return Path(directory)
    from_env = os.environ.get(TARGETS_DIR_ENV)
    return Path(from_env) if from_env else _REPO_TARGETS_DIR


def list_targets(directory: str | Path | None = None) -> list[str]:
    """Names of the targets in the catalogue, sorted."""
    folder = targets_dir(directory)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml"))


def load_target(name_or_path: str | Path, directory: str | Path | None = None) -> Target:
    """Load a target by catalogue name (``"cortex-m4"``) or by path to a ``.toml`` file."""
    path = _resolve(str(name_or_path), directory)
    return parse_target(_read_toml(path), name=path.stem, path=path)


def load_all_targets(directory: str | Path | None = None) -> list[Target]:
    return [load_target(name, directory) for name in list_targets(directory)]


def _resolve(name_or_path: str, directory: str | Path | None) -> Path:
    as_path = Path(name_or_path)
    if name_or_path.endswith(".toml") or os.sep in name_or_path or "/" in name_or_path:
        if not as_path.exists():  # a FIFO or a device exists: refused unread by _read_toml
            raise TargetNotFoundError(f"{as_path}: target file not found")
        if as_path.is_dir():
            raise TargetNotFoundError(f"{as_path}: target file not found (a directory)")
        return as_path
    folder = targets_dir(directory)
    candidate = folder / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    available = list_targets(directory)
    close = difflib.get_close_matches(name_or_path, available, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    listing = ", ".join(available) if available else f"none (no .toml files in {folder})"
    raise TargetNotFoundError(
        f"unknown target '{name_or_path}': {hint}available targets: {listing} "
        f"(or pass a path to a .toml file)"
    )


def _read_toml(path: Path) -> dict:
    from edge_prune.input_files import MAX_TEXT_BYTES, read_input

    try:
        text = read_input(path, limit=MAX_TEXT_BYTES, error=ConfigError).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read target file ({e.strerror})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from e
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{path}: TOML nested too deeply; expected a flat target file") from None
    except ValueError as e:  # an integer of more than 4,300 digits (sys.int_info)
        raise ConfigError(f"{path}: unreadable TOML value ({str(e)[:80]})") from None


def parse_target(data: dict, name: str, path: str | Path = "<dict>") -> Target:
    """Validate the contents of a target file and build the :class:`Target`."""
    where = str(path)
    allowed = (*_REQUIRED_INTS, *_REQUIRED_STRS, *_OPTIONAL_STRS, *_OPTIONAL_BOOLS)
    allowed = (*allowed, *_OPTIONAL_NUMBERS, *_TFLM_CHOICES, *_TABLES)
    _reject_unknown(data, allowed, where, "")
    for key in (*_REQUIRED_STRS, *_REQUIRED_INTS):
        if key not in data:
            required = ", ".join((*_REQUIRED_STRS, *_REQUIRED_INTS))
            raise ConfigError(f"{where}: missing key '{key}' (required keys: {required})")
    values = {key: _string(data, key, where) for key in _REQUIRED_STRS}
    values |= {key: _size(data, key, where) for key in _REQUIRED_INTS}
    values |= {key: _string(data, key, where) for key in _OPTIONAL_STRS if key in data}
    values |= {key: _choice(data, key, where) for key in _TFLM_CHOICES if key in data}
    values |= {key: _bool(data, key, where) for key in _OPTIONAL_BOOLS if key in data}
    values |= {key: _positive(data, key, where, "") for key in _OPTIONAL_NUMBERS if key in data}
    if values["clock_hz"] == 0:
        raise ConfigError(f"{where}: key 'clock_hz' is 0; expected the core clock in Hz")
    for kind in ("flash", "ram"):
        if values[f"{kind}_bytes"] == 0:
            raise ConfigError(
                f"{where}: key '{kind}_bytes' is 0; expected the part's {kind} size in bytes"
            )
    for kind in ("flash", "ram"):
        if values[f"reserved_{kind}_bytes"] > values[f"{kind}_bytes"]:
            raise ConfigError(
                f"{where}: key 'reserved_{kind}_bytes' ({values[f'reserved_{kind}_bytes']:,}) "
                f"is larger than '{kind}_bytes' ({values[f'{kind}_bytes']:,})"
            )
    return Target(
        name=name,
        path=where,
        runtime=_runtime(data["runtime"], where) if "runtime" in data else None,
        throughput=_throughput(data["throughput"], where) if "throughput" in data else None,
        **values,
    )


def _bool(data: dict, key: str, where: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: key '{key}' must be true or false, got {value!r}")
    return value


def _choice(data: dict, key: str, where: str) -> str:
    value = _string(data, key, where)
    if value not in _TFLM_CHOICES[key]:
        raise ConfigError(
            f"{where}: key '{key}' is {value!r}; expected one of {', '.join(_TFLM_CHOICES[key])}"
        )
    return value


def _runtime(table, where: str) -> RuntimeFlash:
    table = _table(table, where, "runtime")
    _reject_unknown(table, _RUNTIME_KEYS, where, "runtime.")
    kernels = _table(table.get("kernel_flash_bytes", {}), where, "runtime.kernel_flash_bytes")
    figures = {
        key: _optional_size(table, key, where, "runtime.")
        for key in ("framework_flash_bytes", "runtime_flash_bytes")
    }
    for key, value in figures.items():
        if value == 0:
            raise ConfigError(
                f"{where}: key 'runtime.{key}' is 0; a TFLM runtime has code (the interpreter "
                "alone is about 9.7 KB, TFLM examples/memory_footprint/README.md): give the "
                "measured bytes, or leave the key out to use the shipped table"
            )
    return RuntimeFlash(
        **figures,
        kernel_flash_bytes={
            _op_name(op, where, "runtime.kernel_flash_bytes."): _size(
                kernels, op, where, "runtime.kernel_flash_bytes."
            )
            for op in kernels
        },
        source=_string(table, "source", where, "runtime.") if "source" in table else "",
    )


def _throughput(table, where: str) -> Throughput:
    table = _table(table, where, "throughput")
    _reject_unknown(table, _THROUGHPUT_KEYS, where, "throughput.")
    if "source" not in table:
        raise ConfigError(f"{where}: missing key 'throughput.source' (where the figures are from)")
    tables = {}
    for key in ("macs_per_cycle", "us_per_call"):
        sub = _table(table.get(key, {}), where, f"throughput.{key}")
        tables[key] = {
            _op_name(op, where, f"throughput.{key}."): _positive(
                sub, op, where, f"throughput.{key}."
            )
            for op in sub
        }
    return Throughput(source=_string(table, "source", where, "throughput."), **tables)


def _op_name(op: str, where: str, prefix: str) -> str:
    """``op`` if it names a TFLite builtin operator (``CONV_2D``) or a custom one
    (``CUSTOM:TFLM_DECODE``), as a model's op list does; ConfigError otherwise."""
    from edge_prune.measurement.tflite_file import builtin_operator_names

    names = builtin_operator_names()
    if op in names or (op.startswith("CUSTOM:") and len(op) > len("CUSTOM:")):
        return op
    close = difflib.get_close_matches(op, names, n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"{where}: key '{prefix}{op}' is not a TFLite operator; {hint}expected a builtin "
        "name such as CONV_2D or CUSTOM:<custom code>"
    )


def _reject_unknown(data: dict, allowed, where: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key '{prefix}{key}'{hint}; allowed: {', '.join(allowed)}"
            )


def _table(value, where: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: key '{key}' must be a table, got {type(value).__name__}")
    return value


def _string(data: dict, key: str, where: str, prefix: str = "") -> str:
    value = data[key]
    if not isinstance(value, str) or (key in _REQUIRED_STRS and not value.strip()):
        raise ConfigError(f"{where}: key '{prefix}{key}' must be a non-empty string, got {value!r}")
    return value


def _size(data: dict, key: str, where: str, prefix: str = "") -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where}: key '{prefix}{key}' must be a non-negative integer (bytes or Hz), "
            f"got {value!r}"
        )
    if value < 0:
        raise ConfigError(f"{where}: key '{prefix}{key}' must be non-negative, got {value}")
    if value >= _MAX_SIZE:
        raise ConfigError(
            f"{where}: key '{prefix}{key}' is {value}, beyond 2**32 - 1: more than the 4 GiB "
            "address space of a 32-bit microcontroller"
        )
    return value


def _optional_size(data: dict, key: str, where: str, prefix: str) -> int | None:
    return _size(data, key, where, prefix) if key in data else None


def _positive(data: dict, key: str, where: str, prefix: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{where}: key '{prefix}{key}' must be a positive number, got {value!r}")
    return float(value)
