"""Rewrite the int8 weights of every FULLY_CONNECTED / CONV_2D filter of a TFLite model in place,
as a function of its blocks: what the benches and tests use to make pruned copies of a model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_prune.measurement.flatbuffer_pack import pack

BlockEdit = Callable[[np.ndarray], None]
"""Edits, in place, one filter's int8 weights shaped ``[out, blocks per row, block]``."""


def edit_filter_blocks(data: bytes, block: int, edit: BlockEdit) -> bytes:
    """``data`` with ``edit`` applied to each int8 FC/CONV filter cut into blocks of ``block``
    consecutive input channels (of 1 where ``block`` does not divide them)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    kinds = (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in kinds:
                continue
            tensor = subgraph.tensors[op.inputs[1]]
            stored = model.buffers[tensor.buffer].data
            if tensor.type != schema.TensorType.INT8 or stored is None:
                continue
            raw = np.asarray(stored, np.uint8).view(np.int8)
            size = block if tensor.shape[-1] % block == 0 else 1
            blocks = raw.reshape(tensor.shape[0], -1, size).copy()
            edit(blocks)
            model.buffers[tensor.buffer].data = blocks.reshape(-1).view(np.uint8)
    return pack(model)


def zero_random_blocks(data: bytes, zeros: float, block: int, seed: int = 0) -> bytes:
    """``data`` with a fraction ``zeros`` of each filter's blocks set to zero, at random."""
    rng = np.random.default_rng(seed)

    def edit(blocks: np.ndarray) -> None:
        blocks[rng.random(blocks.shape[:2]) < zeros] = 0

    return edit_filter_blocks(data, block, edit)
