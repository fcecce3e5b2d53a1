"""Model families users bring, each through ``edge-prune model``: what gets deployed, and how well.

    .venv/bin/python bench/families.py [--target cortex-m4] [--epochs 20]

For each family, on data made from the bundled digits (nothing is downloaded), the script saves
an untrained tf_keras model and an ``.npz``, runs ``edge-prune model`` in a fresh process with the
default config (``train.epochs`` from ``--epochs``), and prints from its ``report.json``: exit
code, verdict, the deployable artifact, its flatbuffer bytes, its metric on TFLM against the
dense float32 model on TFLM, and the tensor arena the verdict counts.

- conv1d: a sensor-style Conv1D classifier, each 8x8 digit read as 8 time steps x 8 channels;
- lstm: an LSTM over the same sequences;
- ds_cnn: a BatchNorm depthwise-separable CNN (keyword-spotting style) trained on 300 samples;
- autoencoder: a Dense autoencoder reconstructing the 64 pixels (regression, mean squared error).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.tables import print_table  # noqa: E402


def families():
    from edge_prune.training._tf import keras

    layers = keras.layers

    def conv1d():
        i = keras.Input((8, 8))
        x = layers.Conv1D(16, 3, padding="same", activation="relu")(i)
        x = layers.MaxPooling1D(2)(x)
        x = layers.Conv1D(32, 3, padding="same", activation="relu")(x)
        x = layers.GlobalAveragePooling1D()(x)
        return keras.Model(i, layers.Dense(10, activation="softmax")(x), name="conv1d")

    def lstm():
        i = keras.Input((8, 8))
        x = layers.LSTM(32)(i)
        return keras.Model(i, layers.Dense(10, activation="softmax")(x), name="lstm")

    def ds_cnn():
        i = keras.Input((8, 8, 1))
        x = layers.Conv2D(16, 3, padding="same", use_bias=False)(i)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(32, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(i, layers.Dense(10, activation="softmax")(x), name="ds_cnn")

    def autoencoder():
        i = keras.Input((64,))
        h = layers.Dense(32, activation="relu")(i)
        h = layers.Dense(16, activation="relu")(h)
        h = layers.Dense(32, activation="relu")(h)
        return keras.Model(i, layers.Dense(64, activation="sigmoid")(h), name="autoencoder")

    return {
        "conv1d": (conv1d, "sequence", None),
        "lstm": (lstm, "sequence", None),
        "ds_cnn": (ds_cnn, "image", 300),
        "autoencoder": (autoencoder, "reconstruct", None),
    }


def dataset(kind: str, train: int | None) -> dict[str, np.ndarray]:
    from edge_prune.data import load_digits

    d = load_digits()
    x_train, x_test = d.x_train[:train], d.x_test
    if kind == "sequence":
        x_train, x_test = x_train[..., 0], x_test[..., 0]
    if kind == "reconstruct":
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        return {"x_train": x_train, "y_train": x_train, "x_test": x_test, "y_test": x_test}
    return {"x_train": x_train, "y_train": d.y_train[:train], "x_test": x_test, "y_test": d.y_test}


def run_family(name, build, kind, train, target: str, epochs: int, work: Path) -> list[str]:
    from edge_prune.training._tf import keras

    keras.utils.set_random_seed(0)
    model_path, data_path = work / f"{name}.keras", work / f"{name}.npz"
    build().save(model_path)
    np.savez(data_path, **dataset(kind, train))
    (work / "config.toml").write_text(f"[train]\nepochs = {epochs}\n")
    out = work / f"out-{name}"
    done = subprocess.run(
        [sys.executable, "-m", "edge_prune.cli", "model", "--target", target]
        + ["--model", str(model_path), "--data", str(data_path)]
        + ["--config", str(work / "config.toml"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    report_path = out / target / "report.json"
    if not report_path.exists():
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return [name, str(done.returncode), "no report: " + tail[0][:60], "", "", "", ""]
    report = json.loads(report_path.read_text())
    chosen = next(a for a in report["artifacts"] if a["name"] == report["deployable"]["artifact"])
    higher = report["metric"]["higher_is_better"]
    scores = report["accuracy" if higher else "mean_squared_error"]

    def fmt(v):
        return "-" if v is None else (f"{v:.2%}" if higher else f"{v:.4f}")

    score = chosen["accuracy"] if higher else chosen["error"]
    return [
        name,
        str(done.returncode),
        report["verdict"],
        chosen["name"],
        f"{chosen['flash_bytes']:,}",
        f"{fmt(score)} vs {fmt(scores.get('float32-dense_tflm'))} ({report['metric']['name']})",
        f"{chosen['cost']['arena_bytes']:,}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, kind, train) in families().items():
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(run_family(name, build, kind, train, args.target, args.epochs, Path(tmp)))
    print(f"Model families through `edge-prune model --target {args.target}` "
          f"(train.epochs = {args.epochs}, the rest default)")  # fmt: skip
    print_table(
        ["family", "exit", "verdict", "deployable", "flatbuffer B",
         "TFLM metric: deployable vs dense float32", "arena B (verdict)"],
        rows,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
