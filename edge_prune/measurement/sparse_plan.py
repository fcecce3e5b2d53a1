"""Which FULLY_CONNECTED / CONV_2D layers of an int8 model (int8 or INT4 filters) run on
edge-prune's sparse kernels, and which are stored in a TFLM DECODE codec.

A layer's choice is not its own: the kernel code is shared. One dense CONV_2D left in the model
keeps CMSIS-NN's whole convolution code in flash (tens of KB on a Cortex-M4), one sparse layer
brings the sparse kernels' code, one decoded layer TFLM's DECODE kernel (8-9 KB, its three
decoders link together). So the plans compared are whole-model: per op kind (FULLY_CONNECTED,
CONV_2D) every layer dense, only the layers whose zeros pay alone, every layer sparse, or every
layer dense with its filter in its smallest DECODE codec (LUT, pruning bitmask, Huffman; a
filter that no codec shrinks stays raw). Each plan is built and costed with the figures every
report shows: flatbuffer bytes + runtime code of its op set
(:func:`edge_prune.measurement.footprint.runtime_flash`, shared code counted once) and
instructions per inference (:func:`edge_prune.measurement.instructions.estimate`, DECODE's
per-weight costs included), and for DECODE the decoded copy it writes into the arena. The plan
taken is the one with the least flash among those estimated at no more instructions than the
all-dense model: pruning that pays never makes the model slower. The arena is then measured on
the candidate like any other.

Under that rule a DECODE plan is never taken: DECODE expands its tensor on every inference
(about 14 instructions per weight for the pruning bitmask, 64 for Huffman, 3.4 for LUT on a
Cortex-M4, `data/tflm_instructions.json`) before the dense kernel runs as before, so it only
adds instructions, and its decoded copy adds arena. The DECODE plans are shown beside the others
so that the report says what they would have cost; the compressed candidates stay whole-model
alternatives the build ranks with their measured arena.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from edge_prune.measurement import footprint, instructions
from edge_prune.measurement.codecs import strip_for_mcu
from edge_prune.measurement.codecs.per_tensor import compress_for_mcu
from edge_prune.measurement.sparse import format as fmt
from edge_prune.measurement.sparse.rewrite import (
    Rewritten,
    choose_block,
    dense_filter,
    estimated_instructions,
    feasible_blocks,
    rewrite,
)
from edge_prune.measurement.sparse.rewrite import read_model as read_schema
from edge_prune.measurement.targets import Target
from edge_prune.measurement.tflite_file import read_model

KINDS = ("FULLY_CONNECTED", "CONV_2D")
MODES = ("dense", "pays", "all", "decode")


@dataclass(frozen=True)
class PlanCost:
    """One whole-model plan: its per-kind modes and what it costs on the target."""

    modes: tuple[tuple[str, str], ...]  # (op kind, mode)
    rewritten: Rewritten
    model: bytes  # the rewritten model, its DECODE tensors compressed
    flatbuffer_bytes: int
    runtime_code_bytes: int
    instructions: int | None
    decoded: tuple[tuple[tuple[int, int], object], ...] = ()  # ((subgraph, op), encoding)

    @property
    def flash_bytes(self) -> int:
        return self.flatbuffer_bytes + self.runtime_code_bytes

    @property
    def decoded_arena_bytes(self) -> int:
        """The largest decoded copy DECODE writes into the arena (0: no DECODE). TFLM keeps a
        decoded tensor until its consumer has run, so the arena grows by about this much."""
        return max((e.decoded_arena_bytes for _, e in self.decoded), default=0)

    def describe(self) -> str:
        modes = ", ".join(f"{kind} {mode}" for kind, mode in self.modes)
        count = "-" if self.instructions is None else f"{self.instructions:,}"
        decoded = (
            f", {self.decoded_arena_bytes:,} B decoded copy in the arena" if self.decoded else ""
        )
        return (
            f"{modes}: {self.flatbuffer_bytes:,} B flatbuffer + {self.runtime_code_bytes:,} B "
            f"runtime code, {count} instructions{decoded}"
        )


@dataclass(frozen=True)
class SparsePlan:
    """The plan taken (None: no plan beats the all-dense model) and every plan compared."""

    chosen: PlanCost | None
    dense: PlanCost
    compared: tuple[PlanCost, ...]


def choose_plan(int8: bytes, target: Target | None, label: str = "int8") -> SparsePlan:
    """Compare the whole-model plans of ``int8`` on ``target`` (see the module docstring)."""
    base = rewrite(int8, label, plan={})
    supported = [layer for layer in base.layers if layer.reason == "kept dense by the plan"]
    filters = _filters(int8, label, supported)
    costs: dict[tuple, PlanCost] = {}
    for modes in product(MODES, repeat=len(KINDS)):
        per_kind = dict(zip(KINDS, modes, strict=True))
        plan = {
            _where(layer): _block(per_kind[layer.op], filters[layer], layer.int4)
            for layer in supported
        }
        decode = frozenset(_where(layer) for layer in supported if per_kind[layer.op] == "decode")
        key = (tuple(sorted(plan.items())), decode)
        if key not in costs:
            costs[key] = _cost(int8, label, plan, decode, tuple(per_kind.items()), target)
    dense = costs[(tuple(sorted((_where(layer), 0) for layer in supported)), frozenset())]
    # A DECODE mode that compresses nothing (filters under min_tensor_bytes, or no codec
    # shrinks them) builds a model another plan already built: shown once.
    unique: dict[bytes, PlanCost] = {}
    for cost in costs.values():
        unique.setdefault(cost.model, cost)
    compared = tuple(unique.values())
    chosen = min(
        (c for c in compared if c is not dense and _no_slower(c, dense)),
        key=lambda c: (c.flash_bytes, c.instructions or 0),
        default=None,
    )
    if chosen is not None and chosen.flash_bytes >= dense.flash_bytes:
        chosen = None
    return SparsePlan(chosen, dense, compared)


def _where(layer) -> tuple[int, int]:
    return (layer.subgraph, layer.operator)


def _filters(int8: bytes, label: str, supported) -> dict:
    """The dense int8 filter of each supported layer (TFLite layout, output channels first)."""
    model = read_schema(int8, label)
    found = {}
    for layer in supported:
        op = model.subgraphs[layer.subgraph].operators[layer.operator]
        tensor = model.subgraphs[layer.subgraph].tensors[op.inputs[1]]
        found[layer] = dense_filter(model, tensor)
    return found


def _block(mode: str, dense, int4: bool = False) -> int:
    """The block size of one layer under a mode: 0 (dense, also under DECODE), its own rule,
    or its fastest."""
    if mode in ("dense", "decode"):
        return 0
    if mode == "pays":
        return choose_block(dense, int4=int4)
    blocks = feasible_blocks(dense.shape, fmt.BLOCKS)
    return min(blocks, key=lambda b: estimated_instructions(dense, b, int4), default=0)


def _cost(
    int8: bytes, label: str, plan: dict, decode: frozenset, modes, target: Target | None
) -> PlanCost:
    rewritten = rewrite(int8, label, plan=plan)
    model, decoded = rewritten.model, ()
    if decode:
        filters = _filter_tensors(model, label, decode)
        compressed = compress_for_mcu(model, only=frozenset(filters))
        model = compressed.tflite_bytes
        decoded = tuple((filters[(t.subgraph, t.index)], t) for t in compressed.compressed)
    ops = read_model(model).op_types
    runtime = footprint.runtime_flash(ops, target)
    estimate = instructions.estimate(model, target) if target is not None else None
    count = None if estimate is None or estimate.not_estimated else estimate.total
    flatbuffer = len(strip_for_mcu(model)[0])  # as deployed: after the diet
    return PlanCost(modes, rewritten, model, flatbuffer, runtime.total_bytes, count, decoded)


def _no_slower(plan: PlanCost, dense: PlanCost) -> bool:
    """Estimated at no more instructions than dense (a plan that cannot be estimated is taken
    only when every layer it makes sparse pays alone on the Cortex-M4 figures)."""
    if plan.instructions is not None and dense.instructions is not None:
        return plan.instructions <= dense.instructions
    return all(mode in ("dense", "pays") for _, mode in plan.modes)


def _filter_tensors(model: bytes, label: str, where: frozenset) -> dict:
    """(subgraph, filter tensor index) -> (subgraph, operator) of the operators ``where``."""
    subgraphs = read_schema(model, label).subgraphs
    return {(s, subgraphs[s].operators[o].inputs[1]): (s, o) for s, o in where}


def _decoded_layer(plan: PlanCost, layer):
    """The DECODE encoding of a layer's filter under ``plan``, None when stored raw."""
    return dict(plan.decoded).get(_where(layer))


def plan_dict(plan: SparsePlan, int8: bytes, target: Target | None) -> dict:
    """The report's record of a plan: per layer of the plan taken its encoding, bytes and
    estimated instructions (dense vs as taken), and every whole-model plan compared."""
    chosen = plan.chosen
    if chosen is None:
        return {}
    dense_work = _per_op_instructions(int8, target)
    sparse_work = _per_op_instructions(chosen.rewritten.model, target)
    layers = []
    for layer in chosen.rewritten.layers:
        where = _where(layer)
        decoded = _decoded_layer(chosen, layer)
        if decoded is not None:
            layers.append(_decoded_row(layer, decoded, dense_work))
            continue
        layers.append(
            {
                "op": layer.op,
                "filter": layer.filter_name,
                "shape": list(layer.shape),
                "zeros": round(layer.zeros, 4),
                "encoding": _encoding(layer.block, layer.int4),
                "dense_bytes": layer.dense_bytes,
                "stored_bytes": layer.sparse_bytes or layer.dense_bytes,
                "dense_instructions": dense_work.get(where),
                "instructions": (sparse_work if layer.block else dense_work).get(where),
                "why": layer.reason or "taken by the plan",
            }
        )
    return {
        "what": "which FULLY_CONNECTED / CONV_2D run on edge-prune's sparse kernels or have "
        "their filters in a TFLM DECODE codec: the whole-model plan with the least flash "
        "(flatbuffer + runtime code, kernel code shared across layers) estimated at no more "
        "instructions than all dense; decoded_arena_bytes: the largest decoded copy DECODE "
        "writes into the arena",
        "layers": layers,
        "plans": [
            {
                "modes": dict(c.modes),
                "flatbuffer_bytes": c.flatbuffer_bytes,
                "runtime_code_bytes": c.runtime_code_bytes,
                "flash_bytes": c.flash_bytes,
                "instructions": c.instructions,
                "decoded_arena_bytes": c.decoded_arena_bytes,
                "taken": c is chosen,
                "all_dense": c is plan.dense,
            }
            for c in plan.compared
        ],
    }


def _decoded_row(layer, decoded, dense_work: dict) -> dict:
    """A layer whose filter DECODE expands before the dense kernel runs as before."""
    return {
        "op": layer.op,
        "filter": layer.filter_name,
        "shape": list(layer.shape),
        "zeros": round(layer.zeros, 4),
        "encoding": f"DECODE {decoded.codec} ({decoded.detail})",
        "dense_bytes": layer.dense_bytes,
        "stored_bytes": decoded.bytes_after,
        "dense_instructions": dense_work.get(_where(layer)),
        "instructions": dense_work.get(_where(layer)),
        "why": f"taken by the plan: DECODE writes a {decoded.decoded_arena_bytes:,} B copy into "
        "the arena on every inference (its instructions are in the plan's total)",
    }


def _encoding(block: int, int4: bool = False) -> str:
    if block == 0:
        return "dense int4" if int4 else "dense int8"
    kind = "sparse int4" if int4 else "sparse"
    return f"{kind}, unstructured" if block == 1 else f"{kind}, 1x{block} blocks"


def _per_op_instructions(model: bytes, target: Target | None) -> dict[tuple[int, int], int]:
    """Estimated instructions of each operator (subgraph, index) on the target's build."""
    costs = instructions.cost_model(target) if target is not None else None
    if costs is None:
        return {}
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    places = [
        (s, o)
        for s, subgraph in enumerate(model_editor.read(bytes(model)).subgraphs)
        for o, _ in enumerate(subgraph.operators)
    ]
    per_op = {}
    for where, work in zip(places, instructions.operator_work(model), strict=True):
        estimate = costs.estimate([work])
        if not estimate.not_estimated:
            per_op[where] = sum(n for k, n in estimate.per_key.items() if k != instructions.INVOKE)
    return per_op
