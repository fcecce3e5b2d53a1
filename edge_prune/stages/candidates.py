"""The stages that make and check the candidates for the MCU: the float32 baseline, the
conversions (int8, TFLM encodings, clustered + compressed, each on the flatbuffer diet), one
TFLM run per candidate, and the re-compression that fits decoded weights into the RAM.
"""

from __future__ import annotations

from dataclasses import replace

from edge_prune.config import PipelineConfig
from edge_prune.measurement.targets import Target
from edge_prune.runner import Progress
from edge_prune.stages.state import (
    Artifact,
    ArtifactName,
    BuildState,
    ModelKey,
    keras_score_key,
    tflm_score_key,
)


def baseline_stage(state: BuildState, progress: Progress) -> BuildState:
    """The dense model as float32, run on TFLM: the accuracy every artifact is held to."""
    from edge_prune.training.convert import convert

    artifact = Artifact(
        ArtifactName.FLOAT32_DENSE,
        "model_float32.tflite",
        convert(state.models[ModelKey.DENSE], quantization="float").tflite_bytes,
        "dense model before pruning, float32 (the accuracy baseline)",
        reference=ModelKey.DENSE,
    )
    state = _check_artifacts(replace(state, artifacts=(artifact, *state.artifacts)), progress)
    checked = state.artifact(ArtifactName.FLOAT32_DENSE).check
    baseline = (
        checked.score
        if checked.score is not None
        else state.scores[keras_score_key(ModelKey.DENSE)]
    )
    return replace(state, baseline_score=baseline)


def convert_stage(state: BuildState, progress: Progress) -> BuildState:
    """Convert the pruned (and clustered) model into the candidates for the MCU.

    - ``int8``: pruned, int8, dense storage;
    - ``int8-sparse``: the same with TFLM-runnable sparse encodings (DECODE pruning bitmask or
      Huffman, chosen per tensor), which must give exactly the outputs of ``int8`` on TFLM;
    - ``int8-pruned``: ``int8`` with each FULLY_CONNECTED / CONV_2D whose zeros pay run by
      edge-prune's sparse kernels (custom ops reading the pruned weights in place, no decoded
      copy), which must give exactly the outputs of ``int8`` on TFLM; absent when no layer
      pays;
    - ``int8-densify``: TFLite's own sparse encoding (EXPERIMENTAL_SPARSITY): TFLM cannot run
      it (no DENSIFY kernel), kept for TFLite runtimes that can;
    - when clustered: ``int8-clustered`` (dense storage) and ``int8-clustered-compressed``
      (per tensor the smallest of LUT / pruning / Huffman), and the same pair with per-tensor
      quantization of Dense layers (``-pt``) when that changes the file.

    Every TFLM candidate is put on the flatbuffer diet (names, signature defs and metadata TFLM
    does not read are dropped; the name map is kept for the report).
    """
    from edge_prune.training.convert import convert

    config, x = state.config, state.inputs.data.x_train
    pruned = state.models[ModelKey.PRUNED]
    int8 = convert(pruned, quantization="int8", representative_data=x).tflite_bytes
    densify = convert(
        pruned, quantization="int8", sparse=True, representative_data=x, compare_dense=False
    ).tflite_bytes
    artifacts = [
        _mcu_artifact(
            ArtifactName.INT8,
            "model_int8.tflite",
            int8,
            "pruned, int8, dense storage",
            ModelKey.PRUNED,
        ),
        _compressed_artifact(
            ArtifactName.INT8_SPARSE,
            "model_sparse.tflite",
            int8,
            "pruned, int8, TFLM sparse encoding (DECODE pruning bitmask / Huffman per tensor)",
            ModelKey.PRUNED,
            source=ArtifactName.INT8,
            codecs=("pruning", "huffman"),
        ),
        *_sparse_kernel_artifacts(int8, config, state.inputs.target),
        Artifact(
            ArtifactName.INT8_DENSIFY,
            "model_densify_tflite_only.tflite",
            densify,
            "pruned, int8, TFLite sparse-tensor encoding (EXPERIMENTAL_SPARSITY): needs a "
            "DENSIFY kernel, which TFLM does not have; for TFLite runtimes only",
            ModelKey.PRUNED,
        ),
    ]
    if ModelKey.CLUSTERED in state.models:
        artifacts += _clustered_artifacts(state.models[ModelKey.CLUSTERED], x, config)
    sizes = {"float32_pruned_bytes": len(convert(pruned, quantization="float").tflite_bytes)}
    kept = tuple(a for a in state.artifacts if a.name == ArtifactName.FLOAT32_DENSE)
    state = replace(state, artifacts=(*kept, *artifacts), sizes=sizes)
    _note_densify_size(state, progress)
    return state


def _sparse_kernel_artifacts(
    int8: bytes,
    config: PipelineConfig,
    target: Target | None = None,
    *,
    name: ArtifactName = ArtifactName.INT8_PRUNED,
    source: ArtifactName = ArtifactName.INT8,
    file_name: str = "model_pruned.tflite",
    what: str = "pruned, int8",
    reference: ModelKey = ModelKey.PRUNED,
) -> list[Artifact]:
    """``int8-pruned`` when a plan of sparse layers has less flash than ``int8`` on ``target``
    at no more instructions (:mod:`edge_prune.measurement.sparse_plan`); the same for another
    dense candidate (``int4-pruned`` from ``int4-weights``: the int4 ops) by ``name``,
    ``source`` (the candidate ``int8`` stands for), ``file_name``, ``what`` and ``reference``."""
    from edge_prune.errors import EdgePruneError
    from edge_prune.measurement.sparse import native
    from edge_prune.measurement.sparse_plan import choose_plan, plan_dict

    plan = choose_plan(int8, target, label=str(source))
    if plan.chosen is None:
        return []
    rewritten = plan.chosen.rewritten
    layers = ", ".join(
        f"{layer.op} {'x'.join(map(str, layer.shape))} ({layer.zeros:.0%} zeros, "
        f"{'unstructured' if layer.block == 1 else f'1x{layer.block} blocks'})"
        for layer in rewritten.sparse_layers
    )
    artifact = _mcu_artifact(
        name, file_name, plan.chosen.model, f"{what}, sparse kernels for {layers}", reference
    )
    artifact = replace(artifact, source=source, sparse_plan=plan_dict(plan, int8, target))
    try:
        native.host_library()
    except EdgePruneError as e:
        note = (
            f"scored and arena-measured through {source} (its exact dense equivalent): TFLM's "
            f"host interpreter cannot load the sparse kernels here ({e})"
        )
        artifact = replace(
            artifact,
            description=f"{artifact.description} [{note}]",
            scored_as=source,
            scored_note=note,
        )
    return [artifact]


def _clustered_artifacts(clustered, x, config: PipelineConfig) -> list[Artifact]:
    from edge_prune.training.convert import convert

    what = f"pruned, clustered ({config.compress.clusters} values), int8"
    per_channel = convert(clustered, quantization="int8", representative_data=x).tflite_bytes
    per_tensor = convert(
        clustered, quantization="int8", representative_data=x, per_channel_dense=False
    ).tflite_bytes
    variants = [
        (ArtifactName.INT8_CLUSTERED, ArtifactName.INT8_CLUSTERED_COMPRESSED, per_channel, "", "")
    ]
    if per_tensor != per_channel:
        variants.append(
            (
                ArtifactName.INT8_CLUSTERED_PT,
                ArtifactName.INT8_CLUSTERED_PT_COMPRESSED,
                per_tensor,
                "_per_tensor",
                ", per-tensor quantization of Dense layers",
            )
        )
    artifacts = []
    for raw_name, compressed_name, data, file_suffix, how in variants:
        artifacts.append(
            _mcu_artifact(
                raw_name,
                f"model_clustered{file_suffix}.tflite",
                data,
                f"{what}{how}, dense storage",
                ModelKey.CLUSTERED,
            )
        )
        artifacts.append(
            _compressed_artifact(
                compressed_name,
                f"model_compressed{file_suffix}.tflite",
                data,
                f"{what}{how}, TFLM compression (LUT / pruning bitmask / Huffman per tensor)",
                ModelKey.CLUSTERED,
                source=raw_name,
                lut_bitwidth=config.compress.bitwidth or None,
            )
        )
    return artifacts


def _mcu_artifact(
    name: ArtifactName, file_name: str, data: bytes, what: str, reference: ModelKey
) -> Artifact:
    """An artifact for TFLM, after the flatbuffer diet."""
    from edge_prune.measurement.codecs import strip_for_mcu

    lean, names = strip_for_mcu(data)
    return Artifact(name, file_name, lean, what, reference, tensor_names=names)


def _compressed_artifact(
    name: ArtifactName,
    file_name: str,
    data: bytes,
    what: str,
    reference: ModelKey,
    *,
    source: ArtifactName,
    codecs: tuple[str, ...] | None = None,  # None: the registry's DEFAULT_CODECS
    lut_bitwidth: int | None = None,
    arena_limit_bytes: int | None = None,
) -> Artifact:
    """``data`` with per-tensor TFLM encodings (or LUT at a fixed width), after the diet."""
    from edge_prune.measurement.codecs import DEFAULT_CODECS, compress_for_mcu, lut_compress

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
            accuracy[tflm_score_key(a.name)] = a.check.score
    return replace(state, scores=accuracy)


def ram_fit_stage(state: BuildState, progress: Progress) -> BuildState:
    """Compressed artifacts that fit the flash but not the RAM are compressed again with the
    arena the target leaves: tensors whose decoded copy would push the arena over it stay raw
    (largest first), and each such tensor's record says so."""
    target = state.inputs.target
    limit = target.available_ram_bytes
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
                # the codec counts the reference-kernel arena: leave room for what the target's
                # kernels add (CMSIS-NN scratch and data, 0 with reference kernels)
                arena_limit_bytes=limit - (v.arena_bytes - (v.arena_device_bytes or v.arena_bytes)),
            )
        refit.append(a)
    if all(a.check is not None for a in refit):
        return state
    return check_stage(replace(state, artifacts=tuple(refit)), progress)


def _check_artifacts(state: BuildState, progress: Progress) -> BuildState:
    """Check each artifact that has no check yet: one TFLM run gives outputs and arena."""
    from edge_prune.measurement.evaluate import check_deployable, same_outputs_as
    from edge_prune.measurement.footprint import verdict_for

    data, target = state.inputs.data, state.inputs.target
    predictions: dict[str, object] = {}
    checked = []
    for a in state.artifacts:
        if a.check is None and a.scored_as is not None:
            through = next(c for c in checked if c.name == a.scored_as)
            result = replace(through.check, name=str(a.name), flash_bytes=len(a.tflite_bytes))
            progress(f"  {a.name}: {a.scored_note}")
            a = replace(a, check=result)
            if result.runs_on_tflm:
                a = replace(a, verdict=verdict_for(footprint_of(a), target))
        elif a.check is None:
            if a.reference not in predictions:
                predictions[a.reference] = state.models[a.reference].predict(
                    data.x_test, batch_size=256, verbose=0
                )
            result = check_deployable(
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
                a = replace(a, verdict=verdict_for(footprint_of(a, target), target))
        checked.append(a)
    return replace(state, artifacts=tuple(checked))


def footprint_of(artifact: Artifact, target=None):
    """The artifact's footprint from the arena its TFLM check recorded (no second run). A
    target's verdict derives its own kernels' arena from it (on CMSIS-NN without the buffers
    into which the reference kernels unpack INT4 weights)."""
    from edge_prune.measurement.footprint import measure

    return measure(artifact.tflite_bytes, arena=artifact.check.arena, label=artifact.name)


def _note_densify_size(state: BuildState, progress: Progress) -> None:
    sizes = {a.name: len(a.tflite_bytes) for a in state.artifacts}
    if sizes[ArtifactName.INT8_DENSIFY] >= sizes[ArtifactName.INT8]:
        progress(
            f"  note: at {state.sparsity.sparsity:.1%} sparsity TFLite's sparse encoding is not "
            f"smaller than dense int8 storage ({sizes[ArtifactName.INT8_DENSIFY]:,} B vs "
            f"{sizes[ArtifactName.INT8]:,} B): its index arrays cost more than the zeros it drops"
        )
