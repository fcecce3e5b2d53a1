"""int8 vs int4 weights per model: flatbuffer, arena, instructions, TFLM accuracy, time figures.

    .venv/bin/python bench/int4.py [--models cnn,mlp,ds_cnn] [--device] [--out FILE]

For each model, trained on the bundled 8x8 digits (12 epochs, seed 0, no pruning: the table
isolates the quantization): the float32 model on TFLM (the accuracy baseline), ``int8`` (the
converter's default, Dense per channel), ``int8-pt`` (Dense per tensor), ``int4-ptq`` (the float
weights rounded to the 4-bit grid, no fine-tune) and ``int4-qat`` (3 epochs of 4-bit weight
QAT), each on the flatbuffer diet like a build's candidates. Per candidate: flatbuffer bytes,
host arena (reference kernels: INT4 filters unpacked into arena scratch) and the arena of the
unpacked twin (what a CMSIS-NN build needs), TFLM accuracy on the 359 held-out digits, and the
time figure on cortex-m4 (instructions from the calibrated costs, time at 64 MHz).

With ``--device`` (needs the toolchain and ``$EDGE_PRUNE_TFLM``), ``int8`` and ``int4-qat`` run
on QEMU (``edge-prune device``): cortex-m4 with CMSIS-NN and with the reference kernels, and
cortex-m7 with the reference kernels; each row gives outputs equal to the host, the smallest
arena on the 32-bit target, measured instructions per inference and the estimate's error.

Models: ``cnn`` (edge-prune's default CNN), ``mlp`` (LeNet-300-100-shaped: 64-300-100-10 on the
8x8 digits, not the 784 inputs of MNIST), ``ds_cnn`` (a depthwise-separable CNN with
BatchNorm).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from edge_prune.tables import table_lines  # noqa: E402

EPOCHS, QAT_EPOCHS, SEED = 12, 3, 0


def build_model(name: str, data):
    from edge_prune.training._tf import keras
    from edge_prune.training.train import default_model

    if name == "cnn":
        return default_model(data.input_shape, data.num_classes)
    if name == "mlp":
        i = keras.Input(data.input_shape)
        h = keras.layers.Flatten()(i)
        h = keras.layers.Dense(300, activation="relu", name="fc1")(h)
        h = keras.layers.Dense(100, activation="relu", name="fc2")(h)
        out = keras.layers.Dense(data.num_classes, activation="softmax", name="fc3")(h)
        return keras.Model(i, out, name="lenet_300_100")
    from families import families

    return families()["ds_cnn"][0]()


def candidates(model, data) -> dict[str, tuple[bytes, object]]:
    """name -> (flatbuffer after the diet, the Keras model its TFLM outputs compare with)."""
    from edge_prune.measurement.codecs import strip_for_mcu
    from edge_prune.training.convert import convert
    from edge_prune.training.int4 import quantize_int4
    from edge_prune.training.train import loss_for

    x = data.x_train
    made = {
        "float32": (convert(model).tflite_bytes, model),
        "int8": (convert(model, quantization="int8", representative_data=x).tflite_bytes, model),
        "int8-pt": (
            convert(
                model, quantization="int8", representative_data=x, per_channel_dense=False
            ).tflite_bytes,
            model,
        ),
    }
    for name, epochs in (("int4-ptq", 0), ("int4-qat", QAT_EPOCHS)):
        try:
            result = quantize_int4(
                model, x, data.y_train, epochs=epochs, loss=loss_for(model, data), seed=SEED
            )
            tflite = convert(result.model, quantization="int8", representative_data=x)
            made[name] = (tflite.tflite_bytes, result.model)
        except Exception as e:  # noqa: BLE001 - recorded in the table
            print(f"  {name}: not made: {str(e).splitlines()[0][:160]}", flush=True)
    return {name: (strip_for_mcu(data)[0], ref) for name, (data, ref) in made.items()}


def host_rows(name: str, made, data) -> tuple[list[tuple], dict[str, float]]:
    from edge_prune.measurement import int4, tflm
    from edge_prune.measurement.evaluate import check_deployable
    from edge_prune.measurement.targets import load_target
    from edge_prune.measurement.timing import estimate_time

    m4 = load_target("cortex-m4")
    rows, scores = [], {}
    int8_bytes = len(made["int8"][0])
    for candidate, (tflite, reference) in made.items():
        check = check_deployable(
            tflite,
            data.x_test,
            reference.predict(data.x_test, verbose=0),
            labels=data.y_test,
            name=candidate,
        )
        scores[candidate] = check.score
        twin = tflm.measure_arena(int4.unpacked_twin(tflite)) if int4.has_int4(tflite) else None
        time = estimate_time(tflite, m4)
        rows.append(
            (
                name,
                candidate,
                f"{len(tflite):,}",
                f"{len(tflite) / int8_bytes:.2f}x",
                f"{check.arena_bytes:,}",
                f"{(twin or check.arena).arena_bytes:,}",
                f"{check.score:.2%}",
                f"{(check.score - scores['float32']) * 100:+.2f}",
                f"{time.instructions:,}" if time and time.complete else "-",
                time.label() if time and time.complete else "-",
            )
        )
    return rows, scores


def firmware_dir(directory: Path, tflite: bytes) -> Path:
    """A directory ``edge-prune device`` takes: the model and its firmware files, with twice
    the host arena configured (the harness bisects the smallest that works below it)."""
    from edge_prune.measurement import tflm
    from edge_prune.measurement.firmware import firmware_sources

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.tflite").write_bytes(tflite)
    arena = 2 * tflm.measure_arena(tflite).arena_bytes
    for file_name, text in firmware_sources(tflite, "bench", arena_bytes=arena).files.items():
        (directory / file_name).write_text(text)
    return directory


def device_rows(name: str, made, data, workdir: Path) -> list[tuple]:
    from dataclasses import replace

    from edge_prune.measurement.device.measure import measure
    from edge_prune.measurement.device.toolchain import TflmTree, resolve_toolchain
    from edge_prune.measurement.instructions import estimate
    from edge_prune.measurement.targets import load_target

    tree, toolchain = TflmTree.from_path(os.environ.get("EDGE_PRUNE_TFLM")), resolve_toolchain()
    samples = workdir / f"{name}_samples.npz"
    np.savez(samples, x_test=np.asarray(data.x_test[:8], dtype=np.float32))
    rows = []
    configs = (("cortex-m4", "cmsis-nn"), ("cortex-m4", "reference"), ("cortex-m7", "reference"))
    for candidate in ("int8", "int4-qat"):
        if candidate not in made:
            continue
        path = firmware_dir(workdir / f"{name}_{candidate}", made[candidate][0])
        for target_name, kernels in configs:
            target = replace(load_target(target_name), tflm_kernels=kernels)
            result = measure(path, target, tree, kernels=kernels, build_type="default",
                             samples=8, data=samples, toolchain=toolchain)  # fmt: skip
            guess = estimate(made[candidate][0], target)
            measured = result.instructions_per_inference
            error = (
                f"{100 * (guess.total - measured) / measured:+.1f}%"
                if guess and measured and not guess.not_estimated
                else "-"
            )
            rows.append(
                (
                    name,
                    candidate,
                    f"{target_name} {kernels}",
                    "yes" if result.outputs_equal_host else f"NO ({result.problem})",
                    f"{result.arena_min_bytes:,}" if result.arena_min_bytes else "-",
                    f"{measured:,}" if measured else "-",
                    f"{guess.total:,}" if guess and not guess.not_estimated else "-",
                    error,
                )
            )
            print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn,mlp,ds_cnn")
    parser.add_argument("--device", action="store_true", help="also run on QEMU")
    parser.add_argument("--out", type=Path, help="also write the tables to FILE")
    args = parser.parse_args(argv)

    from edge_prune.data import load_digits
    from edge_prune.training._tf import keras
    from edge_prune.training.train import loss_for

    data = load_digits(seed=SEED)
    host, device = [], []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            print(f"{name}:", flush=True)
            keras.utils.set_random_seed(SEED)
            model = build_model(name, data)
            model.compile(keras.optimizers.Adam(0.003), loss_for(model, data))
            model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=32, verbose=0)
            made = candidates(model, data)
            rows, _ = host_rows(name, made, data)
            host += rows
            if args.device:
                device += device_rows(name, made, data, Path(work))
    lines = [
        f"bench/int4.py, {datetime.date.today().isoformat()}: {EPOCHS} epochs dense, "
        f"{QAT_EPOCHS} epochs 4-bit QAT, digits 8x8 (359 held-out); no pruning",
        "",
        *table_lines(
            (
                "model",
                "candidate",
                "flatbuffer B",
                "vs int8",
                "arena ref B",
                "arena packed B",
                "TFLM top-1",
                "vs float pts",
                "instr (m4 est.)",
                "time (m4 est.)",
            ),
            host,
        ),  # fmt: skip
        "",
        "arena ref: host TFLM (reference kernels; INT4 filters unpacked into arena scratch); "
        "arena packed: the same model with the INT4 filters stored as int8 (what CMSIS-NN, "
        "computing on packed int4, needs); time: cortex-m4 at 64 MHz, see edge_prune/measurement/"
        "timing.py.",
    ]
    if device:
        lines += [
            "",
            *table_lines(
                (
                    "model",
                    "candidate",
                    "build",
                    "outputs = host",
                    "arena min B (32-bit)",
                    "instructions (QEMU)",
                    "estimate",
                    "error",
                ),
                device,
            ),  # fmt: skip
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
