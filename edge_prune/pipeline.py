"""The stages of a build by name, and :func:`plan`: which of them a config runs, in what order.

Every runner takes its stage lists from :func:`plan` (``make model``, ``sweep``, ``search``, the
benchmarks); the stage functions live in :mod:`edge_prune.stages`. For ``make model``:

train → float32 baseline on TFLM → structured → prune (the config's schedule) → dead units →
cluster → convert (candidates for the MCU, TFLM encodings, flatbuffer diet) → int4 weights →
check every artifact on TFLM (one run each) → fit decoded weights into the RAM → choose → trust
(chance level) → footprint.

``sweep`` and ``search`` make the dense model, its baseline, each channel-removal ratio's model
and the rewinding point once (:attr:`Plan.dense`, :attr:`Plan.baseline`, :attr:`Plan.channels`,
:attr:`Plan.early`) and run :attr:`Plan.point` for each point, reseeded first.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_prune.config import PipelineConfig
from edge_prune.errors import NoDeployableArtifactError
from edge_prune.runner import Progress, Stage, run_stages, stderr_progress
from edge_prune.stages import candidates, int4, training, verdict
from edge_prune.stages.state import BuildState, Inputs

__all__ = ["Plan", "plan", "run_pipeline"]

Stages = tuple[Stage[BuildState], ...]


def _describe_structured(state: BuildState) -> str:
    ratio = state.config.structured.ratio
    return f"structured pruning: {ratio:.0%} of channels" if ratio > 0 else "structured: off"


def _describe_cluster(state: BuildState) -> str:
    c = state.config.compress
    if not c.enabled:
        return "clustering: off"
    return f"clustering to {c.clusters} values, sparsity preserved"


def _describe_prune(state: BuildState) -> str:
    p = state.config.prune
    return f"magnitude pruning to {p.final_sparsity:.0%} ({p.schedule} schedule)"


TRAIN = Stage("dense", training.train_stage, "dense training")
BASELINE = Stage("baseline", candidates.baseline_stage, "float32 baseline on the TFLM interpreter")
STRUCTURED = Stage("structured", training.structured_stage, _describe_structured)
SEED = Stage("seed", training.seed_stage, "seeding")
POLYNOMIAL = Stage("prune", training.polynomial_prune_stage, _describe_prune)
ITERATIVE = Stage("prune", training.iterative_prune_stage, _describe_prune)
EARLY = Stage(
    "early",
    training.early_stage,
    lambda s: f"dense model at epoch {s.config.prune.rewind_epoch} (the rewinding point)",
)
REWIND = Stage(
    "rewind",
    training.rewind_stage,
    "rewinding the surviving weights to the early model; retraining with the mask fixed",
)
DEAD_UNITS = Stage("dead_units", training.dead_units_stage, "removing units pruning left dead")
CLUSTER = Stage("cluster", training.cluster_stage, _describe_cluster)
CONVERT = Stage(
    "convert",
    candidates.convert_stage,
    "converting: int8, TFLM sparse encodings, clustered + compressed",
)
INT4 = Stage(
    "int4",
    int4.int4_stage,
    lambda s: f"int4 weights: {s.config.int4.epochs}-epoch 4-bit QAT of the pruned model"
    if s.config.int4.epochs
    else "int4 weights: the pruned model's weights rounded to 4 bits",
)
CHECK = Stage("check", candidates.check_stage, "running every artifact on the TFLM interpreter")
RAM_FIT = Stage(
    "ram_fit",
    candidates.ram_fit_stage,
    lambda s: f"fitting decoded weights into the RAM of {s.inputs.target.name}",
)
CHOOSE = Stage(
    "choose", verdict.choose_stage, lambda s: f"choosing the artifact for {s.inputs.target.name}"
)
TRUST = Stage("trust", verdict.trust_stage, "checking the scores against chance level")
FOOTPRINT = Stage(
    "footprint", verdict.footprint_stage, lambda s: f"footprint on {s.inputs.target.name}"
)

# One list per ``prune.schedule``. Rewinding prunes first: the mask comes from the polynomial
# run, then the survivors go back to the early model (made here unless the caller gave it).
PRUNING: dict[str, Stages] = {
    "polynomial": (POLYNOMIAL,),
    "iterative": (ITERATIVE,),
    "rewind": (POLYNOMIAL, EARLY, REWIND),
}


@dataclass(frozen=True)
class Plan:
    """The stage lists of one config.

    ``model``: what ``make model`` runs. For runs that share models between points:
    ``dense`` (the trained dense model), ``baseline`` (its float32 check on TFLM), ``channels``
    (a channel-removal ratio's model, reseeded first so that it does not depend on which
    ratios were made before it), ``early`` (the rewinding point) and ``point`` (the rest,
    reseeded first, so that each point starts alike).
    """

    model: Stages
    dense: Stages
    baseline: Stages
    channels: Stages
    early: Stages
    point: Stages


def plan(config: PipelineConfig) -> Plan:
    """The stage lists for ``config`` (its pruning schedule decides the pruning stages)."""
    after_channels = (
        *PRUNING[config.prune.schedule],
        DEAD_UNITS,
        CLUSTER,
        CONVERT,
        INT4,
        CHECK,
        RAM_FIT,
        CHOOSE,
        TRUST,
        FOOTPRINT,
    )
    # ``make model`` does not reseed between stages: its pruning continues the dense model's
    # random state, as it always has.
    return Plan(
        model=(TRAIN, BASELINE, STRUCTURED, *after_channels),
        dense=(TRAIN,),
        baseline=(BASELINE,),
        channels=(SEED, STRUCTURED),
        early=(EARLY,),
        point=(SEED, *after_channels),
    )


def run_pipeline(inputs: Inputs, progress: Progress = stderr_progress) -> BuildState:
    """The ``make model`` pipeline; raises NoDeployableArtifactError when nothing qualifies."""
    progress(f"edge-prune: {inputs.data.describe()} for target {inputs.target.name}")
    state = run_stages(plan(inputs.config).model, BuildState(inputs), progress)
    if state.choice is None:
        raise NoDeployableArtifactError(state.no_choice)
    return state
