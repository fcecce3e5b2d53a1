"""Operator inputs that a TFLM kernel reads in Prepare and so must stay constant tensors.

A DECODE output has no buffer: TFLM places it in the arena and fills it when DECODE runs in
Invoke. A kernel that reads an input in Prepare (a shape, an axis, paddings) checks it with
``IsConstantTensor`` and fails to prepare when it is a DECODE output, so such a tensor is never
encoded. The table lists the inputs TFLM's portable kernels guard (tflite-micro
``tensorflow/lite/micro/kernels/``, the source named in each row) and those its CMSIS-NN kernels
guard (``kernels/cmsis_nn/``): a model is encoded once and may be flashed with either kernel
set, so a CMSIS-NN requirement holds for every target. CMSIS-NN's LSTM keeps pointers to its
gate weights and biases from Prepare (it precomputes their sums with the input offsets there)
and stops on ``TF_LITE_ENSURE(context, IsConstantTensor(...))`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_prune.measurement.tflite_file import builtin_operator_name

# (operator name, input position) -> (the kernel's name for that input, the kernel source)
_READ_IN_PREPARE: dict[tuple[str, int], tuple[str, str]] = {
    ("PAD", 1): ("paddings", "pad_common.cc"),
    ("PADV2", 1): ("paddings", "pad_common.cc"),
    ("MIRROR_PAD", 1): ("paddings", "mirror_pad.cc"),
    ("TRANSPOSE", 1): ("perm", "transpose_common.cc"),
    ("STRIDED_SLICE", 1): ("begin", "strided_slice_common.cc"),
    ("STRIDED_SLICE", 2): ("end", "strided_slice_common.cc"),
    ("STRIDED_SLICE", 3): ("strides", "strided_slice_common.cc"),
    ("EXPAND_DIMS", 1): ("axis", "expand_dims.cc"),
    ("FILL", 0): ("dims", "fill.cc"),
    ("BROADCAST_TO", 1): ("shape", "broadcast_to.cc"),
    ("SPLIT", 0): ("axis", "split.cc"),
    ("SPLIT_V", 2): ("axis", "split_v.cc"),
    ("RESIZE_BILINEAR", 1): ("size", "resize_bilinear.cc"),
    ("RESIZE_NEAREST_NEIGHBOR", 1): ("size", "resize_nearest_neighbor.cc"),
    ("SVDF", 1): ("weights_feature", "cmsis_nn/svdf.cc"),
    **{
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", position): (
            name,
            "cmsis_nn/unidirectional_sequence_lstm.cc",
        )
        for position, name in enumerate(
            (
                "input_to_input_weights",
                "input_to_forget_weights",
                "input_to_cell_weights",
                "input_to_output_weights",
                "recurrent_to_input_weights",
                "recurrent_to_forget_weights",
                "recurrent_to_cell_weights",
                "recurrent_to_output_weights",
            ),
            start=1,
        )
    },
    **{
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", position): (
            name,
            "cmsis_nn/unidirectional_sequence_lstm.cc",
        )
        for position, name in enumerate(
            ("input_gate_bias", "forget_gate_bias", "cell_gate_bias", "output_gate_bias"),
            start=12,
        )
    },
}


@dataclass(frozen=True)
class ConstantUse:
    """One operator input that needs the tensor constant."""

    operator_index: int
    operator_name: str
    position: int
    input_name: str
    source: str

    def describe(self) -> str:
        return (
            f"{self.operator_name} (operator {self.operator_index}) reads {self.input_name!r} "
            f"at input {self.position} in Prepare (kernels/{self.source})"
        )


def find_uses(subgraph, tensor) -> list[ConstantUse]:
    """The inputs of ``subgraph``'s operators (TFLM model_editor objects) that hold ``tensor``
    and whose kernel reads it in Prepare: any use rules the tensor out for encoding."""
    uses = []
    for operator_index, operator in enumerate(subgraph.operators):
        for position, operand in enumerate(operator.inputs):
            if operand is not tensor:
                continue
            name = builtin_operator_name(operator.opcode)
            requirement = _READ_IN_PREPARE.get((name, position))
            if requirement is not None:
                uses.append(ConstantUse(operator_index, name, position, *requirement))
    return uses


def cmsis_nn_decoded_reads(model_bytes: bytes) -> tuple[str, ...]:
    """The DECODE outputs of a compressed model that a CMSIS-NN kernel reads in Prepare: the
    reference kernels (the host's) run the model, a CMSIS-NN build stops in SetUp on each."""
    from edge_prune.measurement.codecs import _tflm

    found = []
    for subgraph in _tflm.read_editable(model_bytes, "model").subgraphs:
        decoded = {
            id(out) for op in subgraph.operators if op.custom_code == _tflm.DECODE_OP
            for out in op.outputs
        }  # fmt: skip
        if not decoded:
            continue
        for index, operator in enumerate(subgraph.operators):
            name = builtin_operator_name(operator.opcode)
            for position, operand in enumerate(operator.inputs):
                requirement = _READ_IN_PREPARE.get((name, position))
                if (
                    id(operand) in decoded
                    and requirement
                    and requirement[1].startswith("cmsis_nn/")
                ):
                    found.append(ConstantUse(index, name, position, *requirement).describe())
    return tuple(found)
