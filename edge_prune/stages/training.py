"""The stages that make Keras models: train, remove channels, prune (one stage per schedule),
remove dead units, cluster.

Each is ``(BuildState, progress) -> BuildState``; :mod:`edge_prune.pipeline` names them and
plans their order. The pruning schedules end alike (:func:`_with_pruned`): the stripped model
under ``ModelKey.PRUNED``, its sparsity and its Keras score.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from edge_prune.errors import ConfigError
from edge_prune.runner import Progress
from edge_prune.stages.state import (
    BuildState,
    Inputs,
    ModelKey,
    check_schedule_fits_data,
    keras_score_key,
    load_or_build_model,
    model_costs,
)

if TYPE_CHECKING:
    import tf_keras

    from edge_prune.data import Dataset


def train_stage(state: BuildState, progress: Progress) -> BuildState:
    """Build and train the bundled model, or load the user's.

    A loaded model that already scores well on the held-out data (halfway from chance level to
    perfect, :meth:`~edge_prune.measurement.metrics.Metric.clearly_learned`) is taken as trained:
    it is not trained again unless ``train.epochs`` is set. When it is trained, its
    own compile settings (optimizer, loss) are used if it was saved compiled.
    """
    from edge_prune.training.train import (
        compile_as_the_user_did,
        compile_for_training,
        fit,
        keras_score,
        seed_everything,
    )

    config, data, metric = state.config, state.inputs.data, state.metric
    seed_everything(config.train.seed)
    model = load_or_build_model(state.inputs)
    epochs = config.train.epochs
    if state.inputs.model_path is None:
        compile_for_training(model, config.train.learning_rate, data)
        training = f"bundled model trained {epochs} epochs"
    else:
        before = keras_score(model, data)
        chance = metric.chance(data.y_train, data.y_test)
        if not config.is_set("train.epochs") and metric.clearly_learned(before, chance):
            epochs = 0
            training = (
                f"loaded model already trained ({metric.name} {metric.format(before)} on the "
                f"held-out data, chance {metric.format(chance)}): not trained again (set "
                "train.epochs to train it)"
            )
        else:
            how = compile_as_the_user_did(model, config.train.learning_rate, data)
            training = f"loaded model trained {epochs} epochs ({how})"
    progress(f"  {training}")
    fit(
        model,
        data,
        batch_size=config.train.batch_size,
        epochs=epochs,
        stage="dense",
        progress=progress,
    )
    _reestimate_batchnorm(model, data, progress)
    return with_dense(state, model, training)


def with_dense(state: BuildState, model, training: str) -> BuildState:
    """The state with the dense model, its held-out and training scores, its costs and how it
    was obtained (``train`` stage, and the search's cached dense model)."""
    from edge_prune.training.train import keras_score

    data = state.inputs.data
    return replace(
        state,
        models={**state.models, ModelKey.DENSE: model},
        scores={
            **state.scores,
            keras_score_key(ModelKey.DENSE): keras_score(model, data),
            keras_score_key(ModelKey.DENSE, "train"): keras_score(model, data, split="train"),
        },
        costs={**state.costs, ModelKey.DENSE: model_costs(model, state.inputs.target)},
        training=training,
    )


def structured_stage(state: BuildState, progress: Progress) -> BuildState:
    """Remove whole channels/units (``structured.ratio``), then fine-tune."""
    from edge_prune.training.structured import prune_channels

    config, data = state.config, state.inputs.data
    if config.structured.ratio <= 0:
        return state
    result = prune_channels(
        state.models[ModelKey.DENSE], config.structured.ratio, criterion=config.structured.criterion
    )
    progress("  " + str(result).replace("\n", "\n  "))
    smaller = result.model
    _fine_tune(
        smaller,
        state,
        config.prune.learning_rate,
        config.structured.epochs,
        "structured fine-tune",
        progress,
    )
    _reestimate_batchnorm(smaller, data, progress)
    return with_structured(state, smaller, result)


def with_structured(state: BuildState, model, result) -> BuildState:
    """The state with the channel-pruned model, what channel removal did, its Keras score and
    its costs (``structured`` stage, and the search's cached model of a ratio)."""
    from edge_prune.training.train import keras_score

    return replace(
        state,
        models={**state.models, ModelKey.STRUCTURED: model},
        structured=result,
        scores={
            **state.scores,
            keras_score_key(ModelKey.STRUCTURED): keras_score(model, state.inputs.data),
        },
        costs={**state.costs, ModelKey.STRUCTURED: model_costs(model, state.inputs.target)},
    )


def seed_stage(state: BuildState, progress: Progress) -> BuildState:
    """Reset the random state, so that each point of a sweep starts alike."""
    from edge_prune.training.train import seed_everything

    seed_everything(state.config.train.seed)
    return state


def iterative_prune_stage(state: BuildState, progress: Progress) -> BuildState:
    """Prune → fine-tune in ``prune.iterative_steps`` steps of equal density ratio, in the
    epochs the one-shot schedule uses (``prune.epochs``)."""
    from edge_prune.training.prune import prune_in_stages
    from edge_prune.training.train import copy_model, loss_for, metrics_for

    config, data = state.config, state.inputs.data
    p = config.prune
    density = 1.0 - p.final_sparsity
    steps = p.iterative_steps
    targets = [round(1.0 - density ** ((i + 1) / steps), 4) for i in range(steps)]
    targets = sorted(set(t for t in targets if t > 0)) or [p.final_sparsity]
    per_step = max(2, p.epochs // len(targets))
    staged = prune_in_stages(
        copy_model(state.base),
        targets,
        loss=loss_for(state.base, data),
        metrics=metrics_for(data),
        x=data.x_train,
        y=data.y_train,
        batch_size=config.train.batch_size,
        prune_epochs=per_step // 2,
        fine_tune_epochs=per_step - per_step // 2,
        learning_rate=p.learning_rate,
        fine_tune_learning_rate=p.learning_rate / 10,
        block=p.block,
    )
    return _with_pruned(state, staged.model, f"iterative {targets}", progress)


def polynomial_prune_stage(state: BuildState, progress: Progress) -> BuildState:
    """Polynomial-decay magnitude pruning with fine-tuning; keeps the stripped model."""
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune, strip
    from edge_prune.training.train import fit, loss_for, metrics_for

    config, data = state.config, state.inputs.data
    p = config.prune
    schedule = check_schedule_fits_data(config, data)
    wrapped = prune(
        state.base,
        schedule,
        block=p.block,
        optimizer=keras.optimizers.Adam(p.learning_rate),
        loss=loss_for(state.base, data),
        metrics=metrics_for(data),
    )
    fit(
        wrapped.model,
        data,
        batch_size=config.train.batch_size,
        epochs=p.epochs,
        stage="prune",
        progress=progress,
        callbacks=tuple(wrapped.callbacks),
    )
    pruned = strip(wrapped)
    _reestimate_batchnorm(pruned, data, progress)
    return _with_pruned(state, pruned, "pruned", progress)


def early_stage(state: BuildState, progress: Progress) -> BuildState:
    """The dense model at epoch ``prune.rewind_epoch`` (the rewinding point), unless the caller
    gave one (``ModelKey.EARLY``, e.g. from the search's cache)."""
    if ModelKey.EARLY in state.models:
        return state
    early = early_model(state.inputs, state.config.prune.rewind_epoch, progress)
    return replace(state, models={**state.models, ModelKey.EARLY: early})


def early_model(inputs: Inputs, epochs: int, progress: Progress) -> tf_keras.Model:
    """The dense model after ``epochs`` epochs of the ``train`` stage's seeded training: with
    op determinism on, the dense run's state after that many epochs."""
    from edge_prune.training.train import compile_for_training, fit, seed_everything

    config = inputs.config
    if not 0 <= epochs <= config.train.epochs:
        raise ConfigError(
            f"rewind epoch: got {epochs}, expected 0 to train.epochs ({config.train.epochs})"
        )
    seed_everything(config.train.seed)
    model = load_or_build_model(inputs)
    compile_for_training(model, config.train.learning_rate, inputs.data)
    fit(
        model,
        inputs.data,
        batch_size=config.train.batch_size,
        epochs=epochs,
        stage=f"dense to epoch {epochs} (rewind point)",
        progress=progress,
    )
    return model


def rewind_stage(state: BuildState, progress: Progress) -> BuildState:
    """Reset the pruned model's surviving weights to ``ModelKey.EARLY`` and retrain them with
    the mask fixed (:mod:`edge_prune.training.rewind`)."""
    from edge_prune.training.rewind import retrain_with_fixed_mask, rewind
    from edge_prune.training.train import seed_everything

    config, data = state.config, state.inputs.data
    if ModelKey.EARLY not in state.models:
        raise ConfigError("rewind: no early model recorded (models['early']) to rewind to")
    if ModelKey.STRUCTURED in state.models:
        raise ConfigError(
            "rewind: the early weights are those of the dense model; rewinding after channel "
            "removal (structured.ratio > 0) is not supported"
        )
    # Reseeded: the retraining starts alike whether the early model was loaded or trained here.
    seed_everything(config.train.seed)
    model, masks = rewind(state.models[ModelKey.PRUNED], state.models[ModelKey.EARLY].get_weights())
    retrain_with_fixed_mask(
        model,
        masks,
        data,
        epochs=config.prune.epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.learning_rate,
        progress=progress,
    )
    return _with_pruned(state, model, "rewound and retrained", progress)


def _with_pruned(state: BuildState, model, what: str, progress: Progress) -> BuildState:
    """The end every pruning schedule shares: the stripped model under ``ModelKey.PRUNED``, its
    sparsity report and its Keras score, and one progress line saying them."""
    from edge_prune.training.prune import sparsity_report
    from edge_prune.training.train import keras_score

    sparsity = sparsity_report(model)
    score = keras_score(model, state.inputs.data)
    progress(
        f"  {what}: {sparsity.zeros}/{sparsity.total} weights zero ({sparsity.sparsity:.1%}), "
        f"Keras {state.metric.name} {state.metric.format(score)}"
    )
    return replace(
        state,
        models={**state.models, ModelKey.PRUNED: model},
        sparsity=sparsity,
        scores={**state.scores, keras_score_key(ModelKey.PRUNED): score},
    )


def dead_units_stage(state: BuildState, progress: Progress) -> BuildState:
    """Remove the units pruning left dead: all incoming or all outgoing weights zero. The model
    computes the same function (a constant unit folds into the next layer's bias); the
    sparsity report keeps what pruning reached. A model the channel analysis does not handle
    keeps all its units."""
    from edge_prune.errors import UnsupportedModelError
    from edge_prune.training.structured import remove_dead_units

    try:
        result = remove_dead_units(state.models[ModelKey.PRUNED])
    except UnsupportedModelError as e:
        progress(f"  dead units not removed: {e}")
        return state
    if not result.units_removed:
        return replace(state, dead_units=result)
    progress(
        f"  {result.units_removed} dead unit(s) removed exactly: parameters "
        f"{result.params_before:,} -> {result.params_after:,}"
    )
    return replace(state, models={**state.models, ModelKey.PRUNED: result.model}, dead_units=result)


def cluster_stage(state: BuildState, progress: Progress) -> BuildState:
    """Sparsity-preserving clustering + a short fine-tune; keeps the stripped clustered model."""
    from edge_prune.training.cluster import cluster, strip_clustering
    from edge_prune.training.train import copy_model, keras_score

    config, data = state.config, state.inputs.data
    if not config.compress.enabled:
        return state
    # tfmot wraps the given layer objects, so fine-tuning would change the pruned model itself.
    clustered = cluster(
        copy_model(state.models[ModelKey.PRUNED]), config.compress.clusters, preserve_sparsity=True
    )
    _fine_tune(
        clustered,
        state,
        config.compress.learning_rate,
        config.compress.epochs,
        "cluster fine-tune",
        progress,
    )
    clustered = strip_clustering(clustered)
    _reestimate_batchnorm(clustered, data, progress)
    return replace(
        state,
        models={**state.models, ModelKey.CLUSTERED: clustered},
        scores={**state.scores, keras_score_key(ModelKey.CLUSTERED): keras_score(clustered, data)},
    )


def _fine_tune(
    model: tf_keras.Model,
    state: BuildState,
    learning_rate: float,
    epochs: int,
    stage: str,
    progress: Progress,
) -> None:
    """Compile for the data's task at ``learning_rate`` and train ``epochs`` epochs, one
    progress line per epoch labelled ``stage``."""
    from edge_prune.training.train import compile_for_training, fit

    compile_for_training(model, learning_rate, state.inputs.data)
    fit(
        model,
        state.inputs.data,
        batch_size=state.config.train.batch_size,
        epochs=epochs,
        stage=stage,
        progress=progress,
    )


def _reestimate_batchnorm(model: tf_keras.Model, data: Dataset, progress: Progress) -> None:
    from edge_prune.training.train import reestimate_batchnorm

    count = reestimate_batchnorm(model, data.x_train)
    if count:
        progress(f"  BatchNorm statistics of {count} layer(s) re-estimated on the training data")
