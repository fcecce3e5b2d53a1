"""A whole search's result: its points in the order built, the budgets, the Pareto front
(flash needed, RAM needed, loss) and the chosen point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_prune.measurement.metrics import Metric
from edge_prune.search.point import SearchPoint, choose_point


@dataclass(frozen=True)
class SearchResult:
    """A whole search: the points in the order built, the budgets, the choice."""

    target_name: str
    flash_bytes: int
    ram_bytes: int
    reserved_flash_bytes: int
    reserved_ram_bytes: int
    model_name: str
    data_source: str
    test_samples: int
    metric: Metric
    baseline_score: float  # the dense model as float32 on TFLM
    tolerance: float  # largest allowed loss: accuracy points, or relative error increase
    points: tuple[SearchPoint, ...]
    base_config: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    reused_points: int = 0
    seconds: float = 0.0
    study: dict[str, Any] = field(default_factory=dict)  # name, storage, trials by state
    kind: str = "search"  # or "sweep": every point of a fixed grid

    @property
    def best(self) -> SearchPoint | None:
        return choose_point(self.points)

    @property
    def pareto(self) -> tuple[SearchPoint, ...]:
        """Points no other point beats on flash, RAM and score at once."""
        return tuple(p for p in self.points if not any(_dominates(q, p) for q in self.points))

    def closest(self) -> SearchPoint | None:
        """The point that misses least: distance to the budget first (relative flash and RAM
        excess), then the loss beyond the tolerance."""
        return min(self.points, key=self.miss_score, default=None)

    def miss_score(self, p: SearchPoint) -> tuple[float, float]:
        flash, ram, loss = self.misses(p)
        return (flash / self.flash_bytes + ram / self.ram_bytes, loss)

    def misses(self, p: SearchPoint) -> tuple[int, int, float]:
        """(flash bytes over, RAM bytes over, loss beyond the tolerance)."""
        return (
            max(0, p.flash_needed_bytes - self.flash_bytes),
            max(0, p.ram_needed_bytes - self.ram_bytes),
            max(0.0, round(p.loss - self.tolerance, 4)),
        )

    def conclusion(self) -> str:
        best = self.best
        if best is not None:
            return (
                f"Smallest model for {self.target_name} within {self._tolerance_text()} of the "
                f"dense {self._baseline_text()}: {best.spec.label} → "
                f"{best.artifact}, {best.flatbuffer_bytes:,} B flatbuffer, flash needed "
                f"{best.flash_needed_bytes:,} B of {self.flash_bytes:,}, RAM needed "
                f"{best.ram_needed_bytes:,} B of {self.ram_bytes:,}, TFLM {self.metric.name} "
                f"{self.metric.format(best.tflm_score)}."
            )
        closest = self.closest()
        if closest is None:
            return f"No point was built for {self.target_name}."
        flash, ram, loss = self.misses(closest)
        untrusted = "" if closest.trusted else "; its score is at chance level"
        return (
            f"No point fits {self.target_name} within {self._tolerance_text()} of the dense "
            f"{self._baseline_text()}; closest: {closest.spec.label} ({closest.artifact}), "
            f"which misses by {flash:,} B flash, {ram:,} B RAM and "
            f"{self.metric.format_loss(loss).lstrip('+')} of {self.metric.name}{untrusted}."
        )

    def _tolerance_text(self) -> str:
        return self.metric.format_tolerance(self.tolerance)

    def _baseline_text(self) -> str:
        return f"{self.metric.name} ({self.metric.format(self.baseline_score)})"

    def score_limit(self) -> float:
        """The worst TFLM score within the tolerance."""
        if self.metric.higher_is_better:
            return self.baseline_score - self.tolerance / 100.0
        return self.baseline_score * (1.0 + self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        best, front = self.best, self.pareto
        return {
            "target": self.target_name,
            "model": self.model_name,
            "data": {"source": self.data_source, "test_samples": self.test_samples},
            "metric": {"key": self.metric.key, "name": self.metric.name},
            "baseline_score": self.baseline_score,
            "tolerance": self.tolerance,
            "tolerance_what": self._tolerance_text(),
            "budget": {
                "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes,
                "reserved_flash_bytes": self.reserved_flash_bytes,
                "reserved_ram_bytes": self.reserved_ram_bytes,
            },
            "rule": "least flash needed among points within the tolerance that fit flash and RAM",
            "best": None if best is None else best.to_dict(),
            "conclusion": self.conclusion(),
            "points": [{**p.to_dict(), "pareto": p in front} for p in self.points],
            "base_config": self.base_config,
            "trials": self.trials,
            "study": self.study,
            "timings": {"seconds": self.seconds, "reused_points": self.reused_points},
        }


def _dominates(q: SearchPoint, p: SearchPoint) -> bool:
    no_worse = (
        q.flash_needed_bytes <= p.flash_needed_bytes
        and q.ram_needed_bytes <= p.ram_needed_bytes
        and q.loss <= p.loss
    )
    better = (
        q.flash_needed_bytes < p.flash_needed_bytes
        or q.ram_needed_bytes < p.ram_needed_bytes
        or q.loss < p.loss
    )
    return no_worse and better
