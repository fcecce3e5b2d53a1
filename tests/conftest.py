"""Shared pytest fixtures: the committed tiny .tflite models and a target-file writer.

The .tflite files in tests/data/ were made once by tests/data/make_models.py (TensorFlow
2.21.0), so the footprint and report tests run without TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one TensorFlow thread each (the tiny models gain nothing from
    # more); set before any test imports TensorFlow, and inherited by the CLI runs they start.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

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

    from edge_prune.measurement.metrics import top1_accuracy
    from edge_prune.training.convert import convert_all

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
    from edge_prune.measurement.evaluate import check_deployable

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
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    from edge_prune.measurement.codecs import _tflm

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


# --------------------------------------------------------------------- parallel runs (xdist)
# `make test` runs the suite on two xdist workers with ``--dist loadscope``. A work unit runs
# whole on one worker: by default a module, so that its module-scoped fixtures are built once;
# the tests named below by node id prefix make units of their own (the longest prefix wins).
# Those units start first, in this order (the slowest first, so that the two workers end
# together; seconds alone on 2 quiet cores, cold device cache), then the other modules in file
# order. (Not xdist_group marks: pytest-xdist 3.8 cannot rename pytest 9.2's node ids, so
# ``--dist loadgroup`` groups nothing.)
_DEVICE = "test_device.py::test_"
_SEARCH = "test_search.py::test_"
_FAMILIES = "test_model_command_families.py::test_"
_FAMILY = f"{_FAMILIES}sequence_models_deploy_within_tolerance"
SLOW_UNITS_FIRST = (
    # TFLM objects for cortex-m4+fp CMSIS-NN (114, 2 compile jobs), then QEMU runs: ~80 s
    ("device-cortex-m4", (f"{_DEVICE}int8_cnn_on_cortex_m4", f"{_DEVICE}lenet_mlp")),
    # ... and for cortex-m0plus reference (65 objects): ~75 s
    (
        "device-cortex-m0plus",
        (
            f"{_DEVICE}cortex_m0plus",
            f"{_DEVICE}runtime_of_one_op",
            f"{_DEVICE}a_runtime_link_of_a_sparse_op",
            f"{_DEVICE}a_model_that_does",
        ),
    ),
    ("test_search.py", ("test_search.py",)),  # the 3-point search and the 5 tests on it: ~80 s
    ("search-schedules", (f"{_SEARCH}every_schedule",)),  # ~43 s
    ("interrupt", ("test_interrupt_and_repeat.py",)),  # ~33 s, two runs at a time
    ("families-lstm", (f"{_FAMILY}[lstm]",)),  # ~32 s
    ("search-signals", ("test_search_signals.py",)),  # ~25 s, --jobs 2
    ("families-conv1d", (f"{_FAMILY}[conv1d_sensor]",)),
    ("families-ds-cnn", (f"{_FAMILIES}batchnorm_ds_cnn",)),
    ("families-cannot-learn", (f"{_FAMILIES}a_model_that_cannot_learn",)),
    ("test_sweep.py", ("test_sweep.py",)),
    ("sweep-regression", ("test_sweep.py::test_sweep_handles_regression",)),
    ("search-no-point-fits", (f"{_SEARCH}target_no_point_fits",)),
    ("test_model_command.py", ("test_model_command.py",)),
    ("model-overflow", ("test_model_command.py::test_decoded_weights_that_would_overflow",)),
    ("families-autoencoder", (f"{_FAMILIES}dense_autoencoder",)),
    ("families-scores-well", (f"{_FAMILIES}a_loaded_model_that_already",)),
    ("families-own-compile", (f"{_FAMILIES}a_loaded_model_is_trained",)),
    ("test_readme_example.py", ("test_readme_example.py",)),
    ("arena-regenerate", ("test_arena_32bit.py::test_struct_sizes_regenerate",)),
    ("test_model_families.py", ("test_model_families.py",)),
    ("test_hostile_surfaces.py", ("test_hostile_surfaces.py",)),
    ("test_fuzz.py", ("test_fuzz.py",)),
    ("test_convert.py", ("test_convert.py",)),
    ("test_tflm.py", ("test_tflm.py",)),
    ("cnn-artifacts", ("test_choose.py", "test_evaluate.py")),  # one session fixture for both
)


def _work_unit(nodeid: str) -> tuple[int, str]:
    """(start rank, unit) of a test: by its longest prefix above, else after them, its module."""
    relative = nodeid.removeprefix("tests/")
    best = None
    for rank, (unit, prefixes) in enumerate(SLOW_UNITS_FIRST):
        for prefix in prefixes:
            if relative.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, unit)
    if best is None:
        return len(SLOW_UNITS_FIRST), nodeid.split("::", 1)[0]
    return best[1], best[2]


# --------------------------------------------------------------------------------- tiers
# `make check` runs the quick tier: `-m "not slow and not device"`. Quick modules need neither
# TensorFlow (no training, no conversion: their models are the committed .tflite files) nor the
# Arm toolchain; a test in them that does is marked `slow` or `device` by hand. Every other
# module is `slow`, test_device.py is `device`. `make test` runs every tier.
QUICK_MODULES = frozenset(
    {
        "test_artifacts.py",
        "test_codec_choice.py",
        "test_codec_registry.py",
        "test_codecs_huffman.py",
        "test_cmsis_nn_lstm.py",
        "test_cmsis_nn_scratch.py",
        "test_cmsis_nn_faults.py",
        "test_codecs_pruning.py",
        "test_diet.py",
        "test_firmware.py",
        "test_footprint.py",
        "test_host_tflm.py",
        "test_fuzz.py",
        "test_instructions.py",
        "test_metrics.py",
        "test_report_cli.py",
        "test_runtime_tables.py",
        "test_sparse_format.py",
        "test_targets.py",
        "test_tflite_file.py",
    }
)
DEVICE_MODULES = frozenset({"test_device.py", "test_sparse_kernels.py"})


def pytest_ignore_collect(collection_path, config):
    """With ``-m "not slow ..."``, the modules outside the quick tier are not even imported
    (several import TensorFlow at module level: seconds per worker)."""
    quick_only = "not slow" in (config.getoption("markexpr") or "")
    name = collection_path.name
    if quick_only and name.startswith("test_") and name.endswith(".py"):
        return name not in QUICK_MODULES or None
    return None


def _tier_marks(items) -> None:
    for item in items:
        if item.path.name in DEVICE_MODULES:
            item.add_marker(pytest.mark.device)
        elif item.path.name not in QUICK_MODULES and not item.get_closest_marker("device"):
            item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(config, items):
    """Tier marks; on an xdist worker, the units in their start order, each unit's tests in
    file order."""
    _tier_marks(items)
    if hasattr(config, "workerinput"):
        ranked = sorted(
            enumerate(items), key=lambda entry: (_work_unit(entry[1].nodeid)[0], entry[0])
        )
        items[:] = [item for _, item in ranked]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadscope`` with the units above, started in collection order."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)[1]

    config.option.loadscopereorder = False  # the order is the one set above
    return UnitScheduling(config, log)
