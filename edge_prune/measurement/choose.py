"""Choose the artifact to flash among those checked on TFLM.

:func:`choose_deployable` picks, among the artifacts TFLM runs whose metric on TFLM is within a
tolerance of the dense model's, the one that costs the least flash, flatbuffer + runtime code for
its own op set (or, by ``select.objective``, the one with the
least arena or the lowest share of the tighter budget); :func:`choose_for_target` first keeps
those that also fit the target's flash and RAM (a compressed model trades flash for arena: the
smallest flatbuffer need not fit the RAM). A sparse-encoded (DENSIFY) model never qualifies.

This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.measurement.evaluate import ArtifactCheck
from edge_prune.measurement.metrics import ACCURACY, Metric

if TYPE_CHECKING:
    from edge_prune.measurement.footprint import Verdict

DEFAULT_TOLERANCE_POINTS = 1.0
OBJECTIVES = ("flash", "ram", "balanced", "time")


@dataclass(frozen=True)
class DeployableChoice:
    """The artifact to flash, why, and why each other candidate was not chosen."""

    chosen: ArtifactCheck
    reason: str
    rejected: tuple[tuple[str, str], ...]  # (candidate name, reason)
    dense_score: float
    tolerance: float
    metric: Metric = ACCURACY
    objective: str = "flash"

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.name,
            "reason": self.reason,
            "rejected": [{"name": n, "reason": r} for n, r in self.rejected],
            "metric": self.metric.name,
            "dense_score": self.dense_score,
            "tolerance": self.tolerance,
            "tolerance_what": self.metric.format_tolerance(self.tolerance),
            "objective": self.objective,
        }

    def __str__(self) -> str:
        lines = [f"deployable: {self.chosen.name} ({self.reason})"]
        lines += [f"  not chosen: {n}: {r}" for n, r in self.rejected]
        return "\n".join(lines)


def choose_deployable(
    candidates: Sequence[ArtifactCheck],
    dense_score: float,
    tolerance: float = DEFAULT_TOLERANCE_POINTS,
    *,
    metric: Metric = ACCURACY,
    objective: str = "flash",
    verdicts: Mapping[str, Verdict | None] | None = None,
    times_ms: Mapping[str, float | None] | None = None,
) -> DeployableChoice:
    """Pick, among candidates that run on TFLM within ``tolerance`` of the dense model, the best
    by ``objective``.

    Scores are the task's metric on TFLM (``ArtifactCheck.score``): top-1 accuracy as a fraction
    with ``tolerance`` in percentage points (1.0 = one point), or a mean squared error with
    ``tolerance`` a relative increase (0.1 = 10%). ``objective``: ``flash`` = least flash the
    candidate costs, flatbuffer + TFLM runtime code of its own op set (from ``verdicts``, so a
    DECODE kernel counts against the bytes its codecs save; the flatbuffer alone without a
    verdict); ``ram`` = least tensor arena; ``balanced`` = lowest share of the tighter budget
    (flash or RAM needed / available, from ``verdicts``; flash where a verdict is missing);
    ``time`` = least time per inference (``times_ms``, :mod:`edge_prune.measurement.timing`).
    Ties go to the earlier candidate. A candidate that TFLM cannot run, or whose score was not
    measured, is never chosen. Raises NoDeployableArtifactError when none qualifies, listing
    each one's reason.
    """
    _check_arguments(dense_score, tolerance, metric, objective)
    if not candidates:
        raise ConfigError("candidates: got an empty list, expected at least one checked artifact")

    verdicts = verdicts or {}
    judged = [(c, _why_not(c, dense_score, tolerance, metric)) for c in candidates]
    qualified = [c for c, why in judged if why is None]
    if not qualified:
        reasons = "; ".join(f"{c.name}: {why}" for c, why in judged)
        raise NoDeployableArtifactError(
            f"no candidate runs on TFLM within {metric.format_tolerance(tolerance)} of the dense "
            f"{metric.name} {metric.format(dense_score)}: {reasons}; raise the tolerance, "
            "fine-tune longer or prune less"
        )
    cost = _objective_cost(objective, verdicts, times_ms or {})
    chosen = min(qualified, key=cost)  # min keeps the first of equals
    rejected = tuple(
        (c.name, why or _worse(objective, c, chosen, cost)) for c, why in judged if c is not chosen
    )
    loss = metric.loss(dense_score, chosen.score)
    reason = (
        f"{_best(objective)} that runs on TFLM within {metric.format_tolerance(tolerance)} of "
        f"the dense model: {chosen.flash_bytes:,} B flatbuffer"
        + (
            f" + {verdicts[chosen.name].runtime_flash.total_bytes:,} B runtime code"
            if verdicts.get(chosen.name)
            else ""
        )
        + (
            f", arena {target_arena_bytes(chosen, verdicts.get(chosen.name)):,} B"
            if target_arena_bytes(chosen, verdicts.get(chosen.name)) is not None
            else ""
        )
        + f", TFLM {metric.name} {metric.format(chosen.score)} vs dense "
        f"{metric.format(dense_score)} (loss {metric.format_loss(loss)})"
    )
    return DeployableChoice(
        chosen, reason, rejected, dense_score, tolerance, metric=metric, objective=objective
    )


def _objective_cost(
    objective: str, verdicts: Mapping[str, Verdict | None], times_ms: Mapping[str, float | None]
):
    def flash(c: ArtifactCheck) -> float:
        return total_flash_bytes(c, verdicts.get(c.name))

    def ram(c: ArtifactCheck) -> float:
        arena = target_arena_bytes(c, verdicts.get(c.name))
        return arena if arena is not None else float("inf")

    def balanced(c: ArtifactCheck) -> float:
        v = verdicts.get(c.name)
        if v is None or v.ram_needed_bytes is None:
            return c.flash_bytes / 2**40  # no verdict: fall back to flash, after those with one
        return max(
            v.flash_needed_bytes / v.target.flash_bytes, v.ram_needed_bytes / v.target.ram_bytes
        )

    def time(c: ArtifactCheck) -> float:
        ms = times_ms.get(c.name)
        return ms if ms is not None else float("inf")

    return {"flash": flash, "ram": ram, "balanced": balanced, "time": time}[objective]


def target_arena_bytes(c: ArtifactCheck, verdict: Verdict | None) -> int | None:
    """The arena the candidate's verdict counts for its target (the figure every output
    shows); without a verdict, the 32-bit reference-kernel figure of its measurement."""
    if verdict is not None and verdict.arena_bytes is not None:
        return verdict.arena_bytes
    return c.arena.verdict_bytes if c.arena is not None else None


def total_flash_bytes(c: ArtifactCheck, verdict: Verdict | None) -> int:
    """Flash the candidate itself costs: its flatbuffer plus the TFLM runtime code of its own op
    set (a DECODE kernel included) from its verdict; the flatbuffer alone without a verdict."""
    if verdict is None:
        return c.flash_bytes
    return verdict.flatbuffer_bytes + verdict.runtime_flash.total_bytes


def _best(objective: str) -> str:
    return {
        "flash": "least flash (flatbuffer + runtime code of its ops)",
        "ram": "artifact with the smallest arena",
        "balanced": "artifact with the lowest share of the tighter budget",
        "time": "least time per inference",
    }[objective]


def _worse(objective: str, c: ArtifactCheck, chosen: ArtifactCheck, cost) -> str:
    if objective == "flash":
        return f"more flash: {cost(c):,.0f} B > {cost(chosen):,.0f} B (flatbuffer + runtime code)"
    if objective == "ram":
        return f"larger arena: {cost(c):,.0f} B > {cost(chosen):,.0f} B"
    if objective == "time":
        return f"slower: {cost(c):.2f} ms > {cost(chosen):.2f} ms per inference"
    return f"uses more of the tighter budget: {cost(c):.1%} > {cost(chosen):.1%}"


def _why_not(c: ArtifactCheck, dense_score: float, tolerance: float, metric: Metric):
    if not c.runs_on_tflm:
        return (
            f"does not run on TFLM (no kernel for {c.missing_op})"
            if c.missing_op
            else (f"does not run on TFLM ({c.failure})")
        )
    if c.problem:
        return c.problem
    if c.score is None:
        return f"TFLM {metric.name} not measured (check it with labels)"
    loss = metric.loss(dense_score, c.score)
    if loss > tolerance + 1e-9:
        if metric is ACCURACY:
            return (
                f"TFLM accuracy {c.accuracy:.2%} is {loss:.2f} points below the dense "
                f"{dense_score:.2%} (tolerance {tolerance:g})"
            )
        return (
            f"TFLM {metric.name} {metric.format(c.score)} is {loss:.1%} above the dense "
            f"{metric.format(dense_score)} (tolerance {metric.format_tolerance(tolerance)})"
        )
    return None


def _check_arguments(dense_score: float, tolerance: float, metric: Metric, objective: str):
    valid = isinstance(dense_score, (int, float)) and dense_score >= 0
    if metric is ACCURACY:
        valid = valid and dense_score <= 1.0
    if not valid:
        expected = "a fraction in [0, 1]" if metric is ACCURACY else "an error >= 0"
        raise ConfigError(f"dense_score: got {dense_score!r}, expected {expected}")
    if not tolerance >= 0:
        raise ConfigError(
            f"tolerance: got {tolerance!r}, expected a number >= 0 "
            f"({'percentage points' if metric is ACCURACY else 'a relative increase'})"
        )
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective: got {objective!r}, expected one of {', '.join(OBJECTIVES)}")


def choose_for_target(
    checks: Sequence[ArtifactCheck],
    verdicts: Mapping[str, Verdict | None],
    dense_score: float,
    tolerance: float,
    target_name: str,
    *,
    metric: Metric = ACCURACY,
    objective: str = "flash",
    times_ms: Mapping[str, float | None] | None = None,
    over_budget: Mapping[str, str | None] | None = None,
) -> DeployableChoice:
    """:func:`choose_deployable` among the artifacts whose verdict on the target fits.

    ``verdicts`` maps an artifact name to its footprint verdict (None when TFLM cannot run it).
    ``over_budget`` maps an artifact name to why it misses the time budget (None: within it):
    such a candidate does not fit either. When none of the fitting artifacts qualifies, the
    choice is made among all of them (and the caller's verdict says it does not fit).
    """
    over_budget = over_budget or {}
    fits = {
        name: v is not None and v.fits and not over_budget.get(name) for name, v in verdicts.items()
    }
    fitting = [c for c in checks if fits.get(c.name)]
    options = {
        "metric": metric,
        "objective": objective,
        "verdicts": verdicts,
        "times_ms": times_ms,
    }
    if fitting:
        with contextlib.suppress(NoDeployableArtifactError):
            choice = choose_deployable(fitting, dense_score, tolerance, **options)
            rejected = tuple(
                (c.name, over_budget.get(c.name) or f"does not fit {target_name}")
                for c in checks
                if c.runs_on_tflm and not fits.get(c.name)
            )
            return replace(choice, rejected=choice.rejected + rejected)
    return choose_deployable(checks, dense_score, tolerance, **options)
