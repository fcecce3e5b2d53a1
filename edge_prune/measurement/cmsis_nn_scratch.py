"""The tensor arena a firmware built with TFLM's CMSIS-NN kernels needs, derived per operator.

The host interpreter runs TFLM's reference kernels: the arena it records (and the 32-bit figure
:class:`edge_prune.measurement.tflm.ArenaMeasurement` derives from it) never sees what the CMSIS-NN
kernels ask for. Those kernels (``tensorflow/lite/micro/kernels/cmsis_nn/*.cc`` of the pinned TFLM)
differ in two ways, both derived here from the model's flatbuffer:

- scratch buffers: each kernel's Prepare calls ``RequestScratchBufferInArena`` with the size
  CMSIS-NN's own function gives for that node's shapes (``arm_convolve_wrapper_s8_get_buffer_size``,
  ``arm_depthwise_conv_wrapper_s8_get_buffer_size``, ``arm_fully_connected_s8_get_buffer_size``,
  ``arm_avgpool_s8_get_buffer_size``, ``arm_svdf_s8_get_buffer_size``, in
  ``downloads/cmsis_nn/Source/*/arm_*_get_buffer_sizes_s8.c``). The sizes depend on the core:
  ``ARM_MATH_DSP`` (Cortex-M4, M7, M33) and ``ARM_MATH_MVEI`` (Cortex-M55) select other
  formulas than the plain C path (M0+, M3). Sizes are those of a GCC build (arm-none-eabi-gcc,
  what ``edge-prune device`` builds with): the 1x1 convolution's DSP buffer is 0 there
  (``arm_convolve_1x1_s8_fast_get_buffer_size_dsp`` sizes it for Arm Compiler 6 only). The
  LSTM (``unidirectional_sequence_lstm.cc``) requests 3 buffers of the cell state's size where
  the reference kernel requests 4.
- persistent data: a larger OpData per node (e.g. ``fully_connected.cc``'s OpData adds two
  buffer indices, a kernel-sum pointer and three sizes to the reference OpDataFullyConnected;
  the LSTM's adds CMSIS-NN's 220 B ``cmsis_nn_lstm_params``) and, on MVE, kernel sums kept in
  the arena (``KERNELS_OPTIMIZED_FOR_SPEED``, TFLM's default).

Scratch buffers live in the arena's non-persistent head: TFLM plans them with the tensors
(``micro_allocation_info.cc``: a node's scratch buffer lives while that node runs) with the
greedy memory planner (``memory_planner/greedy_memory_planner.cc``: buffers sorted by size,
largest first, each placed at the lowest offset free for its lifetime). A scratch buffer can
therefore fit in a gap of the tensor plan and cost nothing, or push the head up by more than its
size. :func:`plan_bytes` replays that planner on the model's tensors, once with the scratch
buffers the reference kernels request and once with CMSIS-NN's; the head grows by the
difference (never shrinks below what the host recorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from edge_prune.measurement.tflite_file import ModelInfo, OperatorNode, TensorInfo

ALIGNMENT = 16  # MicroArenaBufferAlignment(): planned buffers and persistent buffers
SCRATCH_HANDLE_BYTES = 4  # sizeof(ScratchBufferHandle) on a 32-bit Cortex-M, alignment 4

# TFLM TARGET_ARCH -> CMSIS-NN code path (arm_nn_math_types.h: __ARM_FEATURE_MVE defines
# ARM_MATH_MVEI, __ARM_FEATURE_DSP defines ARM_MATH_DSP; GCC's -mcpu=cortex-m33 has DSP).
CORE_FEATURES = {
    "cortex-m0": "none",
    "cortex-m0plus": "none",
    "cortex-m3": "none",
    "cortex-m4": "dsp",
    "cortex-m4+fp": "dsp",
    "cortex-m7": "dsp",
    "cortex-m7+fp": "dsp",
    "cortex-m33": "dsp",
    "cortex-m33+fp": "dsp",
    "cortex-m55": "mve",
    "cortex-m85": "mve",
}
FEATURES = ("none", "dsp", "mve")

# sizeof the OpData each kernel allocates per node on a 32-bit Cortex-M: (CMSIS-NN kernel,
# reference kernel). CMSIS-NN's structs are local to its .cc files: their size is the reference
# struct (measured, edge_prune/data/tflm_struct_sizes.toml) plus the members the .cc adds.
OP_DATA_BYTES = {
    # conv.cc, depthwise_conv.cc: OpDataConv (56) + int buffer_idx
    "CONV_2D": (60, 56),
    "DEPTHWISE_CONV_2D": (60, 56),
    # fully_connected.cc: OpDataFullyConnected (48) + 2 int indices + int32_t* + 3 int32_t
    "FULLY_CONNECTED": (72, 48),
    # pooling.cc: OpDataPooling (32) + int buffer_idx, for max and average pooling alike
    "AVERAGE_POOL_2D": (36, 32),
    "MAX_POOL_2D": (36, 32),
    # softmax.cc: CMSISNNSoftmaxParams = SoftmaxParams (56) + 2 int32_t
    "SOFTMAX": (64, 56),
    # svdf.cc: CmsisNnOpDataSvdf, 10 int + int32_t* (KERNELS_OPTIMIZED_FOR_SPEED); OpDataSvdf 36
    "SVDF": (44, 36),
    # unidirectional_sequence_lstm.cc:35-38, allocated in Init (:331-332): OpDataLSTM (688) +
    # cmsis_nn_lstm_params (220, Include/arm_nn_types.h), 912 B with arm-none-eabi-g++
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (912, 688),
}
# Ops whose CMSIS-NN kernel requests scratch this module does not size: counted at a labelled
# bound (the node's non-constant inputs and outputs, see _unsized_bound).
UNSIZED_OPS = ("TRANSPOSE_CONV", "BATCH_MATMUL")
LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"
_LSTM_CELL_STATE = 19  # kLstmCellStateTensor (lstm_shared.h): input 19, a variable tensor
_ELEMENT_BYTES = {
    "BOOL": 1,
    "INT4": 1,
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "FLOAT16": 2,
    "BFLOAT16": 2,
    "INT32": 4,
    "UINT32": 4,
    "FLOAT32": 4,
    "INT64": 8,
    "UINT64": 8,
    "FLOAT64": 8,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
}


def align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class ScratchRequest:
    """One ``RequestScratchBufferInArena`` call of node ``node`` (subgraph ``subgraph``)."""

    subgraph: int
    node: int
    op: str
    bytes: int
    what: str


@dataclass(frozen=True)
class KernelArena:
    """What the CMSIS-NN kernels add to the reference kernels' arena, for one model and core.

    ``scratch``: CMSIS-NN's scratch requests; ``reference_scratch``: the reference kernels'
    (int4 filters unpacked, SVDF). ``head_extra_bytes``: what the planned head grows by
    (:func:`plan_bytes` with each set of requests). ``tail_extra_bytes``: larger OpData, kernel
    sums kept in the arena, and the scratch buffer handles. ``bound_ops``: ops whose scratch is
    not sized here but bounded (``note`` says how). ``planning_peak_bytes``: set by
    :func:`arena_bytes` when the arena TFLM holds while it plans (the reference figure's planning
    peak with these kernels' persistent data and scratch requests) is larger than the reference
    figure plus the two extras, and so is the figure.
    """

    features: str
    scratch: tuple[ScratchRequest, ...]
    reference_scratch: tuple[ScratchRequest, ...]
    head_extra_bytes: int
    tail_extra_bytes: int
    planned_head_bytes: int | None
    planned_reference_head_bytes: int | None
    bound_ops: tuple[str, ...] = ()
    note: str = ""
    planning_peak_bytes: int | None = None

    @property
    def extra_requests(self) -> int:
        return max(0, len(self.scratch) - len(self.reference_scratch))

    def to_dict(self) -> dict:
        return {
            "core_features": self.features,
            "scratch_requests": [
                {"node": r.node, "op": r.op, "bytes": r.bytes, "what": r.what} for r in self.scratch
            ],
            "reference_scratch_requests": len(self.reference_scratch),
            "planned_head_bytes": self.planned_head_bytes,
            "planned_reference_head_bytes": self.planned_reference_head_bytes,
            "head_extra_bytes": self.head_extra_bytes,
            "tail_extra_bytes": self.tail_extra_bytes,
            "bound_ops": list(self.bound_ops),
            "note": self.note,
            "planning_peak_bytes": self.planning_peak_bytes,
        }


def features_of(arch: str | None) -> str:
    """CMSIS-NN code path of a TFLM TARGET_ARCH; "dsp" (the Cortex-M4 path) when unknown."""
    return CORE_FEATURES.get(arch or "", "dsp")


def tensor_bytes(tensor: TensorInfo) -> int:
    """TfLiteEvalTensorByteLength: elements x element size."""
    return tensor.element_count * _ELEMENT_BYTES.get(tensor.dtype, 4)


def kernel_arena(info: ModelInfo, features: str) -> KernelArena:
    """The CMSIS-NN kernels' scratch and persistent extras for ``info`` on a core with
    ``features`` ("none", "dsp" or "mve"), and how much they add to the planned head."""
    if features not in FEATURES:
        raise ValueError(f"features: expected one of {FEATURES}, got {features!r}")
    scratch, reference, tail, bound = [], [], 0, []
    for node in info.nodes:
        scratch += _cmsis_requests(info, node, features)
        reference += _reference_requests(info, node)
        tail += _persistent_extra(info, node, features)
        if node.op in UNSIZED_OPS:
            bound.append(node.op)
    tail += align(SCRATCH_HANDLE_BYTES * len(scratch)) - align(
        SCRATCH_HANDLE_BYTES * len(reference)
    )
    planned = plan_bytes(info, scratch)
    planned_reference = plan_bytes(info, reference)
    notes = []
    if planned is None or planned_reference is None:
        head_extra = sum(align(r.bytes) for r in scratch)
        notes.append("more than one subgraph: every scratch buffer counted on top of the head")
    else:
        # Negative when the reference kernels request scratch the CMSIS-NN ones do not (int4
        # filters unpacked into the arena): the CMSIS-NN plan is then smaller.
        head_extra = planned - planned_reference
    if bound:
        notes.append(
            f"{', '.join(sorted(set(bound)))}: scratch bounded by the node's non-constant "
            "inputs and outputs, not sized"
        )
    return KernelArena(
        features=features,
        scratch=tuple(scratch),
        reference_scratch=tuple(reference),
        head_extra_bytes=head_extra,
        tail_extra_bytes=max(0, tail),
        planned_head_bytes=planned,
        planned_reference_head_bytes=planned_reference,
        bound_ops=tuple(sorted(set(bound))),
        note="; ".join(notes),
    )


# --- the memory plan -------------------------------------------------------------------------


def plan_bytes(info: ModelInfo, scratch: list[ScratchRequest] | tuple = ()) -> int | None:
    """Head size TFLM's GreedyMemoryPlanner gives subgraph 0's tensors plus ``scratch``; None
    for a model with more than one subgraph (control flow nests lifetimes)."""
    if info.subgraph_count != 1:
        return None
    buffers = _tensor_lifetimes(info) + [
        (align(r.bytes), r.node + 1, r.node + 1) for r in scratch if r.bytes > 0
    ]
    return greedy_plan(buffers)


def _tensor_lifetimes(info: ModelInfo) -> list[tuple[int, int, int]]:
    """(aligned bytes, first, last) of each planned tensor, in tensor order, as
    AllocationInfoBuilder::MarkAllocationLifetimes gives them (inputs at 0, node i at i + 1)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in info.inputs:
        first.setdefault(t, 0)
        last[t] = 0
    nodes = [n for n in info.nodes if n.subgraph == 0]
    for scope, node in enumerate(nodes, start=1):
        for t in node.outputs:
            first.setdefault(t, scope)
        for t in (*node.inputs, *node.outputs):
            if t >= 0:
                last[t] = scope
    end = len(nodes)
    for t in info.outputs:
        first.setdefault(t, end)
        last[t] = end
    buffers = []
    for tensor in info.tensors:
        if tensor.subgraph != 0 or tensor.data_bytes or tensor.is_variable:
            continue
        size = tensor_bytes(tensor)
        if size:  # a tensor no node uses keeps TFLM's unset lifetime, -1
            buffers.append((align(size), first.get(tensor.index, -1), last.get(tensor.index, -1)))
    return buffers


def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """GreedyMemoryPlanner::GetMaximumMemorySize for ``(size, first, last)`` buffers given in
    the order TFLM adds them: a stable sort by size, largest first; each buffer goes to the
    lowest offset where it overlaps no placed buffer alive at the same time."""
    order = sorted(range(len(buffers)), key=lambda i: -buffers[i][0])
    placed: list[tuple[int, int]] = []  # (offset, buffer id), by offset
    for i in order:
        size, first, last = buffers[i]
        offset = 0
        for other_offset, j in placed:
            _, other_first, other_last = buffers[j]
            if other_first > last or first > other_last:
                continue
            if other_offset - offset >= size:
                break
            offset = max(offset, other_offset + buffers[j][0])
        placed.append((offset, i))
        placed.sort(key=lambda p: p[0])
    return max((offset + buffers[i][0] for offset, i in placed), default=0)


# --- scratch requests per kernel ---------------------------------------------------------------


def tensor_of(info: ModelInfo, node: OperatorNode, index: int) -> TensorInfo | None:
    """Input ``index`` of ``node``; None when it is left out (-1) or not a tensor."""
    if index >= len(node.inputs):
        return None
    return _lookup(info, node.subgraph, node.inputs[index])


def output_of(info: ModelInfo, node: OperatorNode, index: int = 0) -> TensorInfo | None:
    if index >= len(node.outputs):
        return None
    return _lookup(info, node.subgraph, node.outputs[index])


def _lookup(info: ModelInfo, subgraph: int, index: int) -> TensorInfo | None:
    offset = 0
    for t in info.tensors:
        if t.subgraph == subgraph:
            break
        offset += 1
    position = offset + index
    if index < 0 or position >= len(info.tensors):
        return None
    tensor = info.tensors[position]
    return tensor if tensor.subgraph == subgraph else None


def _reference_requests(info: ModelInfo, node: OperatorNode) -> list[ScratchRequest]:
    """What TFLM's reference kernels request for ``node``: the unpacked int4 filter (conv,
    depthwise conv, fully connected), SVDF's two int32 buffers and the LSTM's four."""
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        filt = tensor_of(info, node, 1)
        if filt is not None and filt.dtype == "INT4":
            return [_request(node, filt.element_count, "int4 filter unpacked")]
        return []
    if node.op == "SVDF":
        return _svdf_common(info, node)
    if node.op == LSTM_OP:
        return _lstm_buffers(info, node, 4)
    return []


def _cmsis_requests(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    sizer = _CMSIS_SIZERS.get(node.op)
    return sizer(info, node, features) if sizer else []


def _request(node: OperatorNode, size: int, what: str) -> ScratchRequest:
    return ScratchRequest(node.subgraph, node.index, node.op, int(size), what)


def padding(node: OperatorNode, in_size: int, filter_size: int, axis: str) -> int:
    """tensorflow/lite/kernels/padding.h ComputePaddingHeightWidth, one axis."""
    stride = node.option(f"stride_{axis}", 1) or 1
    dilation = node.option(f"dilation_{axis}", 1) or 1
    effective = (filter_size - 1) * dilation + 1
    if node.option("padding", "VALID") == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - effective) // stride
    return max(0, ((out - 1) * stride + effective - in_size) // 2)


def _conv_s8_rows(input_c: int, filter_h: int, filter_w: int, features: str) -> int:
    """arm_convolve_s8_get_buffer_size (and its _mve variant)."""
    cols = filter_w * filter_h * input_c
    if features == "mve":
        return 4 * ((cols + 15) // 16) * 16
    return 2 * (-(-cols // 4) * 4) * 2


def _conv_wrapper_s8(features, in_nhwc, filter_hwc, output_w, stride, pad, dilation) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size for the core's code path (GCC build)."""
    _, in_h, in_w, in_c = in_nhwc
    f_h, f_w, f_c = filter_hwc
    stride_h, stride_w = stride
    pad_h, pad_w = pad
    if pad_w == 0 and pad_h == 0 and f_w == 1 and f_h == 1 and dilation == (1, 1) and in_c == f_c:
        return 0  # 1x1: the fast path's buffer is 0 with GCC, the other path has none
    one_row = in_h == 1 and dilation[1] == 1 and f_h == 1 and in_c == f_c
    if features == "mve" and one_row and (stride_w * in_c) % 4 == 0:
        return _conv_1_x_n_mve(in_w, in_c, f_h, f_w, output_w, stride_w, pad_w)
    return _conv_s8_rows(in_c, f_h, f_w, features)


def _conv_1_x_n_mve(in_w, in_c, f_h, f_w, output_w, stride_w, pad_w) -> int:
    """arm_convolve_1_x_n_s8_get_buffer_size_mve."""
    total_pad = (output_w - 1) * stride_w + f_w - in_w
    asym = int(math.fmod(total_pad, 2))  # C's %: -1 for a negative odd total (cmsis_nn_faults)
    right = max(1, int((pad_w + asym + stride_w - 1) / stride_w)) if pad_w + asym else 0
    left = max(1, (pad_w + stride_w - 1) // stride_w) if pad_w != 0 else 0
    no_pad = max(output_w - (right + left), 0)
    if right + no_pad + left != output_w:
        return _conv_s8_rows(in_c, f_h, f_w, "mve")
    pad_left = pad_w * in_c
    pad_right = right * in_c if asym else pad_left
    elems_left = f_w * in_c
    return max(elems_left + pad_left, elems_left - in_c + pad_right)


def _conv(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """cmsis_nn/conv.cc Prepare: int8 input (any filter type) -> the s8 wrapper's size."""
    inp, filt, out = tensor_of(info, node, 0), tensor_of(info, node, 1), output_of(info, node)
    if inp is None or filt is None or out is None or inp.dtype != "INT8":
        return []
    if len(inp.shape) != 4 or len(filt.shape) != 4 or len(out.shape) != 4:
        return []
    _, in_h, in_w, _ = inp.shape
    _, f_h, f_w, f_c = filt.shape
    pad = (padding(node, in_h, f_h, "h"), padding(node, in_w, f_w, "w"))
    stride = (node.option("stride_h", 1), node.option("stride_w", 1))
    dilation = (node.option("dilation_h", 1), node.option("dilation_w", 1))
    size = _conv_wrapper_s8(features, inp.shape, (f_h, f_w, f_c), out.shape[2], stride, pad,
                            dilation)  # fmt: skip
    return [_request(node, size, "arm_convolve_wrapper_s8_get_buffer_size")] if size > 0 else []


def _depthwise(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """cmsis_nn/depthwise_conv.cc Prepare -> arm_depthwise_conv_wrapper_s8_get_buffer_size."""
    inp, filt, out = tensor_of(info, node, 0), tensor_of(info, node, 1), output_of(info, node)
    if inp is None or filt is None or out is None or inp.dtype != "INT8":
        return []
    if filt.dtype != "INT8" or len(inp.shape) != 4 or len(filt.shape) != 4:
        return []
    batch, in_h, in_w, in_c = inp.shape
    _, f_h, f_w, _ = filt.shape
    out_c = out.shape[3]
    pad = (padding(node, in_h, f_h, "h"), padding(node, in_w, f_w, "w"))
    dilation = (node.option("dilation_h", 1), node.option("dilation_w", 1))
    size = 0
    if features == "mve" and in_c == 1 and out_c > 1:
        # one input channel, converted to a regular convolution (threshold 1 with GCC)
        stride = (node.option("stride_h", 1), node.option("stride_w", 1))
        size = _conv_wrapper_s8("mve", inp.shape, (f_h, f_w, 1), out.shape[2], stride, pad,
                                dilation) + f_h * f_w * out_c  # fmt: skip
    elif in_c == out_c and batch == 1 and dilation == (1, 1):
        if features != "mve" and f_w == 3 and f_h == 3 and pad[0] <= 1 and pad[1] <= 1:
            size = 0  # arm_depthwise_conv_3x3_s8 needs no buffer
        elif features == "mve":
            size = 4 * 124 * f_w * f_h  # CH_IN_BLOCK_MVE
        elif features == "dsp":
            size = in_c * f_w * f_h * 2
    if size <= 0:
        return []
    return [_request(node, size, "arm_depthwise_conv_wrapper_s8_get_buffer_size")]


def _fully_connected(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """cmsis_nn/fully_connected.cc Prepare, int8 input with int8 filter: a per-tensor
    multiplier table when the 1x1-convolution path applies (output of rank > 2, depth a
    multiple of 4); else arm_fully_connected_s8_get_buffer_size (MVE: kept persistent as kernel
    sums for a constant filter, see _persistent_extra)."""
    inp, filt, out = tensor_of(info, node, 0), tensor_of(info, node, 1), output_of(info, node)
    if inp is None or filt is None or out is None:
        return []
    if inp.dtype != "INT8" or filt.dtype == "INT4" or not filt.shape or not out.shape:
        return []
    accum_depth, output_depth = filt.shape[-1], out.shape[-1]
    if len(out.shape) > 2 and accum_depth % 4 == 0:
        if len(filt.scale) > 1:
            return []
        return [_request(node, output_depth * 8, "per-channel multipliers for the 1x1 path")]
    if features == "mve" and not _fc_kernel_sums_persistent(info, node):
        return [_request(node, output_depth * 4, "arm_fully_connected_s8_get_buffer_size")]
    return []


def _fc_sums_in_arena(info, node, inp, filt, out) -> bool:
    """MVE, int8 fully connected off the 1x1 path, constant filter and bias: fully_connected.cc
    keeps the kernel sums as a persistent buffer (KERNELS_OPTIMIZED_FOR_SPEED)."""
    if inp is None or filt is None or out is None or not out.shape or not filt.shape:
        return False
    if inp.dtype != "INT8" or filt.dtype != "INT8":
        return False
    conv_1x1 = len(out.shape) > 2 and filt.shape[-1] % 4 == 0
    return not conv_1x1 and _fc_kernel_sums_persistent(info, node)


def _fc_kernel_sums_persistent(info: ModelInfo, node: OperatorNode) -> bool:
    filt, bias = tensor_of(info, node, 1), tensor_of(info, node, 2)
    return bool(filt and filt.data_bytes) and (bias is None or bool(bias.data_bytes))


def _average_pool(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """cmsis_nn/pooling.cc AveragePrepare -> arm_avgpool_s8_get_buffer_size (DSP: depth x 4)."""
    inp = tensor_of(info, node, 0)
    if inp is None or inp.dtype != "INT8" or len(inp.shape) != 4 or features != "dsp":
        return []
    return [_request(node, inp.shape[3] * 4, "arm_avgpool_s8_get_buffer_size")]


def _svdf_common(info: ModelInfo, node: OperatorNode) -> list[ScratchRequest]:
    """svdf_common.cc / cmsis_nn/svdf.cc Prepare, int8: batch x filters and batch x units
    int32 buffers (float: batch x filters floats)."""
    inp, weights = tensor_of(info, node, 0), tensor_of(info, node, 1)
    if inp is None or weights is None or len(inp.shape) < 2 or not weights.shape:
        return []
    batch, filters = inp.shape[0], weights.shape[0]
    rank = node.option("rank", 1) or 1
    requests = [_request(node, batch * filters * 4, "SVDF scratch")]
    if inp.dtype == "INT8":
        requests.append(_request(node, batch * (filters // rank) * 4, "SVDF output scratch"))
    return requests


def _svdf(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    return _svdf_common(info, node)


def _lstm_buffers(info: ModelInfo, node: OperatorNode, count: int) -> list[ScratchRequest]:
    """``count`` LSTM buffers of batch x state_dimension cells each, in the cell state's type:
    the reference kernel requests 4 (unidirectional_sequence_lstm.cc:87-94)."""
    cell = tensor_of(info, node, _LSTM_CELL_STATE)
    if cell is None or not cell.shape:
        return []
    size = tensor_bytes(cell)  # the cell state is (batch, state_dimension)
    return [_request(node, size, f"LSTM buffer {i}") for i in range(count)]


def _lstm(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """cmsis_nn/unidirectional_sequence_lstm.cc Prepare (:396-419): 3 buffers when the kernel
    runs CMSIS-NN's LSTM (int8 or int16 activations with an int16 cell state), else the
    reference kernel's 4; each batch x state_dimension cells of the cell state's type."""
    inp, cell = tensor_of(info, node, 0), tensor_of(info, node, _LSTM_CELL_STATE)
    quantized = inp is not None and inp.dtype in ("INT8", "INT16")
    cmsis = quantized and cell is not None and cell.dtype == "INT16"
    return _lstm_buffers(info, node, 3 if cmsis else 4)


def _unsized_bound(info: ModelInfo, node: OperatorNode, features: str) -> list[ScratchRequest]:
    """Not sized here: the node's non-constant inputs and outputs, a labelled bound."""
    size = 0
    for t in (*node.inputs, *node.outputs):
        tensor = _lookup(info, node.subgraph, t)
        if tensor is not None and not tensor.data_bytes:
            size += tensor_bytes(tensor)
    return [_request(node, size, "not sized: bounded by the node's tensors")] if size else []


_CMSIS_SIZERS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _average_pool,
    "SVDF": _svdf,
    LSTM_OP: _lstm,
    **{op: _unsized_bound for op in UNSIZED_OPS},
}


def _persistent_extra(info: ModelInfo, node: OperatorNode, features: str) -> int:
    """Persistent bytes the CMSIS-NN kernel keeps for ``node`` beyond the reference kernel's:
    its larger OpData (16-byte aligned), and on MVE the kernel sums of a fully connected layer
    (output depth x int32) or an SVDF (filters x int32)."""
    cmsis, reference = OP_DATA_BYTES.get(node.op, (0, 0))
    extra = align(cmsis) - align(reference)
    if features == "mve":
        inp, filt, out = tensor_of(info, node, 0), tensor_of(info, node, 1), output_of(info, node)
        if node.op == "FULLY_CONNECTED" and _fc_sums_in_arena(info, node, inp, filt, out):
            extra += align(out.shape[-1] * 4)
        if node.op == "SVDF" and inp is not None and inp.dtype == "INT8" and filt is not None:
            extra += align(filt.shape[0] * 4)
    return extra


def arena_bytes(arena, info: ModelInfo, features: str) -> tuple[int, KernelArena]:
    """The 32-bit arena a CMSIS-NN firmware needs: ``arena`` (an
    :class:`edge_prune.measurement.tflm.ArenaMeasurement` of the model, reference kernels) with the
    CMSIS-NN kernels' persistent extras, planned head and scratch requests; and the derivation."""
    kernel = kernel_arena(info, features)
    total = arena.device_total_with(
        tail_extra=kernel.tail_extra_bytes,
        head_extra=kernel.head_extra_bytes,
        scratch_requests=kernel.extra_requests,
    )
    planning = arena.device_planning_bytes(kernel.tail_extra_bytes, kernel.extra_requests)
    if planning == total and total > (
        arena.device_total_bytes + kernel.head_extra_bytes + kernel.tail_extra_bytes
    ):
        kernel = replace(kernel, planning_peak_bytes=planning)
    return total, kernel
