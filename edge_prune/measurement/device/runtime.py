"""TFLM runtime code of an op set, measured from a real link (:func:`runtime_flash_for_ops`).

The firmware registers exactly the given ops on a ``MicroMutableOpResolver`` and runs a
``MicroInterpreter`` on a model pointer the compiler cannot see (no model data), linked with
``--gc-sections``. Its runtime group (TFLM objects, TFLM template code, toolchain sections the
baseline firmware does not link) is what those ops cost in flash and static RAM. Links with a
single op give per-kernel tables; the framework alone is the link with no op.

edge-prune's own sparse ops (``EDGE_PRUNE_SPARSE_FC``, ``EDGE_PRUNE_SPARSE_CONV``, and the
``_INT4`` ones) are registered
with ``AddCustom`` as FIRMWARE.md registers them; their kernel sources (compiled once per
configuration, with the harness's flags, as ``edge-prune device`` compiles them into a model's
firmware) are linked, and their sections count in the runtime group under the object's file name
(``edge_prune_sparse.o``), like TFLM's kernels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_prune.artifacts import write_atomic
from edge_prune.measurement.device import build
from edge_prune.measurement.device.config import DeviceConfig
from edge_prune.measurement.device.link import (
    Workspace,
    digest,
    group_totals,
    harness_file,
    split_sections,
)
from edge_prune.measurement.device.mapfile import Section
from edge_prune.measurement.device.toolchain import TflmTree, Toolchain
from edge_prune.measurement.firmware import SPARSE_OPS, SPARSE_SOURCES
from edge_prune.measurement.sparse import native as sparse_native

# op key (``build.op_key``) -> the Register function of edge-prune's sparse ops
SPARSE_REGISTERS = {build.op_key(op): register for op, register in SPARSE_OPS.items()}


@dataclass(frozen=True)
class RuntimeLink:
    """The TFLM runtime of ``ops`` on ``config``, measured from a linked firmware.

    ``runtime_flash_bytes``: code, read-only data and initialised data of the runtime group;
    ``runtime_ram_bytes``: its static RAM (``.data`` + ``.bss``, not the tensor arena);
    ``sections``: the runtime group's input sections (``object`` ``libtflm.a(<obj path>)`` for
    TFLM objects, ``lib.a(member)`` for toolchain ones, the harness object for TFLM template
    code). ``compiled``: sources compiled by this call (empty when all came from the cache).
    """

    config: DeviceConfig
    ops: tuple[str, ...]
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    sections: list[Section] = field(repr=False)
    tflm_commit: str | None
    compiler_version: str
    flags: tuple[str, ...]
    elf: Path
    compiled: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "config": {
                "core": self.config.core,
                "kernels": self.config.kernels,
                "build_type": self.config.build_type,
            },
            "ops": list(self.ops),
            "runtime_flash_bytes": self.runtime_flash_bytes,
            "runtime_ram_bytes": self.runtime_ram_bytes,
            "tflm_commit": self.tflm_commit,
            "compiler_version": self.compiler_version,
            "flags": list(self.flags),
        }


def runtime_flash_for_ops(
    tree: TflmTree,
    config: DeviceConfig,
    ops: Iterable[str],
    *,
    toolchain: Toolchain | None = None,
    progress: build.Progress | None = None,
) -> RuntimeLink:
    """Link a firmware that registers exactly ``ops`` (TFLite builtin names such as
    ``CONV_2D``; ``DECODE``/``CUSTOM:TFLM_DECODE`` for TFLM_DECODE; custom codes such as
    ``SignalWindow``; ``CUSTOM:EDGE_PRUNE_SPARSE_FC``/``_CONV`` for edge-prune's sparse
    kernels) and creates an interpreter, and measure its TFLM runtime group.

    Compiles what the cache lacks (progress on stderr, or to ``progress(done, total, what)``).
    """
    ops = tuple(sorted({build.op_key(op) for op in ops}))
    sparse = tuple(op for op in ops if op in SPARSE_REGISTERS)
    space = Workspace(tree, config, toolchain, progress)
    space.ensure_ops([op for op in ops if op not in sparse])
    kernels = sparse_kernel_objects(space) if sparse else []
    includes = [kernels[0].parent] if kernels else []
    directory = space.directory / "runtime" / digest(*ops)
    with build.config_lock(directory):  # one process per link directory
        _write_ops_header(directory / "runtime_ops.h", build.resolver_methods(tree), ops)
        script = space.linker_script(directory)
        main = harness_file("runtime_main.cc")
        objects = [
            space.startup_object(directory),
            space.compile_cxx(main, directory / "main.o", [directory, *includes]),
            *kernels,
        ]
        linked = space.link(objects, directory / "runtime.elf", script)
    baseline = space.baseline()
    groups = split_sections(linked.sections, baseline.sections)
    runtime = [
        replace(s, object=Path(s.object).name) if _sparse_object(s) else s
        for s in groups["runtime"] + sparse_kernel_sections(groups["harness"])
    ]
    totals = group_totals({"runtime": runtime})["runtime"]
    return RuntimeLink(
        config=config,
        ops=ops,
        runtime_flash_bytes=totals["flash_bytes"],
        runtime_ram_bytes=totals["ram_bytes"],
        sections=runtime,
        tflm_commit=tree.commit,
        compiler_version=space.toolchain.gcc_version,
        flags=space.flags.cxx,
        elf=linked.elf,
        compiled=tuple(space.compiled),
    )


def sparse_kernel_objects(space: Workspace) -> list[Path]:
    """edge-prune's sparse kernel sources, written and compiled (with the harness's flags) once
    per configuration and kernel source text: the objects, in one directory that also holds
    their headers."""
    texts = {name: (sparse_native.KERNELS_DIR / name).read_text() for name in SPARSE_SOURCES}
    key = digest(space.toolchain.gxx, *space.flags.cxx, *(f"{n}\0{t}" for n, t in texts.items()))
    directory = space.directory / "sparse" / key
    objects = []
    with build.config_lock(directory):
        for name, text in texts.items():
            if not (directory / name).is_file() or (directory / name).read_text() != text:
                write_atomic(directory / name, text)
        for name in (n for n in SPARSE_SOURCES if n.endswith(".cc")):
            out = directory / name.replace(".cc", ".o")
            if not out.is_file():
                space.compile_cxx(directory / name, out, [directory])
            objects.append(out)
    return objects


def sparse_kernel_sections(sections: Iterable[Section]) -> list[Section]:
    """The sections of edge-prune's sparse kernel objects among ``sections`` (a firmware's
    harness group: they are compiled with the firmware, not taken from the TFLM archive)."""
    return [s for s in sections if _sparse_object(s)]


def _sparse_object(section: Section) -> bool:
    stems = tuple(name.removesuffix(".cc") for name in SPARSE_SOURCES if name.endswith(".cc"))
    return Path(section.object).stem in stems


def _write_ops_header(path: Path, methods: dict[str, tuple[str, str]], ops: tuple[str, ...]):
    lines = [
        "// Generated by edge-prune: the ops of one runtime measurement.",
        "#pragma once",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
    ]
    if any(op in SPARSE_REGISTERS for op in ops):
        lines.append('#include "edge_prune_sparse_ops.h"')
        lines.append('#include "edge_prune_sparse_int4_ops.h"')
    lines += [
        f"using EdgePruneRuntimeResolver = tflite::MicroMutableOpResolver<{max(len(ops), 1)}>;",
        "inline TfLiteStatus EdgePruneRegisterRuntimeOps(EdgePruneRuntimeResolver& r) {",
        "  (void)r;",
    ]
    for op in ops:
        call = (
            f'AddCustom("{op}", {SPARSE_REGISTERS[op]}())'
            if op in SPARSE_REGISTERS
            else f"{methods[op][0]}()"
        )
        lines.append(f"  if (r.{call} != kTfLiteOk) return kTfLiteError;")
    lines += ["  return kTfLiteOk;", "}"]
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text)
