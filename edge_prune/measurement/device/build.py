"""Compile the TFLM objects an op set needs, with TFLM's own compile commands, into a cache.

TFLM's Makefile is the source of the commands: ``make -n -B ... microlite`` (with ``GENDIR`` in
the cache, so nothing is written into the tree) prints the compile command of every object of
the library; they are parsed once per configuration and kept as ``commands.json``. Parsing the
Makefile runs ``python3 specialize_files.py`` (stdlib only) and ``generate_cc_arrays.py``
(numpy + PIL, for example and test data only): ``python3`` on make's PATH is a wrapper that runs
this interpreter and skips the latter.

Only what an op set needs is compiled: the framework (every non-kernel object but TFLM's test
helpers), each op's kernel source (the file defining its ``Register_*`` function, found from
``micro_mutable_op_resolver.h``) and the kernel sources its includes name; the linker names the
rest (undefined symbols, see :mod:`edge_prune.measurement.device.link`). An object is reused while
its compile command is unchanged (``.cmd``, as before) and every file it was compiled from (the
source and each header in the compiler's ``-MD`` dependency list) has the SHA-256 digest
recorded when it was built (``.inputs``):
the cache is keyed by content, so a tree patched in place, or another tree that names the same
commit, never reuses objects of other sources. A compiler writes into a temporary file that
is renamed into place after its record is written (and the old object is removed before the
compiler starts), so every object in place has its record and one a killed build left
half-written is never trusted. Compilers run in their own process group that dies with this
process (:func:`edge_prune._process.run_group`), and a file lock per configuration keeps two
processes from building the same object at once.

Cache: ``$EDGE_PRUNE_DEVICE_CACHE`` or ``~/.cache/edge-prune`` (``$XDG_CACHE_HOME``), then
``tflm-<commit>/<core>_<kernels>_<build>/``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge_prune._process import is_alive, run_group
from edge_prune.artifacts import write_atomic
from edge_prune.errors import ConfigError, DeviceBuildError
from edge_prune.measurement.device.config import DeviceConfig
from edge_prune.measurement.device.toolchain import MAKEFILE, TflmTree, Toolchain
from edge_prune.measurement.tflm_tree import cache_root

RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
# Framework objects that only TFLM's own tests use.
_TEST_ONLY = frozenset(
    {"test_helpers", "test_helper_custom_ops", "fake_micro_context", "mock_micro_graph"}
)
_COMMANDS_VERSION = 1

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CompileCommand:
    """One object of the TFLM library: its source (relative to the tree), object path, argv."""

    source: str
    object: str
    argv: tuple[str, ...]
    group: str  # "core", "kernels", "third_party_kernels", ...


@dataclass(frozen=True)
class BuildStats:
    """What one :func:`build_objects` call did: objects compiled now and reused from the cache."""

    compiled: tuple[str, ...]
    reused: int


def config_dir(tree: TflmTree, config: DeviceConfig) -> Path:
    return cache_root() / f"tflm-{tree.cache_key}" / config.name


@contextmanager
def config_lock(directory: Path):
    """Hold an exclusive lock on ``directory`` (one process builds or links there at a time)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- TFLM's commands


def compile_commands(
    tree: TflmTree, toolchain: Toolchain, config: DeviceConfig
) -> dict[str, CompileCommand]:
    """source -> command of every object of TFLM's ``microlite`` for ``config`` (cached)."""
    directory = config_dir(tree, config)
    cached = directory / "commands.json"
    args = _make_args(toolchain, config, directory)
    with config_lock(directory):
        if cached.is_file():
            data = json.loads(cached.read_text())
            if data.get("version") == _COMMANDS_VERSION and data.get("make_args") == args:
                return {c["source"]: _command(c) for c in data["commands"]}
        commands = parse_make_output(_run_make(tree, directory, args), directory / "gen")
        payload = {
            "version": _COMMANDS_VERSION,
            "make_args": args,
            "commands": [c.__dict__ | {"argv": list(c.argv)} for c in commands.values()],
        }
        write_atomic(cached, json.dumps(payload, indent=1))
        return commands


def _command(data: dict) -> CompileCommand:
    return CompileCommand(data["source"], data["object"], tuple(data["argv"]), data["group"])


def _make_args(toolchain: Toolchain, config: DeviceConfig, directory: Path) -> list[str]:
    return [
        *config.make_args(),
        f"TARGET_TOOLCHAIN_ROOT={toolchain.root}",
        f"GENDIR={directory / 'gen'}/",
    ]


def _run_make(tree: TflmTree, directory: Path, args: list[str]) -> str:
    shim = _python_shim(directory)
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
    argv = ["make", "-n", "-B", "-f", MAKEFILE, *args, "microlite"]
    done = run_group(argv, cwd=tree.path, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise DeviceBuildError(f"TFLM's Makefile failed in {tree.path} ({' '.join(argv)}): {tail}")
    return done.stdout


def _python_shim(directory: Path) -> Path:
    """A directory whose ``python3`` runs this interpreter and skips generate_cc_arrays.py."""
    shim = directory / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    script = (
        "#!/bin/sh\n"
        "# TFLM's Makefile: specialize_files.py is needed, generate_cc_arrays.py (example and\n"
        "# test data, needs numpy + PIL) is not for the library.\n"
        'case "$1" in */generate_cc_arrays.py) exit 0;; esac\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    path = shim / "python3"
    if not path.is_file() or path.read_text() != script:
        write_atomic(path, script)
        path.chmod(0o755)
    return shim


def parse_make_output(text: str, gendir: Path) -> dict[str, CompileCommand]:
    """The compile commands (``... -c SRC -o OBJ``) of ``make -n`` output, by source."""
    commands: dict[str, CompileCommand] = {}
    prefix = str(gendir).rstrip("/") + "/obj/"
    for line in text.splitlines():
        if " -c " not in line or " -o " not in line:
            continue
        argv = shlex.split(line)
        try:
            source = argv[argv.index("-c") + 1]
            obj = argv[argv.index("-o") + 1]
        except (ValueError, IndexError):
            continue
        if not obj.startswith(prefix) or not obj.endswith(".o"):
            continue
        group = obj[len(prefix) :].split("/", 1)[0]
        commands[source] = CompileCommand(source, obj, tuple(argv), group)
    if not commands:
        raise DeviceBuildError("TFLM's Makefile printed no compile command for microlite")
    return commands


# --------------------------------------------------------------------------- which objects


def framework_sources(commands: dict[str, CompileCommand]) -> list[str]:
    """Every non-kernel source of the library except TFLM's test helpers."""
    return sorted(
        s for s, c in commands.items() if c.group == "core" and Path(s).stem not in _TEST_ONLY
    )


def resolver_methods(tree: TflmTree) -> dict[str, tuple[str, str]]:
    """op name -> (``MicroMutableOpResolver`` method, ``Register_*`` function) for every
    ``Add*`` method of the tree's ``micro_mutable_op_resolver.h`` that names one (parsed by
    :func:`edge_prune.measurement.op_resolver.generate`, the parser of the shipped table).

    Builtin ops are keyed by their TFLite name (``CONV_2D``), custom ops by their custom code
    (``TFLM_DECODE``, ``SignalWindow``, ...).
    """
    from edge_prune.measurement.op_resolver import generate

    return {
        m.op.removeprefix("CUSTOM:"): (m.method, m.register)
        for m in generate(tree.path).methods
        if m.register and not m.registers_only_if  # AddEthosU: no kernel without Ethos-U
    }


def op_key(op: str) -> str:
    """``CUSTOM:TFLM_DECODE``, ``DECODE`` -> ``TFLM_DECODE``; builtin names unchanged."""
    op = op.removeprefix("CUSTOM:")
    return "TFLM_DECODE" if op == "DECODE" else op


def kernel_sources(
    tree: TflmTree, commands: dict[str, CompileCommand], ops: Iterable[str]
) -> list[str]:
    """The kernel sources of ``ops``: each op's ``Register_*`` definition and the kernel
    sources named by the headers they include (``conv.h`` -> ``conv_common.cc``), recursively."""
    methods = resolver_methods(tree)
    kernels = {s: c for s, c in commands.items() if c.group != "core"}
    chosen: set[str] = set()
    for op in ops:
        key = op_key(op)
        if key not in methods:
            raise ConfigError(
                f"op {op!r}: {RESOLVER_HEADER} of the TFLM tree has no Add method for it"
            )
        chosen.add(_defining_source(tree, kernels, methods[key][1], key))
    return sorted(_include_closure(tree, kernels, chosen))


def _defining_source(tree: TflmTree, kernels: dict, register: str, op: str) -> str:
    pattern = re.compile(rf"TFLMRegistration\s*\*?\s*{register}\s*\(\s*\)\s*\{{")
    for source in kernels:
        if pattern.search(_read(tree, source)):
            return source
    raise DeviceBuildError(f"op {op}: no kernel source of the TFLM library defines {register}()")


def _include_closure(tree: TflmTree, kernels: dict, start: set[str]) -> set[str]:
    by_stem: dict[tuple[str, str], list[str]] = {}
    for source in kernels:
        path = Path(source)
        by_stem.setdefault((str(path.parent), path.stem), []).append(source)
    chosen, todo = set(start), list(start)
    while todo:
        for header in re.findall(r'#include\s+"([^"]+)\.h"', _read(tree, todo.pop())):
            for source in _implementations(Path(header), by_stem, kernels):
                if source not in chosen:
                    chosen.add(source)
                    todo.append(source)
    return chosen


def _implementations(header: Path, by_stem: dict, kernels: dict) -> list[str]:
    found = list(by_stem.get((str(header.parent), header.name), []))
    found += by_stem.get((str(header.parent), header.name + "_common"), [])
    # A kernel header also names its specialised variant (kernels/cmsis_nn/conv.cc for conv.h).
    found += [
        s
        for s in kernels
        if Path(s).stem in (header.name, header.name + "_common")
        and str(Path(s).parent).startswith(str(header.parent) + "/")
    ]
    # signal/src/rfft.h is implemented in rfft_float.cc, rfft_int16.cc, ...
    if header.parts[:2] == ("signal", "src"):
        found += [s for (d, stem), v in by_stem.items() for s in v
                  if d == str(header.parent) and stem.startswith(header.name + "_")]  # fmt: skip
    return found


def sources_defining(
    tree: TflmTree, commands: dict[str, CompileCommand], symbol: str, exclude: set[str]
) -> list[str]:
    """Kernel or third-party sources that may define ``symbol`` (a name the linker reported
    undefined): the file named after it (CMSIS-NN keeps one function per file), else the
    files where its unqualified name is followed by a parameter list and a body, or is
    initialised (a table such as ``sigmoid_table_uint16``)."""
    name = re.sub(r"\(.*$", "", symbol).split("::")[-1].strip()
    if not re.fullmatch(r"\w+", name):
        return []
    candidates = [s for s, c in commands.items() if s not in exclude]
    named = [s for s in candidates if Path(s).stem == name]
    if named:
        return named
    function = rf"\b{re.escape(name)}\s*\([^;]*?\)\s*(const\s*)?\{{"
    data = rf"\b{re.escape(name)}\s*(\[[^\]]*\]\s*)*=[^=]"  # a table with its initialiser
    pattern = re.compile(f"{function}|{data}", re.S)
    return [s for s in candidates if pattern.search(_read(tree, s))]


_TEXT_CACHE: dict[tuple[str, str], str] = {}


def _read(tree: TflmTree, source: str) -> str:
    key = (str(tree.path), source)
    if key not in _TEXT_CACHE:
        try:
            _TEXT_CACHE[key] = (tree.path / source).read_text(errors="replace")
        except OSError:
            _TEXT_CACHE[key] = ""
    return _TEXT_CACHE[key]


# --------------------------------------------------------------------------- compiling


def build_objects(
    tree: TflmTree,
    config: DeviceConfig,
    commands: dict[str, CompileCommand],
    sources: Iterable[str],
    progress: Progress | None = None,
) -> BuildStats:
    """Compile ``sources`` that are missing or stale (2 jobs per core at most), under the
    configuration's lock. Raises :class:`DeviceBuildError` with the compiler's message."""
    wanted = sorted(set(sources))
    directory = config_dir(tree, config)
    with config_lock(directory):
        stale = [s for s in wanted if not _up_to_date(tree, commands[s])]
        if stale:
            _compile_all(tree, [commands[s] for s in stale], config, progress)
        _record_built(directory, wanted)
    return BuildStats(compiled=tuple(stale), reused=len(wanted) - len(stale))


def built_objects(tree: TflmTree, config: DeviceConfig) -> list[str]:
    """Sources whose objects this configuration has built so far (the archive's members)."""
    path = config_dir(tree, config) / "built.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _record_built(directory: Path, sources: list[str]) -> None:
    path = directory / "built.json"
    known = set(json.loads(path.read_text())) if path.is_file() else set()
    if not set(sources) <= known:
        write_atomic(path, json.dumps(sorted(known | set(sources)), indent=0))


def _up_to_date(tree: TflmTree, command: CompileCommand) -> bool:
    """The object exists, was built by this command (``.cmd``: its argv) and from files with
    the same content (``.inputs``: the SHA-256 of each)."""
    obj = Path(command.object)
    try:
        if not obj.is_file() or obj.with_suffix(".cmd").read_text() != "\0".join(command.argv):
            return False
        inputs = json.loads(obj.with_suffix(".inputs").read_text())
        return (
            isinstance(inputs, dict)
            and bool(inputs)
            and all(_digest(tree.path / name) == digest for name, digest in inputs.items())
        )
    except (OSError, ValueError, TypeError):
        return False


def _digest(path: Path) -> str | None:
    """SHA-256 of a file (None: unreadable); one read per file and process."""
    key = str(path)
    if key not in _DIGESTS:
        try:
            _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            _DIGESTS[key] = None
    return _DIGESTS[key]


_DIGESTS: dict[str, str | None] = {}


def _dependencies(depfile: Path) -> list[str]:
    """The prerequisites of a make rule written by the compiler's ``-MD``/``-MF``."""
    text = depfile.read_text(errors="replace").replace("\\\n", " ")
    _, _, prerequisites = text.partition(": ")
    return [name for name in prerequisites.split() if name != "\\"]


def _compile_all(tree, stale: list[CompileCommand], config, progress: Progress | None) -> None:
    progress = progress or _stderr_progress
    total, done = len(stale), 0
    jobs = max(1, min(len(stale), os.cpu_count() or 1))
    with ThreadPoolExecutor(jobs) as pool:
        for command, error in pool.map(lambda c: (c, _compile_one(tree, c)), stale):
            done += 1
            if error:
                pool.shutdown(cancel_futures=True)
                raise DeviceBuildError(f"compiling {command.source} for {config.name}: {error}")
            progress(done, total, f"TFLM {config.name}: {Path(command.source).name}")


def _compile_one(tree: TflmTree, command: CompileCommand) -> str | None:
    """Compile into a temporary object (and dependency list), rename it into place, then
    record the command and the digest of every file it was compiled from."""
    obj = Path(command.object)
    obj.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphan_temporaries(obj.parent)
    stamp = obj.with_suffix(".cmd")
    obj.unlink(missing_ok=True)  # an object in place is always a recorded one
    stamp.unlink(missing_ok=True)
    temporary = obj.with_name(f"{obj.stem}.tmp-{os.getpid()}-{threading.get_ident()}.o")
    depfile = temporary.with_suffix(".d")
    argv = list(command.argv)
    argv[argv.index("-o") + 1] = str(temporary)
    argv += ["-MD", "-MF", str(depfile)]
    try:
        done = run_group(argv, cwd=tree.path, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "error" in line] or [
                done.stderr.strip()[-300:]
            ]
            return " | ".join(lines[:3])
        inputs = {name: _digest(tree.path / name) for name in _dependencies(depfile)}
        write_atomic(obj.with_suffix(".inputs"), json.dumps(inputs, indent=0))
        write_atomic(stamp, "\0".join(command.argv))
        depfile.replace(obj.with_suffix(".d"))
        temporary.replace(obj)  # last: the object is trusted from here on
    finally:
        temporary.unlink(missing_ok=True)
        depfile.unlink(missing_ok=True)
    return None


def _remove_orphan_temporaries(directory: Path) -> None:
    """Temporary objects of builds whose process is gone (killed mid-compile)."""
    for path in directory.glob("*.tmp-*"):
        pid = path.name.split(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not is_alive(int(pid)):
            path.unlink(missing_ok=True)


def _stderr_progress(done: int, total: int, what: str) -> None:
    print(f"  building objects {done}/{total}  {what}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- flags for the harness


@dataclass(frozen=True)
class Flags:
    """Compiler flags taken from TFLM's own command for a framework C++ source."""

    cxx: tuple[str, ...]  # everything but -c/-o/-MD and the compiler itself
    arch: tuple[str, ...]  # -mcpu/-mfpu/-mthumb/-mfloat-abi/-mlittle-endian

    def c_flags(self) -> tuple[str, ...]:
        return (*self.arch, "-Os", "-ffunction-sections", "-fdata-sections")


def harness_flags(commands: dict[str, CompileCommand]) -> Flags:
    reference = commands.get("tensorflow/lite/micro/micro_interpreter.cc")
    if reference is None:
        raise DeviceBuildError("TFLM's Makefile lists no micro_interpreter.cc compile command")
    argv, flags, skip = reference.argv, [], False
    for token in argv[1:]:
        if skip:
            skip = False
            continue
        if token in ("-c", "-o"):
            skip = True
            continue
        if token in ("-MD", "-MMD"):
            continue
        flags.append(token)
    arch = [t for t in flags if t.startswith(("-mcpu=", "-mfpu=", "-mfloat-abi=")) or
            t in ("-mthumb", "-mlittle-endian")]  # fmt: skip
    return Flags(cxx=tuple(flags), arch=tuple(arch))
