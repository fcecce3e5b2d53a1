"""The stages that decide: choose the candidate to deploy, refuse a model that learned nothing,
and give the footprint report of the choice.
"""

from __future__ import annotations

from dataclasses import replace

from edge_prune.errors import NoDeployableArtifactError
from edge_prune.runner import Progress
from edge_prune.stages.candidates import footprint_of
from edge_prune.stages.state import BuildState, ModelKey, keras_score_key


def choose_stage(state: BuildState, progress: Progress) -> BuildState:
    """The smallest artifact that runs on TFLM, stays within the tolerance and fits the target.

    When none fits the target, the choice is made among all of them and the verdict says it
    does not fit. When none qualifies at all, ``no_choice`` says why and ``choice`` stays None.
    """
    from edge_prune.measurement.choose import choose_for_target
    from edge_prune.measurement.timing import budget_ms, over_budget

    state = with_times(state)
    budget = budget_ms(state.inputs.target, state.config.select.max_latency_ms)
    try:
        choice = choose_for_target(
            [a.check for a in state.artifacts],
            {a.name: a.verdict for a in state.artifacts},
            state.baseline_score,
            state.metric.tolerance(state.config.select),
            state.inputs.target.name,
            metric=state.metric,
            objective=state.config.select.objective,
            times_ms={a.name: a.time.ms if a.time else None for a in state.artifacts},
            over_budget={a.name: over_budget(a.time, budget) for a in state.artifacts},
        )
    except NoDeployableArtifactError as e:
        progress(f"  {e}")
        return replace(state, choice=None, no_choice=str(e))
    progress("  " + str(choice).replace("\n", "\n  "))
    return replace(state, choice=choice, no_choice=None)


def with_times(state: BuildState) -> BuildState:
    """Each artifact TFLM runs with its time figure on the run's target (instructions from the
    calibrated costs, :mod:`edge_prune.measurement.timing`)."""
    from edge_prune.measurement.timing import estimate_time

    target = state.inputs.target
    timed = tuple(
        replace(a, time=estimate_time(a.tflite_bytes, target))
        if a.check is not None and a.check.runs_on_tflm and a.time is None
        else a
        for a in state.artifacts
    )
    return replace(state, artifacts=timed)


def trust_stage(state: BuildState, progress: Progress) -> BuildState:
    """Refuse to call a model that learned nothing deployable, whatever its size.

    Checks the dense model's held-out score against chance level and against its training
    score, and the chosen artifact's TFLM score against chance level; sets ``untrustworthy``
    with the figures when any fails. The build then exits 1 and the report says why.
    """
    metric, data = state.metric, state.inputs.data
    chance = metric.chance(data.y_train, data.y_test)
    fmt = metric.format
    scores = state.scores
    dense = scores[keras_score_key(ModelKey.DENSE)]
    train = scores.get(keras_score_key(ModelKey.DENSE, "train"))
    reasons = []
    if metric.no_better_than_chance(dense, chance):
        reasons.append(
            f"the dense model's held-out {metric.name} {fmt(dense)} is at chance level "
            f"({fmt(chance)} by {metric.chance_what()})"
        )
    if train is not None and metric.far_below_training(train, dense):
        reasons.append(
            f"the dense model's held-out {metric.name} {fmt(dense)} is far from its training "
            f"{metric.name} {fmt(train)}: it does not generalise (too little data or epochs)"
        )
    if state.choice is not None:
        deployed = state.choice.chosen
        if metric.no_better_than_chance(deployed.score, chance):
            reasons.append(
                f"the deployable {deployed.name} scores {fmt(deployed.score)} on TFLM, chance "
                f"level is {fmt(chance)}"
            )
    if reasons:
        progress("  WARNING: " + "; ".join(reasons))
    return replace(state, untrustworthy="; ".join(reasons) or None)


def footprint_stage(state: BuildState, progress: Progress) -> BuildState:
    """The footprint report of the chosen artifact, from the measurement its check made."""
    from edge_prune.measurement.report import Report

    if state.choice is None:
        return state
    from edge_prune.measurement.timing import budget_ms

    deployable = state.deployable
    footprint = footprint_of(deployable, state.inputs.target)
    report = Report(
        footprint=footprint,
        verdicts=(deployable.verdict,),
        times=(deployable.time,),
        latency_budget_ms=budget_ms(state.inputs.target, state.config.select.max_latency_ms),
    )
    return replace(state, footprint=report)
