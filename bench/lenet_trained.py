"""LeNet-300-100 (784-300-100-10) trained and pruned to 90% by the build, on the device.

    EDGE_PRUNE_TFLM=DIR .venv/bin/python bench/lenet_trained.py [--out FILE]

No MNIST on this machine (no downloads): the bundled 8x8 digits are resized to 28x28
(bilinear) and flattened to 784 inputs, the same split as the default build (1,438 train / 359
held out). ``edge-prune model --target cortex-m4`` trains the MLP (seed 0), prunes it to 90% in
1x4 blocks (the default ``prune.block``), no channel removal (``structured.ratio = 0``), and
deploys the candidate with the least flash within 1 point of the dense model. Then
``edge-prune device`` runs the deployed model in QEMU (Cortex-M4, CMSIS-NN, TFLM default build)
on the held-out samples: outputs against the host, instructions, smallest arena, link map.

The dense baseline is the unpruned 784-300-100-10 int8 model on CMSIS-NN, measured by
bench/sparse.py in QEMU (results/sparse-2026-12-07.txt: 850,301 instructions, 272,816 B
flatbuffer, 5,088 B smallest arena; instructions, flash and arena do not depend on the weights'
values).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.tables import table_lines  # noqa: E402

EDGE_PRUNE = [sys.executable, "-m", "edge_prune.cli"]
DENSE = {"instructions": 850_301, "flatbuffer_bytes": 272_816, "arena_min_bytes": 5_088}
CONFIG = "[structured]\nratio = 0\n[prune]\nfinal_sparsity = 0.9\n"


def make_inputs(work: Path) -> tuple[Path, Path]:
    from edge_prune.data import load_digits
    from edge_prune.training._tf import keras, tf

    digits = load_digits()

    def resized(x: np.ndarray) -> np.ndarray:
        return tf.image.resize(x, (28, 28)).numpy().reshape(len(x), 784).astype(np.float32)

    data = work / "digits784.npz"
    np.savez(data, x_train=resized(digits.x_train), y_train=digits.y_train,
             x_test=resized(digits.x_test), y_test=digits.y_test)  # fmt: skip
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ],
        name="lenet_300_100",
    )
    path = work / "lenet.keras"
    model.save(path)
    return path, data


def run(command: list[str]) -> subprocess.CompletedProcess:
    print("$", " ".join(command[2:]), flush=True)
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the table to this file (and .json beside it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, data = make_inputs(work)
        (work / "config.toml").write_text(CONFIG)
        build = work / "build"
        done = run([*EDGE_PRUNE, "model", "--target", "cortex-m4", "--model", str(model),
                    "--data", str(data), "--config", str(work / "config.toml"),
                    "--out", str(build)])  # fmt: skip
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        out = build / "cortex-m4"
        report = json.loads((out / "report.json").read_text())
        done = run([*EDGE_PRUNE, "device", str(out), "--target", "cortex-m4", "--format", "json"])
        measured = json.loads(done.stdout)
    rows, record = figures(report, measured)
    lines = [
        f"# {' '.join(['.venv/bin/python', 'bench/lenet_trained.py', *(argv or sys.argv[1:])])}",
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; deployed: "
        f"{report['deployable']['artifact']}; QEMU -icount instructions, not cycles",
        *table_lines(("figure", "dense int8 (CMSIS-NN)", "deployed", "ratio"), rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


def figures(report: dict, measured: dict) -> tuple[list[tuple[str, ...]], dict]:
    accuracy = report["accuracy"]
    deployed = report["deployable"]["artifact"]
    score = accuracy.get(f"{deployed}_tflm")
    dense = accuracy.get("float32-dense_tflm")
    record = {
        "deployed": deployed,
        "accuracy_deployed_tflm": score,
        "accuracy_dense_float32_tflm": dense,
        "sparsity": report["sparsity"]["sparsity"],
        "device": {
            k: measured.get(k)
            for k in (
                "instructions_per_inference",
                "model_flash_bytes",
                "runtime_flash_bytes",
                "arena_min_bytes",
                "configured_arena_bytes",
                "outputs_equal_host",
                "sparse_kernel_flash_bytes",
                "instructions_per_op",
            )
        },  # fmt: skip
        "dense_int8_cmsis_nn": DENSE,
    }

    def ratio(value, base) -> str:
        return f"{value / base:.3f}x" if value is not None else "-"

    device = record["device"]
    rows = [
        ("instructions per inference", f"{DENSE['instructions']:,}",
         f"{device['instructions_per_inference']:,}",
         ratio(device["instructions_per_inference"], DENSE["instructions"])),
        ("flatbuffer B", f"{DENSE['flatbuffer_bytes']:,}", f"{device['model_flash_bytes']:,}",
         ratio(device["model_flash_bytes"], DENSE["flatbuffer_bytes"])),
        ("smallest arena B", f"{DENSE['arena_min_bytes']:,}", f"{device['arena_min_bytes']:,}",
         ratio(device["arena_min_bytes"], DENSE["arena_min_bytes"])),
        ("TFLM top-1, held out", f"{dense:.2%} (float32 dense)", f"{score:.2%}",
         f"{100 * (score - dense):+.2f} points"),
        ("outputs equal host", "-", str(device["outputs_equal_host"]), "-"),
    ]  # fmt: skip
    return rows, record


if __name__ == "__main__":
    sys.exit(main())
