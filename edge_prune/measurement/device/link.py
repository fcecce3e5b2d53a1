"""Link firmwares against the cached TFLM objects, and split their map files into groups.

A :class:`Workspace` is one configuration's build: TFLM's compile commands, the harness flags
taken from them, the archive of the objects built so far (a thin ``libtflm.a``: the linker takes
only the members something references) and the baseline firmware (the harness without TFLM).
:meth:`Workspace.link` links with ``--gc-sections`` and ``-Map``; when the linker reports
undefined symbols it compiles the sources that define them and links again.

Map split (:func:`split_sections`): ``model`` (the model array's object), ``runtime`` (TFLM's
objects; template code of TFLM's namespace instantiated in the application's objects, such as
``MicroMutableOpResolver<N>::AddConv2D``; and the toolchain library sections that the baseline
firmware does not link, i.e. linked only because of TFLM), ``harness`` (the rest: start-up,
main, FIRMWARE.md's glue, semihosting and printf as the baseline has them).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edge_prune._process import run_group
from edge_prune.artifacts import write_atomic
from edge_prune.errors import DeviceBuildError
from edge_prune.measurement.device import build
from edge_prune.measurement.device.config import SIZE_ONLY_MACHINE, DeviceConfig, Machine
from edge_prune.measurement.device.mapfile import Section, archive_of, read_map
from edge_prune.measurement.device.toolchain import TflmTree, Toolchain, resolve_toolchain

ARCHIVE = "libtflm.a"
_MAX_LINK_ROUNDS = 12
_TFLITE_SYMBOL = re.compile(r"[._]Z\w*6tflite|tflite")


def harness_file(name: str) -> Path:
    """Path of a file of the device harness (package data)."""
    return Path(str(resources.files("edge_prune.measurement.device") / "harness" / name))


@dataclass(frozen=True)
class LinkResult:
    """A linked firmware: ELF, map, its kept sections and how many objects were compiled."""

    elf: Path
    map_path: Path
    sections: tuple[Section, ...] = field(repr=False)
    compiled: tuple[str, ...] = ()


class Workspace:
    """Builds of one :class:`DeviceConfig` from one TFLM tree, cached in
    :func:`edge_prune.measurement.device.build.config_dir`."""

    def __init__(self, tree: TflmTree, config: DeviceConfig, toolchain: Toolchain | None = None,
                 progress: build.Progress | None = None):  # fmt: skip
        self.tree, self.config = tree, config
        self.toolchain = toolchain or resolve_toolchain()
        self.progress = progress
        self.directory = build.config_dir(tree, config)
        self.commands = build.compile_commands(tree, self.toolchain, config)
        self.flags = build.harness_flags(self.commands)
        self.compiled: list[str] = []

    @property
    def machine(self) -> Machine:
        return self.config.machine or SIZE_ONLY_MACHINE

    def ensure(self, sources: Iterable[str]) -> None:
        stats = build.build_objects(self.tree, self.config, self.commands, sources, self.progress)
        self.compiled += stats.compiled

    def ensure_ops(self, ops: Iterable[str]) -> None:
        """Compile the framework and the kernels of ``ops`` (what is not cached yet)."""
        kernels = build.kernel_sources(self.tree, self.commands, ops)
        self.ensure([*build.framework_sources(self.commands), *kernels])

    # ------------------------------------------------------------------ compiling the harness

    def compile_cxx(self, source: Path, out: Path, includes: Iterable[Path] = (),
                    defines: Iterable[str] = ()) -> Path:  # fmt: skip
        argv = [self.toolchain.gxx, *self.flags.cxx, *(f"-I{p}" for p in includes),
                *(f"-D{d}" for d in defines), "-c", str(source), "-o", str(out)]  # fmt: skip
        return self._compile(argv, source, out)

    def compile_c(self, source: Path, out: Path, defines: Iterable[str] = ()) -> Path:
        argv = [self.toolchain.gcc, *self.flags.c_flags(), *(f"-D{d}" for d in defines),
                "-c", str(source), "-o", str(out)]  # fmt: skip
        return self._compile(argv, source, out)

    def _compile(self, argv: list[str], source: Path, out: Path) -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(f"{out.stem}.tmp-{os.getpid()}{out.suffix}")
        argv = [temporary if a == str(out) else a for a in argv]
        try:
            done = run_group([str(a) for a in argv], cwd=self.tree.path, capture_output=True,
                             text=True)  # fmt: skip
            if done.returncode == 0:
                temporary.replace(out)
        finally:
            temporary.unlink(missing_ok=True)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            message = " | ".join(errors[:3]) or done.stderr.strip()[-400:]
            raise DeviceBuildError(f"compiling {source.name} for {self.config.name}: {message}")
        return out

    def startup_object(self, directory: Path) -> Path:
        return self.compile_c(harness_file("startup.c"), directory / "startup.o")

    def linker_script(self, directory: Path) -> Path:
        machine = self.machine
        text = (
            harness_file("link.ld.in")
            .read_text()
            .format(
                machine=machine.name,
                flash_origin=machine.flash_origin,
                flash_length=machine.flash_length,
                ram_origin=machine.ram_origin,
                ram_length=machine.ram_length,
            )
        )
        path = directory / "link.ld"
        if not path.is_file() or path.read_text() != text:
            write_atomic(path, text)
        return path

    # ------------------------------------------------------------------ linking

    def link_flags(self, script: Path) -> list[str]:
        return [*self.flags.arch, "-T", str(script), "-nostartfiles", "--specs=rdimon.specs",
                "-Wl,--gc-sections"]  # fmt: skip

    def link(self, objects: list[Path], elf: Path, script: Path) -> LinkResult:
        """Link ``objects`` + the TFLM archive into ``elf`` (map beside it); compile what the
        linker reports missing and retry. :class:`DeviceBuildError` when it cannot."""
        map_path = elf.with_suffix(".map")
        compiled_before = len(self.compiled)
        for _ in range(_MAX_LINK_ROUNDS):
            archive = self.archive()
            argv = [self.toolchain.gxx, *self.link_flags(script), f"-Wl,-Map={map_path}",
                    *map(str, objects), str(archive), "-lm", "-o", str(elf)]  # fmt: skip
            done = run_group(argv, capture_output=True, text=True)
            if done.returncode == 0:
                return LinkResult(elf, map_path, tuple(self._sections(map_path)),
                                  tuple(self.compiled[compiled_before:]))  # fmt: skip
            missing = sorted(set(re.findall(r"undefined reference to `([^']+)'", done.stderr)))
            if not missing:
                tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                raise DeviceBuildError(f"linking {elf.name} for {self.config.name}: {tail}")
            built = set(build.built_objects(self.tree, self.config))
            more = {
                source
                for symbol in missing
                for source in build.sources_defining(self.tree, self.commands, symbol, built)
            }
            if not more:
                raise DeviceBuildError(
                    f"linking {elf.name} for {self.config.name}: undefined reference to "
                    f"{', '.join(missing[:3])} and no TFLM source defines it"
                )
            self.ensure(more)
        raise DeviceBuildError(f"linking {elf.name}: still undefined symbols after retries")

    def archive(self) -> Path:
        """The thin archive of every object built for this configuration (rebuilt on change)."""
        built = build.built_objects(self.tree, self.config)
        path = self.directory / ARCHIVE
        listing = self.directory / (ARCHIVE + ".members")
        objects = [self.commands[s].object for s in built if s in self.commands]
        text = "\n".join(objects)
        with build.config_lock(self.directory):
            if path.is_file() and listing.is_file() and listing.read_text() == text:
                return path
            temporary = path.with_suffix(".a.tmp")
            temporary.unlink(missing_ok=True)
            done = subprocess.run([self.toolchain.ar, "rcsT", str(temporary), *objects],
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode != 0:
                raise DeviceBuildError(f"archiving TFLM objects: {done.stderr.strip()[-300:]}")
            temporary.replace(path)
            write_atomic(listing, text)
        return path

    def _sections(self, map_path: Path) -> list[Section]:
        """The map's sections; TFLM objects (thin-archive members, listed by their path) are
        named ``libtflm.a(<path under the build's obj/>)``."""
        gen = str(self.directory / "gen" / "obj") + "/"
        out = []
        for s in read_map(map_path):
            name = s.object
            if name.startswith(f"{ARCHIVE}({gen}"):
                name = f"{ARCHIVE}({name[len(ARCHIVE) + 1 + len(gen) :]}"
            elif name.startswith(gen):
                name = f"{ARCHIVE}({name[len(gen) :]})"
            out.append(Section(name, s.name, s.size, s.region))
        return out

    # ------------------------------------------------------------------ the baseline

    def baseline(self) -> LinkResult:
        """The harness without TFLM (same start-up, semihosting and C library calls)."""
        directory = self.directory / "baseline"
        with build.config_lock(directory):
            script = self.linker_script(directory)
            main = self.compile_cxx(harness_file("baseline_main.cc"), directory / "main.o")
            objects = [self.startup_object(directory), main]
            return self.link(objects, directory / "baseline.elf", script)


# --------------------------------------------------------------------------- map split


def is_tflm_section(section: Section) -> bool:
    """From the TFLM archive, or TFLM template code instantiated in an application object."""
    return archive_of(section.object) == ARCHIVE or bool(_TFLITE_SYMBOL.search(section.name))


def _toolchain_section(section: Section) -> bool:
    archive = archive_of(section.object)
    return (archive is not None and archive != ARCHIVE) or "/arm-none-eabi/" in section.object


def split_sections(
    sections: Iterable[Section], baseline: Iterable[Section], model_objects: Iterable[str] = ()
) -> dict[str, list[Section]]:
    """Groups ``model``, ``runtime``, ``harness`` of a firmware's sections (see module doc)."""
    base_keys = {(s.object, s.name) for s in baseline if _toolchain_section(s)}
    models = set(model_objects)
    groups: dict[str, list[Section]] = {"model": [], "runtime": [], "harness": []}
    for s in sections:
        tflm = is_tflm_section(s)
        only_for_tflm = _toolchain_section(s) and (s.object, s.name) not in base_keys
        if Path(s.object).name in models and not tflm:
            groups["model"].append(s)
        elif tflm or only_for_tflm:
            groups["runtime"].append(s)
        else:
            groups["harness"].append(s)
    return groups


def group_totals(groups: dict[str, list[Section]]) -> dict[str, dict[str, int]]:
    return {
        name: {
            "flash_bytes": sum(s.flash_bytes for s in items),
            "ram_bytes": sum(s.ram_bytes for s in items),
        }
        for name, items in groups.items()
    }


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]
