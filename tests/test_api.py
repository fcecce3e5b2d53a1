"""The public API a training script uses: convert, then measure and judge in one call."""

from __future__ import annotations

import pytest
from tiny_models import trained_cnn

import edge_prune as ep


@pytest.fixture(scope="module")
def converted():
    model, x, _ = trained_cnn(seed=3, epochs=1)
    return ep.convert(model, quantization="int8", representative_data=x[:32])


def test_measure_accepts_what_convert_returns(converted):
    footprint = ep.measure(converted)

    assert footprint.flatbuffer_bytes == len(converted.tflite_bytes)
    assert footprint.runs_on_tflm and footprint.arena_bytes > 0


def test_fit_report_gives_the_verdict_against_one_target_or_several(converted):
    one = ep.fit_report(converted, "cortex-m4")
    several = ep.fit_report(converted, ["cortex-m4", "cortex-m7"])

    assert one.fits and [v.target.name for v in one.verdicts] == ["cortex-m4"]
    assert [v.target.name for v in several.verdicts] == ["cortex-m4", "cortex-m7"]
    assert "cortex-m4" in str(one)


def test_fit_report_says_no_when_the_target_is_too_small(converted, tmp_path):
    from conftest import VALID_TARGET, toml_text

    tiny = tmp_path / "tiny.toml"
    tiny.write_text(toml_text({**VALID_TARGET, "flash_bytes": 70_000, "ram_bytes": 33_000}))

    assert not ep.fit_report(converted, tiny).fits


def test_public_names_are_listed_and_resolve():
    assert {"prune", "strip", "convert", "measure", "fit_report", "load_target"} <= set(ep.__all__)
    for name in ep.__all__:
        assert getattr(ep, name) is not None


def test_fit_report_is_the_report_modules_own_name():
    """``edge_prune.measurement.build_report`` is the build report module; the footprint report
    function does not share its name."""
    import edge_prune.measurement.report as report

    assert ep.fit_report is report.fit_report
    assert not hasattr(report, "build_report")
