"""The state a build carries from stage to stage, and the inputs it starts from.

- :class:`Inputs`: target, config, data and model file, checked by :func:`prepare_inputs`
  before TensorFlow is imported, so bad input costs a second, not a training run.
- :class:`BuildState`: everything a run knows so far; each stage returns a new one.
- :class:`ModelKey` / :class:`ArtifactName`: the keys of ``BuildState.models`` and the names
  of the candidates; strings underneath (report JSON and file names use them as they are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from edge_prune.config import PipelineConfig
from edge_prune.data import Dataset, load_digits, load_npz
from edge_prune.measurement.evaluate import ArtifactCheck
from edge_prune.measurement.metrics import Metric, metric_for
from edge_prune.measurement.targets import Target
from edge_prune.training.model_io import check_saved_model

if TYPE_CHECKING:
    import tf_keras

    from edge_prune.measurement.choose import DeployableChoice
    from edge_prune.measurement.codecs import McuCompressionResult
    from edge_prune.measurement.footprint import Verdict
    from edge_prune.measurement.report import Report
    from edge_prune.measurement.timing import TimeFigure
    from edge_prune.training.macs import ModelCost
    from edge_prune.training.prune import SparsityReport
    from edge_prune.training.schedule import PolynomialDecay
    from edge_prune.training.structured import DeadUnitResult, StructuredPruneResult


class ModelKey(StrEnum):
    """The Keras models a build makes, as keys of ``BuildState.models``."""

    DENSE = "dense"  # trained (or loaded) before any pruning
    STRUCTURED = "structured"  # after channel removal and its fine-tune
    EARLY = "early"  # the dense model at the rewinding epoch
    PRUNED = "pruned"  # after magnitude pruning, wrappers stripped
    CLUSTERED = "clustered"  # the pruned model clustered
    INT4 = "int4"  # the pruned model with 4-bit weight fake-quantization


class ArtifactName(StrEnum):
    """The candidates a build converts; the choice deploys one of them."""

    FLOAT32_DENSE = "float32-dense"
    INT8 = "int8"
    INT8_SPARSE = "int8-sparse"  # TFLM DECODE encodings of INT8
    INT8_PRUNED = "int8-pruned"  # INT8 with pruned FC/CONV on edge-prune's sparse kernels
    INT8_DENSIFY = "int8-densify"  # TFLite's sparse encoding: TFLM cannot run it
    INT8_CLUSTERED = "int8-clustered"
    INT8_CLUSTERED_COMPRESSED = "int8-clustered-compressed"
    INT8_CLUSTERED_PT = "int8-clustered-pt"
    INT8_CLUSTERED_PT_COMPRESSED = "int8-clustered-pt-compressed"
    INT4_WEIGHTS = "int4-weights"  # int8 activations, packed INT4 kernels; never compressed
    INT4_PRUNED = "int4-pruned"  # INT4_WEIGHTS with pruned FC/CONV on the int4 sparse kernels


def keras_score_key(model: ModelKey, split: str = "") -> str:
    """The key of a Keras model's score in ``BuildState.scores``: ``dense_keras`` (held-out),
    ``dense_keras_train`` (training set)."""
    return f"{model}_keras" + (f"_{split}" if split else "")


def tflm_score_key(artifact: str) -> str:
    """The key of an artifact's TFLM score in ``BuildState.scores``."""
    return f"{artifact}_tflm"


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

    name: ArtifactName
    file_name: str
    tflite_bytes: bytes
    description: str
    reference: ModelKey  # the model: the model its TFLM outputs are compared with
    check: ArtifactCheck | None = None
    verdict: Verdict | None = None  # on the run's target, once checked on TFLM
    # The uncompressed artifact whose TFLM outputs this one must reproduce exactly, if any.
    source: ArtifactName | None = None
    compression: McuCompressionResult | None = None
    compression_codecs: tuple[str, ...] = ()
    uncompressed: bytes | None = None  # the input of the compression (names still in it)
    tensor_names: dict[tuple[int, int], str] = field(default_factory=dict)  # before the diet
    time: TimeFigure | None = None  # instructions and time per inference on the run's target
    # Scored and arena-measured through this artifact (its exact dense equivalent) because TFLM's
    # host interpreter cannot run this one here; ``scored_note`` says why.
    scored_as: ArtifactName | None = None
    scored_note: str = ""
    # int8-pruned / int4-pruned: per layer its encoding (dense or sparse kernel), plans compared
    sparse_plan: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BuildState:
    """Everything a run knows so far; each stage returns a new one."""

    inputs: Inputs
    models: dict[ModelKey, tf_keras.Model] = field(default_factory=dict)
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

    @property
    def config(self) -> PipelineConfig:
        return self.inputs.config

    @property
    def metric(self) -> Metric:
        return metric_for(self.inputs.data.y_train)

    @property
    def model_name(self) -> str:
        return self.models[ModelKey.DENSE].name

    @property
    def base(self) -> tf_keras.Model:
        """The model magnitude pruning starts from: channel-pruned if that stage ran."""
        return self.models.get(ModelKey.STRUCTURED, self.models[ModelKey.DENSE])

    def artifact(self, name: str) -> Artifact:
        """The artifact called ``name`` (an :class:`ArtifactName`); KeyError names it if absent."""
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(f"no artifact {name!r} in this build: {[a.name for a in self.artifacts]}")

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
    from edge_prune.measurement.targets import load_target

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
    (:func:`edge_prune.training.schedule.schedule_from_config`); raises ConfigError naming the
    key."""
    from edge_prune.training.schedule import schedule_from_config

    return schedule_from_config(config.prune, steps_per_epoch(config, data), data.source)


def load_or_build_model(inputs: Inputs) -> tf_keras.Model:
    """The user's model (checked against the data) or the bundled default CNN."""
    from edge_prune.training.model_io import load_saved_model
    from edge_prune.training.prune import check_model
    from edge_prune.training.train import check_model_fits_data, default_model

    data = inputs.data
    if inputs.model_path is None:
        return default_model(data.input_shape, data.num_classes)
    model = load_saved_model(inputs.model_path, allow_lambda=inputs.allow_lambda)
    check_model(model)
    check_model_fits_data(model, data, str(inputs.model_path))
    return model


def model_costs(model: tf_keras.Model, target: Target) -> ModelCost:
    """Parameters and MACs per layer, with the ops of the int8 model the build deploys and the
    target's latency estimate where it has figures."""
    from edge_prune.training.macs import count_costs, estimate_latency_for_target

    cost = count_costs(model, quantization="int8")
    return estimate_latency_for_target(cost, target) or cost
