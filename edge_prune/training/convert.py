"""Convert a tf_keras model to a TFLite flatbuffer: float32 or full-integer int8, dense or sparse.

Four variants, named ``float``, ``float-densify``, ``int8``, ``int8-densify``:

* ``float``: float32 weights and activations, float32 input/output.
* ``int8``: full-integer quantization (weights and activations int8, int8 input/output), with
  activation ranges calibrated on ``representative_data`` (samples of the model's input).
* ``-densify``: the converter's sparse tensor encoding
  (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``) for constant weight tensors that are sparse
  enough; TensorFlow's ``dense_to_sparse_pass`` encodes a tensor when at least 30% of it is zero
  and adds a DENSIFY op. TFLM cannot run these files (no DENSIFY kernel: its op resolver,
  ``tensorflow/lite/micro/micro_mutable_op_resolver.h``, has no ``AddDensify``); they are for
  TFLite runtimes only. The result lists which tensors came out sparse. (The build's
  ``int8-sparse`` artifact is another thing: TFLM's own DECODE encodings, see
  :func:`edge_prune.measurement.codecs.compress_for_mcu`.)

A microcontroller runs one sample at a time, so every variant converts a concrete function of
the model with an input batch dimension of 1 (``TFLiteConverter.from_concrete_functions``).
With the batch fixed, the converter emits only ops TFLM has for models that a dynamic batch
would turn into shape arithmetic (Dense on a 3-D tensor: SHAPE, REDUCE_PROD, PACK) or tensor
lists: an LSTM fuses into UNIDIRECTIONAL_SEQUENCE_LSTM, and GRU and SimpleRNN layers are
converted unrolled over their fixed time steps (FULLY_CONNECTED, LOGISTIC, TANH, MUL ...)
instead of a WHILE loop over tensor lists. A model that needs TF ops outside the TFLite
builtin set raises ``ConversionError`` naming them: Select TF (Flex) ops do not exist on a
microcontroller.

With the same model and data the conversion gives byte-identical flatbuffers on TF 2.21: the
tests check it within a process, and two runs of a seeded train-prune-convert script gave
identical files.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from edge_prune._native_stderr import native_stderr_filtered
from edge_prune.artifacts import scratch_tempdir, write_atomic
from edge_prune.errors import ConfigError, ConversionError, DataError
from edge_prune.measurement.tflite_file import read_model
from edge_prune.training._tf import keras, tf
from edge_prune.training.prune import check_model, is_pruning_wrapped, strip

if TYPE_CHECKING:
    from edge_prune.training.prune import PrunedModel, StagedPruning

    ModelLike = keras.Model | PrunedModel | StagedPruning

QUANTIZATIONS = ("float", "int8")
VARIANTS = ("float", "float-densify", "int8", "int8-densify")
# Names the variants had before: "-sparse" is the build's TFLM DECODE artifact.
_RENAMED_VARIANTS = {"float-sparse": "float-densify", "int8-sparse": "int8-densify"}
DEFAULT_CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class ConversionRecord:
    """What was asked for and what came out of one conversion.

    ``size_bytes`` is the whole flatbuffer. ``sparse_tensors`` names the tensors stored in the
    sparse encoding. ``dense_size_bytes`` is the same conversion without sparse encoding, for
    sparse variants when it was measured (``None`` otherwise).
    """

    variant: str
    quantization: str
    sparse: bool
    size_bytes: int
    sparse_tensors: tuple[str, ...]
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    calibration_samples: int
    dense_size_bytes: int | None = None
    per_channel_dense: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "quantization": self.quantization,
            "sparse": self.sparse,
            "size_bytes": self.size_bytes,
            "sparse_tensors": list(self.sparse_tensors),
            "input_dtypes": list(self.input_dtypes),
            "output_dtypes": list(self.output_dtypes),
            "calibration_samples": self.calibration_samples,
            "dense_size_bytes": self.dense_size_bytes,
            "per_channel_dense": self.per_channel_dense,
        }

    def __str__(self) -> str:
        text = (
            f"{self.variant}: {self.size_bytes:,} B, input {'/'.join(self.input_dtypes)}, "
            f"output {'/'.join(self.output_dtypes)}"
        )
        if self.sparse:
            text += f", {len(self.sparse_tensors)} tensor(s) stored sparse"
            if self.dense_size_bytes is not None:
                text += f" (dense: {self.dense_size_bytes:,} B)"
        return text


@dataclass(frozen=True)
class TFLiteModel:
    """A converted flatbuffer and its :class:`ConversionRecord`."""

    tflite_bytes: bytes
    record: ConversionRecord

    def save(self, path: str | Path) -> Path:
        """Write the flatbuffer to ``path`` atomically; returns the path."""
        return write_atomic(path, self.tflite_bytes)

    def to_dict(self) -> dict[str, Any]:
        return self.record.to_dict()

    def __str__(self) -> str:
        return str(self.record)


def variant_name(quantization: str, sparse: bool) -> str:
    return f"{quantization}-densify" if sparse else quantization


def convert(
    model: ModelLike,
    *,
    quantization: str = "float",
    sparse: bool = False,
    representative_data: np.ndarray | list[np.ndarray] | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    compare_dense: bool = True,
    per_channel_dense: bool = True,
) -> TFLiteModel:
    """Convert ``model`` (tf_keras Sequential/Functional) to TFLite.

    ``quantization``: ``"float"`` or ``"int8"`` (needs ``representative_data``: an array of
    input samples shaped like the model input, or a list of arrays for a model with several
    inputs; the first ``calibration_samples`` are used). A model still wrapped for pruning is
    stripped first. ``sparse=True`` gives TFLite's sparse encoding (variant
    ``<quantization>-densify``), which needs a DENSIFY kernel: TFLM has none, so the file runs
    on TFLite runtimes only. With ``compare_dense``, the dense variant is converted too, and a
    warning gives both sizes when the sparse encoding is not smaller.
    ``per_channel_dense=False`` quantizes int8 Dense kernels per tensor instead of per output
    channel: one scale and zero point instead of one per unit (smaller file; check accuracy).
    """
    _check_arguments(quantization, sparse, calibration_samples, per_channel_dense)
    model = _deployable(model)
    samples = None
    if quantization == "int8":
        samples = check_representative_data(model, representative_data, calibration_samples)
    options = _Options(quantization, sparse, per_channel_dense)
    flatbuffer = _run_converter(model, options, samples)
    dense_size = None
    if sparse and compare_dense:
        dense_size = len(_run_converter(model, options._replace(sparse=False), samples))
    result = _result(flatbuffer, options, samples, dense_size)
    if dense_size is not None:
        warn_if_sparse_not_smaller(result.record)
    return result


def convert_all(
    model: ModelLike,
    representative_data: np.ndarray | list[np.ndarray] | None,
    *,
    variants: tuple[str, ...] = VARIANTS,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    per_channel_dense: bool = True,
) -> dict[str, TFLiteModel]:
    """Convert to each of ``variants`` (default: all four); keys are the variant names.

    Arguments as for :func:`convert`. ``float-densify`` and ``int8-densify`` hold TFLite's
    sparse encoding, which needs a DENSIFY kernel: TFLM has none, so they run on TFLite
    runtimes only. Each of them carries its dense counterpart's size when that one was
    converted too, and warns when the sparse encoding is not smaller.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        renamed = [
            f"{v!r} is now {_RENAMED_VARIANTS[v]!r}" for v in unknown if v in _RENAMED_VARIANTS
        ]
        raise ConfigError(
            f"variants: unknown {', '.join(map(repr, unknown))}; expected {', '.join(VARIANTS)}"
            + (f" ({'; '.join(renamed)})" if renamed else "")
        )
    _check_arguments("float", False, calibration_samples, per_channel_dense)
    model = _deployable(model)
    samples = None
    if any(v.startswith("int8") for v in variants):
        samples = check_representative_data(model, representative_data, calibration_samples)
    results: dict[str, TFLiteModel] = {}
    for name in sorted(variants, key=VARIANTS.index):  # dense before its sparse variant
        options = _Options(name.split("-")[0], name.endswith("-densify"), per_channel_dense)
        data = samples if options.quantization == "int8" else None
        flatbuffer = _run_converter(model, options, data)
        dense = results.get(options.quantization) if options.sparse else None
        dense_size = dense.record.size_bytes if dense else None
        results[name] = _result(flatbuffer, options, data, dense_size)
        if dense_size is not None:
            warn_if_sparse_not_smaller(results[name].record)
    return {name: results[name] for name in variants}


def warn_if_sparse_not_smaller(record: ConversionRecord) -> None:
    if record.dense_size_bytes is not None and record.size_bytes >= record.dense_size_bytes:
        warnings.warn(
            f"{record.variant}: sparse encoding is not smaller than dense: "
            f"{record.size_bytes:,} bytes sparse vs {record.dense_size_bytes:,} bytes dense "
            f"({len(record.sparse_tensors)} tensor(s) stored sparse); prune further or use "
            "the dense variant",
            stacklevel=3,
        )


def check_representative_data(
    model: keras.Model,
    data: np.ndarray | list[np.ndarray] | None,
    limit: int = DEFAULT_CALIBRATION_SAMPLES,
) -> list[np.ndarray]:
    """Validate calibration samples against the model inputs; one float32 array per input."""
    if data is None:
        raise DataError(
            "representative_data is required for int8: pass an array of input samples "
            f"shaped like the model input {_shape_text(model.inputs[0].shape)}"
        )
    arrays = list(data) if isinstance(data, list | tuple) else [data]
    if len(arrays) != len(model.inputs):
        raise DataError(
            f"representative_data: model {model.name} has {len(model.inputs)} inputs, got "
            f"{len(arrays)} array(s)"
        )
    checked = []
    for array, tensor in zip(arrays, model.inputs, strict=True):
        checked.append(_check_input_array(np.asarray(array), tensor, limit))
    counts = {len(a) for a in checked}
    if len(counts) != 1:
        raise DataError(f"representative_data: arrays hold different sample counts {counts}")
    return checked


def _check_input_array(array: np.ndarray, tensor: tf.Tensor, limit: int) -> np.ndarray:
    expected = tuple(tensor.shape)[1:]
    if array.ndim != len(expected) + 1 or any(
        e is not None and e != a for e, a in zip(expected, array.shape[1:], strict=True)
    ):
        raise DataError(
            f"representative_data has shape {array.shape}; model input {tensor.name!r} expects "
            f"(samples, {', '.join(str(d) for d in expected)})"
        )
    if array.shape[0] == 0:
        raise DataError("representative_data holds no samples")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise DataError(
            f"representative_data must hold finite numbers, got dtype {array.dtype} "
            "or NaN/inf values"
        )
    return array[:limit].astype(np.float32)


def _check_arguments(
    quantization: str, sparse: bool, calibration_samples: int, per_channel_dense: bool
) -> None:
    if quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}"
        )
    for name, value in (("sparse", sparse), ("per_channel_dense", per_channel_dense)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    if (
        isinstance(calibration_samples, bool)
        or not isinstance(calibration_samples, int)
        or (calibration_samples < 1)
    ):
        raise ConfigError(
            f"calibration_samples must be an integer >= 1, got {calibration_samples!r}"
        )


def _deployable(model: ModelLike) -> keras.Model:
    model = getattr(model, "model", model)  # PrunedModel / StagedPruning
    check_model(model)
    return strip(model) if is_pruning_wrapped(model) else model


class _Options(NamedTuple):
    quantization: str
    sparse: bool
    per_channel_dense: bool

    @property
    def variant(self) -> str:
        return variant_name(self.quantization, self.sparse)


def _run_converter(
    model: keras.Model, options: _Options, samples: list[np.ndarray] | None
) -> bytes:
    try:
        converter = _batch_one_converter(model)
        converter.optimizations = _optimizations(options.quantization, options.sparse)
        if options.quantization == "int8":
            converter.representative_dataset = _representative_dataset(samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            # Private converter flag (TF 2.21): one scale/zero point per Dense kernel.
            converter._experimental_disable_per_channel_quantization_for_dense_layers = (
                not options.per_channel_dense
            )
        with (
            warnings.catch_warnings(),
            native_stderr_filtered(_without_chatter),
            scratch_tempdir("convert"),  # its SavedModel is swept if this process is killed
        ):
            # TF warns about missing input statistics for every int8-in/out conversion; the
            # representative dataset supplies them.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    except Exception as e:  # the converter raises many unrelated types (ConverterError, ...)
        raise ConversionError(
            f"TFLite conversion to {options.variant} failed for model {model.name}: "
            f"{_converter_message(e)}"
        ) from e


def _batch_one_converter(model: keras.Model) -> tf.lite.TFLiteConverter:
    """A converter for ``model`` called on one sample (input batch dimension 1)."""
    runnable = _unrolled(model)
    specs = [
        tf.TensorSpec((1, *tensor.shape[1:]), tensor.dtype, name=name)
        for name, tensor in zip(runnable.input_names, runnable.inputs, strict=True)
    ]
    if len(specs) == 1:
        function = tf.function(lambda x: runnable(x, training=False))
    else:
        function = tf.function(lambda *xs: runnable(list(xs), training=False))
    concrete = function.get_concrete_function(*specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], runnable)


# Recurrent layers the converter turns into a WHILE loop over tensor lists; unrolled over fixed
# time steps they become plain builtin ops. LSTM is left alone: the converter fuses it into
# UNIDIRECTIONAL_SEQUENCE_LSTM, which TFLM runs.
_UNROLL = ("GRU", "SimpleRNN")


def _unrolled(model: keras.Model) -> keras.Model:
    """``model``, or a copy whose GRU/SimpleRNN layers are unrolled (same weights)."""
    layers = [layer for layer in model.layers if _needs_unroll(layer)]
    if not layers:
        return model

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if _needs_unroll(layer):
            config["unroll"] = True
        return type(layer).from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone_layer)
    copy.set_weights(model.get_weights())
    return copy


def _needs_unroll(layer: keras.layers.Layer) -> bool:
    if type(layer).__name__ not in _UNROLL or layer.get_config().get("unroll"):
        return False
    return layer.input_shape[1] is not None  # unrolling needs a fixed number of time steps


# Printed by the converter's C++ code on every int8 conversion; says nothing to a user.
_CONVERTER_CHATTER = ("fully_quantize: ",)


def _without_chatter(text: str) -> str:
    """``text`` without the lines that start with one of :data:`_CONVERTER_CHATTER`."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(_CONVERTER_CHATTER))


_TF_OP = re.compile(r"'tf\.(\w+)' op")


def _converter_message(error: Exception) -> str:
    """One line from a converter error, whose text is mostly MLIR source locations.

    The converter's advice to enable Select TF ops is left out: Flex ops do not exist on a
    microcontroller, so the ops it names must go from the model.
    """
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ops = [line.removeprefix("TF Select ops:").strip() for line in lines]
    ops = [o for o, line in zip(ops, lines, strict=True) if line.startswith("TF Select ops:")]
    if not ops and "Select TF ops" in text:
        ops = [", ".join(sorted(set(_TF_OP.findall(text)))) or "unknown"]
    if ops:
        return (
            f"ops not in the TFLite builtin set: {ops[0]}; TF Select (Flex) ops do not run on "
            "microcontrollers: replace them in the model"
        )
    last = lines[-1] if lines else ""
    return f"{type(error).__name__}: {last[:300]}"


def _optimizations(quantization: str, sparse: bool) -> list:
    optimizations = [tf.lite.Optimize.DEFAULT] if quantization == "int8" else []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    return optimizations


def _representative_dataset(samples: list[np.ndarray]):
    def generate() -> Iterator[list[np.ndarray]]:
        for i in range(len(samples[0])):
            yield [array[i : i + 1] for array in samples]

    return generate


def _result(
    flatbuffer: bytes, options: _Options, samples: list[np.ndarray] | None, dense_size: int | None
) -> TFLiteModel:
    info = read_model(flatbuffer)
    record = ConversionRecord(
        variant=options.variant,
        quantization=options.quantization,
        sparse=options.sparse,
        size_bytes=info.size_bytes,
        sparse_tensors=tuple(t.name for t in info.sparse_tensors),
        input_dtypes=tuple(t.dtype.lower() for t in info.input_tensors),
        output_dtypes=tuple(t.dtype.lower() for t in info.output_tensors),
        calibration_samples=len(samples[0]) if samples else 0,
        dense_size_bytes=dense_size,
        per_channel_dense=options.per_channel_dense,
    )
    return TFLiteModel(flatbuffer, record)


def _shape_text(shape) -> str:
    return "(samples, " + ", ".join(str(d) for d in tuple(shape)[1:]) + ")"
