"""Read what a TFLite flatbuffer holds, without TensorFlow and without running it.

Counts what the file says about itself: operators used, tensors (shape, type, bytes of constant
data, whether stored sparse), and the flatbuffer size. It does not check that the model runs:
that is the job of :mod:`edge_prune.measurement.footprint`, which loads it in the TFLM interpreter.
Every malformed input becomes a :class:`~edge_prune.errors.ModelFileError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge_prune.errors import ModelFileError

FILE_IDENTIFIER = b"TFL3"
_MIN_SIZE = 8
# A well-formed file stores each vector and string once, so everything the reader walks adds up
# to less than the file; a crafted file can point thousands of entries at one shared table and
# make a naive walk quadratic (a 24 KB file took minutes). Allow twice the file size.
_READ_BUDGET_FACTOR = 2


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of subgraph ``subgraph``; ``data_bytes`` is its constant buffer (0 if none)."""

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data_bytes: int
    is_sparse: bool
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    is_variable: bool = False  # state kept between Invoke() calls (an LSTM's hidden and cell)

    @property
    def element_count(self) -> int:
        count = 1
        for d in self.shape:
            count *= max(d, 0)
        return count


@dataclass(frozen=True)
class OperatorNode:
    """One operator of subgraph ``subgraph``, in execution order: its op name, tensor indices
    (-1: an optional input left out) and the builtin options that size kernel buffers
    (``stride_w``, ``padding`` "SAME"/"VALID", ``filter_w``, ``keep_num_dims``, ...)."""

    subgraph: int
    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: tuple[tuple[str, int | str], ...] = ()

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class ModelInfo:
    """What a TFLite flatbuffer holds. ``size_bytes`` is the whole file, as it is flashed."""

    source: str
    size_bytes: int
    version: int
    subgraph_count: int
    operators: tuple[str, ...]  # one entry per operator node, in execution order
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...] = ()  # tensor indices of subgraph 0
    outputs: tuple[int, ...] = ()
    nodes: tuple[OperatorNode, ...] = ()  # every subgraph's operators, in execution order

    @property
    def input_tensors(self) -> tuple[TensorInfo, ...]:
        return tuple(self.tensors[i] for i in self.inputs)

    @property
    def output_tensors(self) -> tuple[TensorInfo, ...]:
        return tuple(self.tensors[i] for i in self.outputs)

    @property
    def op_types(self) -> tuple[str, ...]:
        """Distinct operator names, sorted: the kernels a TFLM op resolver must register."""
        return tuple(sorted(set(self.operators)))

    @property
    def has_state(self) -> bool:
        """True when variable tensors keep state between Invoke() calls (a converted LSTM)."""
        return any(t.is_variable for t in self.tensors)

    @property
    def computes_in_float(self) -> bool:
        """True when operators compute in float32: a float32 tensor other than the graph's own
        inputs and outputs, or float32 inputs/outputs with no QUANTIZE/DEQUANTIZE (an int8
        model with float32 I/O only converts at its edges)."""
        edges = {(0, i) for i in (*self.inputs, *self.outputs)}
        floats = [t for t in self.tensors if t.dtype == "FLOAT32"]
        if any((t.subgraph, t.index) not in edges for t in floats):
            return True
        return bool(floats) and not {"QUANTIZE", "DEQUANTIZE"} & set(self.operators)

    @property
    def sparse_tensors(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors if t.is_sparse)


class ConvertedModel(Protocol):
    """What :func:`edge_prune.training.convert.convert` returns, as the measurement side sees
    it: anything holding a flatbuffer in ``tflite_bytes``."""

    tflite_bytes: bytes


ModelSource = bytes | bytearray | memoryview | str | Path | ConvertedModel


def load_bytes(model: ModelSource) -> tuple[bytes, str]:
    """Return ``(bytes, label)`` for a model given as bytes, as a path to a file, or as what
    ``edge_prune.training.convert`` returns (anything with a ``tflite_bytes`` attribute)."""
    if hasattr(model, "tflite_bytes"):
        return bytes(model.tflite_bytes), "<converted model>"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    from edge_prune.input_files import MAX_MODEL_BYTES, read_input

    path = Path(model)
    try:
        return read_input(path, limit=MAX_MODEL_BYTES, error=ModelFileError), str(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, expected a .tflite file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror})") from None


def check_identifier(data: bytes, label: str) -> None:
    """Raise unless ``data`` starts like a TFLite flatbuffer (root offset, then ``TFL3``)."""
    if len(data) < _MIN_SIZE or data[4:8] != FILE_IDENTIFIER:
        raise ModelFileError(
            f"{label}: not a TFLite flatbuffer (expected file identifier 'TFL3' at byte 4, "
            f"{len(data)} bytes read)"
        )


def read_model(model: bytes | bytearray | memoryview | str | Path) -> ModelInfo:
    """Parse a ``.tflite`` file or bytes into a :class:`ModelInfo`."""
    data, label = load_bytes(model)
    check_identifier(data, label)
    try:
        return _parse(data, label)
    except ModelFileError:
        raise
    except (
        struct.error,
        IndexError,
        ValueError,
        UnicodeDecodeError,
        OverflowError,
        TypeError,
        AttributeError,
        RecursionError,
        MemoryError,
    ) as e:
        cause = (
            "offset or length outside the file"
            if isinstance(e, struct.error)
            else (type(e).__name__)
        )
        raise ModelFileError(
            f"{label}: truncated or corrupted TFLite flatbuffer ({cause})"
        ) from None


def tensor_type_name(tensor_type: int) -> str:
    """Name of a TFLite ``TensorType`` value, e.g. ``"INT8"``; ``"TYPE_<n>"`` if unknown.

    The one place edge-prune maps tensor types to names; it reads the TFLite schema's enum.
    """
    return _names_of(_schema().TensorType).get(tensor_type, f"TYPE_{tensor_type}")


def builtin_operator_name(code: int) -> str:
    """Name of a TFLite ``BuiltinOperator`` value, e.g. ``"CONV_2D"``; ``"OP_<n>"`` if unknown."""
    return _names_of(_schema().BuiltinOperator).get(int(code), f"OP_{code}")


def builtin_operator_names() -> tuple[str, ...]:
    """Every TFLite ``BuiltinOperator`` name of the schema."""
    return tuple(_names_of(_schema().BuiltinOperator).values())


def tensor_type_dtype(tensor_type: int):
    """Little-endian numpy dtype of a TFLite ``TensorType`` value (TFLite buffers are
    little-endian); ModelFileError for types without one (STRING, INT4, BFLOAT16 ...)."""
    try:
        return _tensor_types().to_numpy(tensor_type)
    except ValueError as e:
        raise ModelFileError(str(e)) from None


def tensor_type_value(name: str) -> int:
    """``TensorType`` value of a name such as ``"INT8"``; KeyError if there is none."""
    return getattr(_schema().TensorType, name)


def _tensor_types():
    from tflite_micro.tensorflow.lite.micro.compression import tensor_type

    return tensor_type


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def _names_of(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


class _ReadBudget:
    """Bytes of vectors and strings the reader may still walk in one file (see above)."""

    def __init__(self, data: bytes, label: str):
        self.size_bytes = len(data)
        self.left_bytes = _READ_BUDGET_FACTOR * len(data)
        self.label = label

    def charge(self, n_bytes: int) -> None:
        self.left_bytes -= n_bytes
        if self.left_bytes < 0:
            raise ModelFileError(
                f"{self.label}: corrupted TFLite flatbuffer (its vectors and strings add up to "
                f"more than {_READ_BUDGET_FACTOR}x the file's {self.size_bytes} bytes: tables "
                "are shared between entries)"
            )


def _checked_length(n: int, budget: _ReadBudget, what: str, label: str, elem_size: int = 4) -> int:
    if n < 0 or n * elem_size > budget.size_bytes:
        raise ModelFileError(f"{label}: corrupted TFLite flatbuffer ({what} count {n} too large)")
    budget.charge(n * elem_size)
    return n


def _parse(data: bytes, label: str) -> ModelInfo:
    schema = _schema()
    op_names = _names_of(schema.BuiltinOperator)
    model = schema.Model.GetRootAs(data, 0)
    budget = _ReadBudget(data, label)

    buffer_count = _checked_length(model.BuffersLength(), budget, "buffer", label)
    buffer_sizes = [
        _buffer_size(model.Buffers(i), i, len(data), label) for i in range(buffer_count)
    ]
    codes = [
        _op_code_name(model.OperatorCodes(i), op_names, budget)
        for i in range(_checked_length(model.OperatorCodesLength(), budget, "opcode", label))
    ]
    subgraph_count = _checked_length(model.SubgraphsLength(), budget, "subgraph", label)
    if subgraph_count == 0:
        raise ModelFileError(f"{label}: TFLite flatbuffer has no subgraph")

    operators: list[str] = []
    tensors: list[TensorInfo] = []
    nodes: list[OperatorNode] = []
    for s in range(subgraph_count):
        graph = model.Subgraphs(s)
        for i in range(_checked_length(graph.OperatorsLength(), budget, "operator", label)):
            op = graph.Operators(i)
            opcode_index = op.OpcodeIndex()
            if opcode_index >= len(codes):
                raise ModelFileError(
                    f"{label}: corrupted TFLite flatbuffer (operator {i} uses opcode "
                    f"{opcode_index}, file has {len(codes)})"
                )
            operators.append(codes[opcode_index])
            nodes.append(_operator_node(op, s, i, codes[opcode_index], budget))
        for i in range(_checked_length(graph.TensorsLength(), budget, "tensor", label)):
            t = graph.Tensors(i)
            buffer_index = t.Buffer()
            if buffer_index >= max(buffer_count, 1):
                raise ModelFileError(
                    f"{label}: corrupted TFLite flatbuffer (tensor {i} uses buffer "
                    f"{buffer_index}, file has {buffer_count})"
                )
            tensors.append(
                TensorInfo(
                    subgraph=s,
                    index=i,
                    name=_string(t, _TENSOR_NAME_SLOT, budget),
                    shape=tuple(int(d) for d in _shape(t, budget, label)),
                    dtype=tensor_type_name(t.Type()),
                    data_bytes=buffer_sizes[buffer_index] if buffer_count else 0,
                    is_sparse=t.Sparsity() is not None,
                    is_variable=bool(t.IsVariable()),
                    **_quantization(t, budget, label),
                )
            )
    main_graph = model.Subgraphs(0)
    tensor_count = main_graph.TensorsLength()
    inputs, outputs = (
        _tensor_indices(getter, length, tensor_count, what, budget, label)
        for getter, length, what in (
            (main_graph.Inputs, main_graph.InputsLength(), "input"),
            (main_graph.Outputs, main_graph.OutputsLength(), "output"),
        )
    )
    return ModelInfo(
        source=label,
        size_bytes=len(data),
        version=model.Version(),
        subgraph_count=subgraph_count,
        operators=tuple(operators),
        tensors=tuple(tensors),
        inputs=inputs,
        outputs=outputs,
        nodes=tuple(nodes),
    )


# op -> (options table in the schema, {key: accessor}): the builtin options that size kernel
# buffers (tensorflow/lite/schema/schema.fbs).
_STRIDES = {"stride_w": "StrideW", "stride_h": "StrideH", "padding": "Padding"}
_CONV = {**_STRIDES, "dilation_w": "DilationWFactor", "dilation_h": "DilationHFactor"}
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", _CONV),
    "DEPTHWISE_CONV_2D": (
        "DepthwiseConv2DOptions",
        {**_CONV, "depth_multiplier": "DepthMultiplier"},
    ),
    "AVERAGE_POOL_2D": (
        "Pool2DOptions",
        {**_STRIDES, "filter_w": "FilterWidth", "filter_h": "FilterHeight"},
    ),
    "MAX_POOL_2D": (
        "Pool2DOptions",
        {**_STRIDES, "filter_w": "FilterWidth", "filter_h": "FilterHeight"},
    ),
    "FULLY_CONNECTED": ("FullyConnectedOptions", {"keep_num_dims": "KeepNumDims"}),
    "TRANSPOSE_CONV": ("TransposeConvOptions", _STRIDES),
    "SVDF": ("SVDFOptions", {"rank": "Rank"}),
}


def _operator_node(op, subgraph: int, index: int, name: str, budget) -> OperatorNode:
    """Tensor indices as stored: TFLM checks them when it runs the model, and a reader of
    nodes checks them against the subgraph's tensors before use."""
    what = f"operator {index}"
    inputs = tuple(
        op.Inputs(j) for j in range(_checked_length(op.InputsLength(), budget, "input", what))
    )
    outputs = tuple(
        op.Outputs(j) for j in range(_checked_length(op.OutputsLength(), budget, "output", what))
    )
    return OperatorNode(subgraph, index, name, inputs, outputs, _builtin_options(op, name))


def _builtin_options(op, name: str) -> tuple[tuple[str, int | str], ...]:
    if name not in _OPTIONS or op.BuiltinOptions() is None:
        return ()
    schema = _schema()
    table_name, fields = _OPTIONS[name]
    table = getattr(schema, table_name)()
    table.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    try:
        values = {key: int(getattr(table, accessor)()) for key, accessor in fields.items()}
    except (struct.error, IndexError, ValueError, OverflowError):
        return ()  # unreadable options: TFLM refuses the node when it prepares it
    if "padding" in values:
        values["padding"] = "SAME" if values["padding"] == schema.Padding.SAME else "VALID"
    return tuple(sorted(values.items()))


def _tensor_indices(getter, length, tensor_count, what, budget, label) -> tuple[int, ...]:
    indices = tuple(getter(j) for j in range(_checked_length(length, budget, what, label)))
    bad = [i for i in indices if not 0 <= i < tensor_count]
    if bad:
        raise ModelFileError(
            f"{label}: corrupted TFLite flatbuffer ({what} tensor {bad[0]} of {tensor_count})"
        )
    return indices


def _quantization(tensor, budget: _ReadBudget, label: str) -> dict:
    q = tensor.Quantization()
    if q is None:
        return {}
    scales = _checked_length(q.ScaleLength(), budget, "scale", label)
    zeros = _checked_length(q.ZeroPointLength(), budget, "zero point", label, elem_size=8)
    return {
        "scale": tuple(float(q.Scale(j)) for j in range(scales)),
        "zero_point": tuple(int(q.ZeroPoint(j)) for j in range(zeros)),
    }


def _shape(tensor, budget: _ReadBudget, label: str) -> list[int]:
    n = _checked_length(tensor.ShapeLength(), budget, "shape", label)
    return [tensor.Shape(j) for j in range(n)]


# vtable slots of the fields read through _field_end (tensorflow/lite/schema/schema.fbs, in the
# order of the generated schema_py_generated.py accessors: Buffer.data, Tensor.name,
# OperatorCode.custom_code).
_BUFFER_DATA_SLOT = 4
_TENSOR_NAME_SLOT = 10
_CUSTOM_CODE_SLOT = 6


def _field_end(table, slot: int, elem_size: int = 1) -> int | None:
    """Byte just past the vector or string in field ``slot`` of ``table``; None if absent."""
    tab = table._tab
    o = tab.Offset(slot)
    if o == 0:
        return None
    return tab.Vector(o) + tab.VectorLen(o) * elem_size


def _buffer_size(buffer, index: int, file_bytes: int, label: str) -> int:
    """Bytes of constant data of buffer ``index``, checked to lie inside the file: inline
    (``data``), or, for models above 2 GB, outside the flatbuffer at ``offset``/``size`` from
    the start of the file (tensorflow/lite/schema/schema.fbs, table Buffer)."""
    end = _field_end(buffer, _BUFFER_DATA_SLOT)
    if end is not None and end > file_bytes:
        raise ModelFileError(
            f"{label}: corrupted TFLite flatbuffer (buffer {index}: its data ends at byte {end}, "
            f"the file has {file_bytes})"
        )
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if size > 1 or offset > 1:
        if offset + size > file_bytes:
            raise ModelFileError(
                f"{label}: corrupted TFLite flatbuffer (buffer {index}: data at offset {offset}, "
                f"size {size} lies outside the file of {file_bytes} bytes)"
            )
        return size
    return int(buffer.DataLength())


def _op_code_name(code, op_names: dict[int, str], budget: _ReadBudget) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = op_names.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = _string(code, _CUSTOM_CODE_SLOT, budget)
        return f"CUSTOM:{custom}" if custom else "CUSTOM"
    return name


def _string(table, slot: int, budget: _ReadBudget) -> str:
    """The string in field ``slot``; ModelFileError when its length runs past the file (the
    flatbuffers reader would cut it silently)."""
    end = _field_end(table, slot)
    if end is None:
        return ""
    if end > budget.size_bytes:
        raise ModelFileError(
            f"{budget.label}: corrupted TFLite flatbuffer (a string ends at byte {end}, the file "
            f"has {budget.size_bytes})"
        )
    tab = table._tab
    raw = tab.String(tab.Offset(slot) + tab.Pos)
    budget.charge(len(raw))
    return raw.decode("utf-8", errors="replace")
