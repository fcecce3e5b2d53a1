"""What a search worker needs to run its share of a study (picklable: it crosses to spawned
worker processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.search.point import SearchOptions
from edge_prune.search.workshop import Workshop

if TYPE_CHECKING:
    from edge_prune.stages import Inputs


@dataclass(frozen=True)
class Job:
    """What a worker needs (picklable: it crosses to spawned processes)."""

    inputs: Inputs
    options: SearchOptions
    cache: Path
    storage: str
    study: str
    seed: int
    worker: int = 0
    factory: type = Workshop  # builds the points (tests pass a stand-in)
