"""Rewrite a converter's int8 model so that pruned FULLY_CONNECTED / CONV_2D run sparse.

Each int8 FULLY_CONNECTED or CONV_2D (groups 1) whose filter has enough zeros becomes the custom
op ``EDGE_PRUNE_SPARSE_FC`` / ``EDGE_PRUNE_SPARSE_CONV`` with inputs (activation, values,
index): the filter tensor is rewritten in place into ``values`` (its scales kept) and the bias
tensor into ``index``: the folded bias (int32 per output channel) followed by the counts and
deltas of format.py. A layer with a bias keeps its number of tensors, so TFLM's arena holds no
extra TfLiteEvalTensor. Other operators are kept. The result computes exactly
what the input model computes on TFLM (tests/test_sparse_host.py).

Which layers: the one whose estimated instructions on a Cortex-M4 drop below CMSIS-NN's dense
kernel and whose bytes drop below the dense filter's, with blocks of 4 when the filter's zeros
come in whole 4-blocks of input channels and that is cheaper. The per-weight costs are the
QEMU Cortex-M4 measurements of bench/sparse.py (TFLM default build, -Os).

A filter stored as INT4 (TFLite's packed 4-bit type, int8 activations) becomes
``EDGE_PRUNE_SPARSE_FC_INT4`` / ``EDGE_PRUNE_SPARSE_CONV_INT4``: the same index, the values
packed two per byte (format.py), costed against CMSIS-NN's dense INT4 kernels. An INT4
FULLY_CONNECTED must be quantized per tensor: TFLM's reference kernel computes an INT4 filter
with the per-tensor multiplier (``reference_integer_ops::FullyConnected``), so per-channel scales
would not give the outputs TFLM gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_prune.errors import ModelFileError
from edge_prune.measurement.flatbuffer_pack import pack
from edge_prune.measurement.sparse import format as fmt
from edge_prune.measurement.sparse.reference import fold_bias

# Instructions on a Cortex-M4 in QEMU, TFLM default build (gcc 12.2 -Os), from the per-layer
# figures of bench/sparse.py on the 784x300 layer of LeNet-300-100 (results/sparse-2026-12-07):
# CMSIS-NN's dense int8 FULLY_CONNECTED per MAC (722,721 / 235,200), the unstructured kernel per
# stored weight and the 4-block kernel per stored block (slopes over sparsity 0.5-0.95), and the
# kernels' cost per output channel (the intercept: requantization, row set-up).
DENSE_PER_MAC = 3.07
SPARSE_PER_WEIGHT = 6.25
SPARSE_PER_BLOCK4 = 15.0
SPARSE_PER_ROW = 87.0
# The same for INT4 filters (bench/sparse.py --int4, results/sparse-int4-2026-12-07, same layer
# with its weights requantized to 4 bits per tensor): CMSIS-NN's dense INT4 FULLY_CONNECTED per
# MAC (1,380,201 / 235,200), the int4 kernels per stored weight (6.25) and per 4-block (4.50 per
# weight), and per output channel (84.1 unstructured; 74.4 in blocks, the smaller kept out).
DENSE_INT4_PER_MAC = 5.87
SPARSE_INT4_PER_WEIGHT = 6.25
SPARSE_INT4_PER_BLOCK4 = 18.0
SPARSE_INT4_PER_ROW = 84.1
INT4_TYPE = 17  # tflite::TensorType_INT4


@dataclass(frozen=True)
class LayerRewrite:
    """One FULLY_CONNECTED / CONV_2D considered: what it became and its filter's bytes."""

    subgraph: int
    operator: int
    op: str  # FULLY_CONNECTED or CONV_2D
    filter_name: str
    shape: tuple[int, ...]
    zeros: float  # fraction of zero weights
    block: int  # 0: kept dense
    dense_bytes: int
    sparse_bytes: int  # values + index (0 when kept dense)
    reason: str = ""
    int4: bool = False  # the filter is INT4 (the int4 ops)


@dataclass(frozen=True)
class Rewritten:
    model: bytes
    layers: tuple[LayerRewrite, ...]

    @property
    def sparse_layers(self) -> tuple[LayerRewrite, ...]:
        return tuple(layer for layer in self.layers if layer.block)


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def estimated_instructions(dense: np.ndarray, block: int, int4: bool = False) -> float:
    rows = dense.reshape(dense.shape[0], -1, block)
    stored = int(np.count_nonzero(np.any(rows != 0, axis=2)))
    if int4:
        per = SPARSE_INT4_PER_BLOCK4 if block == 4 else SPARSE_INT4_PER_WEIGHT
        return stored * per + SPARSE_INT4_PER_ROW * dense.shape[0]
    per = SPARSE_PER_BLOCK4 if block == 4 else SPARSE_PER_WEIGHT
    return stored * per + SPARSE_PER_ROW * dense.shape[0]


def dense_bytes(dense: np.ndarray, int4: bool = False) -> int:
    """Bytes of the dense filter as TFLite stores it (INT4: two per byte)."""
    return (dense.size + 1) // 2 if int4 else dense.size


def choose_block(
    dense: np.ndarray, blocks: tuple[int, ...] = fmt.BLOCKS, int4: bool = False
) -> int:
    """The cheapest block size whose kernel beats CMSIS-NN dense in instructions and bytes, 0
    when none does."""
    dense_cost = (DENSE_INT4_PER_MAC if int4 else DENSE_PER_MAC) * dense.size
    best, best_cost = 0, dense_cost
    for block in blocks:
        if dense.shape[-1] % block:
            continue
        cost = estimated_instructions(dense, block, int4)
        small = fmt.encode(dense, block, int4=int4).nbytes < dense_bytes(dense, int4)
        if cost < best_cost and small:
            best, best_cost = block, cost
    return best


def read_model(data: bytes, label: str = "model"):
    """The flatbuffer as the schema's object tree (``ModelT``)."""
    try:
        return _schema().ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # the flatbuffers reader raises anything on a bad file
        raise ModelFileError(f"{label}: cannot read TFLite flatbuffer ({e})") from e


def rewrite(
    data: bytes,
    label: str = "model",
    blocks: tuple[int, ...] = fmt.BLOCKS,
    *,
    force: bool = False,
    plan: dict[tuple[int, int], int] | None = None,
) -> Rewritten:
    """The model with each pruned FULLY_CONNECTED / CONV_2D as a sparse custom op: the layers
    whose zeros pay alone (:func:`choose_block`), every supported one (``force``), or the
    block ``plan`` gives per (subgraph, operator) (0 or absent: dense; see :mod:`.plan`)."""
    model = read_model(data, label)
    layers = []
    codes: dict[str, int] = {}
    for sg_index, subgraph in enumerate(model.subgraphs or []):
        for op_index, op in enumerate(subgraph.operators or []):
            where = (sg_index, op_index)
            chosen = None if plan is None else plan.get(where, 0)
            layer = _rewrite_op(model, subgraph, where, op, codes, blocks, force, chosen)
            if layer is not None:
                layers.append(layer)
    if not any(layer.block for layer in layers):
        return Rewritten(data, tuple(layers))
    return Rewritten(pack(model), tuple(layers))


def feasible_blocks(shape: tuple[int, ...], blocks: tuple[int, ...] = fmt.BLOCKS) -> list[int]:
    """Block sizes a filter of this TFLite shape can be stored in (input channels divisible)."""
    return [b for b in blocks if shape and shape[-1] % b == 0]


def _builtin(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _rewrite_op(model, subgraph, where, op, codes, blocks, force, chosen=None):
    schema = _schema()
    kind = _builtin(model, op)
    if kind not in (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D):
        return None
    name = "FULLY_CONNECTED" if kind == schema.BuiltinOperator.FULLY_CONNECTED else "CONV_2D"
    inputs = list(op.inputs)
    tensors = subgraph.tensors
    filt = tensors[inputs[1]]
    base = {"subgraph": where[0], "operator": where[1], "op": name}
    base["filter_name"] = (filt.name or b"").decode("utf-8", "replace")
    base["shape"] = tuple(int(d) for d in filt.shape)
    problem = _unsupported(model, subgraph, op, name)
    dense = dense_filter(model, filt)
    int4 = filt.type == INT4_TYPE
    base["int4"] = int4
    if problem or dense is None:
        size = int(np.prod(filt.shape)) if filt.shape is not None else 0
        return LayerRewrite(
            **base,
            zeros=0.0,
            block=0,
            dense_bytes=(size + 1) // 2 if int4 else size,
            sparse_bytes=0,
            reason=problem or "filter is not constant int8 or int4",
        )
    zeros = float(np.mean(dense == 0))
    block = choose_block(dense, blocks, int4) if chosen is None else chosen
    if force and not block:
        block = max(feasible_blocks(dense.shape, blocks), default=0)
    if block and block not in feasible_blocks(dense.shape, blocks):
        block = 0
    if not block:
        return LayerRewrite(
            **base,
            zeros=zeros,
            block=0,
            dense_bytes=dense_bytes(dense, int4),
            sparse_bytes=0,
            reason="too few zeros to pay" if chosen is None else "kept dense by the plan",
        )
    sparse = fmt.encode(dense, block, int4=int4)
    _replace(model, subgraph, op, name, dense, sparse, codes)
    return LayerRewrite(
        **base,
        zeros=zeros,
        block=block,
        dense_bytes=dense_bytes(dense, int4),
        sparse_bytes=sparse.nbytes,
    )


def _unsupported(model, subgraph, op, name) -> str:
    schema = _schema()
    inputs = list(op.inputs)
    tensors = subgraph.tensors
    if len(inputs) < 2 or len(list(op.outputs)) != 1:
        return "unexpected inputs or outputs"
    x, filt, out = tensors[inputs[0]], tensors[inputs[1]], tensors[op.outputs[0]]
    if x.type != schema.TensorType.INT8 or out.type != schema.TensorType.INT8:
        return "activations are not int8"
    if filt.type not in (schema.TensorType.INT8, INT4_TYPE):
        return "filter is not int8 or int4"
    q = filt.quantization
    if q is None or q.scale is None or len(q.scale) not in (1, int(filt.shape[0])):
        return "filter is not quantized per tensor or per output channel"
    if filt.type == INT4_TYPE and name == "FULLY_CONNECTED" and len(q.scale) > 1:
        return "INT4 FULLY_CONNECTED with per-channel scales (TFLM computes it per tensor)"
    if q.zeroPoint is not None and np.any(np.asarray(q.zeroPoint) != 0):
        return "filter zero point is not 0"
    if len(q.scale) > 1 and q.quantizedDimension != 0:
        return "filter scales are not along the output channels"
    if x.quantization is None or x.quantization.zeroPoint is None:
        return "input is not quantized"
    if len(inputs) > 2 and inputs[2] >= 0:
        bias = tensors[inputs[2]]
        if bias.type != schema.TensorType.INT32 or _data(model, bias) is None:
            return "bias is not constant int32"
    has_bias = len(inputs) > 2 and inputs[2] >= 0
    if _shared(subgraph, inputs[1]) or (has_bias and _shared(subgraph, inputs[2])):
        return "filter or bias shared with another operator"
    if name == "FULLY_CONNECTED":
        opts = op.builtinOptions
        if opts is not None and opts.weightsFormat != 0:
            return "shuffled FULLY_CONNECTED weights"
        if len(filt.shape) != 2:
            return "filter is not 2-D"
    else:
        if len(filt.shape) != 4 or len(x.shape) != 4 or x.shape[3] != filt.shape[3]:
            return "grouped or non-4-D convolution"
    if (
        int(op.builtinOptionsType or 0)
        and getattr(op.builtinOptions, "fusedActivationFunction", 0) > 3
    ):
        return "fused activation other than RELU/RELU6/RELU_N1_TO_1"
    return ""


def _shared(subgraph, tensor_index: int) -> bool:
    users = sum(tensor_index in list(o.inputs) for o in subgraph.operators)
    return users > 1


def _data(model, tensor):
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buffer is None or buffer.data is None or len(buffer.data) == 0:
        return None
    return np.asarray(buffer.data, np.uint8).tobytes()


def dense_filter(model, tensor):
    """A constant int8 filter, or INT4 one unpacked to int8, as an array of its shape (None when
    it is not one)."""
    raw = _data(model, tensor)
    shape = tuple(int(d) for d in tensor.shape)
    size = int(np.prod(shape))
    if raw is None:
        return None
    if tensor.type == INT4_TYPE:
        if len(raw) != (size + 1) // 2:
            return None
        packed = np.frombuffer(raw, np.uint8)
        return fmt.unpack_int4(packed, size).reshape(shape)
    if len(raw) != size:
        return None
    return np.frombuffer(raw, np.int8).reshape(shape)


def _options(op, name: str, dense, x, sparse) -> fmt.Options:
    schema = _schema()
    opts = op.builtinOptions
    activation = int(getattr(opts, "fusedActivationFunction", 0) or 0)
    zp = int(np.asarray(x.quantization.zeroPoint).reshape(-1)[0])
    if name == "FULLY_CONNECTED":
        flags = fmt.FLAG_KEEP_NUM_DIMS if opts is not None and opts.keepNumDims else 0
        return fmt.Options(
            fmt.OP_FC,
            sparse.block,
            dense.shape[0],
            dense.shape[1],
            activation=activation,
            input_zero_point=zp,
            flags=flags,
        )
    padding = fmt.PADDING_SAME if opts.padding == schema.Padding.SAME else fmt.PADDING_VALID
    return fmt.Options(
        fmt.OP_CONV,
        sparse.block,
        dense.shape[0],
        dense.shape[3],
        (dense.shape[1], dense.shape[2]),
        (opts.strideH, opts.strideW),
        (opts.dilationHFactor, opts.dilationWFactor),
        padding,
        activation,
        zp,
    )


def _replace(model, subgraph, op, name, dense, sparse, codes) -> None:
    """Filter tensor -> values (scales kept); bias tensor (or a new one) -> the index tensor:
    folded bias then counts and deltas. As many tensors as a dense layer with a bias."""
    schema = _schema()
    inputs = list(op.inputs)
    tensors = subgraph.tensors
    x, filt = tensors[inputs[0]], tensors[inputs[1]]
    options = _options(op, name, dense, x, sparse)
    bias_index = inputs[2] if len(inputs) > 2 and inputs[2] >= 0 else -1
    bias = None
    if bias_index >= 0:
        bias = np.frombuffer(_data(model, tensors[bias_index]), "<i4")
    folded = fold_bias(bias, dense, options.input_zero_point).astype("<i4")
    index_bytes = folded.tobytes() + sparse.index.tobytes()

    filt.shape = [len(sparse.values)]
    filt.type = schema.TensorType.INT8  # int4 ops: the packed nibbles, as bytes
    filt.shapeSignature = None
    filt.quantization.zeroPoint = [0] * len(filt.quantization.scale)
    _set_data(model, filt, sparse.values.tobytes())
    if bias_index >= 0:
        index = tensors[bias_index]
        index.type = schema.TensorType.UINT8
        index.shape = [len(index_bytes)]
        index.shapeSignature = None
        index.quantization = None
        index.name = f"{_name(filt)}/sparse_index"
        _set_data(model, index, index_bytes)
    else:
        bias_index = _new_tensor(
            model, subgraph, f"{_name(filt)}/sparse_index", schema.TensorType.UINT8, index_bytes
        )
    op.inputs = [inputs[0], inputs[1], bias_index]
    custom = (fmt.CUSTOM_OPS_INT4 if sparse.int4 else fmt.CUSTOM_OPS)[name]
    op.opcodeIndex = _custom_code(model, codes, custom)
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.customOptions = list(options.pack())
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS


def _set_data(model, tensor, raw: bytes) -> None:
    """Give ``tensor`` the bytes ``raw``: in place when no other tensor uses its buffer (the
    converter shares equal constant buffers, e.g. two zero biases), else in a new buffer."""
    users = sum(t.buffer == tensor.buffer for subgraph in model.subgraphs for t in subgraph.tensors)
    if users > 1:
        buffer = _schema().BufferT()
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    model.buffers[tensor.buffer].data = np.frombuffer(raw, np.uint8)


def _name(tensor) -> str:
    return (
        (tensor.name or b"").decode("utf-8", "replace")
        if isinstance(tensor.name, bytes)
        else (tensor.name or "")
    )


def _new_tensor(model, subgraph, name: str, tensor_type: int, raw: bytes) -> int:
    schema = _schema()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(raw, np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = tensor_type
    tensor.shape = [len(raw) // (4 if tensor_type == schema.TensorType.INT32 else 1)]
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _bytes(values) -> bytes:
    return b"" if values is None else np.asarray(values, np.uint8).tobytes()


def _custom_code(model, codes: dict[str, int], custom: str) -> int:
    if custom in codes:
        return codes[custom]
    schema = _schema()
    for i, code in enumerate(model.operatorCodes):
        if code.customCode in (custom, custom.encode()):
            codes[custom] = i
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = custom
    code.version = 1
    model.operatorCodes.append(code)
    codes[custom] = len(model.operatorCodes) - 1
    return codes[custom]


def verify(data: bytes, label: str = "model") -> int:
    """Check every sparse custom op of a model (options, tensor types, index against values);
    raise SparseFormatError (exit 2) naming the operator. Returns the number checked."""
    model = read_model(data, label)
    ops = {*fmt.CUSTOM_OPS.values(), *fmt.CUSTOM_OPS_INT4.values()}
    checked = 0
    for sg_index, subgraph in enumerate(model.subgraphs or []):
        for op_index, op in enumerate(subgraph.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            custom = (
                code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            )
            if custom not in ops:
                continue
            where = f"{label}: subgraph {sg_index} operator {op_index} ({custom})"
            _verify_op(model, subgraph, op, custom, where)
            checked += 1
    return checked


def _verify_op(model, subgraph, op, custom: str, where: str) -> None:
    schema = _schema()
    inputs = list(op.inputs) if op.inputs is not None else []
    if len(inputs) != 3 or min(inputs) < 0 or max(inputs) >= len(subgraph.tensors):
        raise fmt.SparseFormatError(f"{where}: expected 3 input tensors")
    options = fmt.Options.unpack(_bytes(op.customOptions), f"{where} custom options")
    int4 = custom in fmt.CUSTOM_OPS_INT4.values()
    names = fmt.CUSTOM_OPS_INT4 if int4 else fmt.CUSTOM_OPS
    if names["FULLY_CONNECTED" if options.op == fmt.OP_FC else "CONV_2D"] != custom:
        raise fmt.SparseFormatError(f"{where}: options are for the other sparse op")
    values, index = (subgraph.tensors[i] for i in inputs[1:])
    for tensor, kind in ((values, schema.TensorType.INT8), (index, schema.TensorType.UINT8)):
        if tensor.type != kind or _data(model, tensor) is None:
            raise fmt.SparseFormatError(f"{where}: {_name(tensor)!r} is not a constant of its type")
    raw = _data(model, index)
    bias_bytes = 4 * options.out_channels
    if len(raw) < bias_bytes:
        raise fmt.SparseFormatError(
            f"{where}: index of {len(raw)} B is shorter than {options.out_channels} int32 biases"
        )
    fmt.validate(options, len(_data(model, values)), raw[bias_bytes:], where, int4=int4)
