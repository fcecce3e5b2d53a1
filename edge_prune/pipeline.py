"""The stages of a build and the stage lists that ``model``, ``sweep`` and the benchmarks run.

Each stage is a function ``(BuildState, progress) -> BuildState`` wrapped in a
:class:`~edge_prune.runner.Stage`; :func:`~edge_prune.runner.run_stages` runs a list of them.
The lists:

- :data:`MODEL_STAGES` (``make model``): train → float32 baseline on TFLM → structured → prune →
  dead units → cluster → convert (candidates for the MCU, TFLM encodings, flatbuffer diet) →
  check every artifact on TFLM (one run each) → fit decoded weights into the RAM → choose →
  trust (chance level) → footprint.
- :data:`SHARED_STAGES` then :data:`POINT_STAGES` (``sweep``, ``search``): the dense model,
  its baseline and the channel-pruned model are made once; each point reseeds and runs the rest
  with its own config.

Everything that can be refused without TensorFlow (target, config, data, model file) is checked
by :func:`prepare_inputs` first, so bad input costs a second, not a training run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.config import PipelineConfig
from edge_prune.data import Dataset, load_digits, load_npz
from edge_prune.errors import NoDeployableArtifactError
from edge_prune.evaluate import ArtifactCheck
from edge_prune.metrics import Metric, metric_for
from edge_prune.model_io import check_saved_model
from edge_prune.runner import Progress, Stage, run_stages, stderr_progress
from edge_prune.targets import Target

if TYPE_CHECKING:
    import tf_keras

    from edge_prune.choose import DeployableChoice
    from edge_prune.codecs import McuCompressionResult
    from edge_prune.footprint import Verdict
    from edge_prune.macs import ModelCost
    from edge_prune.prune import SparsityReport
    from edge_prune.report import Report
    from edge_prune.schedule import PolynomialDecay
    from edge_prune.structured import DeadUnitResult, StructuredPruneResult


@dataclass(frozen=True)
class Inputs:
    """What a run starts from, validated before TensorFlow is imported."""

    target: Target
    config: PipelineConfig
    data: Dataset
    model_path: Path | None = None
    allow_lambda: bool = False


@dataclass(frozen=True)
class Artifact:
    """One converted flatbuffer, the Keras model it was made from, and what TFLM made of it."""

    name: str
    file_name: str
    tflite_bytes: bytes
    description: str
    reference: str  # key in BuildState.models: the model its TFLM outputs are compared with
    check: ArtifactCheck | None = None
    verdict: Verdict | None = None  # on the run's target, once checked on TFLM
    # The uncompressed artifact whose TFLM outputs this one must reproduce exactly, if any.
    source: str | None = None
    compression: McuCompressionResult | None = None
    compression_codecs: tuple[str, ...] = ()
    uncompressed: bytes | None = None  # the input of the compression (names still in it)
    tensor_names: dict[tuple[int, int], str] = field(default_factory=dict)  # before the diet


@dataclass(frozen=True)
class BuildState:
    """Everything a run knows so far; each stage returns a new one."""

    inputs: Inputs
    models: dict[str, tf_keras.Model] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # the data's metric per model
    costs: dict[str, ModelCost] = field(default_factory=dict)
    structured: StructuredPruneResult | None = None
    sparsity: SparsityReport | None = None
    dead_units: DeadUnitResult | None = None  # units pruning left dead, removed exactly
    artifacts: tuple[Artifact, ...] = ()
    sizes: dict[str, object] = field(default_factory=dict)
    baseline_score: float | None = None  # the dense float32 model's metric on TFLM
    choice: DeployableChoice | None = None
    no_choice: str | None = None  # why nothing qualified, when the choice could not be made
    training: str = ""  # how the dense model was obtained (trained here, or loaded trained)
    untrustworthy: str | None = None  # why the scores say the model learned nothing, if so
    footprint: Report | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def with_pruned(self, model, sparsity: SparsityReport, score: float) -> BuildState:
        """The state after a pruning schedule: its stripped model, sparsity and Keras score."""
        return replace(
            self,
            models={**self.models, "pruned": model},
            sparsity=sparsity,
            scores={**self.scores, "pruned_keras": score},
        )

    @property
    def config(self) -> PipelineConfig:
        return self.inputs.config

    @property
    def metric(self) -> Metric:
        return metric_for(self.inputs.data.y_train)

    @property
    def model_name(self) -> str:
        return self.models["dense"].name

    @property
    def base(self) -> tf_keras.Model:
        """The model magnitude pruning starts from: channel-pruned if that stage ran."""
        return self.models.get("structured", self.models["dense"])

    def artifact(self, name: str) -> Artifact:
        return next(a for a in self.artifacts if a.name == name)

    @property
    def deployable(self) -> Artifact:
        return self.artifact(self.choice.chosen.name)

    def with_config(self, config: PipelineConfig) -> BuildState:
        return replace(self, inputs=replace(self.inputs, config=config))


# ---------------------------------------------------------------------------------- inputs


def prepare_inputs(
    target: str | Path | Target,
    config: PipelineConfig,
    *,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    allow_lambda: bool = False,
) -> Inputs:
    """Load and check target, data and model file; raises ``EdgePruneError`` subclasses."""
    from edge_prune.targets import load_target

    loaded_target = target if isinstance(target, Target) else load_target(target)
    data = load_npz(data_path) if data_path else load_digits(seed=config.train.seed)
    model_path = Path(model_path) if model_path else None
    if model_path:
        check_saved_model(model_path, allow_lambda=allow_lambda)
    check_schedule_fits_data(config, data)
    return Inputs(loaded_target, config, data, model_path, allow_lambda)


def steps_per_epoch(config: PipelineConfig, data: Dataset) -> int:
    return math.ceil(len(data.x_train) / config.train.batch_size)


def check_schedule_fits_data(config: PipelineConfig, data: Dataset) -> PolynomialDecay:
    """The pruning schedule of ``config`` with the data's steps per epoch, every rule checked
    (:func:`edge_prune.schedule.schedule_from_config`); raises ConfigError naming the key."""
    from edge_prune.schedule import schedule_from_config

    return schedule_from_config(config.prune, steps_per_epoch(config, data), data.source)


def load_or_build_model(inputs: Inputs) -> tf_keras.Model:
    """The user's model (checked against the data) or the bundled default CNN."""
    from edge_prune.model_io import load_saved_model
    from edge_prune.prune import check_model
    from edge_prune.train import check_model_fits_data, default_model

    data = inputs.data
    if inputs.model_path is None:
        return default_model(data.input_shape, data.num_classes)
    model = load_saved_model(inputs.model_path, allow_lambda=inputs.allow_lambda)
    check_model(model)
    check_model_fits_data(model, data, str(inputs.model_path))
    return model


# ---------------------------------------------------------------------------------- stages


def train_stage(state: BuildState, progress: Progress) -> BuildState:
    """Build and train the bundled model, or load the user's.

    A loaded model that already scores well on the held-out data (halfway from chance level to
    perfect, :meth:`~edge_prune.metrics.Metric.clearly_learned`) is taken as trained: it is
    not trained again unless ``train.epochs`` is set. When it is trained, its
    own compile settings (optimizer, loss) are used if it was saved compiled.
    """
    from edge_prune.train import (
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
    return replace(
        state,
        models={**state.models, "dense": model},
        scores={
            **state.scores,
            "dense_keras": keras_score(model, data),
            "dense_keras_train": keras_score(model, data, split="train"),
        },
        costs={**state.costs, "dense": _costs(model, state.inputs.target)},
        training=training,
    )


def baseline_stage(state: BuildState, progress: Progress) -> BuildState:
    """The dense model as float32, run on TFLM: the accuracy every artifact is held to."""
    from edge_prune.convert import convert

    artifact = Artifact(
        "float32-dense",
        "model_float32.tflite",
        convert(state.models["dense"], quantization="float").tflite_bytes,
        "dense model before pruning, float32 (the accuracy baseline)",
        reference="dense",
    )
    state = _check_artifacts(replace(state, artifacts=(artifact, *state.artifacts)), progress)
    checked = state.artifact("float32-dense").check
    baseline = checked.score if checked.score is not None else state.scores["dense_keras"]
    return replace(state, baseline_score=baseline)


def structured_stage(state: BuildState, progress: Progress) -> BuildState:
    """Remove whole channels/units (``structured.ratio``), then fine-tune."""
    from edge_prune.structured import prune_channels
    from edge_prune.train import keras_score

    config, data = state.config, state.inputs.data
    if config.structured.ratio <= 0:
        return state
    result = prune_channels(
        state.models["dense"], config.structured.ratio, criterion=config.structured.criterion
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
    return replace(
        state,
        models={**state.models, "structured": smaller},
        structured=result,
        scores={**state.scores, "structured_keras": keras_score(smaller, data)},
        costs={**state.costs, "structured": _costs(smaller, state.inputs.target)},
    )


def seed_stage(state: BuildState, progress: Progress) -> BuildState:
    """Reset the random state, so that each point of a sweep starts alike."""
    from edge_prune.train import seed_everything

    seed_everything(state.config.train.seed)
    return state


def prune_stage(state: BuildState, progress: Progress) -> BuildState:
    """Magnitude pruning by ``prune.schedule``: ``polynomial`` (one-shot polynomial decay with
    fine-tuning), ``iterative`` (``prune.iterative_steps`` rounds of prune → fine-tune) or
    ``rewind`` (polynomial, then the survivors reset to the dense model of epoch
    ``prune.rewind_epoch`` and retrained with the mask fixed). Keeps the stripped model."""
    schedule = state.config.prune.schedule
    if schedule == "iterative":
        return _iterative_prune(state, progress)
    state = _polynomial_prune(state, progress)
    if schedule == "rewind":
        return _rewind(state, progress)
    return state


def _iterative_prune(state: BuildState, progress: Progress) -> BuildState:
    """Prune → fine-tune in ``prune.iterative_steps`` steps of equal density ratio, in the
    epochs the one-shot schedule uses (``prune.epochs``)."""
    from edge_prune.prune import prune_in_stages, sparsity_report
    from edge_prune.train import copy_model, keras_score, loss_for, metrics_for

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
    )
    pruned = staged.model
    sparsity = sparsity_report(pruned)
    score = keras_score(pruned, data)
    progress(
        f"  iterative {targets}: {sparsity.sparsity:.1%} sparse, Keras {state.metric.name} "
        f"{state.metric.format(score)}"
    )
    return state.with_pruned(pruned, sparsity, score)


def _rewind(state: BuildState, progress: Progress) -> BuildState:
    """Reset the survivors to the dense model of epoch ``prune.rewind_epoch`` (``models["early"]``
    when the caller made it, else trained here) and retrain them with the mask fixed."""
    from edge_prune.rewind import early_model, rewind_stage
    from edge_prune.train import seed_everything

    early = state.models.get("early")
    if early is None:
        early = early_model(state.inputs, state.config.prune.rewind_epoch, progress)
    # Reseeded: the retraining starts alike whether the early model was loaded or trained here.
    seed_everything(state.config.train.seed)
    return rewind_stage(replace(state, models={**state.models, "early": early}), progress)


def _polynomial_prune(state: BuildState, progress: Progress) -> BuildState:
    """Polynomial-decay magnitude pruning with fine-tuning; keeps the stripped model."""
    from edge_prune._tf import keras
    from edge_prune.prune import prune, sparsity_report, strip
    from edge_prune.train import fit, keras_score, loss_for, metrics_for

    config, data = state.config, state.inputs.data
    p = config.prune
    schedule = check_schedule_fits_data(config, data)
    wrapped = prune(
        state.base,
        schedule,
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
    sparsity = sparsity_report(pruned)
    score = keras_score(pruned, data)
    progress(
        f"  pruned: Sparsity: {sparsity.zeros}/{sparsity.total} ({sparsity.sparsity:.1%}), "
        f"Keras {state.metric.name} {state.metric.format(score)}"
    )
    return state.with_pruned(pruned, sparsity, score)


def dead_units_stage(state: BuildState, progress: Progress) -> BuildState:
    """Remove the units pruning left dead: all incoming or all outgoing weights zero. The model
    computes the same function (a constant unit folds into the next layer's bias); the
    sparsity report keeps what pruning reached. A model the channel analysis does not handle
    keeps all its units."""
    from edge_prune.errors import UnsupportedModelError
    from edge_prune.structured import remove_dead_units

    try:
        result = remove_dead_units(state.models["pruned"])
    except UnsupportedModelError as e:
        progress(f"  dead units not removed: {e}")
        return state
    if not result.units_removed:
        return replace(state, dead_units=result)
    progress(
        f"  {result.units_removed} dead unit(s) removed exactly: parameters "
        f"{result.params_before:,} -> {result.params_after:,}"
    )
    return replace(state, models={**state.models, "pruned": result.model}, dead_units=result)


def cluster_stage(state: BuildState, progress: Progress) -> BuildState:
    """Sparsity-preserving clustering + a short fine-tune; keeps the stripped clustered model."""
    from edge_prune.cluster import cluster, strip_clustering
    from edge_prune.train import copy_model, keras_score

    config, data = state.config, state.inputs.data
    if not config.compress.enabled:
        return state
    # tfmot wraps the given layer objects, so fine-tuning would change the pruned model itself.
    clustered = cluster(
        copy_model(state.models["pruned"]), config.compress.clusters, preserve_sparsity=True
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
        models={**state.models, "clustered": clustered},
        scores={**state.scores, "clustered_keras": keras_score(clustered, data)},
    )


def convert_stage(state: BuildState, progress: Progress) -> BuildState:
    """Convert the pruned (and clustered) model into the candidates for the MCU.

    - ``int8``: pruned, int8, dense storage;
    - ``int8-sparse``: the same with TFLM-runnable sparse encodings (DECODE pruning bitmask or
      Huffman, chosen per tensor), which must give exactly the outputs of ``int8`` on TFLM;
    - ``int8-densify``: TFLite's own sparse encoding (EXPERIMENTAL_SPARSITY): TFLM cannot run
      it (no DENSIFY kernel), kept for TFLite runtimes that can;
    - when clustered: ``int8-clustered`` (dense storage) and ``int8-clustered-compressed``
      (per tensor the smallest of LUT / pruning / Huffman), and the same pair with per-tensor
      quantization of Dense layers (``-pt``) when that changes the file.

    Every TFLM candidate is put on the flatbuffer diet (names, signature defs and metadata TFLM
    does not read are dropped; the name map is kept for the report).
    """
    from edge_prune.convert import convert

    config, x = state.config, state.inputs.data.x_train
    pruned = state.models["pruned"]
    int8 = convert(pruned, quantization="int8", representative_data=x).tflite_bytes
    densify = convert(
        pruned, quantization="int8", sparse=True, representative_data=x, compare_dense=False
    ).tflite_bytes
    artifacts = [
        _mcu_artifact("int8", "model_int8.tflite", int8, "pruned, int8, dense storage", "pruned"),
        _compressed_artifact(
            "int8-sparse",
            "model_sparse.tflite",
            int8,
            "pruned, int8, TFLM sparse encoding (DECODE pruning bitmask / Huffman per tensor)",
            "pruned",
            source="int8",
            codecs=("pruning", "huffman"),
        ),
        Artifact(
            "int8-densify",
            "model_densify_tflite_only.tflite",
            densify,
            "pruned, int8, TFLite sparse-tensor encoding (EXPERIMENTAL_SPARSITY): needs a "
            "DENSIFY kernel, which TFLM does not have; for TFLite runtimes only",
            "pruned",
        ),
    ]
    if "clustered" in state.models:
        artifacts += _clustered_artifacts(state.models["clustered"], x, config)
    sizes = {"float32_pruned_bytes": len(convert(pruned, quantization="float").tflite_bytes)}
    kept = tuple(a for a in state.artifacts if a.name == "float32-dense")
    state = replace(state, artifacts=(*kept, *artifacts), sizes=sizes)
    _note_densify_size(state, progress)
    return state


def _clustered_artifacts(clustered, x, config: PipelineConfig) -> list[Artifact]:
    from edge_prune.convert import convert

    what = f"pruned, clustered ({config.compress.clusters} values), int8"
    per_channel = convert(clustered, quantization="int8", representative_data=x).tflite_bytes
    per_tensor = convert(
        clustered, quantization="int8", representative_data=x, per_channel_dense=False
    ).tflite_bytes
    variants = [("", per_channel, "")]
    if per_tensor != per_channel:
        variants.append(("-pt", per_tensor, ", per-tensor quantization of Dense layers"))
    artifacts = []
    for suffix, data, how in variants:
        raw_name = f"int8-clustered{suffix}"
        file_suffix = suffix.replace("-pt", "_per_tensor")
        artifacts.append(
            _mcu_artifact(
                raw_name,
                f"model_clustered{file_suffix}.tflite",
                data,
                f"{what}{how}, dense storage",
                "clustered",
            )
        )
        artifacts.append(
            _compressed_artifact(
                f"{raw_name}-compressed",
                f"model_compressed{file_suffix}.tflite",
                data,
                f"{what}{how}, TFLM compression (LUT / pruning bitmask / Huffman per tensor)",
                "clustered",
                source=raw_name,
                lut_bitwidth=config.compress.bitwidth or None,
            )
        )
    return artifacts


def _mcu_artifact(name: str, file_name: str, data: bytes, what: str, reference: str) -> Artifact:
    """An artifact for TFLM, after the flatbuffer diet."""
    from edge_prune.codecs import strip_for_mcu

    lean, names = strip_for_mcu(data)
    return Artifact(name, file_name, lean, what, reference, tensor_names=names)


def _compressed_artifact(
    name: str,
    file_name: str,
    data: bytes,
    what: str,
    reference: str,
    *,
    source: str,
    codecs: tuple[str, ...] | None = None,  # None: the registry's DEFAULT_CODECS
    lut_bitwidth: int | None = None,
    arena_limit_bytes: int | None = None,
) -> Artifact:
    """``data`` with per-tensor TFLM encodings (or LUT at a fixed width), after the diet."""
    from edge_prune.codecs import DEFAULT_CODECS, compress_for_mcu, lut_compress

    codecs = DEFAULT_CODECS if codecs is None else codecs

    if lut_bitwidth:  # asked for one LUT width: a tensor that needs more is an error
        compression = lut_compress(data, bitwidth=lut_bitwidth, strict=True)
    else:
        compression = compress_for_mcu(data, codecs=codecs, arena_limit_bytes=arena_limit_bytes)
    artifact = _mcu_artifact(name, file_name, compression.tflite_bytes, what, reference)
    fixed_lut = lut_bitwidth is not None
    return replace(
        artifact,
        source=source,
        compression=compression,
        compression_codecs=() if fixed_lut else codecs,
        uncompressed=None if fixed_lut else data,
    )


def check_stage(state: BuildState, progress: Progress) -> BuildState:
    """Run every artifact not yet checked on TFLM, once, over the held-out set."""
    state = _check_artifacts(state, progress)
    accuracy = dict(state.scores)
    for a in state.artifacts:
        if a.check.score is not None:
            accuracy[f"{a.name}_tflm"] = a.check.score
    return replace(state, scores=accuracy)


def ram_fit_stage(state: BuildState, progress: Progress) -> BuildState:
    """Compressed artifacts that fit the flash but not the RAM are compressed again with the
    arena the target leaves: tensors whose decoded copy would push the arena over it stay raw
    (largest first), and each such tensor's record says so."""
    target = state.inputs.target
    limit = target.ram_bytes - target.reserved_ram_bytes
    refit = []
    for a in state.artifacts:
        v = a.verdict
        needs = (
            a.uncompressed is not None
            and v is not None
            and v.fits_flash
            and not v.fits_ram
            and limit > 0
        )
        if needs:
            progress(f"  {a.name}: arena {v.arena_bytes:,} B > {limit:,} B left on {target.name}")
            a = _compressed_artifact(
                a.name,
                a.file_name,
                a.uncompressed,
                a.description,
                a.reference,
                source=a.source,
                codecs=a.compression_codecs,
                arena_limit_bytes=limit,
            )
        refit.append(a)
    if all(a.check is not None for a in refit):
        return state
    return check_stage(replace(state, artifacts=tuple(refit)), progress)


def choose_stage(state: BuildState, progress: Progress) -> BuildState:
    """The smallest artifact that runs on TFLM, stays within the tolerance and fits the target.

    When none fits the target, the choice is made among all of them and the verdict says it
    does not fit. When none qualifies at all, ``no_choice`` says why and ``choice`` stays None.
    """
    from edge_prune.choose import choose_for_target

    try:
        choice = choose_for_target(
            [a.check for a in state.artifacts],
            {a.name: a.verdict for a in state.artifacts},
            state.baseline_score,
            state.metric.tolerance(state.config.select),
            state.inputs.target.name,
            metric=state.metric,
            objective=state.config.select.objective,
        )
    except NoDeployableArtifactError as e:
        progress(f"  {e}")
        return replace(state, choice=None, no_choice=str(e))
    progress("  " + str(choice).replace("\n", "\n  "))
    return replace(state, choice=choice, no_choice=None)


def trust_stage(state: BuildState, progress: Progress) -> BuildState:
    """Refuse to call a model that learned nothing deployable, whatever its size.

    Checks the dense model's held-out score against chance level and against its training
    score, and the chosen artifact's TFLM score against chance level; sets ``untrustworthy``
    with the figures when any fails. The build then exits 1 and the report says why.
    """
    metric, data = state.metric, state.inputs.data
    chance = metric.chance(data.y_train, data.y_test)
    fmt = metric.format
    dense, train = state.scores["dense_keras"], state.scores.get("dense_keras_train")
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
    from edge_prune.report import Report

    if state.choice is None:
        return state
    deployable = state.deployable
    footprint = _footprint(deployable)
    return replace(state, footprint=Report(footprint=footprint, verdicts=(deployable.verdict,)))


def _describe_structured(state: BuildState) -> str:
    ratio = state.config.structured.ratio
    return f"structured pruning: {ratio:.0%} of channels" if ratio > 0 else "structured: off"


def _describe_cluster(state: BuildState) -> str:
    c = state.config.compress
    if not c.enabled:
        return "clustering: off"
    return f"clustering to {c.clusters} values, sparsity preserved"


TRAIN = Stage("dense", train_stage, "dense training")
BASELINE = Stage("baseline", baseline_stage, "float32 baseline on the TFLM interpreter")
STRUCTURED = Stage("structured", structured_stage, _describe_structured)
SEED = Stage("seed", seed_stage, "seeding")
PRUNE = Stage(
    "prune",
    prune_stage,
    lambda s: f"magnitude pruning to {s.config.prune.final_sparsity:.0%} "
    f"({s.config.prune.schedule} schedule)",
)
DEAD_UNITS = Stage("dead_units", dead_units_stage, "removing units pruning left dead")
CLUSTER = Stage("cluster", cluster_stage, _describe_cluster)
CONVERT = Stage(
    "convert", convert_stage, "converting: int8, TFLM sparse encodings, clustered + compressed"
)
CHECK = Stage("check", check_stage, "running every artifact on the TFLM interpreter")
RAM_FIT = Stage(
    "ram_fit",
    ram_fit_stage,
    lambda s: f"fitting decoded weights into the RAM of {s.inputs.target.name}",
)
CHOOSE = Stage(
    "choose", choose_stage, lambda s: f"choosing the artifact for {s.inputs.target.name}"
)  # noqa: E501
TRUST = Stage("trust", trust_stage, "checking the scores against chance level")
FOOTPRINT = Stage("footprint", footprint_stage, lambda s: f"footprint on {s.inputs.target.name}")

SHARED_STAGES = (TRAIN, BASELINE, STRUCTURED)
POINT_STAGES = (
    SEED,
    PRUNE,
    DEAD_UNITS,
    CLUSTER,
    CONVERT,
    CHECK,
    RAM_FIT,
    CHOOSE,
    TRUST,
    FOOTPRINT,
)
# ``make model`` is one point after the shared stages, without the reseeding a point does (so
# its training continues the dense model's random state, as it always has).
MODEL_STAGES = SHARED_STAGES + tuple(stage for stage in POINT_STAGES if stage is not SEED)


def run_pipeline(inputs: Inputs, progress: Progress = stderr_progress) -> BuildState:
    """The ``make model`` pipeline; raises NoDeployableArtifactError when nothing qualifies."""
    progress(f"edge-prune: {inputs.data.describe()} for target {inputs.target.name}")
    state = run_stages(MODEL_STAGES, BuildState(inputs), progress)
    if state.choice is None:
        raise NoDeployableArtifactError(state.no_choice)
    return state


# --------------------------------------------------------------------------------- helpers


def _check_artifacts(state: BuildState, progress: Progress) -> BuildState:
    """Check each artifact that has no check yet: one TFLM run gives outputs and arena."""
    from edge_prune.evaluate import check, same_outputs_as
    from edge_prune.footprint import check as verdict_on

    data, target = state.inputs.data, state.inputs.target
    predictions: dict[str, object] = {}
    checked = []
    for a in state.artifacts:
        if a.check is None:
            if a.reference not in predictions:
                predictions[a.reference] = state.models[a.reference].predict(
                    data.x_test, batch_size=256, verbose=0
                )
            result = check(
                a.tflite_bytes,
                data.x_test,
                predictions[a.reference],
                labels=data.y_test,
                name=a.name,
                metric=state.metric,
            )
            if a.source is not None:
                source = next(c for c in checked if c.name == a.source)
                result = same_outputs_as(result, source.check)
            progress(f"  {result}")
            a = replace(a, check=result)
            if result.runs_on_tflm:
                a = replace(a, verdict=verdict_on(_footprint(a), target))
        checked.append(a)
    return replace(state, artifacts=tuple(checked))


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
    from edge_prune.train import compile_for_training, fit

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
    from edge_prune.train import reestimate_batchnorm

    count = reestimate_batchnorm(model, data.x_train)
    if count:
        progress(f"  BatchNorm statistics of {count} layer(s) re-estimated on the training data")


def _footprint(artifact: Artifact):
    """The artifact's footprint from the arena its TFLM check recorded (no second run)."""
    from edge_prune.footprint import measure

    c = artifact.check
    return measure(artifact.tflite_bytes, arena=c.arena, label=artifact.name)


def _note_densify_size(state: BuildState, progress: Progress) -> None:
    sizes = {a.name: len(a.tflite_bytes) for a in state.artifacts}
    if sizes["int8-densify"] >= sizes["int8"]:
        progress(
            f"  note: at {state.sparsity.sparsity:.1%} sparsity TFLite's sparse encoding is not "
            f"smaller than dense int8 storage ({sizes['int8-densify']:,} B vs "
            f"{sizes['int8']:,} B): its index arrays cost more than the zeros it drops"
        )


def _costs(model: tf_keras.Model, target: Target) -> ModelCost:
    """Parameters and MACs per layer, with the target's latency estimate where it has figures."""
    from edge_prune.macs import count_costs, estimate_latency_for_target

    cost = count_costs(model)
    return estimate_latency_for_target(cost, target) or cost
