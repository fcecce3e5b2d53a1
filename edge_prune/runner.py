"""One loop runs every pipeline: an ordered list of stages over a typed state.

A :class:`Stage` is a name, a one-line description of what it is about to do (it may read the
state, e.g. the sparsity it prunes to) and a function from state to state. :func:`run_stages`
runs them in order, prints ``[i/n] what`` before each and records each stage's wall time in
``state.timings_s``. ``model``, ``sweep``, ``search`` and the benchmarks differ only in the
config and the stage list they pass; nothing else chains stages.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(_message: str) -> None:
    """A progress sink that drops everything."""


class TimedState(Protocol):
    timings_s: dict[str, float]


State = TypeVar("State", bound=TimedState)


@dataclass(frozen=True)
class Stage(Generic[State]):
    """One step of a pipeline: ``run(state, progress) -> state``; ``describe(state) -> str``."""

    name: str
    run: Callable[[State, Progress], State]
    describe: Callable[[State], str] | str = ""

    def title(self, state: State) -> str:
        return self.describe(state) if callable(self.describe) else (self.describe or self.name)


def run_stages(
    stages: Sequence[Stage[State]], state: State, progress: Progress = stderr_progress
) -> State:
    """Run ``stages`` in order on ``state``; returns the final state with ``timings_s`` filled.

    A stage that has nothing to do (e.g. clustering switched off) says so in its description
    and returns the state unchanged. Exceptions propagate: the caller decides what a failure
    means (the CLI turns ``EdgePruneError`` into an exit code).
    """
    for index, stage in enumerate(stages, 1):
        progress(f"[{index}/{len(stages)}] {stage.title(state)}")
        start = time.perf_counter()
        state = stage.run(state, progress)
        took = round(time.perf_counter() - start, 2)
        state = replace(state, timings_s={**state.timings_s, stage.name: took})
    return state
