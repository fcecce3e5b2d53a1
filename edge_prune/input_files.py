"""Read a file the user names (model, config, target, baseline) without trusting what it is.

Only regular files are read: a FIFO, a device (``/dev/zero``) or a socket is refused before it is
opened, since opening a FIFO blocks and a device can be endless; and no more than ``limit`` bytes
are read, in case the file grows while it is read. Every refusal is the caller's one-line
``EdgePruneError`` naming the file.
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
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None
    except OSError as e:
        raise error(f"{label}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(mode):
        raise error(f"{label}: not a regular file ({_kind(mode)}); give a file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{label}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise error(f"{label}: larger than {limit:,} B; expected a smaller file")
    return data


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
