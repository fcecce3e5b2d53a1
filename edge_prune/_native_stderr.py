"""Filter what native code (TensorFlow's C++ start-up, the TFLite converter) writes straight to
file descriptor 2, where Python's ``sys.stderr`` redirection cannot reach it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def native_stderr_filtered(keep: Callable[[str], str]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then write ``keep(text)`` of
    what was written there to ``sys.stderr`` (also when the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = keep(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
