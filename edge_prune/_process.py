"""Child processes that end with the tool: ``PR_SET_PDEATHSIG`` (Linux, prctl(2)).

A child started with ``preexec_fn=die_with(os.getpid())`` (or calling
:func:`die_with_parent` first thing) is killed by the kernel when the thread that started it
ends, so a killed edge-prune leaves no worker, emulator or interpreter behind.

The death signal is not inherited by the child's own children: a compiler driver killed so
leaves ``cc1plus`` and ``as`` running. :func:`run_group` runs such a tool in its own process
group under a shell that gets the death signal and then kills the whole group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """In the child: be sent ``signum`` when the parent ends; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def die_with(parent: int, signum: int = signal.SIGKILL):
    """A ``preexec_fn`` for :mod:`subprocess` that calls :func:`die_with_parent`."""
    return lambda: die_with_parent(parent, signum)


# The shell waits for the tool; on SIGTERM (the death signal) it kills its process group: the
# tool and every process the tool started.
_GROUP_SHELL = 'trap "kill -KILL 0" TERM; "$@" & wait $!'


def run_group(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, **kwargs)`` with ``argv`` and all its descendants in a new
    process group that is killed when this process (the calling thread) ends, even by
    SIGKILL."""
    wrapped = ["/bin/sh", "-c", _GROUP_SHELL, "edge-prune-group", *argv]
    return subprocess.run(
        wrapped,
        process_group=0,
        preexec_fn=die_with(os.getpid(), signal.SIGTERM),
        **kwargs,
    )


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
