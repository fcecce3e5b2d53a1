"""``edge-prune search``: wall time, points built, the chosen point per target; pruning schedules.

    .venv/bin/python bench/search.py timing    [--trials 12] [--target cortex-m4]
    .venv/bin/python bench/search.py targets   [--trials 12] [--targets nrf52810,samd21]
    .venv/bin/python bench/search.py kws       [--trials 6] [--target samd21] [--filters 256]
    .venv/bin/python bench/search.py schedules [--sparsities 0.5,0.8,0.9]
    .venv/bin/python bench/search.py firstfit  [--trials 12] [--targets tight,cortex-m4]
                                               [--old /tmp/old-search] [--worker-counts 1,2]

- ``timing``: the default-model search on a target with ``--jobs 1`` then ``--jobs 2``, each in
  a fresh process and a fresh output directory (nothing cached): wall time, points built, the
  chosen point, and whether both runs chose the same point with the same figures.
- ``targets``: the chosen point of the default-model search for each target (``--jobs 2``).
- ``kws``: a keyword-spotting-style DS-CNN with BatchNorm (Zhang et al., "Hello Edge: Keyword
  Spotting on Microcontrollers", 2017; ``--filters`` channels, default 256) on the bundled
  digits: ``edge-prune model`` with the default config against ``edge-prune search`` (channel
  ratios 0.5 and 0.75 first, then their neighbours) on a small target.
- ``firstfit``: trials and wall time to the first fitting point, the old search (``--old``: a
  checkout of it, run with its own PYTHONPATH) against this one with 1 and 2 local workers, on
  each target; ``tight`` is ``bench/targets/tight-m0plus.toml`` (about 8,000 B of flash and
  6,144 B of arena left for the model).
- ``schedules``: one-shot polynomial decay, iterative prune → fine-tune and lottery-ticket
  rewinding at equal final sparsities, on the default CNN and on a 64-300-100-10 MLP, int8 on
  TFLM (no channel removal, no clustering): a table and ``bench/results/schedules.png``.

Each run is the ``edge-prune`` command line in a child process (``search`` registered if this
checkout's cli does not list it yet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_prune.tables import print_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLI = (
    "import sys, edge_prune.cli as c; "
    "c.COMMANDS = tuple(dict.fromkeys((*c.COMMANDS, 'search'))); sys.exit(c.main(sys.argv[1:]))"
)


def edge_prune(*args: str) -> tuple[int, float, str]:
    """Run ``edge-prune ARGS`` in a child process: exit code, wall seconds, stdout."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, check=False, cwd=REPO
    )
    if done.returncode not in (0, 1):
        sys.exit(f"edge-prune {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.returncode, time.perf_counter() - start, done.stdout


def search(target: str, out: Path, *extra: str, keep: str = "") -> tuple[int, float, dict]:
    """One search; with ``keep``, its pareto.md and .png are copied to bench/results/."""
    code, seconds, _ = edge_prune("search", "--target", target, "--out", str(out), *extra)
    written = next(out.glob("search-*/"))
    if keep:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for suffix in ("md", "png"):
            source = written / f"pareto.{suffix}"
            if source.exists():
                (RESULTS / f"search-{keep}.{suffix}").write_bytes(source.read_bytes())
    return code, seconds, json.loads((written / "pareto.json").read_text())


def chosen_row(label: str, report: dict, seconds: float) -> list[str]:
    best = report["best"]
    built = len(report["points"])
    if best is None:
        return [label, f"{seconds:.0f}", str(built), "none fits", "-", "-", "-", "-"]
    spec = f"r {best['structured_ratio']:g} s {best['final_sparsity']:g} c {best['clusters']}"
    return [
        label,
        f"{seconds:.0f}",
        str(built),
        f"{spec} {best['schedule']} ({best.get('artifact') or best.get('deployable')})",
        f"{best['flatbuffer_bytes']:,}",
        f"{best['flash_needed_bytes']:,}/{report['budget']['flash_bytes']:,}",
        f"{best['ram_needed_bytes']:,}/{report['budget']['ram_bytes']:,}",
        f"{_score(report, best['tflm_score'])} (base {_score(report, report['baseline_score'])})",
    ]


def _score(report: dict, value: float) -> str:
    return f"{value:.2%}" if report["metric"]["key"] == "accuracy" else f"{value:.4g}"


HEADER = ["run", "wall s", "points", "chosen", "flatbuffer B", "flash need/part B"]
HEADER += ["RAM need/part B", "TFLM score"]


def timing(args) -> None:
    rows, reports = [], []
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            _, seconds, report = search(
                args.target, Path(tmp), "--trials", str(args.trials), "--jobs", str(jobs)
            )
        reports.append(report)
        rows.append(chosen_row(f"{args.target} --jobs {jobs}", report, seconds))
    print_table(HEADER, rows)
    same = [_strip(r) for r in reports]
    print(f"jobs 1 and jobs 2 give the same pareto.json (timings aside): {same[0] == same[1]}")


def _strip(report: dict) -> dict:
    points = [{**p, "seconds": None} for p in report["points"]]
    best = report["best"] and {**report["best"], "seconds": None}
    return {**report, "timings": None, "points": points, "best": best}


def targets(args) -> None:
    rows = []
    for target in args.targets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            _, seconds, report = search(
                target,
                Path(tmp),
                "--trials",
                str(args.trials),
                "--jobs",
                str(args.jobs),
                keep=Path(target).stem,
            )
        rows.append(chosen_row(Path(target).stem, report, seconds))
        print(report["conclusion"])
    print_table(HEADER, rows)


def firstfit(args) -> None:
    """Trials and wall time to the first fitting point: the search of another checkout
    (``--old``, run from there with its own PYTHONPATH) against this one, 1 and 2 workers."""
    rows = []
    for target in args.targets.split(","):
        path = str(TIGHT) if target == "tight" else target
        runs = [("old", 1)] if args.old else []
        runs += [("new", int(j)) for j in args.worker_counts.split(",")]
        for which, jobs in runs:
            with tempfile.TemporaryDirectory() as tmp:
                found, wall, report = _timed_search(which, path, Path(tmp), args, jobs)
            first = "none" if found is None else f"trial {found[0]} at {found[1]:.0f} s"
            best = report["best"]
            chosen = (
                "none fits"
                if best is None
                else (
                    f"r {best['structured_ratio']:g} s {best['final_sparsity']:g} "
                    f"c {best['clusters']} {best['flash_needed_bytes']:,} B"
                )
            )
            rows.append([Path(path).stem, which, str(jobs), str(len(report["points"])),
                         f"{wall:.0f}", first, chosen])  # fmt: skip
            print_table(["target", "search", "jobs", "points", "wall s", "first fit", "chosen"],
                        rows)  # fmt: skip
            sys.stdout.flush()


TIGHT = REPO / "bench" / "targets" / "tight-m0plus.toml"


def _timed_search(which: str, target: str, out: Path, args, jobs: int):
    """Run one search, reading its progress lines as they come: ((trial, seconds) of the first
    fitting point or None, wall seconds, pareto.json)."""
    import os
    import re

    root = Path(args.old) if which == "old" else REPO
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-c", CLI, "search", "--target", str(Path(target).resolve())
               if target.endswith(".toml") else target, "--out", str(out),
               "--trials", str(args.trials), "--jobs", str(jobs)]  # fmt: skip
    start = time.perf_counter()
    found = None
    with subprocess.Popen(
        command, cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as child:
        for line in child.stderr:
            match = re.search(r"\[(\d+)/\d+\] (?:built|cached).*, fits; ", line)
            if match and found is None:
                found = (int(match.group(1)), time.perf_counter() - start)
    wall = time.perf_counter() - start
    if child.returncode not in (0, 1):
        sys.exit(f"{which} search on {target} failed with exit code {child.returncode}")
    report = json.loads(next(out.glob("search-*/pareto.json")).read_text())
    return found, wall, report


# ------------------------------------------------------------------------------- models


def kws_data(path: Path) -> None:
    """The bundled 8x8 digits (a stand-in for keyword features: nothing is downloaded)."""
    from edge_prune.data import load_digits

    d = load_digits()
    np.savez(path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)


def ds_cnn(path: Path, filters: int) -> None:
    """A depthwise-separable CNN in the keyword-spotting style (Zhang et al., "Hello Edge:
    Keyword Spotting on Microcontrollers", 2017): a 3x3 convolution and three depthwise-
    separable blocks of ``filters`` channels, each convolution followed by BatchNorm and ReLU."""
    from edge_prune.training._tf import keras

    layers = keras.layers

    def bn_relu(x):
        return layers.ReLU()(layers.BatchNormalization()(x))

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = bn_relu(layers.Conv2D(filters, 3, padding="same", use_bias=False)(inputs))
    for i in range(3):
        x = bn_relu(layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x))
        x = bn_relu(layers.Conv2D(filters, 1, use_bias=False, name=f"pw{i}")(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    keras.Model(inputs, outputs, name="ds_cnn").save(path)


def mlp(path: Path) -> None:
    """LeCun et al.'s 300-100 MLP on the 64 pixels of the 8x8 digits: 64-300-100-10."""
    from edge_prune.training._tf import keras

    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Flatten()(inputs)
    x = layers.Dense(300, activation="relu", name="fc1")(x)
    x = layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    keras.Model(inputs, outputs, name="mlp_300_100").save(path)


def kws(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kws_data(tmp / "kws.npz")  # digits
        ds_cnn(tmp / "ds_cnn.keras", args.filters)
        inputs = ["--model", str(tmp / "ds_cnn.keras"), "--data", str(tmp / "kws.npz")]
        code, seconds, _ = edge_prune(
            "model", "--target", args.target, *inputs, "--out", str(tmp / "build")
        )
        name = Path(args.target).stem
        report = json.loads((tmp / "build" / name / "report.json").read_text())
        footprint = report["footprint"]["targets"][0]
        print(
            f"edge-prune model (default config), DS-CNN on {name}: exit {code}, "
            f"{footprint['status']}: {report['deployable']['artifact']}, flash needed "
            f"{footprint['flash']['needed_bytes']:,} B of {footprint['flash']['available_bytes']:,}"
            f", RAM needed {footprint['ram']['needed_bytes']:,} B of "
            f"{footprint['ram']['available_bytes']:,}; {seconds:.0f} s"
        )
        grid = ["--ratios", "0.5,0.75", "--sparsities", "0.5", "--clusters", "0,8"]
        code, seconds, result = search(
            args.target,
            tmp / "search",
            *inputs,
            *grid,
            "--trials",
            str(args.trials),
            "--jobs",
            "2",
            keep=f"ds-cnn-{name}",
        )
        print(f"edge-prune search on {name}: exit {code}; {result['conclusion']}")
        print_table(HEADER, [chosen_row(f"DS-CNN {name}", result, seconds)])


def schedules(args) -> None:
    rows, series = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlp(tmp / "mlp.keras")
        for model_name, extra in (("default CNN", []), ("MLP 64-300-100-10", ["--model"])):
            if extra:
                extra = [*extra, str(tmp / "mlp.keras")]
            n = len(args.sparsities.split(","))
            _, seconds, report = search(
                "cortex-m4",
                tmp / model_name.split()[0],
                *extra,
                "--ratios",
                "0",
                "--sparsities",
                args.sparsities,
                "--clusters",
                "0",
                "--schedules",
                "polynomial,iterative,rewind",
                "--trials",
                str(3 * n),
                "--jobs",
                str(args.jobs),
            )
            for p in report["points"]:
                key = (model_name, p["schedule"])
                series.setdefault(key, []).append((p["final_sparsity"], p["int8_tflm_score"]))
                rows.append(
                    [
                        model_name,
                        p["schedule"],
                        f"{p['final_sparsity']:g}",
                        f"{p['measured_sparsity']:.1%}",
                        _score(report, p["int8_tflm_score"]),
                        p.get("artifact") or p.get("deployable"),
                        _score(report, report["baseline_score"]),
                    ]
                )
            print(f"{model_name}: {len(report['points'])} points in {seconds:.0f} s")
    print_table(
        ["model", "schedule", "final sparsity", "measured", "int8 TFLM", "deployable", "dense"],
        rows,
    )
    print(f"plot: {plot_schedules(series)}")


def plot_schedules(series: dict) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    models = list(dict.fromkeys(m for m, _ in series))
    for index, model in enumerate(models, 1):
        axis = figure.add_subplot(1, len(models), index)
        for (m, schedule), values in series.items():
            if m == model:
                values = sorted(values)
                axis.plot(
                    [s for s, _ in values], [a * 100 for _, a in values], "o-", label=schedule
                )
        axis.set_title(model)
        axis.set_xlabel("final sparsity")
        axis.set_ylabel("int8 top-1 accuracy on TFLM (%)")
        axis.legend(fontsize=8)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "schedules.png"
    figure.savefig(path, format="png")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name, run in (("timing", timing), ("targets", targets), ("kws", kws)):
        p = sub.add_parser(name)
        p.add_argument("--trials", type=int, default=12)
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--target", default="samd21" if name == "kws" else "cortex-m4")
        p.add_argument("--targets", default="nrf52810,samd21")
        p.add_argument("--filters", type=int, default=256, help="DS-CNN channels (kws)")
        p.set_defaults(run=run)
    p = sub.add_parser("firstfit")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--targets", default="tight,cortex-m4")
    p.add_argument("--old", help="checkout of the old search (git worktree add --detach DIR main)")
    p.add_argument("--worker-counts", default="1,2")
    p.set_defaults(run=firstfit)
    p = sub.add_parser("schedules")
    p.add_argument("--sparsities", default="0.5,0.8,0.9")
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(run=schedules)
    args = parser.parse_args()
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
