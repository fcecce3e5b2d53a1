"""The host's TFLM (the tflite-micro wheel): its commit, read from the wheel's version file."""

from __future__ import annotations

import pytest

from edge_prune.measurement.host_tflm import HostTflm, host_tflm, parse_version_file


def test_the_commit_is_the_end_of_the_wheels_version():
    host = parse_version_file('__version__ = "0.dev20260820164721-g90b983c"\n')
    assert host == HostTflm("0.dev20260820164721-g90b983c", "90b983c")
    assert host.same_commit("90b983c2b3f1480642e040bbd2ddb37b998f3424") is True
    assert host.same_commit("8f6596d0") is False
    assert host.same_commit(None) is None


@pytest.mark.parametrize("text", ["", '__version__ = "0.1.0"\n'])
def test_a_version_without_a_commit_names_none(text):
    host = parse_version_file(text)
    assert host.commit is None and host.same_commit("90b983c2") is None


def test_the_installed_wheel_is_the_tflm_tree_commit():
    """The pinned wheel (pyproject.toml) is the one built from the pinned tree, 90b983c2."""
    host = host_tflm()
    assert host.version and host.version.startswith("0.dev20260820164721")
    assert host.commit == "90b983c"
    assert "commit 90b983c" in host.describe()


def test_the_footprint_and_build_reports_name_the_host_tflm_commit(cnn_int8_path):
    from edge_prune.measurement.build_report import versions
    from edge_prune.measurement.report import fit_report

    report = fit_report(cnn_int8_path, "cortex-m4")
    assert report.to_dict()["host_tflm"] == {
        "version": "0.dev20260820164721-g90b983c",
        "commit": "90b983c",
    }
    assert "host TFLM" in report.to_text() and "90b983c" in report.to_markdown()
    assert versions()["tflite-micro commit"] == "90b983c"
