"""The host's TFLM: which tflite-micro wheel the Python interpreter runs and its TFLM commit.

Each tflite-micro wheel names the commit it was built from at the end of its version string,
``tflite_micro/python/tflite_micro/_version.py``: ``__version__ = "0.dev20260820164721-g90b983c"``
(git-describe style, ``-g`` and the short commit). The file is read as text, so asking costs
no import of the TFLM runtime.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_VERSION_FILE = Path("python", "tflite_micro", "_version.py")
_VERSION = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)
_COMMIT = re.compile(r"-g([0-9a-f]{7,40})$")


@dataclass(frozen=True)
class HostTflm:
    """``version``: the wheel's version string, None when no wheel is installed or it states
    none; ``commit``: the short commit at its end, None when it names none."""

    version: str | None
    commit: str | None

    def describe(self) -> str:
        if self.version is None:
            return "tflite-micro not installed"
        commit = f"commit {self.commit}" if self.commit else "commit not stated"
        return f"tflite-micro {self.version} ({commit})"

    def same_commit(self, tree_commit: str | None) -> bool | None:
        """True/False when both commits are known, None when one is not."""
        if not self.commit or not tree_commit:
            return None
        n = min(len(self.commit), len(tree_commit))
        return self.commit[:n].lower() == tree_commit[:n].lower()

    def to_dict(self) -> dict:
        return {"version": self.version, "commit": self.commit}


def parse_version_file(text: str) -> HostTflm:
    """The version and commit stated by the text of a ``_version.py``."""
    match = _VERSION.search(text)
    if match is None:
        return HostTflm(version=None, commit=None)
    version = match.group(1)
    commit = _COMMIT.search(version)
    return HostTflm(version=version, commit=commit.group(1) if commit else None)


@cache
def host_tflm() -> HostTflm:
    """The installed tflite-micro wheel's version and commit."""
    try:
        spec = importlib.util.find_spec("tflite_micro")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return HostTflm(version=None, commit=None)
    for location in spec.submodule_search_locations:
        path = Path(location) / _VERSION_FILE
        try:
            return parse_version_file(path.read_text(errors="replace"))
        except OSError:
            continue
    return HostTflm(version=None, commit=None)
