"""The search's cache entries are checked when read: changed, truncated, unparseable or
impossible entries are refused with the file named; nothing is unpickled."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_search_study import fake_point

from edge_prune.config import config_from_dict
from edge_prune.errors import ConfigError
from edge_prune.measurement.metrics import ACCURACY
from edge_prune.search.cache import (
    BadCacheEntry,
    load_model_entry,
    point_problem,
    read_point_entry,
    write_point_entry,
)
from edge_prune.search.workshop import point_artifact

KEY = "k1"


@pytest.fixture
def entry(tmp_path):
    from edge_prune.search.point import PointSpec

    directory = tmp_path / KEY
    directory.mkdir()
    (directory / "model.tflite").write_bytes(b"TFL3" + bytes(100))
    point = fake_point(PointSpec(0.5, 0.8, 8), KEY, 1_000_000).to_dict()
    write_point_entry(directory, point)
    return directory


def _edit(directory, **changes):
    path = directory / "point.json"
    raw = json.loads(path.read_text())
    raw["point"].update(changes)
    path.write_text(json.dumps(raw))


def test_a_sound_entry_reads_back(entry):
    assert read_point_entry(entry, KEY, need_files=True)["key"] == KEY


@pytest.mark.parametrize("flash", [1, -5, 0, 1.5, "1", None])
def test_impossible_flash_needed_is_refused(entry, flash):
    _edit(entry, flash_needed_bytes=flash)
    with pytest.raises(BadCacheEntry, match="point.json: 'flash_needed_bytes'"):
        read_point_entry(entry, KEY, need_files=False)


def test_deleted_or_truncated_model_is_refused_naming_it(entry):
    model = entry / "model.tflite"
    model.write_bytes(model.read_bytes()[:10])
    with pytest.raises(BadCacheEntry, match=r"model.tflite: contents changed"):
        read_point_entry(entry, KEY, need_files=True)
    model.unlink()
    with pytest.raises(BadCacheEntry, match=r"model.tflite: missing"):
        read_point_entry(entry, KEY, need_files=True)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"schema": 1}', "\x80\x04K\x01."])
def test_unparseable_or_old_entries_are_refused(entry, text):
    (entry / "point.json").write_text(text, errors="surrogateescape")
    with pytest.raises(BadCacheEntry, match="point.json"):
        read_point_entry(entry, KEY, need_files=False)


def test_an_entry_of_another_point_is_refused(entry):
    with pytest.raises(BadCacheEntry, match="key 'k1', expected 'other'"):
        read_point_entry(entry, "other", need_files=False)


def test_a_swapped_shared_model_is_refused_before_it_is_loaded(tmp_path):
    model = tmp_path / "dense-x.keras"
    model.write_bytes(b"PK\x03\x04 not the model that was saved")
    (tmp_path / "dense-x.json").write_text(
        json.dumps({"schema": 2, "sha256": "0" * 64, "meta": {}})
    )
    with pytest.raises(BadCacheEntry, match="dense-x.keras: contents changed"):
        load_model_entry(model)
    (tmp_path / "dense-x.json").write_bytes(b"\x80\x04\x95cos\nsystem\n")  # a pickle
    with pytest.raises(BadCacheEntry, match="dense-x.json: unreadable"):
        load_model_entry(model)


def test_point_problem_accepts_the_records_a_search_writes():
    from edge_prune.search.point import PointSpec

    assert point_problem(fake_point(PointSpec(0.0, 0.5, 0), "k", 10).to_dict()) is None
    assert "missing" in point_problem({"key": "k"})


def _artifact(name, score, size):
    check = SimpleNamespace(score=score)
    return SimpleNamespace(name=name, check=check, verdict=object(), tflite_bytes=bytes(size))


def test_a_point_whose_build_falls_back_to_float32_keeps_its_pruned_artifact():
    artifacts = (
        _artifact("float32-dense", 0.97, 150_000),
        _artifact("int8", 0.90, 14_000),
        _artifact("int8-clustered-compressed", 0.88, 6_000),
    )
    state = SimpleNamespace(
        choice=object(),
        deployable=artifacts[0],
        artifacts=artifacts,
        metric=ACCURACY,
        baseline_score=0.97,
        no_choice=None,
    )
    assert point_artifact(state).name == "int8"  # loses least, not the fallback's figures
    state.deployable = artifacts[2]
    assert point_artifact(state).name == "int8-clustered-compressed"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prune": {"schedule": "cosine"}}, "'prune.schedule' = 'cosine'; expected one of"),
        ({"prune": {"schedule": "rewind"}}, "'prune.schedule' = 'rewind' resets weights"),
        ({"prune": {"iterative_steps": 0}}, "'prune.iterative_steps' = 0 is outside"),
        (
            {"prune": {"schedule": "rewind", "rewind_epoch": 20}, "structured": {"ratio": 0.0}},
            "'prune.rewind_epoch' \\(20\\) must not exceed 'train.epochs'",
        ),
    ],
)
def test_prune_schedule_is_checked_at_the_door(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, "best.toml")
