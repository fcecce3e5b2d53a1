"""One time figure per candidate: instructions per inference, and milliseconds at ``clock_hz``.

Instructions come from :mod:`edge_prune.measurement.instructions` (per-op costs calibrated on
QEMU runs, which count instructions, not cycles). A core retires at most one instruction per
cycle, so instructions / ``clock_hz`` is a LOWER BOUND on the time. Where the target file carries
a board measurement (``[throughput] macs_per_cycle``: cycles per MAC of an op type on the real
part), the cycles per instruction of that op type follow from it and the calibrated instructions
per MAC of the same op, and the op's time is its instructions times that factor. The board's
figures come from other models, so the factor is labelled with its source; a factor below 1
(the board faster than the instruction count allows) is reported and held at 1.

This module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_prune.measurement.instructions import CostModel, InstructionEstimate, cost_model
from edge_prune.measurement.targets import Target

# The board tables measure int8 kernels; an int8 op with an INT4 filter shares its op type's
# factor (labelled), float32 ops get none. edge-prune's sparse kernels take the factor of the
# dense op they replace (int8 and int4 weights alike): their mix (SMLAD, loads, one indirect
# load per block) is the same kind, but no board measured them (the report names the op types
# scaled).
_SCALED_DTYPES = ("int8", "int8+int4")
_SCALED_AS = {"EDGE_PRUNE_SPARSE_FC": "FULLY_CONNECTED", "EDGE_PRUNE_SPARSE_CONV": "CONV_2D"}


@dataclass(frozen=True)
class CpiFactor:
    """Cycles per instruction of one op type: the board's cycles per MAC over QEMU's
    instructions per MAC."""

    op: str
    board_cycles_per_mac: float
    instructions_per_mac: float

    @property
    def measured(self) -> float:
        return self.board_cycles_per_mac / self.instructions_per_mac

    @property
    def factor(self) -> float:
        return max(1.0, self.measured)

    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "board_cycles_per_mac": round(self.board_cycles_per_mac, 4),
            "instructions_per_mac": round(self.instructions_per_mac, 4),
            "cycles_per_instruction": round(self.measured, 3),
            "used": round(self.factor, 3),
        }


@dataclass(frozen=True)
class TimeFigure:
    """Instructions per inference and the time they take at the target's clock, labelled."""

    instructions: int
    cycles: int
    clock_hz: int
    complete: bool  # every op of the model has a calibrated cost
    scaled_ops: tuple[str, ...]  # cost keys whose time uses a board factor
    factors: tuple[CpiFactor, ...]
    board_source: str

    @property
    def ms(self) -> float:
        return 1000.0 * self.cycles / self.clock_hz

    @property
    def kind(self) -> str:
        if not self.complete:
            return "lower bound (ops without calibrated costs are left out)"
        if self.scaled_ops:
            return (
                "estimate (board cycles per instruction for "
                + ", ".join(sorted({k.split(":")[0] for k in self.scaled_ops}))
                + "; instructions / clock, a lower bound, for the rest)"
            )
        return "lower bound (instructions / clock: no board measurement of these ops)"

    @property
    def lower_bound(self) -> bool:
        return self.kind.startswith("lower bound")

    def label(self) -> str:
        return f"{'>= ' if self.lower_bound else ''}{self.ms:.2f} ms"

    def to_dict(self) -> dict:
        return {
            "instructions_per_inference": self.instructions,
            "cycles": self.cycles,
            "clock_hz": self.clock_hz,
            "ms": round(self.ms, 4),
            "kind": self.kind,
            "scaled_ops": list(self.scaled_ops),
            "cycles_per_instruction": [f.to_dict() for f in self.factors],
            "board_source": self.board_source,
        }


def cpi_factors(target: Target, costs: CostModel | None = None) -> tuple[CpiFactor, ...]:
    """Per op type the target's board table covers and the calibration has int8 costs for."""
    costs = costs or cost_model(target)
    if costs is None or target.throughput is None:
        return ()
    factors = []
    for op, macs_per_cycle in sorted(target.throughput.macs_per_cycle.items()):
        per_mac = costs.per_unit.get(f"{op}:int8")
        if per_mac and macs_per_cycle > 0:
            factors.append(CpiFactor(op, 1.0 / macs_per_cycle, per_mac))
    return tuple(factors)


def time_figure(estimate: InstructionEstimate | None, target: Target) -> TimeFigure | None:
    """The time of ``estimate`` on ``target`` (None without an estimate)."""
    if estimate is None:
        return None
    factors = cpi_factors(target)
    by_op = {f.op: f.factor for f in factors}
    cycles, scaled = 0.0, []
    for key, count in estimate.per_key.items():
        op, _, dtype = key.partition(":")
        if op in _SCALED_AS and dtype.startswith(("int8", "int4")):
            op, dtype = _SCALED_AS[op], "int8"
        factor = by_op.get(op) if dtype in _SCALED_DTYPES else None
        if factor is not None:
            scaled.append(key)
        cycles += count * (factor or 1.0)
    return TimeFigure(
        instructions=estimate.total,
        cycles=round(cycles),
        clock_hz=target.clock_hz,
        complete=not estimate.not_estimated,
        scaled_ops=tuple(scaled),
        factors=tuple(f for f in factors if any(_scaled_op(k) == f.op for k in scaled)),
        board_source=target.throughput.source if target.throughput and scaled else "",
    )


def _scaled_op(key: str) -> str:
    op = key.split(":")[0]
    return _SCALED_AS.get(op, op)


def budget_ms(target: Target, max_latency_ms: float | None = None) -> float | None:
    """The time budget of one inference on ``target``: the tighter of ``max_latency_ms`` (the
    command line or ``select.max_latency_ms``; None or 0: none) and the target's ``latency_ms``."""
    budgets = [b for b in (max_latency_ms, target.latency_ms) if b]
    return min(budgets) if budgets else None


def over_budget(figure: TimeFigure | None, budget: float | None) -> str | None:
    """Why ``figure`` misses ``budget`` (None: within it, or no budget).

    Without a complete figure the budget cannot be checked, which counts as missed (the
    verdict errs on the safe side). A lower bound (instructions / clock) within the budget
    counts as within it, labelled as such where it is shown.
    """
    if budget is None:
        return None
    if figure is None or not figure.complete:
        return f"no complete time figure for this build: the {budget:g} ms budget cannot be checked"
    if figure.ms > budget:
        return f"over the time budget: {figure.label()} > {budget:g} ms"
    return None


def time_text(figure: TimeFigure | None) -> str:
    """``0.42 M instr, 9.12 ms`` (``>=`` where a lower bound), or ``-``."""
    if figure is None:
        return "-"
    bound = ">= " if not figure.complete else ""
    return f"{bound}{figure.instructions / 1e6:.2f} M instr, {figure.label()}"


def estimate_time(model: bytes, target: Target) -> TimeFigure | None:
    """The time figure of ``model`` on ``target`` (None without calibrated costs)."""
    from edge_prune.measurement import instructions

    return time_figure(instructions.estimate(model, target), target)
