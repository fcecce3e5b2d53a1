"""`edge-prune sweep`: a search over a fixed grid of sparsities, with the search's files;
classification and regression; refusals of bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edge_prune.cli import main
from edge_prune.data import load_digits
from edge_prune.errors import ConfigError
from edge_prune.search.point import choose_point
from edge_prune.search.sweep import parse_sparsities

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# One epoch of everything and no cluster fine-tuning: the point is the plumbing, not accuracy.
TINY = """
[train]
epochs = 1
[prune]
begin_epoch = 0
end_epoch = 1
epochs = 1
frequency = 5
[structured]
ratio = 0.0
[compress]
clusters = 8
epochs = 0
[select]
tolerance_points = 100.0
tolerance_relative = 100.0
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5,abc", "'abc' is not a number"),
        ("0.5,1.0", "outside \\[0, 0.99\\]"),
        ("0.995", "outside \\[0, 0.99\\]"),
        ("-0.1", "outside"),
        ("0.5,0.5", "more than once"),
        ("0.5,,0.9", "comma-separated"),
        ("", "comma-separated"),
    ],
)
def test_bad_sparsities_are_refused_with_the_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sparsities(text)


def test_sparsities_are_sorted():
    assert parse_sparsities(" 0.9, 0, 0.5 ") == (0.0, 0.5, 0.9)


def test_bad_sparsities_exit_2_before_any_work(tmp_path, capsys):
    code = main(["sweep", "--target", "cortex-m4", "--sparsities", "0.5,2", "--out", str(tmp_path)])
    assert code == 2
    assert "--sparsities: 2 is outside [0, 0.99]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- end to end


def _sweep(root, data, *extra):
    args = ["sweep", "--target", "cortex-m4", "--sparsities", "0.5,0.9"]
    args += ["--config", str(root / "tiny.toml"), "--data", str(data), "--out", str(root / "out")]
    return main([*args, *extra])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "tiny.toml").write_text(TINY)
    digits = load_digits()
    data = root / "small.npz"  # a quarter of the digits: fewer steps, fewer TFLM runs
    np.savez(
        data,
        x_train=digits.x_train[:320],
        y_train=digits.y_train[:320],
        x_test=digits.x_test[:80],
        y_test=digits.y_test[:80],
    )
    return _sweep(root, data), root / "out" / "sweep-cortex-m4"


def test_sweep_writes_the_search_files_for_every_sparsity(swept):
    code, out = swept
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "best.toml",
        "sweep.csv",
        "sweep.json",
        "sweep.md",
        "sweep.png",
    ]
    assert (out / "sweep.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "<- chosen" in (out / "sweep.md").read_text()
    rows = list(csv.DictReader((out / "sweep.csv").read_text().splitlines()))
    assert sorted(float(r["final_sparsity"]) for r in rows) == [0.5, 0.9]
    report = json.loads((out / "sweep.json").read_text())
    assert report["study"]["trials_by_state"] == {"complete": 2}


def test_sweep_points_reach_their_sparsity_and_the_chosen_one_follows_the_search_rule(swept):
    from edge_prune.search.point import SearchPoint

    _, out = swept
    report = json.loads((out / "sweep.json").read_text())
    points = [SearchPoint.from_dict(p) for p in report["points"]]
    for p in points:
        assert p.measured_sparsity == pytest.approx(p.final_sparsity, abs=0.03)
        assert p.clusters == 8 and p.structured_ratio == 0.0
    assert report["best"]["key"] == choose_point(points).key


def test_sweep_handles_regression(tmp_path):
    from tiny_models import make_autoencoder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype("float32")
    data = tmp_path / "regression.npz"
    np.savez(data, x_train=x[:160], y_train=x[:160], x_test=x[160:], y_test=x[160:])
    model = tmp_path / "autoencoder.keras"
    make_autoencoder().save(model)
    (tmp_path / "tiny.toml").write_text(TINY.replace("clusters = 8", "enabled = false"))
    assert _sweep(tmp_path, data, "--model", str(model)) in (0, 1)
    report = json.loads((tmp_path / "out" / "sweep-cortex-m4" / "sweep.json").read_text())
    assert report["metric"]["key"] == "mse" and len(report["points"]) == 2
