"""Minimal reproduction: CMSIS-NN's MVE 1xN convolution computes the last output column wrongly
when (input width - kernel width) is not a multiple of the stride (VALID padding).

    EDGE_PRUNE_TFLM=DIR .venv/bin/python bench/cmsis_nn_1xn.py [--out FILE]

Two int8 models, each one Conv1D (8 input channels, 16 filters, kernel 3, stride 2, VALID),
differ only in the input width: 64 ((64 - 3) % 2 = 1: the fault) and 65 ((65 - 3) % 2 = 0).
Each runs through ``edge-prune device`` on a Cortex-M55 (QEMU mps3-an547) with CMSIS-NN kernels
(the MVE path), outputs compared byte for byte with the host TFLM interpreter (reference
kernels). ``edge-prune report`` on the same target says whether the
verdict flags the model (edge_prune/measurement/cmsis_nn_faults.py names the source lines).
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
WIDTHS = (64, 65)


def conv1d_int8(width: int, path: Path) -> Path:
    from edge_prune.training._tf import keras
    from edge_prune.training.convert import convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((width, 8)), keras.layers.Conv1D(16, 3, strides=2, padding="valid")],
        name=f"conv1d_w{width}",
    )
    x = np.random.default_rng(0).random((64, width, 8), dtype=np.float32)
    convert(model, quantization="int8", representative_data=x).save(path)
    return path


def target_file(work: Path, kernels: str) -> Path:
    text = (REPO / "targets" / "cortex-m55.toml").read_text()
    path = work / f"m55-{kernels}.toml"
    path.write_text(f'{text}\ntflm_kernels = "{kernels}"\n')
    return path


def json_of(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for width in WIDTHS:
            model = conv1d_int8(width, work / f"conv1d_w{width}.tflite")
            for kernels in ("cmsis-nn", "reference"):
                target = str(target_file(work, kernels))
                device = {}
                if kernels == "cmsis-nn":  # the host runs the reference kernels already
                    device = json_of([*EDGE_PRUNE, "device", str(model), "--target", target,
                                      "--samples", "4", "--format", "json"])  # fmt: skip
                report = json_of([*EDGE_PRUNE, "report", str(model), "--target", target,
                                  "--format", "json"])  # fmt: skip
                verdict = (report.get("targets") or [{}])[0]
                rows.append((
                    str(width), str((width - 3) % 2), kernels,
                    str(device.get("outputs_equal_host", device.get("error", "(host)"))),
                    str(device.get("max_abs_score_diff", "-")),
                    "runs" if verdict.get("runs_on_tflm") else "refused",
                ))  # fmt: skip
                print(rows[-1], flush=True)
    lines = [
        f"# .venv/bin/python bench/cmsis_nn_1xn.py; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; Cortex-M55 (QEMU mps3-an547), "
        "TFLM default build; Conv1D 8->16 channels, kernel 3, stride 2, VALID",
        *table_lines(
            (
                "input width",
                "(w - k) % stride",
                "kernels",
                "outputs equal host",
                "max |diff|",
                "report verdict",
            ),
            rows,
        ),  # fmt: skip
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
