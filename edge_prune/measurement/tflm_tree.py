"""A TFLM source tree's commit and the cache directory of what edge-prune builds from it.

Shared by the device builds (:mod:`edge_prune.measurement.device`) and the host library of
the sparse kernels (:mod:`edge_prune.measurement.sparse.native`), neither of which imports the
other.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CACHE_ENV = "EDGE_PRUNE_DEVICE_CACHE"
TFLM_COMMIT_ENV = "EDGE_PRUNE_TFLM_COMMIT"
TFLM_COMMIT_FILE = "TFLM_COMMIT"


def cache_root() -> Path:
    """``$EDGE_PRUNE_DEVICE_CACHE``, else ``$XDG_CACHE_HOME/edge-prune``, else ``~/.cache/...``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-prune"


def tree_commit(root: Path) -> str | None:
    """The tree's git commit, read from ``.git`` when it has one, else from a ``TFLM_COMMIT``
    file at its root or ``$EDGE_PRUNE_TFLM_COMMIT``; None when nothing states it."""
    head = _git_head(root / ".git")
    if head:
        return head
    stated = root / TFLM_COMMIT_FILE
    if stated.is_file():
        text = stated.read_text(errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{7,40}", text):
            return text
    from_env = os.environ.get(TFLM_COMMIT_ENV, "").strip()
    return from_env or None


def _git_head(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                return ref_file.read_text().strip()
            packed = (git / "packed-refs").read_text()
            match = re.search(rf"^([0-9a-f]{{40}}) {re.escape(ref)}$", packed, re.M)
            return match.group(1) if match else None
        return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    except OSError:
        return None
