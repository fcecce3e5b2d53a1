"""Read a GNU ld map file (``-Wl,-Map``): every kept input section, its size and its origin.

Only the "Linker script and memory map" part is read: there each output section
(``.text``, ``.data``, ``.bss``, ...) lists the input sections placed in it, one per line
(`` .text._ZN6tflite...  0x00001234  0x2c  path/lib.a(member.o)``; a long name puts the address,
size and origin on the next line). Discarded sections (``--gc-sections``) are listed before that
part and are not counted.

Region of an input section: ``flash`` (code, read-only data, tables), ``data`` (initialised
data: its load image in flash and its copy in RAM) or ``ram`` (``.bss``, ``COMMON``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FLASH_SECTIONS = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array",
                  ".fini_array", ".rodata")  # fmt: skip
DATA_SECTIONS = (".data",)
RAM_SECTIONS = (".bss", ".heap", ".stack")

_OUTPUT = re.compile(r"^(\.[\w.]+)(?:\s+0x[0-9a-fA-F]+\s+0x[0-9a-fA-F]+.*)?\s*$")
_INPUT_FULL = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
_INPUT_NAME = re.compile(r"^ (\S+)\s*$")
_INPUT_REST = re.compile(r"^\s{2,}0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


@dataclass(frozen=True)
class Section:
    """One kept input section: ``object`` (``file.o`` or ``lib.a(member.o)``), its ``name``,
    ``size`` in bytes and ``region`` (``flash``, ``data`` or ``ram``)."""

    object: str
    name: str
    size: int
    region: str

    @property
    def flash_bytes(self) -> int:
        return self.size if self.region in ("flash", "data") else 0

    @property
    def ram_bytes(self) -> int:
        return self.size if self.region in ("data", "ram") else 0


def parse_map(text: str) -> list[Section]:
    """Every non-empty kept input section of a GNU ld map, in map order."""
    start = text.find("Linker script and memory map")
    if start < 0:
        raise ValueError("not a GNU ld map file (no 'Linker script and memory map')")
    sections: list[Section] = []
    region, pending = None, None
    for line in text[start:].splitlines()[1:]:
        output = _OUTPUT.match(line)
        if output:
            region, pending = _region(output.group(1)), None
            continue
        if region is None:
            continue
        full = _INPUT_FULL.match(line)
        if full:
            name, size, origin = full.group(1), int(full.group(3), 16), full.group(4)
            pending = None
        elif pending is not None and (rest := _INPUT_REST.match(line)):
            name, size, origin = pending, int(rest.group(2), 16), rest.group(3)
            pending = None
        else:
            named = _INPUT_NAME.match(line)
            pending = named.group(1) if named and not named.group(1).startswith("*") else None
            continue
        origin = origin.strip()
        if size == 0 or name.startswith("*") or origin.startswith("0x") or "=" in origin:
            continue
        sections.append(Section(_origin(origin), name, size, region))
    return sections


def read_map(path: str | Path) -> list[Section]:
    return parse_map(Path(path).read_text(errors="replace"))


def _region(output_section: str) -> str | None:
    if output_section.startswith(DATA_SECTIONS):
        return "data"
    if output_section.startswith(RAM_SECTIONS):
        return "ram"
    if output_section.startswith(FLASH_SECTIONS):
        return "flash"
    return None  # debug info, comments, attributes: not in the image


def _origin(origin: str) -> str:
    """``/x/y/libc_nano.a(lib_a-printf.o)`` -> ``libc_nano.a(lib_a-printf.o)``; objects keep
    their path (the caller knows which are its own)."""
    match = re.fullmatch(r"(.*?\.a)\((.*)\)", origin)
    if match:
        return f"{Path(match.group(1)).name}({match.group(2)})"
    return origin


def archive_of(obj: str) -> str | None:
    """``libm.a(x.o)`` -> ``libm.a``; None for a plain object."""
    match = re.fullmatch(r"(.*?\.a)\(.*\)", obj)
    return match.group(1) if match else None


def total(sections, region_attr: str = "flash_bytes") -> int:
    return sum(getattr(s, region_attr) for s in sections)
