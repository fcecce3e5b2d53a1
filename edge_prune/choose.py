"""Choose the artifact to flash among those checked on TFLM.

:func:`choose_deployable` picks the smallest artifact TFLM runs whose TFLM accuracy is within a
tolerance of the dense model's; :func:`choose_for_target` first keeps those that also fit the
target's flash and RAM (a compressed model trades flash for arena: the smallest flatbuffer need
not fit the RAM). A sparse-encoded (DENSIFY) model never qualifies.

This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError, NoDeployableArtifactError
from edge_prune.evaluate import ArtifactCheck

if TYPE_CHECKING:
    from edge_prune.footprint import Verdict

DEFAULT_TOLERANCE_POINTS = 1.0


@dataclass(frozen=True)
class DeployableChoice:
    """The artifact to flash, why, and why each other candidate was not chosen."""

    chosen: ArtifactCheck
    reason: str
    rejected: tuple[tuple[str, str], ...]  # (candidate name, reason)
    dense_accuracy: float
    tolerance_points: float

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.name,
            "reason": self.reason,
            "rejected": [{"name": n, "reason": r} for n, r in self.rejected],
            "dense_accuracy": self.dense_accuracy,
            "tolerance_points": self.tolerance_points,
        }

    def __str__(self) -> str:
        lines = [f"deployable: {self.chosen.name} ({self.reason})"]
        lines += [f"  not chosen: {n}: {r}" for n, r in self.rejected]
        return "\n".join(lines)


def choose_deployable(
    candidates: Sequence[ArtifactCheck],
    dense_accuracy: float,
    tolerance_points: float = DEFAULT_TOLERANCE_POINTS,
) -> DeployableChoice:
    """Pick the smallest candidate that runs on TFLM within ``tolerance_points`` of the dense.

    Accuracies are fractions in [0, 1] (``ArtifactCheck.accuracy``, measured on TFLM);
    ``tolerance_points`` is the largest allowed drop in percentage points (1.0 = one point).
    Ties in flash size go to the earlier candidate. A candidate that TFLM cannot run, or whose
    TFLM accuracy was not measured, is never chosen. Raises NoDeployableArtifactError when no
    candidate qualifies, listing each one's reason.
    """
    _check_accuracy("dense_accuracy", dense_accuracy)
    if not tolerance_points >= 0:
        raise ConfigError(
            f"tolerance_points: got {tolerance_points!r}, expected a number of percentage "
            "points >= 0"
        )
    if not candidates:
        raise ConfigError("candidates: got an empty list, expected at least one checked artifact")

    verdicts = [(c, _why_not(c, dense_accuracy, tolerance_points)) for c in candidates]
    qualified = [c for c, why in verdicts if why is None]
    if not qualified:
        reasons = "; ".join(f"{c.name}: {why}" for c, why in verdicts)
        raise NoDeployableArtifactError(
            f"no candidate runs on TFLM within {tolerance_points:g} points of the dense "
            f"accuracy {dense_accuracy:.2%}: {reasons}; raise the tolerance, fine-tune longer "
            "or prune less"
        )
    chosen = min(qualified, key=lambda c: c.flash_bytes)  # min keeps the first of equals
    rejected = tuple(
        (c.name, why or f"larger: {c.flash_bytes:,} B > {chosen.flash_bytes:,} B")
        for c, why in verdicts
        if c is not chosen
    )
    drop = _drop_points(dense_accuracy, chosen.accuracy)
    reason = (
        f"smallest artifact that runs on TFLM within {tolerance_points:g} points of the dense "
        f"model: {chosen.flash_bytes:,} B flatbuffer, TFLM accuracy {chosen.accuracy:.2%} "
        f"vs dense {dense_accuracy:.2%} (drop {drop:+.2f} points)"
    )
    return DeployableChoice(chosen, reason, rejected, dense_accuracy, tolerance_points)


def _why_not(c: ArtifactCheck, dense_accuracy: float, tolerance_points: float):
    if not c.runs_on_tflm:
        return (
            f"does not run on TFLM (no kernel for {c.missing_op})"
            if c.missing_op
            else (f"does not run on TFLM ({c.failure})")
        )
    if c.accuracy is None:
        return "TFLM accuracy not measured (check it with labels)"
    drop = _drop_points(dense_accuracy, c.accuracy)
    if drop > tolerance_points + 1e-9:
        return (
            f"TFLM accuracy {c.accuracy:.2%} is {drop:.2f} points below the dense "
            f"{dense_accuracy:.2%} (tolerance {tolerance_points:g})"
        )
    return None


def _drop_points(dense_accuracy: float, accuracy: float) -> float:
    return (dense_accuracy - accuracy) * 100.0


def _check_accuracy(argument: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{argument}: got {value!r}, expected a fraction in [0, 1]")


def choose_for_target(
    checks: Sequence[ArtifactCheck],
    verdicts: Mapping[str, Verdict | None],
    dense_accuracy: float,
    tolerance_points: float,
    target_name: str,
) -> DeployableChoice:
    """:func:`choose_deployable` among the artifacts whose verdict on the target fits.

    ``verdicts`` maps an artifact name to its footprint verdict (None when TFLM cannot run it).
    When none of the fitting artifacts qualifies, the choice is made among all of them (and
    the caller's verdict says it does not fit).
    """
    fits = {name: v is not None and v.fits for name, v in verdicts.items()}
    fitting = [c for c in checks if fits.get(c.name)]
    if fitting:
        with contextlib.suppress(NoDeployableArtifactError):
            choice = choose_deployable(fitting, dense_accuracy, tolerance_points)
            rejected = tuple(
                (c.name, f"does not fit {target_name}")
                for c in checks
                if c.runs_on_tflm and not fits.get(c.name)
            )
            return replace(choice, rejected=choice.rejected + rejected)
    return choose_deployable(checks, dense_accuracy, tolerance_points)
