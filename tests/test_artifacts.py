"""Artifacts are written whole or not at all, and the C array is what TFLM expects."""

from __future__ import annotations

import pytest

from edge_prune.artifacts import (
    _umask,
    recover_interrupted_swap,
    staged_directory,
    write_atomic,
)


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "model.tflite"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["model.tflite"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_staged_directory_replaces_the_old_one_whole(tmp_path):
    destination = tmp_path / "build" / "cortex-m4"
    with staged_directory(destination) as staging:
        (staging / "old.txt").write_text("old")
    with staged_directory(destination) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in destination.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in destination.parent.iterdir()) == ["cortex-m4"]
    assert destination.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_interrupted_staging_leaves_the_previous_directory(tmp_path):
    destination = tmp_path / "cortex-m4"
    with staged_directory(destination) as staging:
        (staging / "model.tflite").write_bytes(b"good")
    with pytest.raises(KeyboardInterrupt), staged_directory(destination) as staging:
        (staging / "model.tflite").write_bytes(b"half")
        raise KeyboardInterrupt
    assert (destination / "model.tflite").read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cortex-m4"]


def test_swap_killed_between_renames_is_recovered(tmp_path):
    destination = tmp_path / "cortex-m4"
    old = tmp_path / ".cortex-m4.old"
    old.mkdir()
    (old / "model.tflite").write_bytes(b"previous")
    recover_interrupted_swap(destination)
    assert (destination / "model.tflite").read_bytes() == b"previous"


def test_two_writers_into_one_directory_take_turns(tmp_path):
    import threading

    destination = tmp_path / "cortex-m4"
    inside = threading.Event()
    errors = []

    def second_writer():
        try:
            with staged_directory(destination) as staging:
                (staging / "second.txt").write_text("2")
        except Exception as e:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(e)

    with staged_directory(destination) as staging:
        (staging / "first.txt").write_text("1")
        thread = threading.Thread(target=second_writer)
        thread.start()
        inside.wait(0.3)  # the second writer is now blocked on the lock, not clearing staging
        assert (staging / "first.txt").exists()
    thread.join(10)
    assert not errors
    assert sorted(p.name for p in destination.iterdir()) == ["second.txt"]
