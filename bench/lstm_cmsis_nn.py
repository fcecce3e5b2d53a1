"""Minimal reproduction: TFLM's CMSIS-NN LSTM corrupts its own temporaries in a tight arena.

TFLM's CMSIS-NN ``UNIDIRECTIONAL_SEQUENCE_LSTM`` Prepare (tflite-micro 90b983c2,
``kernels/cmsis_nn/unidirectional_sequence_lstm.cc``, ``CMSIS_NN_PortOpData``) allocates eight
persistent buffers (the kernel sums of each gate's input and recurrent weights) and writes them
while the 16 temporary ``TfLiteTensor`` structs of its ``LstmTensors`` are still alive.
``SingleArenaBufferAllocator::AllocatePersistentBuffer`` (``arena_allocator/
single_arena_buffer_allocator.cc``) checks the new tail against ``head_`` only, not against
``temp_``: in an arena that has no room for the temporaries and the tail together, the kernel
sums land on the temporaries. Then ``LstmTensors::~LstmTensors`` frees them with their
quantization already overwritten ("Number of allocated temp buffers: 6 ... All temp buffers
must be freed before calling ResetTempAllocations()"), and SetUp fails or the firmware
faults. The reference kernels allocate nothing persistent in Prepare and run at the smaller
arena. With room for both, the CMSIS-NN kernel runs.

This script builds one int8 LSTM with ``edge-prune device`` at several arena sizes (the model
and harness are the same, only ``k<Model>TensorArenaSize`` changes) and prints what happened:

    PYTHONPATH=. EDGE_PRUNE_TFLM=DIR .venv/bin/python bench/lstm_cmsis_nn.py [MODEL.tflite] \\
        [--arenas 3648,4096,8192] [--kernels cmsis-nn]

Default model: TFLM's own ``examples/mnist_lstm/trained_lstm_int8.tflite`` of the tree.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edge_prune.measurement.device import measure
from edge_prune.measurement.device.toolchain import TflmTree, resolve_toolchain
from edge_prune.measurement.firmware import firmware_sources
from edge_prune.measurement.targets import load_target
from edge_prune.tables import print_table

EXAMPLE = "tensorflow/lite/micro/examples/mnist_lstm/trained_lstm_int8.tflite"


def run(model: Path, arena: int, kernels: str, tree: TflmTree, toolchain) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="lstm-arena-") as work:
        folder = Path(work)
        data = model.read_bytes()
        (folder / "model.tflite").write_bytes(data)
        for name, text in firmware_sources(data, "lstm", arena_bytes=arena).files.items():
            (folder / name).write_text(text)
        r = measure(folder, load_target("cortex-m4"), tree, kernels=kernels, samples=4,
                    toolchain=toolchain, timeout_s=300)  # fmt: skip
    equal = "yes" if r.outputs_equal_host else "no"
    return [f"{arena:,}", kernels, equal, f"{r.arena_min_bytes or '-'}", (r.problem or "")[:110]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--arenas", default="3648,4096,8192")
    parser.add_argument("--kernels", default="cmsis-nn,reference")
    args = parser.parse_args()
    tree = TflmTree.from_path(None)
    model = args.model or tree.path / EXAMPLE
    toolchain = resolve_toolchain()
    rows = [
        run(model, int(arena), kernels, tree, toolchain)
        for kernels in args.kernels.split(",")
        for arena in args.arenas.split(",")
    ]
    print(f"# {model} on cortex-m4 (QEMU mps2-an386), TFLM {tree.commit}")
    print_table(["arena B", "kernels", "outputs = host", "smallest arena", "problem"], rows)


if __name__ == "__main__":
    main()
