"""Sparsity sweep: the accuracy / flash trade-off of one model on one target over a fixed grid.

A sweep is a search (:mod:`edge_prune.search`) whose space is the config's own point at each
of the given final sparsities, every one of them built in a seeded order (Optuna's
``GridSampler``): the same point type, cache, table, CSV, JSON and plot as ``search``, for
classification (top-1 accuracy) and regression (mean squared error) alike. The structured
ratio, cluster count, LUT width and pruning schedule are those of the config
(``structured.ratio``, ``compress.*``, ``prune.schedule``).

The answer of a sweep is the *chosen* sparsity, by the rule ``search`` uses
(:func:`edge_prune.search.point.choose_point`): the least flash needed among the sparsities whose
artifact stays within the tolerance of the dense model on TFLM and fits the target. A higher
sparsity is not a smaller deployable by itself: when its clustered artifact falls out of the
tolerance, a larger one is what fits.

Files written to ``OUT/sweep-<target>/`` (staged, swapped in whole): ``sweep.md``,
``sweep.csv``, ``sweep.json``, ``sweep.png`` (needs matplotlib, the ``plot`` extra), and
``best.toml`` + ``best/`` when a sparsity fits. Points built are kept in
``OUT/sweep-<target>.cache/``: a repeated sweep builds nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError
from edge_prune.runner import Progress, stderr_progress

if TYPE_CHECKING:
    from edge_prune.search.result import SearchResult
    from edge_prune.stages import Inputs

__all__ = [
    "DEFAULT_SPARSITIES",
    "parse_fractions",
    "parse_sparsities",
    "run_sweep",
    "sweep_space",
    "write_sweep",
]

DEFAULT_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)


def parse_sparsities(text: str, argument: str = "--sparsities") -> tuple[float, ...]:
    """``"0,0.5,0.9"`` → ``(0.0, 0.5, 0.9)``: each in [0, 0.99] (the range of
    ``prune.final_sparsity``), no repeats, sorted ascending."""
    from edge_prune.config import MAX_FINAL_SPARSITY

    return parse_fractions(text, argument, top=MAX_FINAL_SPARSITY)


def parse_fractions(
    text: str,
    argument: str,
    what: str = "a final sparsity",
    *,
    sort: bool = True,
    top: float | None = None,
) -> tuple[float, ...]:
    """Comma-separated fractions in [0, 1) (in [0, ``top``] when given), no repeats (sorted
    ascending when ``sort``); errors name ``argument`` and say what the value is (``what``)."""
    explain = {
        "a final sparsity": "a final sparsity is the fraction of weights set to zero (0.9 = 90%)",
        "a channel ratio": "a channel ratio is the fraction of channels removed (0.5 = half)",
    }.get(what, f"each value is {what}")
    if top is not None:
        explain += f", and beyond {top} small layers keep none"
    interval = "[0, 1)" if top is None else f"[0, {top}]"
    items = [item.strip() for item in str(text).split(",")]
    if not text or not all(items):
        raise ConfigError(
            f"{argument}: got {text!r}; expected comma-separated fractions in {interval}, "
            "e.g. 0,0.5,0.8,0.9"
        )
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(
                f"{argument}: {item!r} is not a number; expected fractions in {interval} "
                "separated by commas, e.g. 0,0.5,0.8,0.9"
            ) from None
        if not (0.0 <= value < 1.0 if top is None else 0.0 <= value <= top):
            raise ConfigError(f"{argument}: {item} is outside {interval}; {explain}")
        values.append(value)
    if len(set(values)) != len(values):
        repeated = sorted({v for v in values if values.count(v) > 1})
        raise ConfigError(f"{argument}: {', '.join(map(str, repeated))} given more than once")
    return tuple(sorted(values)) if sort else tuple(values)


def sweep_space(inputs: Inputs, sparsities: Sequence[float]):
    """The search space of a sweep: the config's own point at each sparsity."""
    from edge_prune.search.point import SearchSpace

    config = inputs.config
    c = config.compress
    return SearchSpace(
        ratios=(config.structured.ratio,),
        sparsities=tuple(sparsities),
        clusters=(c.clusters if c.enabled else 0,),
        schedules=(config.prune.schedule,),
        bitwidths=(c.bitwidth,),
    )


def run_sweep(
    inputs: Inputs,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    out_dir: str | Path = "build",
    progress: Progress = stderr_progress,
) -> tuple[SearchResult, dict[str, Path]]:
    """Build the config's point at every sparsity (cached in ``out_dir/sweep-<target>.cache``);
    returns the result and the chosen point's directory, for :func:`write_sweep`."""
    from edge_prune.search.point import SearchOptions
    from edge_prune.search.study import run_search

    sparsities = parse_sparsities(",".join(str(s) for s in sparsities), "sparsities")
    space = sweep_space(inputs, sparsities)
    options = SearchOptions(trials=len(space.specs()), space=space, grid=True)
    cache = Path(out_dir) / f"sweep-{inputs.target.name}.cache"
    return run_search(inputs, options, cache, progress)


def write_sweep(
    result: SearchResult,
    point_dirs: dict[str, Path],
    out_dir: str | Path,
    inputs: Inputs,
    progress: Progress = stderr_progress,
) -> Path:
    """Write ``out_dir/sweep-<target>/`` atomically; returns the path."""
    from edge_prune.search.render import write_search

    return write_search(result, point_dirs, out_dir, inputs.config, progress)
