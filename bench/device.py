"""Models on a real TFLM build in QEMU (`edge-prune device`) against what the report says.

    EDGE_PRUNE_TFLM=DIR .venv/bin/python bench/device.py [--cores cortex-m4,cortex-m7]
        [--models default,lenet,cnn,tflm,families] [--samples 8] [--out FILE]

Per model and per target core: the TFLM runtime flash measured from the link map against the
runtime figure the footprint report's verdict uses; the smallest arena that works on the device
against the report's arena; arena_used_bytes(); instructions per inference (emulated by QEMU,
not cycles); outputs equal to the host TFLM interpreter's, byte for byte. Kernels: each target's
``tflm_kernels`` (cortex-m4: CMSIS-NN), else reference; BUILD_TYPE=default.

Models: the default build (`edge-prune model --target cortex-m4`, built into a temporary
directory unless build/cortex-m4 exists), the LeNet-300-100-shaped MLP (tests/data), the tiny
int8 CNN of the tests, three of TFLM's example models from the tree (hello_world int8,
micro_speech, person_detect), and with ``--families`` the families of bench/families.py, each
through `edge-prune model` (slow: minutes each).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_prune.tables import table_lines  # noqa: E402

EDGE_PRUNE = [sys.executable, "-m", "edge_prune.cli"]
TFLM_EXAMPLES = (
    "tensorflow/lite/micro/examples/hello_world/models/hello_world_int8.tflite",
    "tensorflow/lite/micro/examples/micro_speech/models/micro_speech_quantized.tflite",
    "tensorflow/lite/micro/models/person_detect.tflite",
)


def default_build(workdir: Path) -> Path:
    existing = REPO / "build" / "cortex-m4"
    if (existing / "model.tflite").is_file():
        return existing
    out = workdir / "build"
    subprocess.run([*EDGE_PRUNE, "model", "--target", "cortex-m4", "--out", str(out)],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    return out / "cortex-m4"


def family_builds(workdir: Path, epochs: int) -> list[tuple[str, Path]]:
    """bench/families.py's models, each through `edge-prune model --target cortex-m4`."""
    import numpy as np

    sys.path.insert(0, str(REPO / "bench"))
    import families as fam

    from edge_prune.training._tf import keras

    builds = []
    for name, (make, kind, train) in fam.families().items():
        keras.utils.set_random_seed(0)
        model_path, data_path = workdir / f"{name}.keras", workdir / f"{name}.npz"
        make().save(model_path)
        np.savez(data_path, **fam.dataset(kind, train))
        config = workdir / f"{name}.toml"
        config.write_text(f"[train]\nepochs = {epochs}\n")
        out = workdir / f"build-{name}"
        subprocess.run([*EDGE_PRUNE, "model", "--target", "cortex-m4", "--model", str(model_path),
                        "--data", str(data_path), "--config", str(config), "--out", str(out)],
                       cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        if (out / "cortex-m4" / "model.tflite").is_file():
            builds.append((f"family {name}", out / "cortex-m4"))
    return builds


def report_figures(model: Path, target: str) -> dict:
    tflite = model / "model.tflite" if model.is_dir() else model
    done = subprocess.run([*EDGE_PRUNE, "report", str(tflite), "--target", target, "--format",
                           "json"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    try:
        t = json.loads(done.stdout)["targets"][0]
        return {"runtime": t["flash"]["runtime_bytes"], "kind": t["flash"]["runtime_kind"],
                "arena": t["ram"]["arena_bytes"]}  # fmt: skip
    except (ValueError, KeyError, IndexError):
        return {"runtime": None, "kind": "report failed", "arena": None}


def device(model: Path, target: str, samples: int) -> dict:
    started = time.monotonic()
    done = subprocess.run([*EDGE_PRUNE, "device", str(model), "--target", target, "--samples",
                           str(samples), "--format", "json"], capture_output=True, text=True,
                          cwd=REPO)  # fmt: skip
    try:
        result = json.loads(done.stdout)
    except ValueError:
        line = (done.stderr.strip().splitlines() or ["no output"])[-1]
        result = {"error": line[:120]}
    result["exit_code"] = done.returncode
    result["wall_s"] = time.monotonic() - started
    return result


def ratio(measured, reported) -> str:
    if not measured or not reported:
        return "-"
    return f"{reported / measured:.2f}x"


def number(value) -> str:
    return "-" if value is None else f"{value:,}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", default="cortex-m4", help="target names, comma-separated")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument(
        "--models",
        default="default,lenet,cnn,tflm",
        help="comma-separated: default, lenet, cnn, tflm (TFLM's examples), families",
    )
    parser.add_argument("--families", action="store_true", help="also bench/families.py models")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of --families")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    tree = os.environ.get("EDGE_PRUNE_TFLM")
    if not tree:
        print("set EDGE_PRUNE_TFLM to a TFLM source tree (README 'On the device')")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        chosen = set(args.models.split(","))
        models = []
        if "default" in chosen:
            models.append(("default build (cortex-m4)", default_build(workdir)))
        if "lenet" in chosen:
            models.append(
                ("LeNet MLP 64-300-100-10", REPO / "tests/data/mlp_int8_lenet_trained.tflite")
            )
        if "cnn" in chosen:
            models.append(("tiny CNN (tests)", REPO / "tests/data/cnn_int8.tflite"))
        if "tflm" in chosen:
            models += [(f"TFLM {Path(p).stem}", Path(tree) / p) for p in TFLM_EXAMPLES
                       if (Path(tree) / p).is_file()]  # fmt: skip
        if "families" in chosen or args.families:
            models += family_builds(workdir, args.epochs)
        rows = []
        for target in args.cores.split(","):
            for label, path in models:
                rows.append(row(label, target, path, args.samples))
                print(f"  {label} on {target}: exit {rows[-1][-1]}", file=sys.stderr, flush=True)
    header = [
        *("model", "target", "kernels", "runtime flash measured", "report runtime (kind)"),
        *("report/measured", "arena min (device)", "report arena", "report/device"),
        *("arena_used_bytes", "instructions/inference", "outputs equal host", "exit"),
    ]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# EDGE_PRUNE_TFLM={tree} .venv/bin/python bench/device.py --cores {args.cores}"
        + f" --models {args.models}"
        + (" --families" if args.families else ""),
        f"# {stamp}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; BUILD_TYPE=default, "
        f"{args.samples} samples; instructions are QEMU -icount counts, not cycles",
    ]
    text = "\n".join([*lines, *table_lines(header, rows, rule=True)]) + "\n"
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def row(label: str, target: str, path: Path, samples: int) -> list[str]:
    result = device(path, target, samples)
    report = report_figures(path, target)
    if "error" in result:
        return [label, target, "-", "-", "-", "-", "-", "-", "-", "-", "-", result["error"],
                str(result["exit_code"])]  # fmt: skip
    equal = result["outputs_equal_host"]
    if equal is None:
        verdict = "size only"
    elif equal:
        verdict = "yes"
    elif result.get("outputs_within_tolerance"):
        verdict = f"float32 within 1e-5 (max diff {result['max_abs_score_diff']:.2g})"
    else:
        verdict = "NO" + (f": {result['problem'][:90]}" if result.get("problem") else "")
    return [
        label,
        target,
        result["kernels"],
        number(result["runtime_flash_bytes"]),
        f"{number(report['runtime'])} ({report['kind']})",
        ratio(result["runtime_flash_bytes"], report["runtime"]),
        number(result["arena_min_bytes"]),
        number(report["arena"]),
        ratio(result["arena_min_bytes"], report["arena"]),
        number(result["arena_used_bytes"]),
        number(result["instructions_per_inference"]),
        verdict,
        str(result["exit_code"]),
    ]


if __name__ == "__main__":
    sys.exit(main())
