"""Does an artifact run on TFLM, how big is it, and does it still give the right answers?

:func:`check` loads one flatbuffer in the TFLM interpreter (in a child process, via
:mod:`edge_prune.tflm`), measures its arena, runs held-out samples through it and compares the
outputs with a reference: the Keras model's outputs, or another flatbuffer (the uncompressed
int8 model) also run on TFLM. :func:`choose_deployable` then picks, among checked artifacts,
the smallest one TFLM runs whose TFLM accuracy is within a tolerance of the dense model's.

A sparse-encoded model is reported as not running (TFLM has no DENSIFY kernel) and is never
chosen; it stays useful for TFLite runtimes that do support it.

This module does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_prune import tflm
from edge_prune.errors import ConfigError, DataError, EdgePruneError, TFLMError
from edge_prune.tflite_file import check_identifier, load_bytes

DEFAULT_TOLERANCE_POINTS = 1.0


class NoDeployableArtifactError(EdgePruneError):
    """No candidate both runs on TFLM and stays within the accuracy tolerance."""


@dataclass(frozen=True)
class DeployabilityReport:
    """What one artifact does on TFLM.

    ``flash_bytes`` is the flatbuffer alone (TFLM reads it in place from flash); the TFLM
    runtime code is not in it. ``arena_bytes`` is the smallest ``arena_size`` that let the
    model allocate and run one inference on this 64-bit host; ``arena_head_bytes`` (the tensor
    plan, including DECODE outputs of a LUT-compressed model) is the same on a Cortex-M,
    ``arena_tail_bytes`` (persistent structures) is smaller there. Comparisons are over
    ``samples`` held-out samples: ``max_abs_difference`` in the units of ``compared_as``
    ("int8" raw values when model and reference are both int8, else dequantized "float"),
    ``top1_agreement`` and ``accuracy`` as fractions in [0, 1].
    """

    name: str
    flash_bytes: int
    runs_on_tflm: bool
    missing_op: str | None = None
    failure: str | None = None  # why TFLM could not run it, when it could not
    arena_bytes: int | None = None
    arena_head_bytes: int | None = None
    arena_tail_bytes: int | None = None
    arena_failure: str | None = None  # why the arena is missing although the model ran
    samples: int = 0
    reference: str | None = None
    compared_as: str | None = None
    max_abs_difference: float | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None

    def to_dict(self) -> dict:
        return dict(vars(self))

    def __str__(self) -> str:
        head = f"{self.name}: {self.flash_bytes:,} B flatbuffer, "
        if not self.runs_on_tflm:
            why = f"no kernel for {self.missing_op}" if self.missing_op else self.failure
            return head + f"does NOT run on TFLM ({why})"
        parts = [head + "runs on TFLM"]
        if self.arena_bytes is not None:
            parts.append(
                f"arena {self.arena_bytes:,} B (head {self.arena_head_bytes:,} B, "
                f"tail {self.arena_tail_bytes:,} B on this 64-bit host)"
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
        return "; ".join(parts)


def check(
    model_bytes,
    x_samples: np.ndarray | None = None,
    reference_outputs=None,
    *,
    labels: np.ndarray | None = None,
    name: str | None = None,
    measure_arena: bool = True,
) -> DeployabilityReport:
    """Check one artifact on TFLM.

    ``model_bytes``: the flatbuffer (bytes or path). ``x_samples``: float held-out inputs,
    first axis = samples; they are quantized with the model's input scale and zero point when
    the model takes int8. ``reference_outputs``: the Keras model's outputs on ``x_samples``
    (array), or a reference flatbuffer (bytes or path) run on TFLM with the same samples, or
    None. ``labels``: class indices (or one-hot rows) to measure TFLM top-1 accuracy.

    Runs on TFLM means: loaded, allocated and ran every sample (one all-zero sample when
    ``x_samples`` is None). A model TFLM cannot load or run gives ``runs_on_tflm=False`` with
    the missing op or the failure, not an exception. If only the arena measurement fails after
    that, the report keeps ``runs_on_tflm=True`` and says why in ``arena_failure``. A
    reference flatbuffer that TFLM cannot run raises TFLMError.
    """
    data, label = load_bytes(model_bytes)
    check_identifier(data, label)
    name = name or label
    try:
        # One inference first (all-zero input without samples): it decides runs_on_tflm.
        ran = _run(data, x_samples if x_samples is not None else _zero_sample(data), name)
        outputs = ran if x_samples is not None else None
        arena, arena_failure = _arena(data, name, measure_arena)
    except tflm.MissingOpError as e:
        return DeployabilityReport(name, len(data), False, missing_op=e.op, failure=str(e))
    except TFLMError as e:
        return DeployabilityReport(name, len(data), False, failure=str(e))

    fields: dict = {"arena_failure": arena_failure}
    if arena is not None:
        fields.update(
            arena_bytes=arena.smallest_arena_bytes,
            arena_head_bytes=arena.recorded_head_bytes,
            arena_tail_bytes=arena.recorded_tail_bytes,
        )
    if outputs is not None:
        fields["samples"] = len(outputs.values)
        if reference_outputs is not None:
            fields.update(_compare(outputs, _reference(reference_outputs, x_samples)))
        if labels is not None:
            fields["accuracy"] = top1_accuracy(outputs.as_float(), labels)
    return DeployabilityReport(name, len(data), True, **fields)


def _arena(data: bytes, name: str, wanted: bool):
    """``(measurement, None)``, or ``(None, why)`` when the measurement failed on a model that
    already ran: the arena search probes arena sizes that are too small, and TFLM
    can crash on those (SIGSEGV seen on an int8 MLP), which says nothing about the model."""
    if not wanted:
        return None, None
    try:
        return tflm.measure_arena(data, label=name), None
    except tflm.MissingOpError:
        raise
    except TFLMError as e:
        return None, f"arena not measured: {e}"


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the label (class index or one-hot row)."""
    scores = _rows(outputs)
    truth = np.asarray(labels)
    truth = truth.argmax(axis=-1) if truth.ndim == 2 else truth.reshape(-1)
    if len(truth) != len(scores):
        raise DataError(f"labels: got {len(truth)} labels for {len(scores)} samples")
    return float(np.mean(scores.argmax(axis=1) == truth))


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


def _run(data: bytes, x_samples: np.ndarray, label: str) -> _Outputs:
    x = np.asarray(x_samples)
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"x_samples: expected at least one sample (shape {x.shape})")
    inp, out = _io_tensors(data)
    y = tflm.run(data, _to_model_input(x, inp), label=label)
    return _Outputs(values=_rows(y), scale=out.scale, zero_point=out.zero_point)


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
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    numpy_types = {
        schema.TensorType.FLOAT32: np.float32,
        schema.TensorType.INT8: np.int8,
        schema.TensorType.UINT8: np.uint8,
        schema.TensorType.INT16: np.int16,
        schema.TensorType.INT32: np.int32,
    }
    graph = schema.Model.GetRootAs(data, 0).Subgraphs(0)

    def describe(index: int) -> _IoTensor:
        tensor = graph.Tensors(index)
        shape = tuple(max(int(tensor.Shape(i)), 1) for i in range(tensor.ShapeLength()))
        dtype = np.dtype(numpy_types.get(tensor.Type(), np.float32))
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
        return f"reference model {label}", _run(data, x_samples, label)
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


# ----------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class DeployableChoice:
    """The artifact to flash, why, and why each other candidate was not chosen."""

    chosen: DeployabilityReport
    reason: str
    rejected: tuple[tuple[str, str], ...]  # (candidate name, reason)
    dense_accuracy: float
    tolerance_points: float

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.name,
            "reason": self.reason,
            "rejected": [{"name": n, "reason": r} for n, r in self.rejected],
            "dense_accuracy": self.dense_accuracy,
            "tolerance_points": self.tolerance_points,
        }

    def __str__(self) -> str:
        lines = [f"deployable: {self.chosen.name} ({self.reason})"]
        lines += [f"  not chosen: {n}: {r}" for n, r in self.rejected]
        return "\n".join(lines)


def choose_deployable(
    candidates: Sequence[DeployabilityReport],
    dense_accuracy: float,
    tolerance_points: float = DEFAULT_TOLERANCE_POINTS,
) -> DeployableChoice:
    """Pick the smallest candidate that runs on TFLM within ``tolerance_points`` of the dense.

    Accuracies are fractions in [0, 1] (``DeployabilityReport.accuracy``, measured on TFLM);
    ``tolerance_points`` is the largest allowed drop in percentage points (1.0 = one point).
    Ties in flash size go to the earlier candidate. A candidate that TFLM cannot run, or whose
    TFLM accuracy was not measured, is never chosen. Raises NoDeployableArtifactError when no
    candidate qualifies, listing each one's reason.
    """
    _check_accuracy("dense_accuracy", dense_accuracy)
    if not tolerance_points >= 0:
        raise ConfigError(
            f"tolerance_points: got {tolerance_points!r}, expected a number of percentage "
            "points >= 0"
        )
    if not candidates:
        raise ConfigError("candidates: got an empty list, expected at least one checked artifact")

    verdicts = [(c, _why_not(c, dense_accuracy, tolerance_points)) for c in candidates]
    qualified = [c for c, why in verdicts if why is None]
    if not qualified:
        reasons = "; ".join(f"{c.name}: {why}" for c, why in verdicts)
        raise NoDeployableArtifactError(
            f"no candidate runs on TFLM within {tolerance_points:g} points of the dense "
            f"accuracy {dense_accuracy:.2%}: {reasons}; raise the tolerance, fine-tune longer "
            "or prune less"
        )
    chosen = min(qualified, key=lambda c: c.flash_bytes)  # min keeps the first of equals
    rejected = tuple(
        (c.name, why or f"larger: {c.flash_bytes:,} B > {chosen.flash_bytes:,} B")
        for c, why in verdicts
        if c is not chosen
    )
    drop = _drop_points(dense_accuracy, chosen.accuracy)
    reason = (
        f"smallest artifact that runs on TFLM within {tolerance_points:g} points of the dense "
        f"model: {chosen.flash_bytes:,} B flatbuffer, TFLM accuracy {chosen.accuracy:.2%} "
        f"vs dense {dense_accuracy:.2%} (drop {drop:+.2f} points)"
    )
    return DeployableChoice(chosen, reason, rejected, dense_accuracy, tolerance_points)


def _why_not(c: DeployabilityReport, dense_accuracy: float, tolerance_points: float):
    if not c.runs_on_tflm:
        return (
            f"does not run on TFLM (no kernel for {c.missing_op})"
            if c.missing_op
            else (f"does not run on TFLM ({c.failure})")
        )
    if c.accuracy is None:
        return "TFLM accuracy not measured (check it with labels)"
    drop = _drop_points(dense_accuracy, c.accuracy)
    if drop > tolerance_points + 1e-9:
        return (
            f"TFLM accuracy {c.accuracy:.2%} is {drop:.2f} points below the dense "
            f"{dense_accuracy:.2%} (tolerance {tolerance_points:g})"
        )
    return None


def _drop_points(dense_accuracy: float, accuracy: float) -> float:
    return (dense_accuracy - accuracy) * 100.0


def _check_accuracy(argument: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{argument}: got {value!r}, expected a fraction in [0, 1]")
