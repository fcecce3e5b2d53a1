"""Four-bit weights: int8 activations with int4 Dense and Conv2D kernels, written by the converter.

The TFLite converter stores a kernel as a packed INT4 tensor (TensorType INT4, two values per
byte) when the Keras model carries 4-bit weight fake-quantization; it has no post-training int4
route. So both ways of getting there go through tfmot's quantization API with a
:class:`Int4WeightConfig` on each Dense and Conv2D layer (symmetric, narrow range: values in
[-7, 7], zero point 0):

- ``epochs > 0``: quantization-aware fine-tuning at 4 bits (the weights learn the grid);
- ``epochs == 0``: post-training, the float weights rounded to the 4-bit grid as they are
  (a calibration pass sets the quantizer ranges, no weight changes).

Conv2D kernels get one scale per output channel; Dense kernels one scale per tensor: the
converter cannot write per-channel INT4 Dense kernels and TFLM's FULLY_CONNECTED refuses them in
Prepare (``tensorflow/lite/micro/kernels/fully_connected_common.cc``). Other layers
(DepthwiseConv2D, pooling ...) keep tfmot's default 8-bit scheme.

Pruned zeros stay zero: the grid is symmetric, so 0 quantizes to 0, and the fine-tune puts
each kernel's zeros back after every step. At most 15 values per channel (Conv2D) or per
tensor (Dense) remain: the 4-bit grid is itself a clustering to <= 16 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_prune.errors import UnsupportedModelError
from edge_prune.training._tf import keras, tfmot

_QK = tfmot.quantization.keras
CALIBRATION_BATCHES = 8


class Int4WeightConfig(_QK.QuantizeConfig):
    """4-bit symmetric weights, 8-bit activations, for one Dense or Conv2D layer."""

    def __init__(self, per_axis: bool):
        self.per_axis = per_axis

    def get_weights_and_quantizers(self, layer):
        quantizer = _QK.quantizers.LastValueQuantizer(
            num_bits=4, per_axis=self.per_axis, symmetric=True, narrow_range=True
        )
        return [(layer.kernel, quantizer)]

    def get_activations_and_quantizers(self, layer):
        quantizer = _QK.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False
        )
        return [(layer.activation, quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"per_axis": self.per_axis}


@dataclass(frozen=True)
class Int4Result:
    """The fake-quantized Keras model the converter turns into INT4 kernels, and what it did."""

    model: keras.Model
    method: str  # "qat" or "post-training"
    int4_layers: tuple[str, ...]
    zeros_before: int  # zero kernel weights of the int4 layers before
    zeros_after: int  # the same kernels' zeros on the 4-bit grid after

    @property
    def zeros_kept(self) -> bool:
        return self.zeros_after >= self.zeros_before


def int4_layer_names(model: keras.Model) -> tuple[str, ...]:
    """The layers that get 4-bit kernels: Dense and Conv2D (not their subclasses, e.g.
    DepthwiseConv2D, which TFLM's reference kernels do not run with INT4 filters)."""
    kinds = (keras.layers.Dense, keras.layers.Conv2D)
    return tuple(layer.name for layer in model.layers if type(layer) in kinds)


def quantize_int4(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray | None = None,
    *,
    epochs: int = 0,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    loss=None,
    seed: int = 0,
) -> Int4Result:
    """``model`` (pruned, wrappers stripped) with 4-bit weight fake-quantization: fine-tuned for
    ``epochs`` (needs ``y_train`` and ``loss``) or, with ``epochs=0``, only calibrated."""
    names = int4_layer_names(model)
    if not names:
        raise UnsupportedModelError(
            f"int4 weights: model {model.name} has no Dense or Conv2D layer to store in 4 bits"
        )
    zeros_before = _kernel_zeros(model, names)
    quantized = _quantize_apply(model, names)
    masks = _zero_masks(quantized, names)
    _calibrate(quantized, x_train, batch_size)
    if epochs > 0:
        keras.utils.set_random_seed(seed)
        quantized.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
        quantized.fit(
            x_train,
            y_train,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            callbacks=[_KeepZeros(masks)],
        )
    zeros_after = _grid_zeros(quantized, names)
    method = "qat" if epochs > 0 else "post-training"
    return Int4Result(quantized, method, names, zeros_before, zeros_after)


def _quantize_apply(model: keras.Model, names: tuple[str, ...]) -> keras.Model:
    def annotate(layer):
        if layer.name in names:
            per_axis = type(layer) is keras.layers.Conv2D
            return _QK.quantize_annotate_layer(layer, Int4WeightConfig(per_axis))
        return layer

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        with _QK.quantize_scope({"Int4WeightConfig": Int4WeightConfig}):
            return _QK.quantize_apply(_QK.quantize_annotate_model(annotated))
    except (ValueError, TypeError, RuntimeError) as e:
        raise UnsupportedModelError(
            f"int4 weights: tfmot cannot quantize model {model.name}: {str(e).splitlines()[0]}"
        ) from e


def _wrapped(model: keras.Model, names: tuple[str, ...]):
    """Each int4 layer's quantize wrapper (tfmot names it ``quant_<name>``)."""
    wanted = {f"quant_{n}" for n in names}
    return [layer for layer in model.layers if layer.name in wanted]


def _zero_masks(model: keras.Model, names: tuple[str, ...]):
    masks = []
    for wrapper in _wrapped(model, names):
        kernel = _kernel_variable(wrapper)
        masks.append((kernel, (kernel.numpy() != 0).astype(np.float32)))
    return masks


def _kernel_variable(wrapper):
    """The float kernel a quantize wrapper trains (``layer.kernel`` is its fake-quant output)."""
    return wrapper._weight_vars[0][0]


class _KeepZeros(keras.callbacks.Callback):
    """Puts each kernel's zeros back after every training step."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        for kernel, mask in self.masks:
            kernel.assign(kernel * mask)


def _calibrate(model: keras.Model, x: np.ndarray, batch_size: int) -> None:
    """Forward passes in training mode: the quantizers take their ranges from the weights and
    activations; no weight changes (no optimizer step)."""
    for start in range(0, min(len(x), CALIBRATION_BATCHES * batch_size), batch_size):
        model(x[start : start + batch_size], training=True)


def _kernel_zeros(model: keras.Model, names: tuple[str, ...]) -> int:
    return sum(int(np.sum(model.get_layer(n).kernel.numpy() == 0)) for n in names)


def _grid_zeros(model: keras.Model, names: tuple[str, ...]) -> int:
    """Zeros of the int4 layers' kernels as the converter will store them (on the 4-bit grid)."""
    total = 0
    for wrapper in _wrapped(model, names):
        kernel = _kernel_variable(wrapper).numpy()
        axes = tuple(range(kernel.ndim - 1)) if type(wrapper.layer) is keras.layers.Conv2D else None
        scale = np.max(np.abs(kernel), axis=axes) / 7.0
        scale = np.where(scale == 0, 1.0, scale)
        total += int(np.sum(np.round(kernel / scale) == 0))
    return total
