"""The int4-weights candidate: the pruned model with 4-bit Dense and Conv2D kernels (packed INT4
tensors), int8 activations, made by 4-bit quantization-aware fine-tuning (``[int4] epochs``; 0
rounds the weights to the grid without fine-tuning) and converted by the TFLite converter.

Never compressed: TFLM's DECODE refuses INT4 tensors. On TFLM's reference kernels the filters
are unpacked into an arena scratch buffer on every Invoke (the host check measures that arena);
CMSIS-NN computes on the packed values, so a CMSIS-NN target's verdict takes the arena of the
same model with the filters stored as int8 (:func:`edge_prune.measurement.int4.unpacked_twin`).

``int4-pruned``: ``int4-weights`` with the FULLY_CONNECTED / CONV_2D whose zeros pay run by
edge-prune's int4 sparse kernels (``EDGE_PRUNE_SPARSE_FC_INT4`` / ``_CONV_INT4``: the pruned
4-bit weights read in place, no unpack buffer), chosen by the same whole-model plan as
``int8-pruned`` (:mod:`edge_prune.measurement.sparse_plan`); it must give exactly the outputs of
``int4-weights`` on TFLM, and is scored and arena-measured on the host interpreter with the
kernels loaded. Absent when no layer pays.
"""

from __future__ import annotations

from dataclasses import replace

from edge_prune.errors import ConversionError, UnsupportedModelError
from edge_prune.runner import Progress
from edge_prune.stages.state import ArtifactName, BuildState, ModelKey


def int4_stage(state: BuildState, progress: Progress) -> BuildState:
    """Add the ``int4-weights`` candidate (and its Keras model under ``ModelKey.INT4``), and
    ``int4-pruned`` when its pruned layers pay on the int4 sparse kernels."""
    settings = state.config.int4
    if not settings.enabled:
        return state
    from edge_prune.measurement.int4 import int4_tensors
    from edge_prune.stages.candidates import _mcu_artifact, _sparse_kernel_artifacts
    from edge_prune.training.convert import convert
    from edge_prune.training.int4 import quantize_int4
    from edge_prune.training.train import copy_model, loss_for

    data, train = state.inputs.data, state.config.train
    pruned = state.models[ModelKey.PRUNED]
    try:
        result = quantize_int4(
            copy_model(pruned),
            data.x_train,
            data.y_train,
            epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            batch_size=train.batch_size,
            loss=loss_for(pruned, data),
            seed=train.seed,
        )
        tflite = convert(result.model, quantization="int8", representative_data=data.x_train)
    except (UnsupportedModelError, ConversionError) as e:
        progress(f"  int4-weights: not made: {e}")
        return state
    packed = int4_tensors(tflite.tflite_bytes)
    if not packed:
        progress("  int4-weights: not made: the converter wrote no INT4 tensor")
        return state
    zeros = sum(int((t.values == 0).sum()) for t in packed)
    progress(
        f"  int4-weights: {len(packed)} kernel(s) in 4 bits ({result.method}); zeros "
        f"{result.zeros_before:,} before, {zeros:,} in the INT4 tensors"
        + ("" if zeros >= result.zeros_before else ": FEWER, pruned zeros were lost")
    )
    how = (
        f"{settings.epochs}-epoch 4-bit QAT"
        if result.method == "qat"
        else "post-training rounding to 4 bits"
    )
    artifact = _mcu_artifact(
        ArtifactName.INT4_WEIGHTS,
        "model_int4.tflite",
        tflite.tflite_bytes,
        f"pruned, int8 activations, int4 weights ({how}; Conv2D per channel, Dense per "
        "tensor), dense storage",
        ModelKey.INT4,
    )
    pruned = _sparse_kernel_artifacts(
        tflite.tflite_bytes,
        state.config,
        state.inputs.target,
        name=ArtifactName.INT4_PRUNED,
        source=ArtifactName.INT4_WEIGHTS,
        file_name="model_int4_pruned.tflite",
        what=f"pruned, int8 activations, int4 weights ({how})",
        reference=ModelKey.INT4,
    )
    if pruned:
        progress(f"  int4-pruned: {pruned[0].description}")
    models = {**state.models, ModelKey.INT4: result.model}
    return replace(state, models=models, artifacts=(*state.artifacts, artifact, *pruned))
