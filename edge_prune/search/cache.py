"""The search's files on disk, each validated when read: a bad entry is rebuilt, never trusted.

Two kinds of entry live under ``OUT/search-<target>.cache/``:

- ``points/<key>/``: one built point (the files ``edge-prune model`` writes, when the build
  chose an artifact) and ``point.json``: ``{"schema", "point", "files": {name: sha256}}``;
- ``shared/<name>.keras`` + ``<name>.json``: a Keras model shared by many points (the dense
  model, a channel-removal ratio's model, the early model of lottery-ticket rewinding), saved in
  Keras's own format and loaded in safe mode, with ``{"schema", "sha256", "meta"}`` beside it.

:func:`read_point_entry` and :func:`load_model_entry` return ``None`` for a missing entry and
raise :class:`BadCacheEntry` (whose message names the file and what is wrong) for an entry that
is not what this version wrote: a different schema, a digest that does not match, a missing or
truncated file, JSON that does not parse, a field out of range. Nothing is read with pickle.
:func:`point_problem` checks a point record (also the copies the study keeps).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = 2  # 1: the pickled records of the first search; 2: JSON + digests

__all__ = [
    "SCHEMA",
    "BadCacheEntry",
    "load_model_entry",
    "locked",
    "point_problem",
    "read_point_entry",
    "record_digest",
    "save_model_entry",
    "write_point_entry",
]


class BadCacheEntry(Exception):  # noqa: N818 - a condition the caller turns into a warning
    """A cache entry that cannot be trusted; the message names the file and the defect."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """sha256 of a JSON record in canonical form (sorted keys, no spaces)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` + ``.lock``: local workers make a shared model
    one at a time, and the others load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ------------------------------------------------------------------------------- points

# Field: (type, check) of a point record; the check returns True when the value is sane.
_POSITIVE = (int, lambda v: v > 0)
_NATURAL = (int, lambda v: v >= 0)
_FRACTION = (float, lambda v: 0.0 <= v < 1.0)
_FINITE = (float, math.isfinite)
_FLAG = (bool, lambda v: True)
_POINT_FIELDS: dict[str, tuple[type, Any]] = {
    "key": (str, lambda v: 0 < len(v) <= 64),
    "structured_ratio": _FRACTION,
    "final_sparsity": _FRACTION,
    "clusters": (int, lambda v: v == 0 or 2 <= v <= 16),
    "schedule": (str, lambda v: v in ("polynomial", "iterative", "rewind")),
    "bitwidth": (int, lambda v: v in (0, 2, 3, 4)),
    "measured_sparsity": (float, lambda v: 0.0 <= v <= 1.0),
    "artifact": (str, lambda v: 0 < len(v) <= 64),
    "build_deploys": (str, lambda v: len(v) <= 64),
    "flatbuffer_bytes": _POSITIVE,
    "tflm_score": _FINITE,
    "loss": _FINITE,
    "arena_bytes": _POSITIVE,
    "runtime_flash_bytes": _NATURAL,
    "flash_needed_bytes": _POSITIVE,
    "ram_needed_bytes": _POSITIVE,
    "within_tolerance": _FLAG,
    "fits_flash": _FLAG,
    "fits_ram": _FLAG,
    "trusted": _FLAG,
    "baseline_score": _FINITE,
    "seconds": (float, lambda v: math.isfinite(v) and v >= 0),
}


def point_problem(record: Any) -> str | None:
    """What is wrong with a point record (``SearchPoint.to_dict()``), or None if nothing."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for name, (kind, ok) in _POINT_FIELDS.items():
        if name not in record:
            return f"'{name}' missing"
        value = record[name]
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind or not ok(value):
            return f"'{name}' = {str(value)[:40]!r} is not a valid {kind.__name__} here"
    score = record.get("int8_tflm_score")
    if score is not None and not (isinstance(score, int | float) and math.isfinite(score)):
        return f"'int8_tflm_score' = {str(score)[:40]!r} is not a finite number"
    if record["flash_needed_bytes"] < record["flatbuffer_bytes"]:
        return (
            f"'flash_needed_bytes' ({record['flash_needed_bytes']}) is below the flatbuffer "
            f"alone ({record['flatbuffer_bytes']})"
        )
    if record["ram_needed_bytes"] < record["arena_bytes"]:
        return (
            f"'ram_needed_bytes' ({record['ram_needed_bytes']}) is below the arena alone "
            f"({record['arena_bytes']})"
        )
    return None


def write_point_entry(staging: Path, point: dict[str, Any]) -> None:
    """``point.json`` in a point's staging directory, with the digest of every file beside it."""
    files = {f.name: file_sha256(f) for f in sorted(staging.iterdir()) if f.name != "point.json"}
    record = {"schema": SCHEMA, "point": point, "files": files}
    (staging / "point.json").write_text(json.dumps(record, indent=2) + "\n")


def read_point_entry(directory: Path, key: str, *, need_files: bool) -> dict[str, Any] | None:
    """The point record of ``directory``; None when there is none. ``need_files``: the build's
    files must be there too (the chosen point is copied to ``best/``)."""
    path = directory / "point.json"
    if not path.exists():
        return None
    raw = _json_object(path)
    if raw.get("schema") != SCHEMA:
        raise BadCacheEntry(f"{path}: schema {raw.get('schema')!r}, expected {SCHEMA}")
    point, files = raw.get("point"), raw.get("files")
    problem = point_problem(point)
    if problem:
        raise BadCacheEntry(f"{path}: {problem}")
    if point["key"] != key:
        raise BadCacheEntry(f"{path}: key {point['key']!r}, expected {key!r}")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise BadCacheEntry(f"{path}: 'files' is not a table of digests")
    if need_files and point["build_deploys"] and "model.tflite" not in files:
        raise BadCacheEntry(f"{path}: the build's model.tflite is not listed")
    for name, digest in files.items():
        file = directory / str(name)
        if Path(str(name)).name != name or not file.is_file():
            raise BadCacheEntry(f"{file}: missing")
        if file_sha256(file) != digest:
            raise BadCacheEntry(f"{file}: contents changed (sha256 differs from point.json)")
    return point


def _json_object(path: Path) -> dict[str, Any]:
    from edge_prune.input_files import read_input

    try:
        raw = json.loads(read_input(path, limit=1 << 24, error=BadCacheEntry))
    except (OSError, ValueError, RecursionError) as e:
        raise BadCacheEntry(f"{path}: unreadable ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise BadCacheEntry(f"{path}: expected a JSON object")
    return raw


# ------------------------------------------------------------------------- shared models


def save_model_entry(path: Path, model, meta: dict[str, Any]) -> None:
    """Save ``model`` to ``path`` (``.keras``) and its record beside it, each atomically."""
    from edge_prune.artifacts import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)
    record = {"schema": SCHEMA, "sha256": file_sha256(path), "meta": meta}
    write_atomic(path.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())


def load_model_entry(path: Path) -> tuple[Any, dict[str, Any]] | None:
    """``(model, meta)`` saved by :func:`save_model_entry`; None if neither file is there."""
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    if not sidecar.exists():
        raise BadCacheEntry(f"{sidecar}: missing")
    raw = _json_object(sidecar)
    if raw.get("schema") != SCHEMA or not isinstance(raw.get("meta"), dict):
        raise BadCacheEntry(f"{sidecar}: schema {raw.get('schema')!r}, expected {SCHEMA}")
    if not path.is_file():
        raise BadCacheEntry(f"{path}: missing")
    if file_sha256(path) != raw.get("sha256"):
        raise BadCacheEntry(f"{path}: contents changed (sha256 differs from {sidecar.name})")
    from edge_prune.errors import EdgePruneError
    from edge_prune.training.model_io import load_saved_model

    try:
        model = load_saved_model(path)  # Keras format, safe mode: no code runs on load
    except EdgePruneError as e:
        raise BadCacheEntry(f"{path}: {e}") from None
    return model, raw["meta"]
