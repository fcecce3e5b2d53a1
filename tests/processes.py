"""Helpers for the tests that run the command line in a child process and watch what it starts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLI = [sys.executable, "-m", "edge_prune.cli"]

T = TypeVar("T")


def run_cli(*args: str, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``edge-prune ARGS`` in a child process, its output captured as text."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def _stat_fields(pid: int | str) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: state, ppid, ...; None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``: children, their children, ..."""
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def wait_for(condition: Callable[[], T], what: str, seconds: float, poll_s: float = 0.05) -> T:
    """The first true value of ``condition()``, polled until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)
