"""Arena a CMSIS-NN LSTM needs beyond the reference kernels': its kernel sums in Prepare.

TFLM's CMSIS-NN ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (tflite-micro 90b983c2,
``kernels/cmsis_nn/unidirectional_sequence_lstm.cc``, ``CMSIS_NN_PortOpData``) allocates in
Prepare eight persistent buffers of ``state_dimension`` biases each (the sums of every gate's
input and recurrent weights: int32 for int8 activations, int64 for int16) and fills them while
its 16 temporary tensors are alive. The reference kernel allocates nothing there. TFLM's
``SingleArenaBufferAllocator::AllocatePersistentBuffer`` checks the tail against ``head_``
only, not against the live temporaries (``arena_allocator/single_arena_buffer_allocator.cc``):
in an arena without room for both, the sums overwrite the temporaries and SetUp fails ("All
temp buffers must be freed before calling ResetTempAllocations()") or the firmware faults,
instead of a clean "arena too small". So a CMSIS-NN build needs these bytes on top of the
reference kernels' arena. Measured on QEMU (``bench/lstm_cmsis_nn.py``): an int8 LSTM of 24
units runs from 3,956 B with CMSIS-NN, 3,012 B with reference kernels (768 B of sums).
"""

from __future__ import annotations

from edge_prune.measurement.tflite_file import ModelInfo

LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"
_GATE_SUMS = 8  # input and recurrent weight sums of the input, forget, cell and output gates


def kernel_sum_bytes(info: ModelInfo) -> int:
    """Bytes of kernel sums the CMSIS-NN LSTM kernels of ``info`` allocate in Prepare.

    One quantized LSTM keeps an int16 cell state (a variable tensor of ``(batch, units)``) and
    a hidden state of its activation type; int8 activations take int32 sums, int16 ones int64.
    A float LSTM runs the reference code path and needs none.
    """
    if LSTM_OP not in info.operators:
        return 0
    states: dict[tuple, list[str]] = {}  # (subgraph, shape) -> dtypes of the state tensors
    for t in info.tensors:
        if t.is_variable:
            states.setdefault((t.subgraph, t.shape), []).append(t.dtype)
    total = 0
    for (_, shape), dtypes in states.items():
        if "INT16" not in dtypes or not shape:
            continue  # a float LSTM, or not an LSTM's state
        lstms = max(1, len(dtypes) // 2)  # a hidden and a cell state each
        bias = 8 if all(d == "INT16" for d in dtypes) else 4
        total += lstms * _GATE_SUMS * shape[-1] * bias
    return total
