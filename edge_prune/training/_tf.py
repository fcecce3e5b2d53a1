"""The one place edge-prune imports TensorFlow, tf_keras and tfmot.

tfmot 0.8 works only with Keras 2 (``tf_keras``). TensorFlow decides which Keras ``tf.keras``
is when it is first imported, from ``TF_USE_LEGACY_KERAS``; tfmot reads the same variable. So
this module sets it before the first import and every other module gets TensorFlow from here:
``from edge_prune.training._tf import tf, keras, tfmot``.

TensorFlow's start-up lines (oneDNN, CUDA drivers) are absl log lines written before
``absl::InitializeLog()``: they ignore ``TF_CPP_MIN_LOG_LEVEL`` and come once per shared library
that logs them (twice on TF 2.21). The import runs with the native stderr captured, and what it
printed is written back without the absl lines below ``TF_CPP_MIN_LOG_LEVEL`` (3 unless set:
none but fatal ones) and without repeats.
"""

from __future__ import annotations

import os
import re

from edge_prune._native_stderr import native_stderr_filtered

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# "I0000 00:00:1796397414.056353    3449 cudart_stub.cc:31] Could not find cuda drivers ..."
_ABSL_LINE = re.compile(r"([IWEF])\d{4} \S+\s+\d+ (\S+:\d+\] .*)", re.DOTALL)
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_PYTHON_WARNING = re.compile(r"\S+:\d+: \w*Warning: ")
_SEVERITIES = "IWEF"


def startup_lines_kept(text: str, min_level: str | None) -> str:
    """``text`` (what the import printed) without absl's banner, without absl log records
    below ``min_level`` (TF_CPP_MIN_LOG_LEVEL: 0 info .. 3 fatal only) and without a record
    that repeats an earlier one (same severity, source line and message). A record is its
    line and the lines that continue it."""
    try:
        level = int(min_level or 0)
    except ValueError:
        level = 0
    kept, seen = [], set()
    for record in _records(text):
        if record.startswith(_ABSL_BANNER):
            continue
        absl = _ABSL_LINE.match(record)
        if absl:
            severity, message = absl.groups()
            if _SEVERITIES.index(severity) < level or (severity, message) in seen:
                continue
            seen.add((severity, message))
        kept.append(record)
    return "".join(kept)


def _records(text: str) -> list[str]:
    records: list[str] = []
    for line in text.splitlines(keepends=True):
        starts = _ABSL_LINE.match(line) or line.startswith(_ABSL_BANNER)
        continues = records and _ABSL_LINE.match(records[-1]) and not starts
        if continues and not _PYTHON_WARNING.match(line):
            records[-1] += line
        else:
            records.append(line)
    return records


with native_stderr_filtered(
    lambda text: startup_lines_kept(text, os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

# tfmot internals for per-layer wrapping and mask access, which its public names do not expose.
from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    prune_registry,
    pruning_wrapper,
)

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "prune_registry", "pruning_wrapper", "tf", "tfmot"]
