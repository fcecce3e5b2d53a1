"""Shared pytest fixtures: the committed tiny .tflite models and a target-file writer.

The .tflite files in tests/data/ were made once by tests/data/make_models.py (TensorFlow
2.21.0), so the footprint and report tests run without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"

VALID_TARGET = {
    "part": "TEST-PART",
    "board": "test board",
    "core": "Cortex-M4F",
    "clock_hz": 64_000_000,
    "flash_bytes": 1_048_576,
    "ram_bytes": 262_144,
    "reserved_flash_bytes": 65_536,
    "reserved_ram_bytes": 32_768,
}


def toml_text(values: dict) -> str:
    """TOML for a flat dict of str/int/float values (what a target file needs in tests)."""
    lines = []
    for key, value in values.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def target_file(tmp_path):
    """Write a target TOML: ``target_file(name, drop=(), **changes)`` -> its path."""

    def write(name: str = "test-target", drop: tuple[str, ...] = (), **changes) -> Path:
        values = {k: v for k, v in VALID_TARGET.items() if k not in drop} | changes
        path = tmp_path / f"{name}.toml"
        path.write_text(toml_text(values), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def mlp_float_path() -> Path:
    return DATA_DIR / "mlp_float.tflite"


@pytest.fixture(scope="session")
def cnn_int8_path() -> Path:
    return DATA_DIR / "cnn_int8.tflite"


@pytest.fixture(scope="session")
def sparse_float_path() -> Path:
    return DATA_DIR / "sparse_float.tflite"
