"""The one-run TFLM child: arena figure, outputs, 32-bit estimate, typed errors, timeout parser.

The arena figure of :func:`edge_prune.measurement.tflm.execute` comes from one recorded run; the
oracle here is the old search: the smallest ``arena_size`` with which the model allocates and runs,
found by bisection with one child per probe (TFLM can crash on an arena just too small).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_prune.errors import ConfigError, TFLMError, TFLMPrepareError
from edge_prune.measurement import tflm
from tests.conftest import DATA_DIR

FIXTURES = ("cnn_int8", "mlp_int8_lenet", "mlp_float")


def _works(model: bytes, arena_bytes: int) -> bool:
    try:
        tflm.execute(model, arena_bytes=arena_bytes, timeout_s=60)
    except TFLMError:
        return False
    return True


def _smallest_working_arena(model: bytes, failing: int, working: int) -> int:
    """Bisection oracle: smallest size in (failing, working] that allocates and runs."""
    while working - failing > 1:
        middle = (failing + working) // 2
        if _works(model, middle):
            working = middle
        else:
            failing = middle
    return working


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, bytes]:
    """A tiny float MLP, its int8 version, a float16-weight version (DEQUANTIZE), and a deep
    narrow MLP (many tensors, small activations: planning needs more than the recorded total)."""
    from edge_prune.training._tf import keras, tf

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)]
    )
    samples = np.random.default_rng(3).normal(size=(8, 6)).astype(np.float32)

    def converter():
        return tf.lite.TFLiteConverter.from_keras_model(model)

    int8 = converter()
    int8.optimizations = [tf.lite.Optimize.DEFAULT]
    int8.representative_dataset = lambda: ([s[None]] for s in samples)
    int8.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    keras.utils.set_random_seed(4)
    deep = keras.Sequential(
        [keras.Input((8,)), *(keras.layers.Dense(8, activation="relu") for _ in range(16))]
    )
    float16 = converter()
    float16.optimizations = [tf.lite.Optimize.DEFAULT]
    float16.target_spec.supported_types = [tf.float16]
    return {
        "tiny_float": converter().convert(),
        "tiny_int8": int8.convert(),
        "tiny_float16": float16.convert(),
        "tiny_deep": tf.lite.TFLiteConverter.from_keras_model(deep).convert(),
    }


def _model(name: str, tiny_models: dict[str, bytes]) -> bytes:
    if name in tiny_models:
        return tiny_models[name]
    return (DATA_DIR / f"{name}.tflite").read_bytes()


@pytest.mark.parametrize("name", [*FIXTURES, "tiny_float", "tiny_int8", "tiny_deep"])
def test_one_run_arena_is_an_upper_bound_that_works(name, tiny_models):
    model = _model(name, tiny_models)
    arena = tflm.measure_arena(model)
    assert arena.recorded_head_bytes + arena.recorded_tail_bytes == arena.recorded_total_bytes
    assert _works(model, arena.arena_bytes)  # exactly that size allocates and runs
    smallest = _smallest_working_arena(model, arena.recorded_total_bytes - 1, arena.arena_bytes)
    assert smallest <= arena.arena_bytes
    # close to the oracle: within a planning margin, not a power of two above it
    assert arena.arena_bytes - smallest <= 0.25 * smallest + 256


def test_planning_can_need_more_than_the_recorded_total_and_the_figure_covers_it(tiny_models):
    model = tiny_models["tiny_deep"]
    arena = tflm.measure_arena(model)
    assert not _works(model, arena.recorded_total_bytes + 256)
    assert _works(model, arena.arena_bytes)


def test_execute_runs_every_sample_in_the_same_child_as_the_arena(mlp_float_path):
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    result = tflm.execute(mlp_float_path, x)
    assert result.outputs.shape == (5, 1, 4)
    assert np.allclose(result.outputs.sum(axis=-1), 1.0, atol=1e-5)  # softmax rows
    assert result.arena == tflm.measure_arena(mlp_float_path)
    assert result.inputs[0]["shape"] == [1, 16]
    assert np.array_equal(result.outputs, tflm.run(mlp_float_path, x))


def test_a_crash_while_checking_the_arena_figure_is_retried_with_a_larger_margin(
    cnn_int8_path, monkeypatch
):
    from edge_prune.measurement._tflm_child import ABORT_VERIFY_ENV

    plain = tflm.measure_arena(cnn_int8_path)
    monkeypatch.setenv(ABORT_VERIFY_ENV, "1")
    retried = tflm.measure_arena(cnn_int8_path)
    assert retried.arena_bytes > plain.arena_bytes
    assert retried.recorded_total_bytes == plain.recorded_total_bytes


def test_no_samples_means_one_all_zero_inference_and_no_outputs(cnn_int8_path):
    result = tflm.execute(cnn_int8_path)
    assert result.outputs is None
    assert result.arena.arena_bytes > 0


def test_device_tail_counts_32_bit_structs_measured_against_tflm(cnn_int8_path):
    arena = tflm.measure_arena(cnn_int8_path)
    sizes = tflm.struct_sizes()
    by_name = {c.name: c for c in arena.categories}
    eval_tensors = by_name["TfLiteEvalTensor data"]
    # the host sizes in the table are what this host's TFLM records per allocation
    assert eval_tensors.requested_bytes == sizes.host["TfLiteEvalTensor"] * eval_tensors.count
    nodes = by_name["NodeAndRegistration struct"]
    assert nodes.requested_bytes == sizes.host["NodeAndRegistration"] * nodes.count
    counts = arena.counts
    assert (counts.inputs, counts.outputs, counts.subgraphs) == (1, 1, 1)
    nodes_per_op = dict(counts.op_nodes)
    assert sum(nodes_per_op.values()) == nodes.count
    assert sizes.kernel_saving("CONV_2D") == 16  # OpDataConv 80 -> 56 B, 16-aligned buffers
    expected_saving = (
        sizes.saving("TfLiteEvalTensor") * eval_tensors.count
        + sizes.saving("NodeAndRegistration") * nodes.count
        + sizes.saving("TfLiteTensor") * by_name["Persistent TfLiteTensor data"].count
        + sizes.saving("TfLiteAffineQuantization")
        * (by_name["Persistent TfLiteTensor quantization data"].count // 2)
        + sum(n * sizes.kernel_saving(op) for op, n in nodes_per_op.items())
        + tflm._framework_saving(1)
        + 2 * sizes.saving("pointer")
    )
    assert arena.recorded_tail_bytes - arena.device_tail_bytes == expected_saving
    assert arena.recorded_head_bytes < arena.device_total_bytes < arena.arena_bytes
    assert arena.verdict_bytes == arena.device_total_bytes
    assert arena.to_dict()["verdict_bytes"] == arena.verdict_bytes


def test_float16_weights_fail_to_prepare_with_a_typed_error_naming_the_op(tiny_models):
    try:
        tflm.measure_arena(tiny_models["tiny_float16"], label="f16.tflite")
    except TFLMPrepareError as e:
        assert e.op == "DEQUANTIZE"
        assert str(e).startswith("f16.tflite: TFLM could not prepare operator DEQUANTIZE")
    else:  # this TFLM build runs float16 DEQUANTIZE: then the outputs must be right
        x = np.ones((1, 6), np.float32)
        plain = tflm.run(tiny_models["tiny_float"], x)
        assert np.allclose(tflm.run(tiny_models["tiny_float16"], x), plain, atol=1e-2)


def test_missing_op_and_timeout_keep_their_types_and_are_importable_from_tflm(
    sparse_float_path, mlp_float_path
):
    from edge_prune import errors

    assert tflm.MissingOpError is errors.MissingOpError
    assert tflm.TFLMTimeoutError is errors.TFLMTimeoutError
    with pytest.raises(tflm.MissingOpError, match="DENSIFY"):
        tflm.execute(sparse_float_path)
    with pytest.raises(tflm.TFLMTimeoutError, match="0.01 s"):
        tflm.execute(mlp_float_path, timeout_s=0.01)


def test_a_custom_op_without_a_kernel_is_named_by_its_custom_code(ethos_u_path):
    with pytest.raises(tflm.MissingOpError) as raised:
        tflm.measure_arena(ethos_u_path, label="ethos_u.tflite")
    assert raised.value.op == "CUSTOM:ethos-u"
    message = str(raised.value)
    assert message.startswith(
        "ethos_u.tflite: does not run on TFLM: no kernel for custom op 'ethos-u' "
        "(CUSTOM:ethos-u): TFLM's host interpreter has none for it"
    )
    assert "\n" not in message


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1", "", "ten", "1e999"])
def test_parse_timeout_rejects_what_is_not_a_finite_positive_number(text):
    with pytest.raises(ConfigError, match="--timeout: expected") as e:
        tflm.parse_timeout(text)
    assert "\n" not in str(e.value)


def test_parse_timeout_accepts_positive_seconds():
    assert tflm.parse_timeout("2.5") == 2.5
    assert tflm.parse_timeout(" 30 ") == 30.0


def test_a_kernel_that_fails_to_prepare_in_a_too_small_arena_gets_a_bigger_one():
    # A trained, 90%-pruned 64-300-100-10 int8 MLP (per-channel, made like the fixture
    # mlp_int8_lenet.tflite but trained): at the first arena candidate its FULLY_CONNECTED
    # kernel cannot get its persistent buffers and TFLM reports a failed prepare, which is the
    # size's fault, not the model's: the model allocated with a larger arena first.
    path = DATA_DIR / "mlp_int8_lenet_trained.tflite"
    arena = tflm.measure_arena(path)
    assert arena.arena_bytes > arena.recorded_total_bytes
    x = np.zeros((1, 64), dtype=np.int8)
    assert tflm.run(path, x, arena_bytes=arena.arena_bytes).shape[0] == 1
