"""The one loop every pipeline runs: stages in order, progress before each, timings after."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from edge_prune.runner import Stage, run_stages


@dataclass(frozen=True)
class Counter:
    value: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


def _add(n: int):
    return lambda state, progress: replace(state, value=state.value + n)


def test_stages_run_in_order_with_progress_and_a_timing_each():
    lines: list[str] = []
    stages = (
        Stage("one", _add(1), "adding one"),
        Stage(
            "double", lambda s, p: replace(s, value=s.value * 2), lambda s: f"doubling {s.value}"
        ),
    )
    final = run_stages(stages, Counter(), lines.append)

    assert final.value == 2
    assert lines == ["[1/2] adding one", "[2/2] doubling 1"]
    assert set(final.timings_s) == {"one", "double"}
    assert all(t >= 0 for t in final.timings_s.values())


def test_a_failing_stage_stops_the_run_and_its_error_reaches_the_caller():
    def fail(state, progress):
        raise ValueError("stage broke")

    ran = []
    stages = (Stage("fail", fail), Stage("after", lambda s, p: ran.append(1) or s))
    with pytest.raises(ValueError, match="stage broke"):
        run_stages(stages, Counter(), lambda _: None)
    assert ran == []
