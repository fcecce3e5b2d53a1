"""Training time per epoch with and without tfmot's pruning wrappers.

    .venv/bin/python bench/prune_cost.py [--epochs 6] [--quick]

On the bundled digits (1,438 training samples, batch 32), for the default CNN and the
LeNet-300-100 MLP: the same seeded model trained for ``--epochs`` epochs as it is (Keras) and
wrapped by ``edge_prune.training.prune.prune`` (polynomial decay to 80% over the epochs, tfmot's
``UpdatePruningStep`` callback). Per-epoch wall time by a Keras callback. The first epoch
includes graph tracing and is shown apart; the median is over the other epochs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

from edge_prune.tables import print_table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BATCH_SIZE = 32


def epoch_times(model, x, y, epochs: int, callbacks=()) -> list[float]:
    from edge_prune.training._tf import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
              callbacks=[*callbacks, Timer()])  # fmt: skip
    return times


def build(kind: str, data):
    from bench.compression import lenet_300_100
    from edge_prune.training.train import default_model

    if kind == "cnn":
        return default_model(data.input_shape, data.num_classes), data.x_train
    x = data.x_train.reshape(len(data.x_train), -1)
    return lenet_300_100(x.shape[1], data.num_classes), x


def measure(kind: str, data, epochs: int) -> list[list[str]]:
    from edge_prune.training._tf import keras
    from edge_prune.training.prune import prune
    from edge_prune.training.schedule import PruningSchedule
    from edge_prune.training.train import seed_everything

    rows = []
    for wrapped in (False, True):
        seed_everything(0)
        model, x = build(kind, data)
        loss = keras.losses.SparseCategoricalCrossentropy()
        callbacks = []
        if wrapped:
            steps = math.ceil(len(x) / BATCH_SIZE)
            schedule = PruningSchedule.from_epochs(0.8, steps_per_epoch=steps, end_epoch=epochs)
            pruned = prune(model, schedule, optimizer=keras.optimizers.Adam(1e-3), loss=loss)
            model, callbacks = pruned.model, pruned.callbacks
        else:
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        times = epoch_times(model, x, data.y_train, epochs, callbacks)
        rest = times[1:] or times
        rows.append(
            [
                model.name if not wrapped else f"{model.name} (pruning wrappers)",
                f"{times[0]:.2f}",
                f"{statistics.median(rest):.3f}",
                f"{min(rest):.3f}",
                f"{max(rest):.3f}",
                str(len(rest)),
            ]
        )
    base, pruned = (float(r[2]) for r in rows)
    rows[1].append(f"{pruned / base:.2f}x")
    rows[0].append("1.00x")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    args = parser.parse_args()
    epochs = 3 if args.quick else args.epochs

    from edge_prune.data import load_digits

    data = load_digits()
    rows = measure("cnn", data, epochs) + measure("mlp", data, epochs)
    print(
        f"Training time per epoch on {data.source} ({len(data.x_train):,} samples, batch "
        f"{BATCH_SIZE}), {epochs} epochs each"
    )
    print_table(
        [
            "model",
            "epoch 1 s (tracing)",
            "median s (epochs 2+)",
            "min s",
            "max s",
            "epochs",
            "vs plain",
        ],
        rows,
    )
    print(f"load average while measuring: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
