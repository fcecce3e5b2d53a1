"""The Arm GNU toolchain and QEMU on PATH, and the TFLM source tree a device build compiles.

Neither is a Python package: the toolchain and emulator are Debian packages
(:data:`APT_COMMAND`), TFLM's C++ sources a tree the user checks out (:data:`TFLM_HOWTO`).
When one is missing the error is one line saying how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge_prune.errors import TflmTreeError, ToolchainError
from edge_prune.measurement.tflm_tree import tree_commit

APT_COMMAND = (
    "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi "
    "libstdc++-arm-none-eabi-newlib qemu-system-arm"
)
TFLM_ENV = "EDGE_PRUNE_TFLM"
PINNED_TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
TFLM_HOWTO = (
    "get it with `git clone https://github.com/tensorflow/tflite-micro DIR && "
    f"git -C DIR checkout {PINNED_TFLM_COMMIT}` (TFLM's Makefile downloads its third-party "
    "trees into tensorflow/lite/micro/tools/make/downloads/ on the first `make -f "
    "tensorflow/lite/micro/tools/make/Makefile third_party_downloads`), then pass --tflm DIR "
    f"or set {TFLM_ENV}"
)
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
_DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
_THIRD_PARTY = ("flatbuffers", "gemmlowp", "ruy")  # what every cortex_m_generic build includes
_TOOLS = {
    "gcc": "arm-none-eabi-gcc",
    "gxx": "arm-none-eabi-g++",
    "ar": "arm-none-eabi-ar",
    "size": "arm-none-eabi-size",
    "qemu": "qemu-system-arm",
}


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the tools, and ``gcc_version``: the first line of ``gcc --version``."""

    gcc: str
    gxx: str
    ar: str
    size: str
    qemu: str
    gcc_version: str

    @property
    def root(self) -> str:
        """The directory of the compilers, with a trailing slash (TFLM's TARGET_TOOLCHAIN_ROOT)."""
        return str(Path(self.gcc).parent) + os.sep


def resolve_toolchain() -> Toolchain:
    """Find arm-none-eabi-gcc/g++/ar/size and qemu-system-arm on PATH.

    Raises :class:`ToolchainError` (exit code 2) naming the missing tools and the apt command.
    """
    found = {key: shutil.which(tool) for key, tool in _TOOLS.items()}
    missing = [_TOOLS[key] for key, path in found.items() if path is None]
    if missing:
        raise ToolchainError(f"{', '.join(missing)} not found on PATH; install: {APT_COMMAND}")
    version = subprocess.run(
        [found["gcc"], "--version"], capture_output=True, text=True, check=False
    ).stdout
    return Toolchain(**found, gcc_version=(version.splitlines() or ["unknown"])[0].strip())


@dataclass(frozen=True)
class TflmTree:
    """A TFLM source tree (tflite-micro checkout with its third-party downloads).

    ``commit``: the tree's git commit, read from ``.git`` when it has one, else from a
    ``TFLM_COMMIT`` file at its root or ``$EDGE_PRUNE_TFLM_COMMIT``; None when nothing states it.
    """

    path: Path
    commit: str | None

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> TflmTree:
        """Validate the tree at ``path`` (else ``$EDGE_PRUNE_TFLM``); :class:`TflmTreeError`
        (exit code 2, one line saying how to get it) when missing or incomplete."""
        if path is None or str(path) == "":
            path = os.environ.get(TFLM_ENV)
        if not path:
            raise TflmTreeError(
                f"no TFLM source tree given (--tflm DIR or {TFLM_ENV}); {TFLM_HOWTO}"
            )
        try:
            root = Path(path).expanduser().resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise TflmTreeError(f"{path}: cannot resolve the path ({e}); {TFLM_HOWTO}") from None
        if not (root / MAKEFILE).is_file():
            raise TflmTreeError(f"{root}: not a TFLM tree (no {MAKEFILE}); {TFLM_HOWTO}")
        absent = [d for d in _THIRD_PARTY if not (root / _DOWNLOADS / d).is_dir()]
        if absent:
            raise TflmTreeError(
                f"{root}: TFLM third-party trees missing under {_DOWNLOADS}/ "
                f"({', '.join(absent)}); {TFLM_HOWTO}"
            )
        return cls(path=root, commit=tree_commit(root))

    def has_cmsis_nn(self) -> bool:
        return (self.path / _DOWNLOADS / "cmsis_nn" / "Include").is_dir()

    @property
    def cache_key(self) -> str:
        """Names the tree in the object cache: its commit, else a digest of its path."""
        if self.commit:
            return self.commit[:12]
        import hashlib

        return "path-" + hashlib.sha256(str(self.path).encode()).hexdigest()[:12]
