"""The TFLM runtime code estimate against every runtime measured on a board, with ratios.

    .venv/bin/python bench/runtime_estimate.py [--check-default-ops]

For each calibration op set (the committed test models in tests/data/ and the default model,
as listed in bench/kernel_flash_table.py) it prints edge-prune's per-op estimate (framework +
one kernel per op type, the low end of the report's range), the upper bound the report uses
when a target has no device figure, and the ratio of each board measurement to the estimate.
The largest ratio against the Cortex-M measurement is the bound's ``ratio``.

``--check-default-ops`` converts the default model (untrained, TensorFlow needed) to int8 and
checks that its op types are the ones listed for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import kernel_flash_table as table_script  # noqa: E402

from edge_prune.footprint import kernel_table, runtime_flash  # noqa: E402
from edge_prune.tables import print_table  # noqa: E402


def measurements() -> list[tuple[str, int]]:
    return [table_script.MEASURED_CORTEX_M, *table_script.MEASURED_OTHER]


def rows() -> list[list[str]]:
    out = []
    for name, ops in table_script.calibration_op_sets().items():
        runtime = runtime_flash(ops)
        ratios = [f"{measured / runtime.estimate_bytes:.2f}x" for _, measured in measurements()]
        out.append(
            [
                name,
                ", ".join(ops),
                f"{runtime.estimate_bytes:,}",
                f"{runtime.upper_bound_bytes:,}",
                *ratios,
            ]
        )
    return out


def check_default_ops() -> int:
    import numpy as np

    from edge_prune.convert import convert
    from edge_prune.pipeline import default_model
    from edge_prune.tflite_file import read_model

    model = default_model((8, 8, 1), 10)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    ops = read_model(convert(model, quantization="int8", representative_data=x).tflite_bytes)
    listed = table_script.DEFAULT_MODEL_OPS["default model, int8"]
    print(f"default model, int8, converted now: {', '.join(ops.op_types)}")
    print("matches the listed op set" if ops.op_types == listed else f"listed: {listed}")
    return 0 if ops.op_types == listed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-default-ops", action="store_true")
    args = parser.parse_args()
    bound = kernel_table().upper_bound
    header = ["op set", "ops", "estimate B", "upper bound B"]
    header += [f"{measured:,} B / estimate" for _, measured in measurements()]
    print_table(header, rows())
    print()
    for name, measured in measurements():
        print(f"measured: {name}: {measured:,} B ({table_script.MEASURED_SOURCE})")
    print(
        f"upper bound = max(estimate x {bound.ratio:.4f}, {bound.floor_bytes:,} B); the ratio is "
        "the largest Cortex-M measurement / estimate above"
    )
    return check_default_ops() if args.check_default_ops else 0


if __name__ == "__main__":
    sys.exit(main())
