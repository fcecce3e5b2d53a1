"""Compression and accuracy of every artifact, on the default CNN and on a LeNet-300-100 MLP.

    .venv/bin/python bench/compression.py [--quick] [--target cortex-m4]

For each model: train dense (seeded), prune as the pipeline does (CNN: the pipeline default,
50% of channels removed then 50% magnitude sparsity; MLP: magnitude pruning only, 90%, near the
92% Deep Compression pruned LeNet-300-100 to, Han et al. ICLR 2016 Table 4), cluster (sparsity
preserved), convert, and run every int8 artifact on the TFLM interpreter over the held-out
digits. One row per artifact:

- float32 dense: the trained model before pruning (accuracy: Keras and TFLM);
- int8 dense: the same model, int8, dense storage (TFLM);
- int8 pruned: pruned, int8, dense storage (TFLM);
- int8 pruned sparse-encoded: TFLM cannot run it (no DENSIFY kernel); accuracy from the
  TensorFlow Lite interpreter, which can;
- deployable: pruned + clustered + int8 + TFLM LUT compression (TFLM).

Bytes are flatbuffer bytes (what is flashed). "weights" counts the kernels and biases of the
Keras model the artifact comes from, "nonzero" those that are not 0. The MLP reads the 8x8
digits flattened to 64 inputs (the bundled data, not MNIST: Han et al.'s 784 inputs would not
fit these images). Nothing is timed here.
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
    from edge_prune._tf import keras

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
    from edge_prune._tf import tf

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
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])) == y)
    return hits / len(data.y_test)


def measure(name: str, inputs, sparsity: float) -> list[list[str]]:
    from edge_prune.config import with_overrides
    from edge_prune.convert import convert
    from edge_prune.evaluate import check
    from edge_prune.pipeline import MODEL_STAGES, BuildState
    from edge_prune.runner import quiet, run_stages

    data = inputs.data
    config = with_overrides(inputs.config, {"prune.final_sparsity": sparsity}, "bench")
    state = run_stages(MODEL_STAGES, BuildState(replace(inputs, config=config)), quiet)
    dense, pruned = state.models["dense"], state.models["pruned"]
    clustered = state.models["clustered"]
    by_name = {a.name: a for a in state.artifacts}
    ratio = config.structured.ratio
    int8_dense = convert(dense, quantization="int8", representative_data=data.x_train)
    int8_dense_check = check(
        int8_dense.tflite_bytes, data.x_test, labels=data.y_test, name="int8-dense"
    )

    how = f"{ratio:.0%} channels + {sparsity:.0%}" if ratio > 0 else f"{sparsity:.0%}"
    float32 = by_name["float32-dense"]
    float32_bytes = len(float32.tflite_bytes)
    sparse = by_name["int8-sparse"]
    artifacts = [
        ("float32 dense", dense, float32.check, f"Keras {state.scores['dense_keras']:.2%}"),
        ("int8 dense", dense, int8_dense_check, None),
        (f"int8 pruned {how}", pruned, by_name["int8"].check, None),
        (
            f"int8 pruned {how} sparse-encoded",
            pruned,
            sparse.check,
            f"TFLite {tflite_accuracy(sparse.tflite_bytes, data):.2%}",
        ),
        ("deployable (pruned+clustered+LUT)", clustered, by_name["int8-clustered-lut"].check, None),
    ]
    rows = []
    for label, keras_model, report, other in artifacts:
        weights, nonzero = weight_counts(keras_model)
        accuracy = f"TFLM {report.accuracy:.2%}" if report.accuracy is not None else "-"
        rows.append(
            [
                name,
                label,
                f"{weights:,}",
                f"{nonzero:,}",
                f"{report.flash_bytes:,}",
                f"{float32_bytes / report.flash_bytes:.1f}x",
                "yes" if report.runs_on_tflm else f"no ({report.missing_op or 'failed'})",
                accuracy,
                other or "",
            ]
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (figures are rougher)")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()

    from edge_prune.config import PipelineConfig, with_overrides
    from edge_prune.data import Dataset
    from edge_prune.pipeline import prepare_inputs

    config = with_overrides(PipelineConfig(), QUICK if args.quick else {}, "bench")
    cnn_inputs = prepare_inputs(args.target, config)
    rows = measure("digits CNN", cnn_inputs, config.prune.final_sparsity)

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
        mlp_config = with_overrides(config, {"structured.ratio": 0.0}, "bench")
        mlp_inputs = replace(cnn_inputs, data=flat, model_path=model_path, config=mlp_config)
        rows += measure("LeNet-300-100", mlp_inputs, 0.9)

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
            "accuracy",
            "other accuracy",
        ],
        rows,
    )
    print(
        "accuracy: top-1 on the held-out set; TFLM = the flatbuffer run by the TFLM interpreter; "
        "TFLite = TensorFlow Lite interpreter (the sparse encoding does not run on TFLM)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
