"""Device build configurations: core x kernels x build type, and the QEMU machine of each core.

A :class:`DeviceConfig` names one TFLM library build: the core (TFLM's ``TARGET_ARCH`` for its
``cortex_m_generic`` target), the kernel set (``reference`` or ``cmsis-nn``, TFLM's
``OPTIMIZED_KERNEL_DIR=cmsis_nn``) and the build type (TFLM's ``BUILD_TYPE``: ``default`` keeps
error strings and debug logging, ``release`` adds ``NDEBUG`` and
``TF_LITE_STRIP_ERROR_STRINGS``).

QEMU 7.2 emulates these boards (``qemu-system-arm -M help``): Cortex-M3 ``mps2-an385``,
Cortex-M4 ``mps2-an386``, Cortex-M7 ``mps2-an500``, Cortex-M33 ``mps2-an505``, Cortex-M55
``mps3-an547``. It has no Cortex-M0+ machine (and refuses ``-cpu`` overrides): M0+ builds run on
the Cortex-M3 machine, since ARMv6-M's instructions are a subset of ARMv7-M's Thumb; the count is
the M0+ build's instructions, executed by an M3 (labelled so). There is no Xtensa emulator or
toolchain here at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_prune.errors import ConfigError

KERNELS = ("reference", "cmsis-nn")
BUILD_TYPES = ("default", "release")

# core (TFLM TARGET_ARCH) -> QEMU machine, or None when QEMU has none (size only).
CORES: dict[str, str | None] = {
    "cortex-m0plus": "mps2-an385",  # an M3 machine: see MACHINE_NOTES
    "cortex-m3": "mps2-an385",
    "cortex-m4": "mps2-an386",
    "cortex-m4+fp": "mps2-an386",
    "cortex-m7": "mps2-an500",
    "cortex-m7+fp": "mps2-an500",
    "cortex-m33": "mps2-an505",
    "cortex-m55": "mps3-an547",
}


# Cores counted on another core's machine, and what that means for the figures.
MACHINE_NOTES: dict[str, str] = {
    "cortex-m0plus": (
        "the ARMv6-M (Cortex-M0+) build runs on QEMU's Cortex-M3 machine (QEMU has no M0+ "
        "machine; ARMv6-M is a subset of ARMv7-M's Thumb): instructions are the M0+ build's, "
        "counted on an M3"
    ),
}


@dataclass(frozen=True)
class Machine:
    """Where a QEMU board puts code and data, and its CMSDK TIMER0 (None: no timer used).

    Application notes: MPS2 AN385/AN386/AN500 put 4 MB of SSRAM1 at 0x0 (used as flash here)
    and SSRAM2/3 at 0x20000000; AN505 (TrustZone, boots secure) has its code SRAM's secure
    alias at 0x10000000, SSRAM2/3 at 0x38000000 and the timers' secure alias at 0x50000000;
    AN547 has 512 KB ITCM at 0x0 and 512 KB DTCM at 0x20000000; its SSE-300 system timers are
    not the CMSDK timer, so the harness reads the FPGAIO block's COUNTER there (secure alias
    0x59302000, register 0x18: counts up at the prescale clock while PRESCALE is 0, its reset
    value; QEMU ``hw/misc/mps2-fpgaio.c``). The harness calibrates ticks to instructions on
    every run (AN385/386/500: 25 MHz, 40 instructions per tick; AN505: 20 MHz, 50).
    """

    name: str
    flash_origin: int
    flash_length: int
    ram_origin: int
    ram_length: int
    timer_base: int | None
    timer_kind: str = "cmsdk"  # "cmsdk": APB TIMER0 (counts down); "fpgaio": FPGAIO COUNTER


MACHINES: dict[str, Machine] = {
    "mps2-an385": Machine("mps2-an385", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40000000),
    "mps2-an386": Machine("mps2-an386", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40000000),
    "mps2-an500": Machine("mps2-an500", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40000000),
    "mps2-an505": Machine("mps2-an505", 0x10000000, 4 << 20, 0x38000000, 4 << 20, 0x50000000),
    "mps3-an547": Machine(
        "mps3-an547", 0x0, 512 << 10, 0x20000000, 512 << 10, 0x59302000, "fpgaio"
    ),
}
# Size-only links (no machine) use a generous map: the figures do not depend on it.
SIZE_ONLY_MACHINE = Machine("none", 0x0, 16 << 20, 0x20000000, 16 << 20, None)


@dataclass(frozen=True)
class DeviceConfig:
    """One TFLM library build: ``core`` (e.g. ``cortex-m4+fp``), ``kernels`` (``reference`` |
    ``cmsis-nn``), ``build_type`` (``default`` | ``release``). Validated on construction."""

    core: str
    kernels: str = "reference"
    build_type: str = "default"

    def __post_init__(self):
        if self.core not in CORES:
            raise ConfigError(f"core: got {self.core!r}, expected one of {', '.join(CORES)}")
        if self.kernels not in KERNELS:
            raise ConfigError(
                f"kernels: got {self.kernels!r}, expected one of {', '.join(KERNELS)}"
            )
        if self.build_type not in BUILD_TYPES:
            raise ConfigError(
                f"build_type: got {self.build_type!r}, expected one of {', '.join(BUILD_TYPES)}"
            )

    @property
    def name(self) -> str:
        """A directory-safe name: ``cortex-m4+fp_cmsis-nn_default``."""
        return f"{self.core}_{self.kernels}_{self.build_type}"

    @property
    def machine_note(self) -> str | None:
        """What running on :attr:`machine` means for the figures, when it is another core's,
        and that float32 ops run in software floating point on a core without an FPU."""
        notes = [MACHINE_NOTES[self.core]] if self.core in MACHINE_NOTES else []
        if "+fp" not in self.core and self.core not in ("cortex-m55",):
            notes.append("no FPU: float32 ops are counted with software floating point")
        return "; ".join(notes) or None

    @property
    def machine(self) -> Machine | None:
        """The QEMU machine this core runs on, or None (size only)."""
        name = CORES[self.core]
        return MACHINES[name] if name else None

    def make_args(self) -> list[str]:
        """The TFLM Makefile variables of this configuration (besides GENDIR and the toolchain)."""
        args = [
            "TARGET=cortex_m_generic",
            f"TARGET_ARCH={self.core}",
            "TOOLCHAIN=gcc",
            f"BUILD_TYPE={self.build_type}",
            # Size-oriented, like a firmware build: TFLM's default for kernels is -O2.
            "KERNEL_OPTIMIZATION_LEVEL=-Os",
            "THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL=-Os",
        ]
        if self.kernels == "cmsis-nn":
            args.append("OPTIMIZED_KERNEL_DIR=cmsis_nn")
        return args


def core_from_target(core: str) -> str:
    """The TFLM ``TARGET_ARCH`` of a target file's ``core`` field: ``Cortex-M4F`` ->
    ``cortex-m4+fp``, ``Cortex-M0+`` -> ``cortex-m0plus``; :class:`ConfigError` for a core that
    no Arm GNU toolchain build covers (e.g. ``Xtensa LX7``)."""
    text = core.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(?:arm)?cortex-m(\d+)(\+|plus)?(f)?", text)
    if not match:
        raise ConfigError(
            f"core {core!r}: no Arm Cortex-M toolchain or QEMU machine for it here "
            "(device builds cover Cortex-M0+, M3, M4, M7, M33, M55)"
        )
    number, plus, fpu = match.groups()
    arch = f"cortex-m{number}{'plus' if plus else ''}{'+fp' if fpu else ''}"
    if arch not in CORES:
        raise ConfigError(f"core {core!r}: TFLM arch {arch!r} is not one of {', '.join(CORES)}")
    return arch
