"""Importing TensorFlow through edge_prune.training._tf: its start-up log lines at most once, none
by default."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from edge_prune.training._tf import startup_lines_kept

# What importing TensorFlow 2.21 printed on a host without a GPU: the block came twice.
BLOCK = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796397414.055992    3449 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1796397414.056353    3449 cudart_stub.cc:31] Could not find cuda drivers.\n"
)
FEATURES = (
    "I0000 00:00:1796397418.145706    3555 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized\nTo enable the following instructions: AVX2 FMA, rebuild TensorFlow.\n"
)
ERROR = "E0000 00:00:1796397418.2    3555 loader.cc:12] could not load a plugin\n"
OTHER = "/x/y.py:3: UserWarning: something the user should see\nplain text\n"


def test_startup_lines_come_once_at_level_0():
    text = BLOCK + FEATURES + BLOCK.replace("1796397414", "1796397416") + OTHER
    kept = startup_lines_kept(text, "0")
    assert kept == BLOCK.split("\n", 1)[1] + FEATURES + OTHER


@pytest.mark.parametrize(("level", "kept"), [("1", ERROR), ("2", ERROR), ("3", "")])
def test_startup_lines_below_the_level_are_dropped_with_their_continuation(level, kept):
    text = BLOCK + FEATURES + ERROR + BLOCK + OTHER
    assert startup_lines_kept(text, level) == kept + OTHER


def _import_stderr(level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run(
        [sys.executable, "-c", "import edge_prune.training._tf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stderr


def test_importing_tensorflow_prints_no_startup_lines_by_default_and_none_twice():
    assert _import_stderr(None) == ""
    records = re.findall(r"^[IWEF]\d{4} \S+\s+\d+ (\S+:\d+\] .*)$", _import_stderr("0"), re.M)
    assert len(records) == len(set(records))
