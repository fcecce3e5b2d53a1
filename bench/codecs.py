"""Weight codecs on TFLM: how small a pruned model gets while TFLM still runs it.

    PYTHONPATH=. .venv/bin/python bench/codecs.py [--quick] [--cnn-sparsity 0.8]
        [--per-channel-dense]

About 4 minutes on 2 cores (``--quick``: about 1 minute, rougher accuracy).

Two models on the bundled 8x8 digits (1,438 training, 359 held-out samples), seeded:

(a) the default CNN shape (Conv2D 16, Conv2D 32, MaxPool, Flatten, Dense 64, Dense 10) with
    50% of the channels/units removed (``prune_channels``, fine-tuned), magnitude-pruned to
    ``--cnn-sparsity`` and clustered to 16 values per layer; Dense layers quantized per tensor
    unless ``--per-channel-dense``;
(b) a LeNet-300-100-shaped MLP 64-300-100-10 with 50% of the hidden units removed, pruned to
    90% and clustered to 8 values per layer; its Dense layers are quantized per tensor
    (``convert(per_channel_dense=False)``): no codec compresses per-channel scales and zero
    points (12 B per unit).

Rows: the dense float32 model (the baseline of the ratio), the final weights in float32 (where
the accuracy went before quantization), the final int8 model, each codec alone, the per-tensor
choice (``compress_for_mcu``) and the choice + flatbuffer diet (``strip_for_mcu``).
Flash = flatbuffer bytes; accuracy = top-1 on the 359 held-out digits run on TFLM; arena = the
smallest arena TFLM ran the model in on this 64-bit host (decoded tensors included). Models are
built only through the public API (``import edge_prune as ep``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEED = 0


def _compile(model, learning_rate: float = 1e-3):
    import edge_prune as ep

    model.compile(
        optimizer=ep.keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _cnn(ep, shape):
    layers = ep.keras.layers
    inputs = ep.keras.Input(shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return ep.keras.Model(inputs, outputs, name="digits_cnn")


def _mlp(ep, features: int):
    layers = ep.keras.layers
    inputs = ep.keras.Input((features,), name="pixels")
    x = layers.Dense(300, activation="relu", name="fc1")(inputs)
    x = layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return ep.keras.Model(inputs, outputs, name="lenet_300_100")


def compress_model(ep, dense, x, y, *, ratio, sparsity, clusters, epochs):
    """Remove ``ratio`` of the units, prune to ``sparsity``, cluster: the final Keras model."""
    slim = _compile(ep.prune_channels(dense, ratio).model)
    slim.fit(x, y, batch_size=32, epochs=epochs["finetune"], verbose=0, shuffle=False)
    steps = int(np.ceil(len(x) / 32))
    schedule = ep.PruningSchedule.from_epochs(
        sparsity, steps_per_epoch=steps, end_epoch=epochs["prune_end"]
    )
    pruned = ep.prune(
        slim,
        schedule,
        optimizer=ep.keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    pruned.fit(x, y, batch_size=32, epochs=epochs["prune"], verbose=0, shuffle=False)
    clustered = _compile(ep.cluster(ep.strip(pruned), number_of_clusters=clusters), 3e-4)
    clustered.fit(x, y, batch_size=32, epochs=epochs["cluster"], verbose=0, shuffle=False)
    return ep.strip_clustering(clustered)


def _input_quantization(model_bytes: bytes):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    tensor = graph.Tensors(graph.Inputs(0))
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    return float(q.Scale(0)), int(q.ZeroPoint(0))


def tflm_accuracy(model_bytes: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edge_prune.measurement import tflm

    q = _input_quantization(model_bytes)
    if q is None:
        inputs = x.astype(np.float32)
    else:
        scale, zero_point = q
        inputs = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    outputs = tflm.run(model_bytes, inputs)
    return float(np.mean(outputs.reshape(len(y), -1).argmax(axis=1) == y))


def rows_for(ep, label, float_bytes, final_float_bytes, int8_bytes, x_test, y_test):
    from edge_prune.measurement import tflm
    from edge_prune.measurement.codecs import DEFAULT_CODECS, compress_for_mcu, strip_for_mcu

    chosen = compress_for_mcu(int8_bytes)
    variants = [
        ("float32 (dense)", float_bytes),
        ("float32 (final weights)", final_float_bytes),
        ("int8", int8_bytes),
        *[
            (f"{codec} alone", compress_for_mcu(int8_bytes, codecs=(codec,)).tflite_bytes)
            for codec in DEFAULT_CODECS
        ],
        ("per-tensor choice", chosen.tflite_bytes),
        ("per-tensor choice + diet", strip_for_mcu(chosen.tflite_bytes)[0]),
    ]
    rows = []
    for name, data in variants:
        accuracy = tflm_accuracy(data, x_test, y_test)
        arena = tflm.measure_arena(data).verdict_bytes
        rows.append(
            [
                label,
                name,
                f"{len(data):,}",
                f"{len(float_bytes) / len(data):.1f}x",
                f"{accuracy:.2%}",
                f"{arena:,}",
            ]
        )
    codecs_used = ", ".join(f"{t.name.split('/')[-2]}: {t.codec}" for t in chosen.compressed)
    return rows, codecs_used, chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (rougher figures)")
    parser.add_argument("--cnn-sparsity", type=float, default=0.8)
    parser.add_argument(
        "--per-channel-dense",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="CNN Dense layers quantized per channel (default: per tensor, as the MLP)",
    )
    args = parser.parse_args()

    import edge_prune as ep
    from edge_prune.tables import print_table

    epochs = (
        {"train": 8, "finetune": 2, "prune": 4, "prune_end": 2, "cluster": 1}
        if args.quick
        else {"train": 30, "finetune": 10, "prune": 30, "prune_end": 12, "cluster": 4}
    )
    data = ep.load_digits()
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    all_rows, notes = [], []

    ep.keras.utils.set_random_seed(SEED)
    cnn = _compile(_cnn(ep, x.shape[1:]))
    cnn.fit(x, y, batch_size=32, epochs=epochs["train"], verbose=0, shuffle=False)
    final = compress_model(
        ep, cnn, x, y, ratio=0.5, sparsity=args.cnn_sparsity, clusters=16, epochs=epochs
    )
    float_bytes = ep.convert(cnn, quantization="float").tflite_bytes
    final_float = ep.convert(final, quantization="float").tflite_bytes
    int8_bytes = ep.convert(
        final, quantization="int8", representative_data=x, per_channel_dense=args.per_channel_dense
    ).tflite_bytes
    dense_q = "per-channel" if args.per_channel_dense else "per-tensor"
    label = f"CNN -50% ch, {args.cnn_sparsity:.0%} pruned, 16 clusters, {dense_q} Dense"
    rows, used, _ = rows_for(ep, label, float_bytes, final_float, int8_bytes, x_test, y_test)
    all_rows += rows
    notes.append(f"CNN choice: {used}")

    ep.keras.utils.set_random_seed(SEED)
    flat_x, flat_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    mlp = _compile(_mlp(ep, flat_x.shape[1]))
    mlp.fit(flat_x, y, batch_size=32, epochs=epochs["train"], verbose=0, shuffle=False)
    final = compress_model(ep, mlp, flat_x, y, ratio=0.5, sparsity=0.9, clusters=8, epochs=epochs)
    float_bytes = ep.convert(mlp, quantization="float").tflite_bytes
    final_float = ep.convert(final, quantization="float").tflite_bytes
    int8_bytes = ep.convert(
        final, quantization="int8", representative_data=flat_x, per_channel_dense=False
    ).tflite_bytes
    label = "MLP 64-300-100-10 -50% units, 90% pruned, 8 clusters, per-tensor"
    rows, used, _ = rows_for(ep, label, float_bytes, final_float, int8_bytes, flat_test, y_test)
    all_rows += rows
    notes.append(f"MLP choice: {used}")

    print(f"Weight codecs on TFLM, digits ({len(y_test)} held-out samples)")
    print_table(["model", "variant", "flash B", "vs float32", "acc (TFLM)", "arena B"], all_rows)
    print("\n".join(notes))
    print(
        "flash: whole flatbuffer; ratio: dense float32 flatbuffer / this one; arena: smallest "
        "arena TFLM ran the model in (64-bit host), decoded weights included."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
