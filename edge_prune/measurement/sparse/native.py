"""The sparse kernels' C++ sources, their compile flags, and the host shared library.

The host library is what lets TFLM's Python interpreter (the tflite-micro wheel) run a model with
``EDGE_PRUNE_SPARSE_*`` ops (int8 and int4): the kernels and the registerer
``EdgePruneSparseRegisterer`` compiled with the system C++ compiler against the TFLM tree's
headers (the wheel is built from the same commit) and linked to the wheel's ``_runtime.so``,
whose ``tflite::`` symbols it uses. The interpreter finds the registerer with dlsym
(``custom_op_registerers``), so the library is loaded with RTLD_GLOBAL first (``_tflm_child``).
Built once per digest of the sources, flags, compiler and TFLM commit, under the device cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge_prune.errors import TflmTreeError, ToolchainError
from edge_prune.measurement.sparse.format import CUSTOM_OPS as _OPS
from edge_prune.measurement.sparse.format import CUSTOM_OPS_INT4 as _OPS_INT4
from edge_prune.measurement.tflm_tree import cache_root, tree_commit

KERNELS_DIR = Path(__file__).parent / "kernels"
HEADERS = (
    "edge_prune_sparse.h",
    "edge_prune_sparse_common.h",
    "edge_prune_sparse_ops.h",
    "edge_prune_sparse_ops_common.h",
)
INT4_HEADERS = ("edge_prune_sparse_int4.h", "edge_prune_sparse_int4_ops.h")
# What a firmware compiles: the kernels and their TFLM glue (int8 ops), and in addition for the
# int4 ops their own kernels and glue (a firmware without int4 ops compiles none of it).
SOURCES = ("edge_prune_sparse.cc", "edge_prune_sparse_ops.cc")
INT4_SOURCES = ("edge_prune_sparse_int4.cc", "edge_prune_sparse_int4_ops.cc")
HOST_SOURCES = (*SOURCES, *INT4_SOURCES, "edge_prune_sparse_python.cc")
REGISTERER = "EdgePruneSparseRegisterer"
INT8_OPS = tuple(_OPS.values())
INT4_OPS = tuple(_OPS_INT4.values())
CUSTOM_OPS = (*INT8_OPS, *INT4_OPS)
TFLM_ENV = "EDGE_PRUNE_TFLM"
CXX_ENV = "EDGE_PRUNE_HOST_CXX"
_DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
_THIRD_PARTY_INCLUDES = ("gemmlowp", "flatbuffers/include", "ruy")
# TFLM's own warning set (tensorflow/lite/micro/tools/make/Makefile CC_WARNINGS), as errors.
WARNINGS = (
    "-Werror",
    "-Wsign-compare",
    "-Wdouble-promotion",
    "-Wunused-variable",
    "-Wunused-function",
    "-Wswitch",
    "-Wvla",
    "-Wall",
    "-Wextra",
    "-Wmissing-field-initializers",
    "-Wstrict-aliasing",
    "-Wno-unused-parameter",
    "-Wshadow",
    "-Wnon-virtual-dtor",
)
# The wheel's build (tensorflow/lite/micro/build_def.bzl tflm_defines, and pypi_build.sh's
# --//:with_compression=true): both change TFLM's structs and classes, so the library must match.
HOST_DEFINES = ("-DTF_LITE_STATIC_MEMORY=1", "-DUSE_TFLM_COMPRESSION=1")


def uses_sparse_ops(model: bytes) -> bool:
    """True when the flatbuffer names one of the sparse custom ops (a byte search: cheap, and
    loading the library for a model that does not need it is harmless)."""
    return any(op.encode() in model for op in CUSTOM_OPS)


def tflm_tree(path: str | Path | None = None) -> Path:
    """The TFLM tree (``path`` or ``$EDGE_PRUNE_TFLM``) with the headers the kernels include."""
    path = path or os.environ.get(TFLM_ENV)
    if not path:
        raise TflmTreeError(
            f"the sparse kernels need a TFLM source tree: set {TFLM_ENV} "
            "(see README, `edge-prune device`)"
        )
    root = Path(path).expanduser().resolve()
    needed = [root / "tensorflow/lite/micro/micro_interpreter.h"]
    needed += [root / _DOWNLOADS / d for d in _THIRD_PARTY_INCLUDES]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise TflmTreeError(f"{root}: incomplete TFLM tree (missing {', '.join(missing)})")
    return root


def include_flags(tree: Path) -> list[str]:
    dirs = [KERNELS_DIR, tree, *(tree / _DOWNLOADS / d for d in _THIRD_PARTY_INCLUDES)]
    return [f"-I{d}" for d in dirs]


def host_compiler() -> str:
    cxx = os.environ.get(CXX_ENV) or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise ToolchainError(
            "the sparse kernels need a host C++ compiler for TFLM's Python interpreter: "
            f"install g++ (apt-get install -y g++) or set {CXX_ENV}"
        )
    return cxx


def wheel_runtime() -> Path:
    """The tflite-micro wheel's ``_runtime.so`` (found without importing it)."""
    spec = importlib.util.find_spec("tflite_micro")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError("tflite-micro is not installed (pip install tflite-micro)")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob("python/tflite_micro/_runtime*.so"))
    if not found:
        raise ToolchainError(f"{root}: no python/tflite_micro/_runtime*.so in tflite-micro")
    return found[0]


def _compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.splitlines() or ["unknown"])[0]


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:16]


def host_command(cxx: str, tree: Path, runtime: Path, output: Path) -> list[str]:
    sources = [str(KERNELS_DIR / s) for s in HOST_SOURCES]
    return [
        cxx,
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        "-fno-exceptions",
        "-fno-asynchronous-unwind-tables",
        "-DFLATBUFFERS_LOCALE_INDEPENDENT=0",
        *HOST_DEFINES,
        *WARNINGS,
        *include_flags(tree),
        *sources,
        str(runtime),
        "-Wl,--no-undefined",
        "-o",
        str(output),
    ]


def host_library(tree: str | Path | None = None) -> Path:
    """Build (or reuse) the host library; raise ToolchainError / TflmTreeError (exit 2) when the
    compiler or the tree is missing, ToolchainError with the compiler's message when it fails."""
    root = tflm_tree(tree)
    cxx = host_compiler()
    runtime = wheel_runtime()
    files = [KERNELS_DIR / f for f in (*HEADERS, *INT4_HEADERS, *HOST_SOURCES)]
    key = _digest(
        [f.read_bytes() for f in files]
        + [
            _compiler_version(cxx).encode(),
            (tree_commit(root) or "unknown").encode(),
            str(runtime).encode(),
        ]
        + [" ".join(host_command(cxx, root, runtime, Path("x"))).encode()]
    )
    target = cache_root() / "sparse-host" / key / "libedge_prune_sparse.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run(
            host_command(cxx, root, runtime, built), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            first = _first_error(done.stderr)
            raise ToolchainError(f"compiling the sparse kernels for the host failed: {first}")
        os.replace(built, target)
    return target


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if re.search(r"error", line):
            return line.strip()
    return (stderr.strip().splitlines() or ["(no message)"])[-1]
