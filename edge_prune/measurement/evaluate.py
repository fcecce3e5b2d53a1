"""Run one artifact on TFLM once: does it run, how big is its arena, are its answers right?

:func:`check_deployable` loads one flatbuffer in the TFLM interpreter (one child process, via
:func:`edge_prune.measurement.tflm.execute`): it allocates, records the arena, runs the held-out
samples and compares the outputs with a reference: the outputs of the Keras model the artifact was
made from, or another flatbuffer (e.g. the uncompressed int8 model) also run on TFLM. The result
carries the arena measurement, so the footprint of the chosen artifact needs no second run.

A sparse-encoded model is reported as not running (TFLM has no DENSIFY kernel); it stays useful
for TFLite runtimes that do support it.

This module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_prune.errors import DataError, TFLMError
from edge_prune.measurement import tflm
from edge_prune.measurement.metrics import Metric, metric_for
from edge_prune.measurement.tflite_file import check_identifier, load_bytes, tensor_type_dtype


@dataclass(frozen=True)
class ArtifactCheck:
    """What one artifact does on TFLM.

    ``flash_bytes`` is the flatbuffer alone (TFLM reads it in place from flash); the TFLM
    runtime code is not in it. ``arena`` is TFLM's own measurement of the tensor arena in the
    same run that produced the outputs (``arena_bytes`` its working size on this 64-bit host;
    ``arena_head_bytes``, the tensor plan including DECODE outputs of compressed weights, is
    the same on a Cortex-M; ``arena_tail_bytes`` holds the persistent structures). Comparisons
    are over ``samples`` held-out samples: ``max_abs_difference`` in the units of
    ``compared_as`` ("int8" raw values when model and reference are both int8, else dequantized
    "float"), ``top1_agreement`` and ``accuracy`` as fractions in [0, 1].
    """

    name: str
    flash_bytes: int
    runs_on_tflm: bool
    missing_op: str | None = None
    failure: str | None = None  # why TFLM could not run it, when it could not
    arena: tflm.ArenaMeasurement | None = None
    arena_failure: str | None = None  # why the arena is missing although the model ran
    samples: int = 0
    reference: str | None = None
    compared_as: str | None = None
    max_abs_difference: float | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None  # classification: top-1 on TFLM
    error: float | None = None  # regression: mean squared error on TFLM
    # Why it must not be deployed although it runs (e.g. outputs differ from its source).
    problem: str | None = None
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def score(self) -> float | None:
        """The task's metric on TFLM: ``accuracy`` or, for regression, ``error``."""
        return self.accuracy if self.accuracy is not None else self.error

    @property
    def arena_bytes(self) -> int | None:
        return self.arena.arena_bytes if self.arena else None

    @property
    def arena_head_bytes(self) -> int | None:
        return self.arena.recorded_head_bytes if self.arena else None

    @property
    def arena_tail_bytes(self) -> int | None:
        return self.arena.recorded_tail_bytes if self.arena else None

    def to_dict(self) -> dict:
        fields = {k: v for k, v in vars(self).items() if k not in ("arena", "outputs")}
        fields.update(
            arena_host_64bit_bytes=self.arena_bytes,
            arena_host_64bit_what="input: smallest arena_size that ran on this 64-bit host; "
            "the verdict's arena for the target is in the artifact's cost",
            arena_head_bytes=self.arena_head_bytes,
            arena_tail_bytes=self.arena_tail_bytes,
        )
        return fields

    def __str__(self) -> str:
        head = f"{self.name}: {self.flash_bytes:,} B flatbuffer, "
        if not self.runs_on_tflm:
            why = f"no kernel for {self.missing_op}" if self.missing_op else self.failure
            return head + f"does NOT run on TFLM ({why})"
        parts = [head + "runs on TFLM"]
        if self.arena is not None:
            parts.append(
                f"arena input {self.arena_bytes:,} B on this 64-bit host (head "
                f"{self.arena_head_bytes:,} B, tail {self.arena_tail_bytes:,} B)"
            )
        elif self.arena_failure:
            parts.append(self.arena_failure)
        if self.max_abs_difference is not None:
            parts.append(
                f"vs {self.reference} on {self.samples} samples: max |diff| "
                f"{self.max_abs_difference:g} ({self.compared_as}), top-1 agreement "
                f"{self.top1_agreement:.1%}"
            )
        if self.accuracy is not None:
            parts.append(f"TFLM accuracy {self.accuracy:.2%}")
        if self.error is not None:
            parts.append(f"TFLM mean squared error {self.error:.4g}")
        if self.problem:
            parts.append(f"NOT deployable: {self.problem}")
        return "; ".join(parts)


def same_outputs_as(check: ArtifactCheck, source: ArtifactCheck) -> ArtifactCheck:
    """``check`` with ``problem`` set unless its TFLM outputs equal ``source``'s exactly.

    A compressed model decodes to the very weights of its source, so TFLM must compute the
    same outputs bit for bit; any difference means a broken encoding, never a rounding.
    """
    if not check.runs_on_tflm or check.outputs is None or source.outputs is None:
        return check
    if check.outputs.shape == source.outputs.shape and np.array_equal(
        check.outputs, source.outputs
    ):
        return check
    diff = (
        float(np.max(np.abs(check.outputs.astype(np.float64) - source.outputs)))
        if check.outputs.shape == source.outputs.shape
        else "shape"
    )
    return replace(
        check, problem=f"TFLM outputs differ from its source {source.name} (max |diff| {diff})"
    )


def check_deployable(
    model_bytes,
    x_samples: np.ndarray | None = None,
    reference_outputs=None,
    *,
    labels: np.ndarray | None = None,
    name: str | None = None,
    metric: Metric | None = None,
) -> ArtifactCheck:
    """Check one artifact on TFLM, in one run of the interpreter.

    ``model_bytes``: the flatbuffer (bytes or path). ``x_samples``: float held-out inputs,
    first axis = samples; they are quantized with the model's input scale and zero point when
    the model takes int8. ``reference_outputs``: the Keras model's outputs on ``x_samples``
    (array), or a reference flatbuffer (bytes or path) run on TFLM with the same samples, or
    None. ``labels``: class indices (or one-hot rows) to measure TFLM top-1 accuracy, or float
    targets to measure the mean squared error (``metric`` chooses; by default the labels' type).

    Runs on TFLM means: loaded, allocated and ran every sample (one all-zero sample when
    ``x_samples`` is None). A model TFLM cannot load or run gives ``runs_on_tflm=False`` with
    the missing op or the failure, not an exception. A reference flatbuffer that TFLM cannot
    run raises TFLMError.
    """
    data, label = load_bytes(model_bytes)
    check_identifier(data, label)
    name = name or label
    samples = x_samples if x_samples is not None else _zero_sample(data)
    try:
        outputs, arena = _run(data, samples, name)
    except tflm.MissingOpError as e:
        return ArtifactCheck(name, len(data), False, missing_op=e.op, failure=str(e))
    except TFLMError as e:
        return ArtifactCheck(name, len(data), False, failure=str(e))

    fields: dict = {"arena": arena}
    if x_samples is not None:
        fields["samples"] = len(outputs.values)
        fields["outputs"] = outputs.values
        if reference_outputs is not None:
            fields.update(_compare(outputs, _reference(reference_outputs, x_samples)))
        if labels is not None:
            metric = metric or metric_for(labels)
            key = "accuracy" if metric.higher_is_better else "error"
            fields[key] = metric.score(outputs.as_float(), labels)
    return ArtifactCheck(name, len(data), True, **fields)


# ------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Outputs:
    """TFLM outputs of one model, one row per sample, with the output quantization."""

    values: np.ndarray
    scale: float | None  # None: the output is float
    zero_point: int

    def as_float(self) -> np.ndarray:
        if self.scale is None:
            return self.values.astype(np.float64)
        return (self.values.astype(np.float64) - self.zero_point) * self.scale


def _run(data: bytes, x_samples: np.ndarray, label: str):
    """``(outputs, arena measurement)`` of one TFLM run over ``x_samples``."""
    x = np.asarray(x_samples)
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"x_samples: expected at least one sample (shape {x.shape})")
    inp, out = _io_tensors(data)
    run = tflm.execute(data, _to_model_input(x, inp), label=label)
    outputs = _Outputs(values=_rows(run.outputs), scale=out.scale, zero_point=out.zero_point)
    return outputs, run.arena


def _to_model_input(x: np.ndarray, inp: _IoTensor) -> np.ndarray:
    if inp.dtype == x.dtype:
        return x
    if inp.scale is None:
        return x.astype(inp.dtype)
    info = np.iinfo(inp.dtype)
    quantized = np.round(x.astype(np.float64) / inp.scale) + inp.zero_point
    return np.clip(quantized, info.min, info.max).astype(inp.dtype)


def _zero_sample(data: bytes) -> np.ndarray:
    inp, _ = _io_tensors(data)
    return np.zeros((1, *inp.shape[1:]), dtype=np.float32)


@dataclass(frozen=True)
class _IoTensor:
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None  # None when the tensor is not quantized
    zero_point: int


def _io_tensors(data: bytes) -> tuple[_IoTensor, _IoTensor]:
    """Input 0 and output 0 of subgraph 0: dtype and (per-tensor) quantization."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    graph = schema.Model.GetRootAs(data, 0).Subgraphs(0)

    def describe(index: int) -> _IoTensor:
        tensor = graph.Tensors(index)
        shape = tuple(max(int(tensor.Shape(i)), 1) for i in range(tensor.ShapeLength()))
        dtype = np.dtype(tensor_type_dtype(tensor.Type())).newbyteorder("=")
        q = tensor.Quantization()
        if q is None or q.ScaleLength() == 0 or dtype.kind == "f":
            return _IoTensor(shape, dtype, None, 0)
        zero = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
        return _IoTensor(shape, dtype, float(q.Scale(0)), zero)

    return describe(graph.Inputs(0)), describe(graph.Outputs(0))


def _rows(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    return y.reshape(len(y), -1)


# ---------------------------------------------------------------------------- comparing


def _reference(reference, x_samples: np.ndarray) -> tuple[str, _Outputs]:
    if not isinstance(reference, (bytes, bytearray, memoryview, str, Path)):
        return "reference outputs", _Outputs(_rows(np.asarray(reference)), None, 0)
    data, label = load_bytes(reference)
    check_identifier(data, label)
    try:
        return f"reference model {label}", _run(data, x_samples, label)[0]
    except TFLMError as e:
        raise TFLMError(f"reference_outputs: the reference model does not run on TFLM: {e}") from e


def _compare(outputs: _Outputs, named_reference: tuple[str, _Outputs]) -> dict:
    reference_name, reference = named_reference
    if reference.values.shape != outputs.values.shape:
        raise DataError(
            f"reference_outputs: shape {reference.values.shape} does not match the model "
            f"outputs {outputs.values.shape} (one row per sample)"
        )
    both_quantized = outputs.scale is not None and reference.scale is not None
    if both_quantized and outputs.values.dtype == reference.values.dtype:
        mine, theirs, compared_as = outputs.values.astype(np.int64), reference.values, "int8"
        theirs = theirs.astype(np.int64)
    else:
        mine, theirs, compared_as = outputs.as_float(), reference.as_float(), "float"
    return {
        "reference": reference_name,
        "compared_as": compared_as,
        "max_abs_difference": float(np.max(np.abs(mine - theirs))),
        "top1_agreement": float(np.mean(mine.argmax(axis=1) == theirs.argmax(axis=1))),
    }
