"""The target catalogue: shipped files load, bad files are rejected naming the file and key."""

from __future__ import annotations

import pytest

from edge_prune.errors import ConfigError, TargetNotFoundError
from edge_prune.measurement.targets import TARGETS_DIR_ENV, list_targets, load_target

REQUIRED_TARGETS = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55",
                    "esp32-s3", "nrf52810", "samd21")  # fmt: skip


def test_catalogue_ships_the_required_targets():
    assert set(REQUIRED_TARGETS) <= set(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_every_shipped_target_loads_with_room_left_for_a_model(name):
    target = load_target(name)
    assert target.name == name
    assert target.clock_hz > 0
    assert target.available_flash_bytes > 0
    assert target.available_ram_bytes > 0
    assert target.source


def test_cortex_m4_is_the_nano_33_ble_with_measured_throughput():
    target = load_target("cortex-m4")
    assert (target.flash_bytes, target.ram_bytes, target.clock_hz) == (1_048_576, 262_144, 64e6)
    assert target.reserved_flash_bytes == 85 * 1024
    assert target.throughput.macs_per_cycle["CONV_2D"] == pytest.approx(0.1899)
    assert target.throughput.us_per_call["SOFTMAX"] == pytest.approx(85.0)


def test_esp32_s3_throughput_says_it_was_measured_on_an_esp32_not_an_s3():
    throughput = load_target("esp32-s3").throughput
    assert throughput.macs_per_cycle["FULLY_CONNECTED"] == pytest.approx(0.0223)
    assert "not measured on ESP32-S3" in throughput.source


def test_targets_without_throughput_table_have_none():
    assert load_target("cortex-m7").throughput is None


def test_target_loads_from_a_path_anywhere(target_file):
    path = target_file("my-board")
    target = load_target(str(path))
    assert target.name == "my-board"
    assert target.available_ram_bytes == 262_144 - 32_768


def test_env_var_points_the_catalogue_elsewhere(target_file, monkeypatch):
    path = target_file("only-board")
    monkeypatch.setenv(TARGETS_DIR_ENV, str(path.parent))
    assert list_targets() == ["only-board"]
    assert load_target("only-board").part == "TEST-PART"


def test_unknown_target_suggests_close_names_and_lists_the_rest():
    with pytest.raises(TargetNotFoundError, match="did you mean cortex-m4") as e:
        load_target("cortex-m44")
    assert "available targets: cortex-m0plus" in str(e.value)
    assert "esp32-s3" in str(e.value)


def test_missing_target_file_path_is_named(tmp_path):
    with pytest.raises(TargetNotFoundError, match="nowhere.toml: target file not found"):
        load_target(str(tmp_path / "nowhere.toml"))


@pytest.mark.parametrize(
    ("drop", "changes", "message"),
    [
        (("ram_bytes",), {}, "missing key 'ram_bytes'"),
        ((), {"flash_kb": 1024}, "unknown key 'flash_kb'"),
        ((), {"flash_bytes": -1}, "key 'flash_bytes' must be non-negative, got -1"),
        ((), {"ram_bytes": 256.5}, "key 'ram_bytes' must be a non-negative integer"),
        ((), {"ram_bytes": "256 KB"}, "key 'ram_bytes' must be a non-negative integer"),
        ((), {"reserved_ram_bytes": 300_000}, "'reserved_ram_bytes' .* is larger than"),
        ((), {"part": 5}, "key 'part' must be a non-empty string"),
    ],
)
def test_bad_target_file_is_rejected_naming_file_and_key(target_file, drop, changes, message):
    path = target_file("bad", drop=drop, **changes)
    with pytest.raises(ConfigError, match=message) as e:
        load_target(str(path))
    assert str(path) in str(e.value)


def test_unknown_key_suggests_the_right_one(target_file):
    with pytest.raises(ConfigError, match="did you mean 'flash_bytes'"):
        load_target(str(target_file("typo", drop=("flash_bytes",), flash_byte=1)))


def test_toml_syntax_error_is_a_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('part = "x\n')
    with pytest.raises(ConfigError, match="broken.toml: TOML syntax error"):
        load_target(str(path))


def test_non_utf8_target_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('part = "Caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml: not UTF-8"):
        load_target(str(path))


def test_throughput_table_values_must_be_positive_numbers(target_file):
    path = target_file("fast")
    path.write_text(
        path.read_text() + '[throughput]\nsource = "x"\n[throughput.macs_per_cycle]\nCONV_2D = -1\n'
    )
    with pytest.raises(ConfigError, match="throughput.macs_per_cycle.CONV_2D"):
        load_target(str(path))


def test_runtime_overrides_are_read(target_file):
    path = target_file("custom")
    path.write_text(
        path.read_text()
        + '[runtime]\nframework_flash_bytes = 12000\nsource = "my build"\n'
        + "[runtime.kernel_flash_bytes]\nCONV_2D = 7000\n"
    )
    runtime = load_target(str(path)).runtime
    assert runtime.framework_flash_bytes == 12_000
    assert runtime.kernel_flash_bytes == {"CONV_2D": 7000}
    assert runtime.runtime_flash_bytes is None


def test_nrf52810_reserves_the_s112_softdevice():
    target = load_target("nrf52810")
    assert (target.core, target.clock_hz) == ("Cortex-M4", 64_000_000)
    assert (target.flash_bytes, target.ram_bytes) == (192 * 1024, 24 * 1024)
    assert target.reserved_flash_bytes == 0x19000  # S112 v7.x + MBR: 100 KB
    assert 0xEB8 < target.reserved_ram_bytes < target.ram_bytes  # above the S112 minimum
    assert "S112" in target.source and "nRF52810 Product Specification" in target.source
    assert target.runtime is None  # no device measurement: verdicts use the upper bound


def test_samd21_reserves_the_bootloader_and_a_stack():
    target = load_target("samd21")
    assert (target.core, target.clock_hz) == ("Cortex-M0+", 48_000_000)
    assert (target.flash_bytes, target.ram_bytes) == (256 * 1024, 32 * 1024)
    assert target.reserved_flash_bytes == 8 * 1024
    assert target.reserved_ram_bytes >= 2 * 1024
    assert "DS40001882" in target.source


def test_targets_command_lists_the_small_parts(capsys):
    from edge_prune.cli import main

    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert "nRF52810" in by_name["nrf52810"] and "196,608 B" in by_name["nrf52810"]
    assert "102,400 / 10,240 B" in by_name["nrf52810"]
    assert "ATSAMD21G18A" in by_name["samd21"] and "48 MHz" in by_name["samd21"]
    assert "8,192 / 4,096 B" in by_name["samd21"]


def test_the_nrf52810_verdict_counts_its_build_and_the_softdevice(mlp_float_path):
    """nRF52810 (Cortex-M4 without FPU, SoftDevice reserved): the runtime code is the one of
    TFLM built for cortex-m4 (no FPU) with reference kernels."""
    from edge_prune.measurement.footprint import measure, verdict_for

    footprint = measure(mlp_float_path)
    target = load_target("nrf52810")
    nrf = verdict_for(footprint, target)
    assert (target.tflm_arch, target.tflm_kernels) == ("cortex-m4", "reference")
    assert nrf.flash_needed_bytes == (
        footprint.flatbuffer_bytes + nrf.runtime_flash.total_bytes + 102_400
    )
    assert nrf.fits == (nrf.flash_needed_bytes <= 196_608 and nrf.fits_ram)


@pytest.mark.parametrize(
    ("name", "fpu"),
    [("samd21", False), ("nrf52810", False), ("cortex-m0plus", False), ("cortex-m4", True),
     ("cortex-m7", True)],
)  # fmt: skip
def test_the_fpu_follows_the_core(name, fpu):
    assert load_target(name).has_fpu is fpu


def test_a_target_file_can_say_its_core_has_no_fpu(target_file):
    path = target_file("m33-no-fpu", core="Cortex-M33")
    path.write_text(path.read_text() + "fpu = false\n")
    target = load_target(str(path))
    assert target.has_fpu is False and target.to_dict()["fpu"] is False


def test_fpu_must_be_true_or_false(target_file):
    with pytest.raises(ConfigError, match="key 'fpu' must be true or false"):
        load_target(str(target_file("bad-fpu", fpu="yes")))


def test_a_float_model_on_a_core_without_fpu_is_flagged_in_the_verdict(
    mlp_float_path, cnn_int8_path
):
    from edge_prune.measurement.footprint import measure, verdict_for
    from edge_prune.measurement.report import Report

    float_model = measure(mlp_float_path)
    assert float_model.computes_in_float
    flagged = verdict_for(float_model, load_target("samd21"))
    assert any(w.startswith("software floating point") for w in flagged.warnings)
    assert not verdict_for(float_model, load_target("cortex-m4")).warnings
    text = Report(footprint=float_model, verdicts=(flagged,)).to_text()
    assert "WARNING: software floating point" in text
    int8_model = measure(cnn_int8_path)
    assert not int8_model.computes_in_float
    assert not verdict_for(int8_model, load_target("samd21")).warnings
