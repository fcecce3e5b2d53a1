"""Operators the pinned CMSIS-NN computes wrongly: a firmware built with them starts and gives
outputs that differ from TFLM's reference kernels (and from the host).

One case is known, found by ``edge-prune device`` on a Conv1D model (bench/cmsis_nn_1xn.py holds
a minimal reproduction): on MVE cores (Cortex-M55, M85) ``arm_convolve_wrapper_s8`` sends a
one-row convolution (input height 1, filter height 1, dilation 1, stride_w * input channels a
multiple of 4; ``arm_nn_is_convolve_1_x_n``, Include/arm_nnsupportfunctions.h) to
``arm_convolve_1_x_n_s8`` (Source/ConvolutionFunctions/arm_convolve_1_x_n_s8.c). Its MVE path
takes ``total_pad = (output_w - 1) * stride_w + filter_w - input_w`` for the padding and treats
the last output column as right-padded when that is odd; with VALID padding and (input_w -
filter_w) not a multiple of stride_w it is negative (-1, -3, ...), so the last column is
computed from the input zero point where the input has real values; when it is negative and
even the function returns ARM_CMSIS_NN_FAILURE, which TFLM's ``cmsis_nn/conv.cc`` only checks
in debug builds, leaving the output unwritten.

This module does not import TensorFlow.
"""

from __future__ import annotations

from edge_prune.measurement.cmsis_nn_scratch import output_of, padding, tensor_of
from edge_prune.measurement.tflite_file import ModelInfo, OperatorNode


def wrong_outputs(info: ModelInfo, features: str) -> tuple[str, ...]:
    """Each operator of ``info`` the pinned CMSIS-NN computes wrongly on a core with
    ``features`` ("none", "dsp", "mve"), as "CONV_2D #i: why"."""
    if features != "mve":
        return ()
    return tuple(
        f"{node.op} #{node.index}: {why}"
        for node in info.nodes
        if node.op == "CONV_2D" and (why := _one_row_conv_fault(info, node))
    )


def _one_row_conv_fault(info: ModelInfo, node: OperatorNode) -> str:
    inp, filt, out = tensor_of(info, node, 0), tensor_of(info, node, 1), output_of(info, node)
    if inp is None or filt is None or out is None or inp.dtype != "INT8":
        return ""
    if filt.dtype != "INT8" or len(inp.shape) != 4 or len(filt.shape) != 4:
        return ""
    _, in_h, in_w, in_c = inp.shape
    _, f_h, f_w, f_c = filt.shape
    stride_w = node.option("stride_w", 1) or 1
    if f_h == 1 and f_w == 1 and padding(node, in_w, f_w, "w") == 0:
        return ""  # 1x1: arm_convolve_1x1_s8, checked first by the wrapper
    one_row = in_h == 1 and f_h == 1 and node.option("dilation_w", 1) == 1 and in_c == f_c
    if not one_row or (stride_w * in_c) % 4 != 0:
        return ""
    total_pad = (out.shape[2] - 1) * stride_w + f_w - in_w
    if total_pad >= 0:
        return ""
    return (
        f"CMSIS-NN's MVE 1xN convolution (arm_convolve_1_x_n_s8) computes the last output column "
        f"wrongly when (input width {in_w} - kernel width {f_w}) is not a multiple of the stride "
        f"{stride_w}"
    )
