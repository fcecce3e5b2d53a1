"""The whole pipeline behind ``make model``: train, prune, strip, cluster, convert, check on TFLM,
choose the deployable artifact, measure it against a target, write ``build/<target>/``.

Everything that can be refused without TensorFlow (target, config, data, model file) is checked
first, so bad input costs a second, not a training run. Stages report progress on stderr.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_prune.config import PipelineConfig
from edge_prune.data import Dataset, load_digits, load_npz
from edge_prune.errors import ConfigError, DataError, EdgePruneError
from edge_prune.model_io import check_saved_model

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Inputs:
    """What a run starts from, validated before TensorFlow is imported."""

    target: Any
    config: PipelineConfig
    data: Dataset
    model_path: Path | None = None
    allow_lambda: bool = False


@dataclass
class Candidate:
    """One converted artifact and what is known about it."""

    name: str
    file_name: str
    tflite_bytes: bytes
    description: str
    reference: str = "pruned"  # the Keras model its TFLM outputs are compared with
    check: Any = None  # deployability.DeployabilityReport, once checked on TFLM
    fits: bool | None = None  # whether it fits the target, once measured


@dataclass
class PipelineResult:
    """Everything ``report.json`` records about one run."""

    inputs: Inputs
    model_name: str
    accuracy: dict[str, float] = field(default_factory=dict)
    sparsity: Any = None
    structured: Any = None
    macs: dict[str, Any] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    choice: Any = None
    footprint: Any = None
    sizes: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def deployable(self) -> Candidate:
        return next(c for c in self.candidates if c.name == self.choice.chosen.name)


def prepare_inputs(
    target: str | Path,
    config: PipelineConfig,
    *,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    allow_lambda: bool = False,
) -> Inputs:
    """Load and check target, data and model file; raises ``EdgePruneError`` subclasses."""
    from edge_prune.targets import load_target

    loaded_target = load_target(target)
    data = load_npz(data_path) if data_path else load_digits(seed=config.train.seed)
    model_path = Path(model_path) if model_path else None
    if model_path:
        check_saved_model(model_path, allow_lambda=allow_lambda)
    check_schedule_fits_data(config, data)
    return Inputs(loaded_target, config, data, model_path, allow_lambda)


def steps_per_epoch(config: PipelineConfig, data: Dataset) -> int:
    return math.ceil(len(data.x_train) / config.train.batch_size)


def check_schedule_fits_data(config: PipelineConfig, data: Dataset) -> None:
    """The pruning schedule needs at least one mask update between begin and end epoch."""
    p = config.prune
    steps = steps_per_epoch(config, data)
    span = (p.end_epoch - p.begin_epoch) * steps
    if p.frequency > span:
        raise ConfigError(
            f"'prune.frequency' = {p.frequency} steps exceeds the pruning span of {span} steps "
            f"(epochs {p.begin_epoch} to {p.end_epoch} x {steps} steps of "
            f"{config.train.batch_size} samples from {len(data.x_train)}); lower it or widen "
            "the span"
        )


def default_model(input_shape: tuple[int, ...], num_classes: int):
    """The bundled example: a small CNN (two 3x3 convolutions, one hidden dense layer)."""
    from edge_prune._tf import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def load_or_build_model(inputs: Inputs):
    """The user's model (checked against the data) or the bundled default CNN."""
    from edge_prune.model_io import load_saved_model
    from edge_prune.prune import check_model

    data = inputs.data
    if inputs.model_path is None:
        return default_model(data.input_shape, data.num_classes)
    model = load_saved_model(inputs.model_path, allow_lambda=inputs.allow_lambda)
    check_model(model)
    check_model_fits_data(model, data, str(inputs.model_path))
    return model


def check_model_fits_data(model, data: Dataset, label: str) -> None:
    expected = tuple(model.input_shape[1:])
    if len(expected) != len(data.input_shape) or any(
        e is not None and e != d for e, d in zip(expected, data.input_shape, strict=False)
    ):
        raise DataError(
            f"{data.source}: samples have shape {data.input_shape} but the model {label} "
            f"expects {expected}"
        )
    outputs = model.output_shape[-1]
    if outputs is not None and data.num_classes > outputs:
        raise DataError(
            f"{data.source}: labels go up to {data.num_classes - 1} but the model {label} "
            f"has {outputs} outputs"
        )


class EpochProgress:
    """A tf_keras callback printing one line per epoch: ``stage epoch 3/12 loss … (0.7 s)``."""

    def __new__(cls, stage: str, progress: Progress):
        from edge_prune._tf import keras

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                metrics = " ".join(f"{k} {v:.4f}" for k, v in logs.items())
                took = time.perf_counter() - self._start
                total = self.params.get("epochs", "?")
                progress(f"  {stage}: epoch {epoch + 1}/{total} {metrics} ({took:.1f} s)")

        return _Callback()


def _loss_for(model):
    from edge_prune._tf import keras

    last = model.layers[-1]
    last = getattr(last, "layer", last)  # inside a pruning or clustering wrapper
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    softmax_out = activation == "softmax" or type(last).__name__ == "Softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax_out)


def _compile(model, learning_rate: float) -> None:
    from edge_prune._tf import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=_loss_for(model),
        metrics=["accuracy"],
    )


def keras_accuracy(model, data: Dataset) -> float:
    probabilities = model.predict(data.x_test, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == data.y_test))


def _fit(
    model, data: Dataset, config: PipelineConfig, epochs: int, stage: str, progress, callbacks=()
):
    if epochs <= 0:
        return
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=config.train.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[*callbacks, EpochProgress(stage, progress)],
    )


def copy_model(model):
    """An independent copy of a tf_keras model: same architecture and weights, new variables."""
    from edge_prune._tf import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def seed_everything(seed: int) -> None:
    from edge_prune._tf import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_dense(inputs: Inputs, progress: Progress = stderr_progress):
    """Build (or load) and train the dense model; returns it trained."""
    config = inputs.config
    seed_everything(config.train.seed)
    model = load_or_build_model(inputs)
    _compile(model, config.train.learning_rate)
    _fit(model, inputs.data, config, config.train.epochs, "dense", progress)
    return model


def structured_prune(model, inputs: Inputs, progress: Progress = stderr_progress):
    """Remove whole channels/units (``structured.ratio``), then fine-tune; returns both."""
    from edge_prune.structured import prune_channels

    config = inputs.config
    result = prune_channels(model, config.structured.ratio, criterion=config.structured.criterion)
    progress("  " + str(result).replace("\n", "\n  "))
    smaller = result.model
    _compile(smaller, config.prune.learning_rate)
    _fit(smaller, inputs.data, config, config.structured.epochs, "structured fine-tune", progress)
    return smaller, result


def magnitude_prune(
    model, inputs: Inputs, final_sparsity: float | None = None, progress: Progress = stderr_progress
):
    """Polynomial-decay magnitude pruning with fine-tuning; returns the stripped model."""
    from edge_prune.prune import PruningSchedule, prune, strip

    config, data = inputs.config, inputs.data
    p = config.prune
    schedule = PruningSchedule.from_epochs(
        p.final_sparsity if final_sparsity is None else final_sparsity,
        steps_per_epoch=steps_per_epoch(config, data),
        begin_epoch=p.begin_epoch,
        end_epoch=p.end_epoch,
        initial_sparsity=p.initial_sparsity,
        power=p.power,
        frequency=p.frequency,
    )
    from edge_prune._tf import keras

    pruned = prune(
        model,
        schedule,
        optimizer=keras.optimizers.Adam(p.learning_rate),
        loss=_loss_for(model),
        metrics=["accuracy"],
    )
    _fit(pruned.model, data, config, p.epochs, "prune", progress, callbacks=pruned.callbacks)
    return strip(pruned)


def cluster_weights(model, inputs: Inputs, progress: Progress = stderr_progress):
    """Sparsity-preserving clustering + short fine-tune; returns the stripped clustered model."""
    from edge_prune.compress import cluster, strip_clustering

    config = inputs.config
    # tfmot wraps the given layer objects, so fine-tuning would change ``model`` itself.
    clustered = cluster(copy_model(model), config.compress.clusters, preserve_sparsity=True)
    _compile(clustered, config.compress.learning_rate)
    _fit(clustered, inputs.data, config, config.compress.epochs, "cluster fine-tune", progress)
    return strip_clustering(clustered)


def convert_candidates(
    dense, pruned, clustered, inputs: Inputs, *, baseline: bool = True
) -> tuple[list[Candidate], dict]:
    """float32 of the dense model (the baseline; skipped with ``baseline=False``), and of the
    pruned model: int8 (dense storage), int8 sparse-encoded, and int8 clustered + LUT."""
    from edge_prune.convert import convert

    x = inputs.data.x_train
    int8 = convert(pruned, quantization="int8", representative_data=x)
    sparse = convert(
        pruned, quantization="int8", sparse=True, representative_data=x, compare_dense=False
    )
    float32 = convert(pruned, quantization="float")
    candidates = [
        Candidate("int8", "model_int8.tflite", int8.tflite_bytes, "pruned, int8, dense storage"),
        Candidate(
            "int8-sparse",
            "model_sparse.tflite",
            sparse.tflite_bytes,
            "pruned, int8, sparse-tensor encoding (EXPERIMENTAL_SPARSITY)",
        ),
    ]
    if baseline:
        candidates.insert(
            0,
            Candidate(
                "float32-dense",
                "model_float32.tflite",
                convert(dense, quantization="float").tflite_bytes,
                "dense model before pruning, float32 (the accuracy baseline)",
                reference="dense",
            ),
        )
    sizes = {"float32_pruned_bytes": len(float32.tflite_bytes)}
    if clustered is not None:
        from edge_prune.compress import lut_compress

        clustered_int8 = convert(clustered, quantization="int8", representative_data=x)
        bitwidth = inputs.config.compress.bitwidth or None
        # Asked for a width: a tensor that needs more is an error. Automatic: it stays as is.
        lut = lut_compress(clustered_int8.tflite_bytes, bitwidth=bitwidth, strict=bool(bitwidth))
        candidates.append(
            Candidate(
                "int8-clustered-lut",
                "model_int8_lut.tflite",
                lut.tflite_bytes,
                f"pruned, clustered ({inputs.config.compress.clusters} values), int8, "
                "TFLM LUT compression",
            )
        )
        sizes["int8_clustered_bytes"] = len(clustered_int8.tflite_bytes)
        sizes["lut"] = lut.to_dict()
    return candidates, sizes


def check_candidates(
    candidates: list[Candidate],
    keras_models: dict[str, Any],
    inputs: Inputs,
    progress: Progress = stderr_progress,
) -> None:
    """Run every candidate on TFLM (child process) over the test set; fills ``.check``.

    Outputs are compared with the Keras model named by ``candidate.reference`` in
    ``keras_models`` (e.g. ``{"dense": ..., "pruned": ...}``).
    """
    from edge_prune.deployability import check

    data = inputs.data
    references = {
        name: model.predict(data.x_test, batch_size=256, verbose=0)
        for name, model in keras_models.items()
    }
    for c in candidates:
        c.check = check(
            c.tflite_bytes, data.x_test, references[c.reference], labels=data.y_test, name=c.name
        )
        progress(f"  {c.check}")


def choose_for_target(candidates: list[Candidate], baseline_accuracy: float, inputs: Inputs):
    """The smallest candidate that runs on TFLM, stays within the tolerance and fits the target.

    Each candidate that runs on TFLM is measured against the target first (a LUT-compressed
    model trades flash for arena: the smallest flatbuffer need not fit the RAM). When none
    fits, the choice is made among all of them and the verdict says it does not fit.
    """
    from edge_prune.deployability import choose_deployable

    for c in candidates:
        if c.check.runs_on_tflm:
            c.fits = _measure(c.tflite_bytes, inputs.target).fits
    tolerance = inputs.config.select.tolerance_points
    fitting = [c.check for c in candidates if c.fits]
    if fitting:
        with contextlib.suppress(EdgePruneError):
            choice = choose_deployable(fitting, baseline_accuracy, tolerance)
            rejected = tuple(
                (c.name, f"does not fit {inputs.target.name}")
                for c in candidates
                if c.check.runs_on_tflm and not c.fits
            )
            return replace(choice, rejected=choice.rejected + rejected)
    return choose_deployable([c.check for c in candidates], baseline_accuracy, tolerance)


def run_pipeline(inputs: Inputs, progress: Progress = stderr_progress) -> PipelineResult:
    """Train → (structured) → prune → strip → cluster → convert → TFLM check → choose → measure."""
    from edge_prune.prune import sparsity_report

    config, data, clock = inputs.config, inputs.data, _Clock()
    progress(
        f"edge-prune: {data.source} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"input {data.input_shape}, {data.num_classes} classes) for target "
        f"{inputs.target.name}"
    )
    progress("[1/6] dense training")
    dense = train_dense(inputs, progress)
    result = PipelineResult(inputs, model_name=dense.name)
    result.accuracy["dense_keras"] = keras_accuracy(dense, data)
    result.macs["dense"] = _costs(dense, inputs.target)
    result.timings_s["dense"] = clock.lap()

    base = dense
    if config.structured.ratio > 0:
        progress(f"[2/6] structured pruning: {config.structured.ratio:.0%} of channels")
        base, result.structured = structured_prune(dense, inputs, progress)
        result.accuracy["structured_keras"] = keras_accuracy(base, data)
        result.macs["structured"] = _costs(base, inputs.target)
    else:
        progress("[2/6] structured pruning: off")
    result.timings_s["structured"] = clock.lap()

    progress(f"[3/6] magnitude pruning to {config.prune.final_sparsity:.0%} (polynomial decay)")
    pruned = magnitude_prune(base, inputs, progress=progress)
    result.sparsity = sparsity_report(pruned)
    result.accuracy["pruned_keras"] = keras_accuracy(pruned, data)
    progress(
        f"  pruned: Sparsity: {result.sparsity.zeros}/{result.sparsity.total} "
        f"({result.sparsity.sparsity:.1%}), Keras accuracy {result.accuracy['pruned_keras']:.2%}"
    )
    result.timings_s["prune"] = clock.lap()

    clustered = None
    if config.compress.enabled:
        progress(f"[4/6] clustering to {config.compress.clusters} values, sparsity preserved")
        clustered = cluster_weights(pruned, inputs, progress)
        result.accuracy["clustered_keras"] = keras_accuracy(clustered, data)
    else:
        progress("[4/6] clustering: off")
    result.timings_s["cluster"] = clock.lap()

    progress("[5/6] converting and checking every artifact on the TFLM interpreter")
    result.candidates, result.sizes = convert_candidates(dense, pruned, clustered, inputs)
    check_candidates(result.candidates, {"dense": dense, "pruned": pruned}, inputs, progress)
    for c in result.candidates:
        if c.check.accuracy is not None:
            result.accuracy[f"{c.name}_tflm"] = c.check.accuracy
    _note_sparse_size(result, progress)
    baseline = result.accuracy.get("float32-dense_tflm", result.accuracy["dense_keras"])
    result.choice = choose_for_target(result.candidates, baseline, inputs)
    progress(f"  {result.choice}")
    result.timings_s["convert_check"] = clock.lap()

    progress(f"[6/6] footprint on {inputs.target.name}")
    result.footprint = _measure(result.deployable.tflite_bytes, inputs.target)
    result.timings_s["footprint"] = clock.lap()
    return result


def _note_sparse_size(result: PipelineResult, progress: Progress) -> None:
    sizes = {c.name: len(c.tflite_bytes) for c in result.candidates}
    if sizes["int8-sparse"] >= sizes["int8"]:
        progress(
            f"  note: at {result.sparsity.sparsity:.1%} sparsity the sparse encoding is not "
            f"smaller than dense int8 storage ({sizes['int8-sparse']:,} B vs "
            f"{sizes['int8']:,} B): its index arrays cost more than the zeros it drops"
        )


def _costs(model, target):
    """Parameters and MACs per layer, with the target's latency estimate where it has figures."""
    from edge_prune.macs import count_costs, estimate_latency_for_target

    cost = count_costs(model)
    return estimate_latency_for_target(cost, target) or cost


def _measure(model_bytes: bytes, target):
    from edge_prune.report import build_report

    return build_report(model_bytes, [target])


class _Clock:
    def __init__(self) -> None:
        self._last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        took, self._last = now - self._last, now
        return round(took, 2)
