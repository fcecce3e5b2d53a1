"""Structured pruning on the default example: what removing 50% of channels buys on a Cortex-M.

    .venv/bin/python bench/structured.py [--ratio 0.5] [--quick] [--target cortex-m4]

The default digits CNN is trained once (seeded). Rows:

- dense: the trained model;
- structured, before fine-tuning: ``--ratio`` of the channels/units of every Conv2D/Dense
  removed (L1 norm; ``structured.ratio``), weights copied, no training yet;
- structured, after fine-tuning: the same, fine-tuned for ``structured.epochs`` epochs;
- unstructured only: magnitude pruning of the dense model to ``--unstructured`` (80%), as
  int8 dense storage (``int8``) and as the candidate the build chooses (clustered, then per
  tensor LUT / pruning bitmask / Huffman for TFLM's DECODE operator);
- structured + unstructured: the fine-tuned structured model, then magnitude pruning to
  ``prune.final_sparsity`` (the pipeline default, 50%), clustering and TFLM compression: the
  candidate ``make model`` deploys (the row names it).

Parameters and MACs from ``edge_prune.training.macs.count_costs`` (Keras layers; zeros still count:
dense kernels multiply them). Flash = int8 flatbuffer bytes after the flatbuffer diet (names TFLM
does not read dropped, as in every build candidate); arena = TFLM arena on this 64-bit host from
one recorded run, verified (decoded weights included); accuracy = top-1 on the held-out set,
run on TFLM.
Latency is an ESTIMATE from the target file's per-op throughput (measured on the nRF52840 by
mcufit 0.5.2), not a measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUICK = {"train.epochs": 4, "prune.epochs": 3, "prune.end_epoch": 2, "compress.epochs": 1,
         "structured.epochs": 2}  # fmt: skip


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        cells = zip(line, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip())


def row(label: str, keras_model, model_bytes: bytes, inputs) -> list[str]:
    from edge_prune.measurement.evaluate import check_deployable
    from edge_prune.training.macs import count_costs, estimate_latency_for_target

    data = inputs.data
    report = check_deployable(model_bytes, data.x_test, labels=data.y_test, name=label)
    cost = count_costs(keras_model)
    estimated = estimate_latency_for_target(cost, inputs.target)
    latency = "-" if estimated is None else f"{estimated.estimated_us / 1000:,.2f}"
    return [
        label,
        f"{cost.total_params:,}",
        f"{cost.total_macs:,}",
        f"{report.flash_bytes:,}",
        "-" if report.arena_bytes is None else f"{report.arena_bytes:,}",
        "-" if report.accuracy is None else f"{report.accuracy:.2%}",
        latency,
    ]


def deployed_row(label: str, state, inputs) -> list[str]:
    """The row of the candidate the build chose in ``state`` (named in the label)."""
    if state.choice is None:
        return [f"{label}: nothing chosen ({state.no_choice})", *["-"] * 6]
    chosen = state.deployable
    model = state.models[chosen.reference]
    return row(f"{label}, {chosen.name}", model, chosen.tflite_bytes, inputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument(
        "--unstructured", type=float, default=0.8, help="sparsity of the unstructured-only rows"
    )
    parser.add_argument("--quick", action="store_true", help="fewer epochs (rougher figures)")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()

    from edge_prune.config import PipelineConfig, with_overrides
    from edge_prune.measurement.codecs import strip_for_mcu
    from edge_prune.pipeline import plan
    from edge_prune.runner import quiet, run_stages
    from edge_prune.stages import BuildState, ModelKey, prepare_inputs
    from edge_prune.training.convert import convert

    overrides = {"structured.ratio": args.ratio, **(QUICK if args.quick else {})}
    config = with_overrides(PipelineConfig(), overrides, "bench")
    inputs = prepare_inputs(args.target, config)
    x = inputs.data.x_train

    def int8(model) -> bytes:
        """int8, dense storage, after the flatbuffer diet the build's candidates get."""
        converted = convert(model, quantization="int8", representative_data=x)
        return strip_for_mcu(converted.tflite_bytes)[0]

    def prune_and_compress(state: BuildState, **overrides):
        point_config = with_overrides(config, overrides, "bench")
        return run_stages(plan(point_config).point, state.with_config(point_config), quiet)

    stages = plan(config)
    dense_state = run_stages(stages.dense + stages.baseline, BuildState(inputs), quiet)
    dense = dense_state.models[ModelKey.DENSE]
    rows = [row("dense", dense, int8(dense), inputs)]

    no_tuning = dense_state.with_config(with_overrides(config, {"structured.epochs": 0}, "bench"))
    before = run_stages(stages.channels, no_tuning, quiet).models[ModelKey.STRUCTURED]
    rows.append(row(f"structured {args.ratio:.0%}, before fine-tuning", before, int8(before),
                    inputs))  # fmt: skip
    after_state = run_stages(stages.channels, dense_state, quiet)
    after = after_state.models[ModelKey.STRUCTURED]
    rows.append(row(f"structured {args.ratio:.0%}, after fine-tuning", after, int8(after), inputs))

    alone = args.unstructured
    unstructured = prune_and_compress(
        dense_state, **{"structured.ratio": 0.0, "prune.final_sparsity": alone}
    )
    pruned = unstructured.models[ModelKey.PRUNED]
    rows.append(row(f"unstructured {alone:.0%} only, int8", pruned, int8(pruned), inputs))
    rows.append(deployed_row(f"unstructured {alone:.0%} only", unstructured, inputs))

    sparsity = config.prune.final_sparsity
    both = prune_and_compress(after_state)
    label = f"structured {args.ratio:.0%} + unstructured {sparsity:.0%}"
    rows.append(deployed_row(label, both, inputs))

    print(f"Structured pruning on the default example ({inputs.data.source}, "
          f"{len(inputs.data.y_test)} held-out samples), target {inputs.target.name}"
          + (" (--quick: fewer epochs)" if args.quick else ""))  # fmt: skip
    print_table(
        ["model", "params", "MACs", "flash B", "arena B (TFLM)", "acc (TFLM)",
         f"latency ms (estimate, {inputs.target.name})"],
        rows,
    )  # fmt: skip
    print(
        "params/MACs: Keras layers (zeros counted); flash: flatbuffer; arena: TFLM arena on "
        "this 64-bit host (one recorded run, verified); latency: ESTIMATE from the target's "
        "per-op throughput "
        f"({inputs.target.throughput.source if inputs.target.throughput else 'none'})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
