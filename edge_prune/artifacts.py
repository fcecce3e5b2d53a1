"""Write deployable artifacts so that no reader ever sees a half-written file or directory.

Single files go through a temp file in the same directory and ``os.replace``. A whole artifact
directory (``build/<target>/``) is staged beside its destination and swapped in with one
``renameat2(RENAME_EXCHANGE)`` call where the kernel offers it, so an interrupted run leaves
the previous directory or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_prune._process import is_alive

TFLM_ALIGNMENT_BYTES = 16  # TFLM reads the flatbuffer in place; 16-byte alignment is safe for it


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temp file + rename; the old file stays until then."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with named(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with named(path), os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def named(path: str | Path) -> Iterator[None]:
    """Give an OSError without a file name (a failed ``write``: disk full, quota) ``path``, so
    that the one-line error says where."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def emit_files(destination: str | Path, files: dict[str, str | bytes]) -> list[Path]:
    """Write ``files`` (name -> content) into ``destination`` as one set: staged beside it with
    whatever else the directory holds, and swapped in (:func:`staged_directory`), so that a
    failure leaves the previous set, never a mix."""
    destination = Path(destination).absolute()
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(20, "exists and is not a directory", str(destination))
    if Path.cwd().is_relative_to(destination.resolve()):
        # swapping the working directory (or a parent) would leave this process in the old one
        return [write_atomic(destination / name, files[name]) for name in sorted(files)]
    with staged_directory(destination) as staging:
        if destination.is_dir():
            for entry in destination.iterdir():
                if entry.name in files:
                    continue
                with named(staging / entry.name):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.copytree(entry, staging / entry.name, symlinks=True)
                    else:
                        shutil.copy2(entry, staging / entry.name, follow_symlinks=False)
        for name, content in files.items():
            write_atomic(staging / name, content)
    return [destination / name for name in sorted(files)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_directory(destination: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``destination`` in one step.

    On any exception (including Ctrl-C) the staging directory is removed and ``destination``
    is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(destination.parent):
        recover_interrupted_swap(destination)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=destination.parent)
        )
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700
        try:
            yield staging
            _swap_in(staging, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold an advisory lock on ``directory``, so that two runs writing into it take turns
    (each would otherwise clear the other's staging directory as a stale one)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _swap_in(staging: Path, destination: Path) -> None:
    if destination.exists() and _rename_exchange(staging, destination):
        return  # staging now holds the old directory; the caller's cleanup removes it
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(destination, old)
        os.rename(staging, destination)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, destination)


def recover_interrupted_swap(destination: Path) -> None:
    """Restore ``destination`` if a run was killed between the two renames of the fallback."""
    old = destination.with_name(f".{destination.name}.old")
    if old.exists() and not destination.exists():
        os.rename(old, destination)
    for stale in destination.parent.glob(f".{destination.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def scratch_tempdir(kind: str) -> Iterator[Path]:
    """Point Python's ``tempfile`` at a fresh ``edge-prune-<kind>-<pid>-*`` directory while
    foreign code runs (the TFLite converter writes a SavedModel to ``tempfile.mkdtemp()``), and
    remove it after. On entry, such directories of processes that no longer exist (SIGKILLed
    mid-conversion) are removed, as :mod:`edge_prune.measurement.tflm` does with its job
    directories."""
    prefix = f"edge-prune-{kind}-"
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{prefix}*-*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not is_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(scratch, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0
