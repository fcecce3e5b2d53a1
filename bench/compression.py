"""Compression and accuracy of every build candidate, on the default CNN and a LeNet-300-100 MLP.

    .venv/bin/python bench/compression.py [--quick] [--target cortex-m4]

For each model the pipeline runs as ``edge-prune model`` runs it (``plan(config).model`` through the
runner): train dense (seeded), prune (CNN: the pipeline default, 50% of channels removed then
50% magnitude sparsity; MLP: magnitude pruning only, 90%, near the 92% Deep Compression pruned
LeNet-300-100 to, Han et al. ICLR 2016 Table 4), cluster (sparsity preserved), convert, and run
every candidate on the TFLM interpreter over the held-out digits. One row per candidate:

- ``float32-dense``: the trained model before pruning (accuracy: Keras and TFLM);
- ``int8``: pruned, int8, dense storage;
- ``int8-sparse``: the same with TFLM's DECODE encodings (pruning bitmask / Huffman per tensor):
  runs on TFLM, outputs must equal those of ``int8``;
- ``int8-densify``: TFLite's EXPERIMENTAL_SPARSITY encoding: TFLM cannot run it (no DENSIFY
  kernel); accuracy from the TensorFlow Lite interpreter, which can;
- ``int8-clustered`` / ``int8-clustered-compressed``: pruned + clustered, int8, dense storage /
  per-tensor LUT, pruning bitmask or Huffman (TFLM DECODE);
- ``int8-clustered-pt`` / ``int8-clustered-pt-compressed``: the same with per-tensor
  quantization of Dense layers (only built when that changes the file).

Bytes are flatbuffer bytes (what is flashed). "weights" counts the kernels and biases of the
Keras model the candidate comes from, "nonzero" those that are not 0. Arena: the TFLM arena on
this 64-bit host from one recorded run (an upper bound of the smallest working size, verified
by running with it), decoded weights included. The MLP reads the 8x8 digits flattened
to 64 inputs (the bundled data, not MNIST: Han et al.'s 784 inputs would not fit these images).
Nothing is timed here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_prune.tables import print_table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUICK = {"train.epochs": 4, "prune.epochs": 3, "prune.end_epoch": 2, "compress.epochs": 1}


def lenet_300_100(inputs: int, classes: int):
    """LeNet-300-100 (LeCun et al. 1998; the Deep Compression reference MLP), ``inputs`` wide."""
    from edge_prune.training._tf import keras

    x_in = keras.Input((inputs,), name="pixels")
    x = keras.layers.Dense(300, activation="relu", name="fc300")(x_in)
    x = keras.layers.Dense(100, activation="relu", name="fc100")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(x_in, out, name="lenet_300_100")


def weight_counts(model) -> tuple[int, int]:
    """(weights, nonzero weights) over the trainable variables of ``model``."""
    values = [np.asarray(w) for w in model.trainable_weights]
    return sum(v.size for v in values), sum(int(np.count_nonzero(v)) for v in values)


def tflite_accuracy(model_bytes: bytes, data) -> float:
    """Top-1 accuracy with the TensorFlow Lite interpreter (it has a DENSIFY kernel)."""
    from edge_prune.training._tf import tf

    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    hits = 0
    for x, y in zip(data.x_test, data.y_test, strict=True):
        sample = x[np.newaxis]
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            sample = np.clip(np.round(sample / scale) + zero, info.min, info.max)
        interpreter.reset_all_variables()  # each sample its own inference (LSTM state)
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])) == y)
    return hits / len(data.y_test)


def measure(name: str, inputs, sparsity: float) -> tuple[list[list[str]], str]:
    """One row per candidate the build makes for ``inputs`` at ``sparsity``, and what it chose."""
    from edge_prune.config import with_overrides
    from edge_prune.pipeline import plan
    from edge_prune.runner import quiet, run_stages
    from edge_prune.stages import ArtifactName, BuildState

    config = with_overrides(inputs.config, {"prune.final_sparsity": sparsity}, "bench")
    state = run_stages(plan(config).model, BuildState(replace(inputs, config=config)), quiet)
    float32_bytes = len(state.artifact(ArtifactName.FLOAT32_DENSE).tflite_bytes)
    how = f"{config.structured.ratio:.0%} channels + " if config.structured.ratio > 0 else ""
    name = f"{name} ({how}{sparsity:.0%})"
    rows, failures = [], []
    for artifact in state.artifacts:
        report = artifact.check
        weights, nonzero = weight_counts(state.models[artifact.reference])
        if artifact.name == ArtifactName.FLOAT32_DENSE:
            other = f"Keras {state.scores['dense_keras']:.2%}"
        elif not report.runs_on_tflm:
            other = f"TFLite {tflite_accuracy(artifact.tflite_bytes, inputs.data):.2%}"
            if report.failure and not report.missing_op:
                failures.append(f"{name} {artifact.name} on TFLM: {report.failure}")
        else:
            other = ""
        rows.append(
            [
                name,
                artifact.name,
                f"{weights:,}",
                f"{nonzero:,}",
                f"{report.flash_bytes:,}",
                f"{float32_bytes / report.flash_bytes:.1f}x",
                "yes" if report.runs_on_tflm else f"no ({report.missing_op or 'failed'})",
                "-" if report.accuracy is None else f"{report.accuracy:.2%}",
                "-" if report.arena_bytes is None else f"{report.arena_bytes:,}",
                other,
            ]
        )
        if report.problem:
            rows[-1][-1] = f"{other} PROBLEM: {report.problem}".strip()
    chosen = state.choice.chosen.name if state.choice else f"nothing ({state.no_choice})"
    return rows, "\n".join([f"{name}: the build deploys {chosen}", *failures])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (figures are rougher)")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()

    from edge_prune.config import PipelineConfig, with_overrides
    from edge_prune.data import Dataset
    from edge_prune.stages import prepare_inputs

    config = with_overrides(PipelineConfig(), QUICK if args.quick else {}, "bench")
    cnn_inputs = prepare_inputs(args.target, config)
    rows, cnn_choice = measure("digits CNN", cnn_inputs, config.prune.final_sparsity)

    digits = cnn_inputs.data
    flat = Dataset(
        digits.x_train.reshape(len(digits.x_train), -1),
        digits.y_train,
        digits.x_test.reshape(len(digits.x_test), -1),
        digits.y_test,
        source="digits (flattened to 64)",
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "lenet_300_100.keras"
        lenet_300_100(64, flat.num_classes).save(model_path)
        # train.epochs set: the pipeline would take the untrained MLP (above chance) as trained
        mlp_overrides = {"structured.ratio": 0.0, "train.epochs": config.train.epochs}
        mlp_config = with_overrides(config, mlp_overrides, "bench")
        mlp_inputs = replace(cnn_inputs, data=flat, model_path=model_path, config=mlp_config)
        mlp_rows, mlp_choice = measure("LeNet-300-100", mlp_inputs, 0.9)

    print(f"Compression on {digits.source}: {len(digits.y_test)} held-out samples"
          + (" (--quick: fewer epochs)" if args.quick else ""))  # fmt: skip
    print_table(
        [
            "model",
            "artifact",
            "weights",
            "nonzero",
            "flatbuffer B",
            "float32/this",
            "runs on TFLM",
            "TFLM accuracy",
            "arena B",
            "other accuracy",
        ],
        rows + mlp_rows,
    )
    print(f"{cnn_choice}\n{mlp_choice}")
    print(
        "accuracy: top-1 on the held-out set; TFLM = the flatbuffer run by the TFLM interpreter; "
        "TFLite = TensorFlow Lite interpreter (int8-densify does not run on TFLM); arena: "
        "TFLM arena on this 64-bit host (one recorded run, verified)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
