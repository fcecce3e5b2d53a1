"""Read a file the user names (model, config, target, baseline, samples, journal, a build
directory's files) without trusting what it is.

Only regular files are read: a FIFO, a device (``/dev/zero``) or a socket is refused unread,
since opening a FIFO blocks and a device can be endless. The file is opened non-blocking and
checked on the open descriptor, so a FIFO swapped in after a check is refused too; no more than
``limit`` bytes are read, in case the file grows while it is read. Every refusal is the
caller's one-line ``EdgePruneError`` naming the file. :func:`check_regular` is the same check
for a file another library opens by name (sqlite, numpy).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge_prune.errors import EdgePruneError

# JSON reports and TOML files are a few KB; a .tflite for a microcontroller a few MB.
MAX_TEXT_BYTES = 16 * 1024 * 1024
MAX_MODEL_BYTES = 1024 * 1024 * 1024


def read_input(
    path: str | Path, *, limit: int, error: type[EdgePruneError], label: str | None = None
) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``); ``error`` otherwise, with
    ``label`` (default: the path) and the reason. FileNotFoundError and IsADirectoryError are
    raised as they are, so callers keep their own wording for those."""
    path = Path(path)
    label = label or str(path)
    check_regular(path, error=error, label=label)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise error(f"{label}: cannot read ({e.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the check
            raise error(f"{label}: not a regular file ({_kind(mode)}); give a file")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{label}: cannot read ({e.strerror})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise error(f"{label}: larger than {limit:,} B; expected a smaller file")
    return data


def check_regular(
    path: str | Path, *, error: type[EdgePruneError], label: str | None = None
) -> None:
    """Refuse ``path`` unless it is a regular file (or does not exist: FileNotFoundError, and
    IsADirectoryError for a directory, as :func:`read_input`)."""
    label = label or str(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None
    except OSError as e:  # also ELOOP: a symlink loop
        raise error(f"{label}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(mode):
        raise error(f"{label}: not a regular file ({_kind(mode)}); give a file")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
