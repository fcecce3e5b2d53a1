"""Hostile input through the CLI: broken configs, bad data, files that are not models, code.

Every refusal is exit 2 with exactly one line ``edge-prune: error: FILE: ...`` naming the file
and the key or array at fault, before anything is written. The loaders of target files and
pipeline configs are also checked with hypothesis: whatever the dict or the bytes, they return a
valid object or raise ``ConfigError`` naming the file, never another exception.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import VALID_TARGET, toml_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_prune.cli import main
from edge_prune.config import PipelineConfig, config_from_dict, load_config
from edge_prune.errors import ConfigError
from edge_prune.measurement.targets import Target, load_target, parse_target

GOOD_TARGET = toml_text(VALID_TARGET)


def _one_line_error(capsys, argv, path, *expected) -> str:
    """Run the CLI; assert exit 2 and a single error line naming ``path`` and ``expected``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"edge-prune: error: {path}: "), err
    for text in expected:
        assert text in err, err
    return err


# --------------------------------------------------------------------------- target files


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'part = "unterminated\n', "TOML syntax error"),
        (b"", "missing key 'part'"),
        (GOOD_TARGET.replace("ram_bytes = 262144", 'ram_bytes = "256 KB"'), "key 'ram_bytes'"),
        (GOOD_TARGET.replace("ram_bytes = 262144", "ram_bytes = true"), "key 'ram_bytes'"),
        (GOOD_TARGET.replace("flash_bytes = 1048576", "flash_bytes = 1e400"), "'flash_bytes'"),
        (
            GOOD_TARGET.replace("flash_bytes = 1048576", f"flash_bytes = {2**40}"),
            "key 'flash_bytes' is 1099511627776, beyond 2**32 - 1",
        ),
        (
            GOOD_TARGET.replace("clock_hz = 64000000", f"clock_hz = {'9' * 400}"),
            "key 'clock_hz'",
        ),
        (GOOD_TARGET + "[runtime]\nruntime_flash_bytes = -5\n", "'runtime.runtime_flash_bytes'"),
        (GOOD_TARGET + "runtime = 5\n", "key 'runtime' must be a table"),
        (GOOD_TARGET + "[[throughput]]\nsource = 'x'\n", "key 'throughput' must be a table"),
        (
            GOOD_TARGET + "[throughput]\nsource = 'x'\nmacs_per_cycle = { CONV_2D = nan }\n",
            "'throughput.macs_per_cycle.CONV_2D' must be a positive number",
        ),
        (
            GOOD_TARGET + "[throughput]\nsource = 'x'\nus_per_call = { SOFTMAX = inf }\n",
            "'throughput.us_per_call.SOFTMAX' must be a positive number",
        ),
        (GOOD_TARGET + "notes = " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
        (GOOD_TARGET.encode() + b'notes = "\xff\xfe caf\xe9"\n', "not UTF-8"),
        (b"\xef\xbb\xbf" + GOOD_TARGET.encode(), "TOML syntax error"),  # UTF-8 byte order mark
    ],
)
def test_bad_target_file_is_a_one_line_error_naming_file_and_key(
    capsys, tmp_path, mlp_float_path, content, expected
):
    path = tmp_path / "board.toml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    _one_line_error(capsys, ["report", mlp_float_path, "--target", path], path, expected)


def test_target_file_that_is_a_directory_is_refused(capsys, tmp_path, mlp_float_path):
    path = tmp_path / "board.toml"
    path.mkdir()
    _one_line_error(capsys, ["report", mlp_float_path, "--target", path], path, "not found")


# --------------------------------------------------------------------------- pipeline config


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[train\nepochs = 2\n", "TOML syntax error"),
        (b'[train]\nepochs = "2"\n', "'train.epochs' must be int, got str"),
        (b"[train]\nepochs = 2.0\n", "'train.epochs' must be int, got float"),
        (b"[compress]\nenabled = 1\n", "'compress.enabled' must be bool"),
        (b"[train]\nepoch = 2\n", "unknown key 'train.epoch'"),
        (b"[deploy]\nepochs = 2\n", "unknown section [deploy]"),
        (b"[train]\nbatch_size = 1000000000000000000000\n", "'train.batch_size' = 10000"),
        (b"[train]\nseed = -1\n", "'train.seed' = -1 is outside"),
        ("[train]\nlearning_rate = {}\n".format("9" * 400).encode(), "'train.learning_rate'"),
        (b"[select]\ntolerance_points = nan\n", "'select.tolerance_points' = nan"),
        (b"[prune]\nfinal_sparsity = inf\n", "'prune.final_sparsity' = inf"),
        (b"[prune]\nepochs = 2\nend_epoch = 3\n", "'prune.end_epoch' (3) must not exceed"),
        (b"[train]\nepochs = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested too deeply"),
        (b"[train]\nepochs = " + b"'x'" * 100_000 + b"\n", "TOML syntax error"),
        (b"[train]\nepochs = '" + b"x" * 100_000 + b"'\n", "'train.epochs' must be int"),
        (b"[train]\nepochs = 2 # \xff\xfe\n", "not UTF-8"),
    ],
)
def test_bad_pipeline_config_is_a_one_line_error_naming_file_and_key(
    capsys, tmp_path, content, expected
):
    path = tmp_path / "pipeline.toml"
    path.write_bytes(content)
    out = tmp_path / "build"
    err = _one_line_error(
        capsys, ["model", "--target", "cortex-m4", "--config", path, "--out", out], path, expected
    )
    assert len(err) < 400  # values quoted in the message are shortened
    assert not out.exists()


# --------------------------------------------------------------------------- hypothesis

_TOML_SCALARS = (
    st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=20)
    | st.datetimes()
    | st.dates()
)
_TOML_VALUES = st.recursive(
    _TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),  # fmt: skip
    max_leaves=8,
)
_TARGET_KEYS = st.sampled_from([*VALID_TARGET, "source", "notes", "runtime", "throughput"])
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(
    changes=st.dictionaries(_TARGET_KEYS | st.text(max_size=10), _TOML_VALUES, max_size=4),
    dropped=st.sets(_TARGET_KEYS, max_size=2),
)
def test_target_loader_gives_a_target_or_a_config_error_naming_the_file(changes, dropped):
    data = {k: v for k, v in VALID_TARGET.items() if k not in dropped} | changes
    try:
        target = parse_target(data, name="board", path="boards/board.toml")
    except ConfigError as e:
        assert "boards/board.toml" in str(e)
        return
    assert isinstance(target, Target)
    for kind in ("flash", "ram"):
        size = getattr(target, f"{kind}_bytes")
        assert type(size) is int and 0 <= getattr(target, f"reserved_{kind}_bytes") <= size < 2**32
    assert target.clock_hz > 0


_SECTIONS = PipelineConfig().to_dict()
_CONFIG_KEYS = [(s, k) for s, table in _SECTIONS.items() for k in table]


@st.composite
def _config_dicts(draw):
    raw: dict = {}
    for section, key in draw(st.lists(st.sampled_from(_CONFIG_KEYS), max_size=4)):
        value = draw(_TOML_VALUES | st.just(_SECTIONS[section][key]))
        raw.setdefault(section, {})[key] = value
    if draw(st.booleans()):
        raw[draw(st.sampled_from([*_SECTIONS, "extra"]))] = draw(_TOML_VALUES)
    return raw


@_SETTINGS
@given(raw=_config_dicts())
def test_pipeline_config_loader_gives_a_config_or_a_config_error_naming_the_source(raw):
    try:
        config = config_from_dict(raw, source="ci/pipeline.toml")
    except ConfigError as e:
        assert "ci/pipeline.toml" in str(e)
        return
    assert isinstance(config, PipelineConfig)
    p = config.prune
    assert 0 <= p.initial_sparsity <= p.final_sparsity < 1
    assert p.begin_epoch < p.end_epoch <= p.epochs
    assert all(math.isfinite(v) for v in (config.train.learning_rate, p.learning_rate))


_WEIRD_TOKENS = ("nan", "-inf", "-1", "1e400", "9" * 30, "true", '"text"', "[1, 2]", "{a = 1}",
                 "1979-05-27", "0x10", "", "'''", "[" * 1500, '"\\u0000"', "= =")  # fmt: skip


@st.composite
def _toml_bytes(draw, valid_text: str) -> bytes:
    """Valid TOML with values swapped for odd tokens, junk lines and raw bytes inserted."""
    lines = valid_text.splitlines()
    for i in draw(st.lists(st.integers(0, len(lines) - 1), max_size=3)):
        if "=" in lines[i]:
            key = lines[i].split("=")[0]
            lines[i] = f"{key}= {draw(st.sampled_from(_WEIRD_TOKENS) | st.text(max_size=8))}"
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=12)))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


_PIPELINE_TEXT = (
    "[train]\nepochs = 2\nlearning_rate = 0.01\nseed = 3\n[prune]\nfinal_sparsity = 0.5\n"
    "end_epoch = 1\nepochs = 2\n[compress]\nenabled = true\nclusters = 4\n"
    "[select]\ntolerance_points = 5.0\n"
)


@_SETTINGS
@given(data=_toml_bytes(GOOD_TARGET) | st.binary(max_size=64))
def test_target_file_bytes_give_a_target_or_a_config_error_naming_the_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "board.toml"
        path.write_bytes(data)
        try:
            assert isinstance(load_target(str(path)), Target)
        except ConfigError as e:
            assert str(path) in str(e)


@_SETTINGS
@given(data=_toml_bytes(_PIPELINE_TEXT) | st.binary(max_size=64))
def test_pipeline_config_bytes_give_a_config_or_a_config_error_naming_the_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.toml"
        path.write_bytes(data)
        try:
            assert isinstance(load_config(path), PipelineConfig)
        except ConfigError as e:
            assert str(path) in str(e)


# --------------------------------------------------------------------------- data


def _arrays(**changes):
    arrays = {
        "x_train": np.random.default_rng(0).random((12, 8, 8, 1)).astype(np.float32),
        "y_train": np.arange(12) % 10,
        "x_test": np.random.default_rng(1).random((4, 8, 8, 1)).astype(np.float32),
        "y_test": np.arange(4),
    }
    return {k: v for k, v in (arrays | changes).items() if v is not None}


def _npy_with_declared_shape(shape: tuple[int, ...]) -> bytes:
    """An .npy whose header declares ``shape`` while holding three float32 values."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, np.float32))
    raw = buffer.getvalue()
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + header_len].decode().replace("(3,)", repr(shape)).rstrip()
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return raw[:8] + len(header).to_bytes(2, "little") + header.encode() + raw[10 + header_len :]


def _write_npz(path: Path, arrays: dict) -> None:
    np.savez(path, **arrays)


def _write_huge_header_npz(path: Path, arrays: dict) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value)
            raw = _npy_with_declared_shape((10**12,)) if name == "x_train" else buffer.getvalue()
            z.writestr(f"{name}.npy", raw)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"x_train": np.zeros((12, 8, 8, 1), np.complex64)}, "x_train must be a numeric array"),
        ({"x_train": np.array([["a"] * 64] * 12)}, "x_train must be a numeric array"),
        ({"y_train": np.array(list("abcdefghijkl"))}, "y_train must be 1-D integer class ids"),
        ({"x_test": np.full((4, 8, 8, 1), np.nan, np.float32)}, "x_test holds 256 NaN/inf"),
        ({"x_train": np.full((12, 8, 8, 1), 1e300)}, "x_train holds 768 NaN/inf"),
        ({"y_test": np.array([0.0, np.nan, 1.0, 2.0])}, "y_test holds 1 NaN/inf"),
        ({"x_test": np.zeros((0, 8, 8, 1)), "y_test": np.zeros(0, int)}, "x_test is empty"),
        ({"y_test": np.zeros(0, int)}, "y_test is empty"),
        ({"x_train": np.zeros((12, 0)), "x_test": np.zeros((4, 0))}, "samples hold no values"),
        ({"y_train": np.arange(11) % 10}, "x_train has 12 samples but y_train has 11"),
        ({"y_test": np.arange(5)}, "x_test has 4 samples but y_test has 5"),
        ({"y_train": np.array([10**12] * 12)}, "y_train holds class id 1000000000000"),
        ({"y_train": np.full(12, 2**63 + 5, np.uint64)}, "y_train holds class id 9223"),
        ({"x_train": np.array([None] * 12, dtype=object)}, "not a readable .npz"),
    ],
)
def test_bad_npz_is_a_one_line_error_naming_the_array(capsys, tmp_path, change, expected):
    path = tmp_path / "data.npz"
    _write_npz(path, _arrays(**change))
    out = tmp_path / "build"
    argv = ["model", "--target", "cortex-m4", "--data", path, "--out", out]
    _one_line_error(capsys, argv, path, expected)
    assert not out.exists()


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (_write_huge_header_npz, "an array is too large to load"),
        (lambda p, a: np.save(p.with_suffix(".npy"), a["x_train"]), "a single array (.npy)"),
        (lambda p, a: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "not a readable .npz"),
    ],
)
def test_npz_files_that_are_not_npz_archives_are_refused(capsys, tmp_path, write, expected):
    path = tmp_path / "data.npz"
    write(path, _arrays())
    if not path.exists():  # np.save added its own suffix
        path.with_suffix(".npy").rename(path)
    argv = ["model", "--target", "cortex-m4", "--data", path, "--out", tmp_path / "build"]
    _one_line_error(capsys, argv, path, expected)


# --------------------------------------------------------------------------- model files


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _keras_zip(path: Path, config_json: bytes, metadata: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", config_json)
        if metadata is not None:
            z.writestr("metadata.json", metadata)
    return path


def _h5_with_config(path: Path, value) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = value
    return path


_WRAPPER_WITH_LAMBDA = json.dumps(
    {
        "class_name": "RNN",
        "config": {
            "cell": {
                "class_name": "ResidualWrapper",
                "config": {"residual_fn": ["x"], "residual_fn_type": "lambda"},
            }
        },
    }  # fmt: skip
).encode()
_ACTIVATION_LAMBDA = json.dumps(
    {"class_name": "Dense", "config": {"activation": {"class_name": "__lambda__"}}}
).encode()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: _write(d / "m.keras", b"not a zip"), "not a Keras"),
        (lambda d: _keras_zip(d / "m.keras", b"[" * 100_000), "JSON nested too deeply"),
        (lambda d: _keras_zip(d / "m.keras", b"\xff\xfe{}"), "not a Keras .keras archive"),
        (lambda d: _keras_zip(d / "m.keras", b"{}", b"{not json"), "not a Keras .keras"),
        (lambda d: _write(d / "m.h5", b"\x89HDF\r\n\x1a\n"), "not an HDF5"),
        (lambda d: _h5_with_config(d / "m.h5", "{not json"), "model_config is not valid JSON"),
        (lambda d: _h5_with_config(d / "m.h5", np.arange(3)), "model_config holds ndarray"),
        (lambda d: _write(d / "m.tflite", b"TFL3"), "unknown model format"),
        (lambda d: (d / "saved").mkdir() or d / "saved", "not a SavedModel"),
        (lambda d: _keras_zip(d / "m.keras", _WRAPPER_WITH_LAMBDA), "residual_fn_type"),
        (lambda d: _keras_zip(d / "m.keras", _ACTIVATION_LAMBDA), "lambda(s) (__lambda__)"),
    ],
)
def test_files_that_are_not_usable_models_are_refused_before_training(
    capsys, tmp_path, make, expected
):
    path = make(tmp_path)
    out = tmp_path / "build"
    argv = ["model", "--target", "cortex-m4", "--model", path, "--out", out]
    _one_line_error(capsys, argv, path, expected)
    assert not out.exists()


def test_keras_model_given_to_report_is_not_a_tflite_flatbuffer(capsys, tmp_path):
    path = _keras_zip(tmp_path / "m.keras", b"{}")
    _one_line_error(capsys, ["report", path, "--target", "cortex-m4"], path, "not a TFLite")


def _model_with_side_effect_lambda(path: Path, marker: Path, outputs: int = 3) -> None:
    """A tf_keras model whose Lambda writes ``marker`` whenever its code runs."""
    from edge_prune.training._tf import keras

    # Stored as bytecode with its default argument; runs when the model is rebuilt on load.
    touch = keras.layers.Lambda(lambda t, p=str(marker): (open(p, "w").close(), t)[1],  # noqa: SIM115
                                name="touch")  # fmt: skip
    inputs = keras.Input((8, 8, 1))
    x = touch(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(outputs)(x)).save(path)
    marker.unlink()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_model_runs_no_code_without_opt_in_and_loads_with_it(capsys, tmp_path, suffix):
    path, marker, out = tmp_path / f"m{suffix}", tmp_path / "code-ran", tmp_path / "build"
    _model_with_side_effect_lambda(path, marker)
    argv = ["model", "--target", "cortex-m4", "--model", path, "--out", out]
    _one_line_error(capsys, argv, path, "Lambda layer(s) touch", "--allow-lambda")
    assert not marker.exists() and not out.exists()
    # With the opt-in the model loads (its code runs) and the run goes on to the next check,
    # after the first progress lines: the bundled digits have 10 classes, the model 3 outputs.
    code = main([str(a) for a in [*argv, "--allow-lambda"]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("edge-prune: error: digits: labels go up to 9")
    assert "has 3 outputs" in err
    assert marker.exists() and not out.exists()
