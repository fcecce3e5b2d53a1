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


# ------------------------------------------------------------------------------------- plan


@pytest.mark.parametrize(
    ("schedule", "pruning"),
    [
        ("polynomial", ["prune"]),
        ("iterative", ["prune"]),
        ("rewind", ["prune", "early", "rewind"]),
    ],
)
def test_plan_gives_each_schedule_its_pruning_stages_in_every_list(schedule, pruning):
    from edge_prune.config import PipelineConfig, with_overrides
    from edge_prune.pipeline import plan

    overrides = {"prune.schedule": schedule, "structured.ratio": 0.0}
    stages = plan(with_overrides(PipelineConfig(), overrides, "test"))
    tail = [*pruning, "dead_units", "cluster", "convert", "int4", "check", "ram_fit", "choose"]
    tail.append("trust")
    tail.append("footprint")

    assert [s.name for s in stages.model] == ["dense", "baseline", "structured", *tail]
    assert [s.name for s in stages.point] == ["seed", *tail]
    # what sweep and search share between points, then a point, is what ``model`` runs
    shared = stages.dense + stages.baseline + stages.channels[1:]
    assert shared + stages.point[1:] == stages.model
    assert [s.name for s in stages.channels] == ["seed", "structured"]
    assert [s.name for s in stages.early] == ["early"]


def test_only_the_pipeline_module_lists_stages():
    """Every runner takes its stage lists from ``plan``: no other module or benchmark builds a
    Stage or imports the stage constants."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    constants = {"TRAIN", "BASELINE", "STRUCTURED", "SEED", "POLYNOMIAL", "ITERATIVE", "EARLY"}
    constants |= {"REWIND", "DEAD_UNITS", "CLUSTER", "CONVERT", "CHECK", "RAM_FIT", "CHOOSE"}
    constants |= {"TRUST", "FOOTPRINT", "PRUNING"}
    offenders = []
    for path in [*root.glob("edge_prune/**/*.py"), *root.glob("bench/*.py")]:
        if path.name == "pipeline.py" and path.parent.name == "edge_prune":
            continue
        if path.name == "runner.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Stage":
                offenders.append(f"{path.relative_to(root)}:{node.lineno} builds a Stage")
            if isinstance(node, ast.ImportFrom) and node.module == "edge_prune.pipeline":
                names = {a.name for a in node.names} & constants
                if names:
                    offenders.append(f"{path.relative_to(root)}:{node.lineno} imports {names}")
    assert offenders == []
