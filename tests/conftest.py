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


# A trained CNN pruned by hand and its float / int8 / sparse artifacts, checked on TFLM
# (shared by the tests of evaluate.py and choose.py).
HELD_OUT = slice(96, 128)


@pytest.fixture(scope="session")
def cnn_artifacts():
    from tiny_models import trained_cnn, zero_smallest

    from edge_prune.convert import convert_all
    from edge_prune.metrics import top1_accuracy

    model, x, y = trained_cnn(seed=1, epochs=3)
    zero_smallest(model, 0.8)  # prune by hand so the sparse encoding applies
    flatbuffers = convert_all(model, x[:96], variants=("float", "int8", "int8-densify"))
    x_test, y_test = x[HELD_OUT], y[HELD_OUT]
    keras_outputs = model.predict(x_test, verbose=0)
    return {
        "flatbuffers": {k: v.tflite_bytes for k, v in flatbuffers.items()},
        "x": x_test,
        "y": y_test,
        "keras_outputs": keras_outputs,
        "keras_accuracy": top1_accuracy(keras_outputs, y_test),
    }


@pytest.fixture(scope="session")
def cnn_checks(cnn_artifacts):
    from edge_prune.evaluate import check_deployable

    fb, x, y = cnn_artifacts["flatbuffers"], cnn_artifacts["x"], cnn_artifacts["y"]
    keras_outputs = cnn_artifacts["keras_outputs"]
    return {
        name: check_deployable(fb[name], x, keras_outputs, labels=y, name=name)
        for name in ("float", "int8", "int8-densify")
    }


@pytest.fixture(scope="session")
def ethos_u_path(tmp_path_factory, cnn_int8_path) -> Path:
    """cnn_int8.tflite with its first operator turned into a CUSTOM op with custom_code
    "ethos-u" (what Vela leaves for the NPU): TFLM's host interpreter has no kernel for it."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from edge_prune.codecs import _tflm

    model = schema.ModelT.InitFromPackedBuf(cnn_int8_path.read_bytes(), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = b"ethos-u", 1
    model.operatorCodes.append(code)
    first = model.subgraphs[0].operators[0]
    first.opcodeIndex = len(model.operatorCodes) - 1
    first.builtinOptionsType, first.builtinOptions = 0, None
    path = tmp_path_factory.mktemp("ethos_u") / "ethos_u.tflite"
    path.write_bytes(_tflm.pack(model))
    return path
