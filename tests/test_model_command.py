"""`edge-prune model` end to end on the bundled digits, and its refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from processes import run_cli

from edge_prune.cli import main

FAST = """
[train]
epochs = 3
[prune]
final_sparsity = 0.75
begin_epoch = 0
end_epoch = 2
epochs = 3
frequency = 5
[structured]
ratio = 0.5
epochs = 1
[compress]
clusters = 8
epochs = 1
[select]
tolerance_points = 100.0
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    config = root / "fast.toml"
    config.write_text(FAST)
    code = main(
        ["model", "--target", "cortex-m4", "--config", str(config), "--out", str(root / "build")]
    )
    return code, root / "build" / "cortex-m4"


def test_default_model_builds_every_artifact_and_fits_cortex_m4(built):
    code, out = built
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "model.tflite",
            "model_float32.tflite",
            "model_int8.tflite",
            "model_sparse.tflite",
            "model_densify_tflite_only.tflite",
            "model_clustered.tflite",
            "model_compressed.tflite",
            "model_clustered_per_tensor.tflite",
            "model_compressed_per_tensor.tflite",
            "model_int4.tflite",
            "model_int4_pruned.tflite",
            "model_pruned.tflite",
            "model_tensor_names.json",
            "model_data.cc",
            "model_data.h",
            "model_ops.h",
            "FIRMWARE.md",
            "report.md",
            "report.json",
            "heldout.npz",
            # the deployed int8-pruned model runs on edge-prune's sparse kernels
            "edge_prune_sparse.cc",
            "edge_prune_sparse.h",
            "edge_prune_sparse_common.h",
            "edge_prune_sparse_ops.cc",
            "edge_prune_sparse_ops.h",
            "edge_prune_sparse_ops_common.h",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    assert report["deployable"]["artifact"] == "int8-pruned"


def test_build_dir_holds_the_held_out_samples_the_device_command_runs(built):
    _, out = built
    with np.load(out / "heldout.npz") as saved:
        x, y = saved["x_test"], saved["y_test"]
    assert x.dtype == np.float32 and 0 < len(x) <= 64 and len(y) == len(x)
    assert x.shape[1:] == (8, 8, 1)


def test_report_json_records_accuracy_sparsity_footprint_and_versions(built):
    _, out = built
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "cortex-m4" and report["fits"] is True
    assert {"dense_keras", "pruned_keras", "float32-dense_tflm", "int8_tflm"} <= set(
        report["accuracy"]
    )
    assert report["accuracy"]["int8_tflm"] > 0.5  # trained on digits, evaluated on TFLM
    assert report["sparsity"]["sparsity"] > 0.6
    by_name = {a["name"]: a for a in report["artifacts"]}
    assert by_name["int8-sparse"]["runs_on_tflm"] is True  # TFLM DECODE encodings
    assert by_name["int8-densify"]["runs_on_tflm"] is False
    assert by_name["int8-densify"]["missing_op"] == "DENSIFY"
    assert by_name[report["deployable"]["artifact"]]["runs_on_tflm"] is True
    assert {"tensorflow", "tensorflow-model-optimization", "tflite-micro"} <= set(
        report["versions"]
    )


def test_deployed_model_is_the_chosen_artifact_and_its_c_array(built):
    _, out = built
    report = json.loads((out / "report.json").read_text())
    chosen = next(a for a in report["artifacts"] if a["name"] == report["deployable"]["artifact"])
    model = (out / "model.tflite").read_bytes()
    assert model == (out / chosen["file"]).read_bytes()
    source = (out / "model_data.cc").read_text()
    assert f"g_digits_cnn_model_data_len = {len(model)};" in source
    assert "alignas(16)" in source


def test_sparse_artifact_is_smaller_than_dense_int8(built):
    _, out = built
    assert (out / "model_sparse.tflite").stat().st_size < (out / "model_int8.tflite").stat().st_size


def test_report_markdown_says_what_it_counts(built):
    _, out = built
    text = (out / "report.md").read_text()
    assert "model_sparse.tflite" in text and "DENSIFY" in text
    assert "Weight encodings of model_compressed" in text and "(not deployed)" in text
    assert "runtime code B" in text and "instructions" in text
    assert "Sparsity" in text and "estimate" in text
    assert "Cost per inference" in text and "Channels kept (L1 norm): conv1 8/16" in text


def test_unknown_target_is_refused_before_training_and_writes_nothing(tmp_path):
    result = run_cli("model", "--target", "cortex-m5", "--out", str(tmp_path / "build"))
    assert result.returncode == 2
    assert "cortex-m55" in result.stderr or "cortex-m4" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "build").exists()


def test_data_with_missing_array_is_refused_with_exit_2(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 8, 8, 1)), y_train=np.zeros(4))
    result = run_cli(
        "model", "--target", "cortex-m4", "--data", str(data), "--out", str(tmp_path / "build")
    )
    assert result.returncode == 2
    assert "missing array(s) x_test, y_test" in result.stderr
    assert not (tmp_path / "build").exists()


def test_bad_config_is_refused_with_exit_2(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[prune]\nfinal_sparsity = 2\n")
    result = run_cli("model", "--target", "cortex-m4", "--config", str(config))
    assert result.returncode == 2
    assert "prune.final_sparsity" in result.stderr


def test_compressed_artifacts_reproduce_their_source_exactly_on_tflm(built):
    _, out = built
    report = json.loads((out / "report.json").read_text())
    exact = [a for a in report["artifacts"] if a["must_equal_outputs_of"]]
    for a in exact:
        assert a["runs_on_tflm"] and a["problem"] is None, a["name"]
    pruned = {a["name"]: a["must_equal_outputs_of"] for a in exact if a["name"].endswith("-pruned")}
    assert pruned.get("int8-pruned") == "int8"
    assert pruned.get("int4-pruned", "int4-weights") == "int4-weights"
    compressed = [a for a in exact if a["name"] not in pruned]
    assert {a["name"] for a in compressed} >= {"int8-sparse", "int8-clustered-compressed"}
    for a in compressed:
        assert a["runs_on_tflm"] and a["problem"] is None, a["name"]
        assert a["compression"]["size_bytes"] > 0
        cost = a["cost"]
        assert cost["total_flash_bytes"] == cost["flatbuffer_bytes"] + cost["runtime_code_bytes"]
        decode_keys = [k for k in cost["instructions"]["per_op"] if k.startswith("DECODE:")]
        assert decode_keys, "the DECODE operators' time is in the candidate's instructions"


def test_decoded_weights_that_would_overflow_the_ram_stay_raw_and_the_report_says_so(tmp_path):
    from conftest import VALID_TARGET, toml_text

    # Room for the uncompressed model's arena (about 6 KB) but not for a decoded fc1 (8 KB).
    target = tmp_path / "tight_ram.toml"
    target.write_text(toml_text({**VALID_TARGET, "ram_bytes": 9_000, "reserved_ram_bytes": 0}))
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    out = tmp_path / "build"
    code = main(["model", "--target", str(target), "--config", str(config), "--out", str(out)])

    report = json.loads((out / "tight_ram" / "report.json").read_text())
    assert code == 0 and report["fits"]
    refitted = [
        a for a in report["artifacts"] if (a.get("compression") or {}).get("arena_limit_bytes")
    ]
    assert refitted, "no artifact was compressed again within the RAM left"
    for a in refitted:
        assert a["compression"]["arena_limit_bytes"] == 9_000
        assert a["cost"]["arena_bytes"] <= 9_000  # the verdict's arena for the target
        reasons = [t["reason"] for t in a["compression"]["tensors"]]
        assert any(r.startswith("left raw: decoding would push the arena") for r in reasons)


def test_one_arena_figure_in_verdict_line_reports_and_both_model_data_h(built, tmp_path):
    """The deployed model's arena on cortex-m4 (CMSIS-NN kernels): the verdict line, the
    text/markdown/JSON reports, `model`'s model_data.h and `report --emit-c`'s all show it."""
    _, out = built
    report = json.loads((out / "report.json").read_text())
    ram = report["footprint"]["targets"][0]["ram"]
    arena = ram["arena_bytes"]
    assert arena != ram["arena_inputs"]["host_64bit_bytes"]
    markdown = (out / "report.md").read_text()
    verdict_line = next(line for line in markdown.splitlines() if line.startswith("Verdict:"))
    assert f"arena {arena:,} B" in verdict_line
    assert f"arena on cortex-m4: {arena:,} B" in markdown
    assert f"TensorArenaSize = {arena};" in (out / "model_data.h").read_text()
    emitted = tmp_path / "emit"
    result = run_cli("report", str(out / "model.tflite"), "--target", "cortex-m4",
                  "--emit-c", str(emitted))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"arena on cortex-m4: {arena:,} B" in result.stdout
    assert f"TensorArenaSize = {arena};" in (emitted / "model_data.h").read_text()


def test_report_shows_per_layer_encodings_and_the_plans_compared(built):
    _, out = built
    report = json.loads((out / "report.json").read_text())
    pruned = next(a for a in report["artifacts"] if a["name"] == "int8-pruned")
    layers = pruned["sparse_plan"]["layers"]
    assert {r["op"] for r in layers} == {"CONV_2D", "FULLY_CONNECTED"}
    assert all(r["encoding"].startswith("sparse") for r in layers)
    taken = next(p for p in pruned["sparse_plan"]["plans"] if p["taken"])
    assert taken["flatbuffer_bytes"] == pruned["cost"]["flatbuffer_bytes"]
    assert taken["runtime_code_bytes"] == pruned["cost"]["runtime_code_bytes"]
    text = (out / "report.md").read_text()
    assert "## Layers of model.tflite on edge-prune's sparse kernels" in text
    assert "| CONV_2D 16x3x3x8 |" in text
