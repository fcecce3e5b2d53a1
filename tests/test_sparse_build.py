"""The sparse kernels in the build: the int8-pruned candidate, firmware files, report checks,
the prune.block config key and tfmot's block pruning."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA_DIR
from test_sparse_host import _corrupt_index, pruned_in_place

from edge_prune.cli import main
from edge_prune.config import ConfigError, PipelineConfig, config_from_dict
from edge_prune.errors import ToolchainError
from edge_prune.measurement.firmware import OPS_HEADER, firmware_sources
from edge_prune.measurement.sparse import native
from edge_prune.measurement.sparse.rewrite import rewrite
from edge_prune.stages import candidates
from edge_prune.stages.state import ArtifactName


def _pruned_lenet(sparsity=0.9, block=1) -> bytes:
    return pruned_in_place((DATA_DIR / "mlp_int8_lenet.tflite").read_bytes(), sparsity, block)


def test_int8_pruned_candidate_reproduces_int8(monkeypatch):
    monkeypatch.setattr(native, "host_library", lambda tree=None: "lib.so")
    (artifact,) = candidates._sparse_kernel_artifacts(_pruned_lenet(), PipelineConfig())
    assert artifact.name == ArtifactName.INT8_PRUNED == "int8-pruned"
    assert artifact.source == ArtifactName.INT8  # TFLM outputs must equal int8's exactly
    assert artifact.scored_as is None
    assert "FULLY_CONNECTED 100x300" in artifact.description
    assert b"EDGE_PRUNE_SPARSE_FC" in artifact.tflite_bytes


def test_without_compiler_the_candidate_is_scored_through_int8(monkeypatch):
    def missing(tree=None):
        raise ToolchainError("g++ not found")

    monkeypatch.setattr(native, "host_library", missing)
    (artifact,) = candidates._sparse_kernel_artifacts(_pruned_lenet(), PipelineConfig())
    assert artifact.scored_as == ArtifactName.INT8
    assert "scored and arena-measured through int8" in artifact.description
    assert "g++ not found" in artifact.scored_note


def test_no_candidate_when_no_layer_pays():
    dense = (DATA_DIR / "cnn_int8.tflite").read_bytes()
    assert candidates._sparse_kernel_artifacts(dense, PipelineConfig()) == []


def test_firmware_registers_and_ships_the_kernels():
    sparse = rewrite(_pruned_lenet()).model
    files = firmware_sources(sparse, "lenet", arena_bytes=5000).files
    for name in (*native.HEADERS, *native.SOURCES):
        assert files[name] == (native.KERNELS_DIR / name).read_text()
    ops = files[OPS_HEADER]
    assert '#include "edge_prune_sparse_ops.h"' in ops
    assert (
        'resolver.AddCustom("EDGE_PRUNE_SPARSE_FC", edge_prune::Register_EDGE_PRUNE_SPARSE_FC())'
        in ops
    )
    assert "NOT REGISTERED" not in ops
    assert "edge_prune_sparse_ops.cc" in files["FIRMWARE.md"]


def test_dense_firmware_has_no_kernel_sources():
    files = firmware_sources(_pruned_lenet(), "lenet", arena_bytes=5000).files
    assert not any(name.startswith("edge_prune_sparse") for name in files)


def test_report_refuses_a_malformed_sparse_model_with_exit_2(tmp_path, capsys):
    bad = _corrupt_index(rewrite(_pruned_lenet()).model, 255)
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad)
    assert main(["report", str(path), "--target", "cortex-m4"]) == 2
    err = capsys.readouterr().err
    assert "bad.tflite" in err and "EDGE_PRUNE_SPARSE_FC" in err
    assert len(err.strip().splitlines()) == 1


def test_prune_block_config_key():
    assert PipelineConfig().prune.block == (1, 4)
    assert config_from_dict({"prune": {"block": [1, 4]}}).prune.block == (1, 4)
    with pytest.raises(ConfigError, match="prune.block"):
        config_from_dict({"prune": {"block": [1, 2]}})
    with pytest.raises(ConfigError, match="prune.block"):
        config_from_dict({"prune": {"block": 4}})


def test_tfmot_prunes_blocks_of_four_input_channels():
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune, strip
    from edge_prune.training.schedule import ConstantSparsity

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    wrapped = prune(model, ConstantSparsity(0.5, begin_step=0, frequency=1), block=(1, 4))
    wrapped.model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 16), dtype=np.float32)
    wrapped.fit(x, np.zeros((8, 8)), epochs=1, verbose=0)
    kernel = strip(wrapped).layers[-1].get_weights()[0]  # Keras [in, out]
    blocks = kernel.T.reshape(8, 4, 4)  # TFLite [out, in/4, 4]
    zero = np.all(blocks == 0, axis=2)
    assert np.mean(zero) == pytest.approx(0.5, abs=0.1)
    assert np.all(np.any(blocks != 0, axis=2) == ~zero)  # every block all zero or kept


def test_kernels_of_one_block_or_one_output_are_pruned_unstructured():
    """tfmot's block pooling squeezes a dimension of size 1 away and fails on it: a Dense with
    4 inputs (one block) or 1 output trains unstructured instead."""
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune, strip
    from edge_prune.training.schedule import ConstantSparsity

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, name="one_block"), keras.layers.Dense(1)]
    )
    wrapped = prune(model, ConstantSparsity(0.5, begin_step=0, frequency=1), block=(1, 4))
    wrapped.model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 4), dtype=np.float32)
    wrapped.fit(x, np.zeros((8, 1)), epochs=1, verbose=0)
    kernel = strip(wrapped).get_layer("one_block").get_weights()[0]
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.1)


def test_pruning_in_stages_keeps_blocks_of_four_at_every_stage():
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune_in_stages

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    staged = prune_in_stages(
        model, (0.5, 0.75), loss="mse", x=x, y=np.zeros((64, 8)), batch_size=8,
        prune_epochs=1, fine_tune_epochs=1, block=(1, 4),
    )  # fmt: skip
    blocks = staged.model.layers[-1].get_weights()[0].T.reshape(8, 4, 4)
    zero = np.all(blocks == 0, axis=2)
    assert np.mean(zero) == pytest.approx(0.75, abs=0.1)
    assert np.all(np.any(blocks != 0, axis=2) == ~zero)


@pytest.mark.parametrize("kind", ["conv2d", "pointwise", "conv1d"])
def test_kxk_and_1d_convolutions_are_pruned_in_blocks_of_four_input_channels(kind):
    """tfmot pools blocks over 2-D kernels only: a 3x3 Conv2D and a Conv1D are pruned as a 2-D
    [kh * kw * in, out] kernel; stripped, they are plain Keras layers whose TFLite-ordered filter
    [out, kh, kw, in] has whole blocks of 4 input channels zero or kept, at the asked sparsity."""
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune, strip
    from edge_prune.training.schedule import ConstantSparsity

    keras.utils.set_random_seed(0)
    if kind == "conv2d":
        shape, layer = (6, 6, 8), keras.layers.Conv2D(6, 3, padding="same", name="c")
    elif kind == "pointwise":
        shape, layer = (6, 6, 8), keras.layers.Conv2D(6, 1, name="c")
    else:
        shape, layer = (10, 8), keras.layers.Conv1D(6, 3, name="c")
    model = keras.Sequential([keras.Input(shape), layer, keras.layers.Flatten()])
    x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
    wrapped = prune(model, ConstantSparsity(0.5, begin_step=0, frequency=1), block=(1, 4))
    wrapped.model.compile("sgd", "mse")
    wrapped.fit(x, np.zeros((8, *model.output_shape[1:])), epochs=1, verbose=0)
    stripped = strip(wrapped)
    conv = stripped.get_layer("c")
    assert type(conv) is type(layer)
    kernel = conv.get_weights()[0]  # Keras [kh, (kw,) in, out]
    blocks = np.moveaxis(kernel, -1, 0).reshape(6, -1, 4)  # TFLite [out, kh * kw * in/4, 4]
    zero = np.all(blocks == 0, axis=2)
    assert np.mean(zero) == pytest.approx(0.5, abs=0.1)
    assert np.all(np.any(blocks != 0, axis=2) == ~zero)
    np.testing.assert_allclose(stripped(x).numpy(), wrapped.model(x).numpy(), atol=1e-6)
    assert model.get_layer("c").get_weights()[0].shape == kernel.shape  # original untouched


def test_runtime_flash_counts_the_sparse_kernels_from_the_measured_table():
    from edge_prune.measurement import footprint, runtime_tables

    table = runtime_tables.load_table("cortex-m4+fp", "cmsis-nn", "default")
    ops = ["CUSTOM:EDGE_PRUNE_SPARSE_FC", "CUSTOM:EDGE_PRUNE_SPARSE_CONV", "RESHAPE"]
    figure = footprint._table_runtime(table, ops)
    assert figure.total_bytes == table.runtime_bytes(ops)[0]
    sparse = figure.total_bytes - table.runtime_bytes(["RESHAPE"])[0]
    # both kernels and what only they pull in; the 8,766 B constant was measured the same way
    assert abs(sparse - footprint.SPARSE_KERNELS_BYTES) < 1_000
    assert figure.measured and figure.bound_rule == ""
    assert figure.defaulted_ops == ()


def test_instruction_estimate_covers_the_sparse_fc():
    from edge_prune.measurement.instructions import estimate
    from edge_prune.measurement.targets import load_target

    sparse = rewrite(_pruned_lenet(0.9, 4), blocks=(4,)).model
    result = estimate(sparse, load_target("cortex-m4"))
    assert result.not_estimated == ()
    assert set(result.per_key) == {"INVOKE", "EDGE_PRUNE_SPARSE_FC:int8:block4"}


# ------------------------------------------------------------------ INT4 filters (int4 ops)


def _pruned_lenet_int4(sparsity=0.9, block=1) -> bytes:
    from test_sparse_host import int4_filters

    return int4_filters(_pruned_lenet(sparsity, block))


def test_int4_pruned_candidate_reproduces_int4_weights(monkeypatch):
    monkeypatch.setattr(native, "host_library", lambda tree=None: "lib.so")
    (artifact,) = candidates._sparse_kernel_artifacts(
        _pruned_lenet_int4(),
        PipelineConfig(),
        name=ArtifactName.INT4_PRUNED,
        source=ArtifactName.INT4_WEIGHTS,
        file_name="model_int4_pruned.tflite",
        what="pruned, int8 activations, int4 weights",
    )
    assert artifact.name == ArtifactName.INT4_PRUNED == "int4-pruned"
    assert artifact.source == ArtifactName.INT4_WEIGHTS
    assert artifact.scored_as is None
    assert b"EDGE_PRUNE_SPARSE_FC_INT4" in artifact.tflite_bytes
    assert "int4 weights, sparse kernels for FULLY_CONNECTED 300x64" in artifact.description
    encodings = {layer["encoding"] for layer in artifact.sparse_plan["layers"]}
    assert encodings <= {"sparse int4, unstructured", "dense int4"}


def test_firmware_ships_the_int4_kernels_only_for_int4_ops():
    int8 = firmware_sources(rewrite(_pruned_lenet()).model, "lenet", arena_bytes=5000).files
    assert not set(native.INT4_SOURCES + native.INT4_HEADERS) & set(int8)
    assert "INT4" not in int8[OPS_HEADER]
    files = firmware_sources(rewrite(_pruned_lenet_int4()).model, "lenet", arena_bytes=5000).files
    for name in (*native.HEADERS, *native.SOURCES, *native.INT4_HEADERS, *native.INT4_SOURCES):
        assert files[name] == (native.KERNELS_DIR / name).read_text()
    ops = files[OPS_HEADER]
    assert '#include "edge_prune_sparse_int4_ops.h"' in ops
    assert (
        'resolver.AddCustom("EDGE_PRUNE_SPARSE_FC_INT4", '
        "edge_prune::Register_EDGE_PRUNE_SPARSE_FC_INT4())" in ops
    )
    assert "edge_prune_sparse_int4.cc" in ops and "edge_prune_sparse_int4_ops.cc" in ops
    assert "`EDGE_PRUNE_SPARSE_FC_INT4`" in files["FIRMWARE.md"]
    assert "`edge_prune_sparse_int4_ops.cc`" in files["FIRMWARE.md"]


def test_runtime_flash_adds_the_int4_kernels_constant_when_the_table_lacks_them():
    from edge_prune.measurement import footprint, runtime_tables

    table = runtime_tables.load_table("cortex-m4+fp", "cmsis-nn", "default")
    assert "CUSTOM:EDGE_PRUNE_SPARSE_FC_INT4" not in table.ops
    alone = footprint._table_runtime(table, ["CUSTOM:EDGE_PRUNE_SPARSE_FC_INT4", "RESHAPE"])
    base = table.runtime_bytes(["RESHAPE"])[0]
    assert alone.total_bytes == base + footprint.SPARSE_INT4_KERNELS_BYTES
    assert not alone.measured and "int4 sparse kernels" in alone.bound_rule
    both = ["CUSTOM:EDGE_PRUNE_SPARSE_FC", "CUSTOM:EDGE_PRUNE_SPARSE_FC_INT4"]
    mixed = footprint._table_runtime(table, both)
    int8 = table.runtime_bytes(["CUSTOM:EDGE_PRUNE_SPARSE_FC"])[0]
    assert mixed.total_bytes == int8 + footprint.SPARSE_INT4_BESIDE_INT8_BYTES


@pytest.mark.parametrize("block", [1, 4])
def test_instruction_estimate_covers_the_int4_sparse_fc(block):
    from edge_prune.measurement.instructions import estimate
    from edge_prune.measurement.targets import load_target

    sparse = rewrite(_pruned_lenet_int4(0.9, block), blocks=(block,), force=True).model
    result = estimate(sparse, load_target("cortex-m4"))
    assert result.not_estimated == ()
    assert set(result.per_key) == {"INVOKE", f"EDGE_PRUNE_SPARSE_FC:int4:block{block}"}


def test_report_refuses_a_malformed_int4_sparse_model_with_exit_2(tmp_path, capsys):
    bad = _corrupt_index(rewrite(_pruned_lenet_int4(), force=True).model, 255)
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad)
    assert main(["report", str(path), "--target", "cortex-m4"]) == 2
    err = capsys.readouterr().err
    assert "bad.tflite" in err and "EDGE_PRUNE_SPARSE_FC_INT4" in err
