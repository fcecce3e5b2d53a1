"""Fuzz ``edge-prune report`` with DECODE mutants of a build's compressed models.

    .venv/bin/python bench/fuzz_decode.py [--build build/cortex-m4] [--per-class 30] [--seed 0]
                                          [--jobs 2] [--edge-prune-src DIR]

Seed models: the DECODE models of a default build (``make model TARGET=cortex-m4``):
``model_sparse.tflite`` (pruning bitmask), ``model_compressed.tflite`` and
``model_compressed_per_tensor.tflite`` (Huffman), and a LUT model made here with
``ep.lut_compress`` from ``model_clustered_per_tensor.tflite``. Each mutant changes the DECODE
data of one tensor only, by class:

- ``decode_type``, ``dcm_version``, ``type_version``: byte 0, 1 or 4 of the DECODE header;
- ``params``: byte 5 or 6 (LUT index width and stride, Huffman table width and entry size);
- ``ancillary_length``, ``encoded_length``: the flatbuffer length prefix of the ancillary or
  encoded buffer made smaller (the bytes stay in the file);
- ``tables``: one byte of the ancillary data after the header (LUT value tables, Huffman tables,
  pruning values);
- ``stream``: one byte of the encoded data (LUT indices, Huffman codes, pruning mask).

Classes that leave the DECODE data alone and change the model around it (issue 30):

- ``graph_order``: a DECODE operator moved right after the first operator that reads its
  output, or that reader moved to the front;
- ``quantization``: the decoded tensor's scales multiplied by 2 or 0.5, or its quantization
  removed;
- ``rewiring``: an operator reading one DECODE output made to read another one;
- ``activation_scale``: the scale of an activation tensor (not constant) doubled;
- ``raw_bit``: one bit of a raw (not DECODE) constant flipped;
- ``graph_and_raw_bit``: one of the four graph classes above and a raw bit flipped as well
  (which once stopped the uncompressed source from being recognised).

Each mutant is written beside copies of the build's uncompressed models (as in a build
directory) and given to ``edge-prune report FILE --target cortex-m4 --format json`` in its own
process. For every mutant that exits 0 or 1, the mutant runs on TFLM over the held-out digits
of the default build (``load_digits(seed=0)``) and its outputs are compared byte for byte with
the unmutated model's: the table counts the exit-0 mutants whose outputs changed (the aim is 0).

``--edge-prune-src DIR`` runs the CLI from another source tree (e.g. an export of an older
commit) on the same mutants: the before/after table of ``bench/results/fuzz-decode-*.txt``.
The same seed gives the same mutants.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEEDS = {
    "model_sparse.tflite": "pruning",
    "model_compressed.tflite": "huffman",
    "model_compressed_per_tensor.tflite": "huffman",
}
LUT_SOURCE = "model_clustered_per_tensor.tflite"
REFERENCES = ("model_int8.tflite", "model_clustered.tflite", LUT_SOURCE)
CLASSES = (
    "decode_type",
    "dcm_version",
    "type_version",
    "params",
    "ancillary_length",
    "encoded_length",
    "tables",
    "stream",
)
GRAPH_CLASSES = (
    "graph_order",
    "quantization",
    "rewiring",
    "activation_scale",
    "raw_bit",
    "graph_and_raw_bit",
)


@dataclass(frozen=True)
class Mutant:
    index: int
    seed_model: str
    codec: str
    mutation: str
    data: bytes


@dataclass(frozen=True)
class Ending:
    code: int | None  # None: did not end within the time limit
    one_line: bool  # exit 2 with exactly one "edge-prune: error:" line
    outputs_changed: bool | None  # exit 0/1 only: TFLM outputs differ from the seed model's
    error: str = ""  # exit 2: the error line, without the file name


# --------------------------------------------------------------------------------- mutants


def seed_models(build: Path) -> dict[str, tuple[str, bytes]]:
    """``{file name: (codec, bytes)}`` of the DECODE seed models, the LUT one made here."""
    import edge_prune as ep

    seeds = {name: (codec, (build / name).read_bytes()) for name, codec in SEEDS.items()}
    lut = ep.lut_compress(build / LUT_SOURCE)
    seeds["model_lut_per_tensor.tflite"] = ("lut", lut.tflite_bytes)
    return seeds


def _decode_buffers(data: bytes) -> list[tuple[int, int, int, int]]:
    """``(encoded start, encoded length, ancillary start, ancillary length)`` per DECODE output,
    positions of the data in the file (the uint32 length prefix is 4 bytes before)."""
    from edge_prune.measurement.codecs import _tflm

    found = []
    for decoded in _tflm.decoded_tensors(data):
        enc, anc = decoded.encoded, decoded.ancillary
        found.append((_position(data, enc), len(enc), _position(data, anc), len(anc)))
    return found


def _position(data: bytes, content: bytes) -> int:
    """Start of a flatbuffer vector holding ``content`` (its length prefix just before)."""
    start = data.find(content)
    while start >= 0:
        if start >= 4 and struct.unpack_from("<I", data, start - 4)[0] == len(content):
            return start
        start = data.find(content, start + 1)
    raise ValueError("buffer not found in the file")


def mutate(data: bytes, mutation: str, rng: random.Random) -> bytes:
    enc_at, enc_len, anc_at, anc_len = rng.choice(_decode_buffers(data))
    out = bytearray(data)

    def set_byte(position: int, original: int) -> None:
        out[position] = rng.choice([v for v in (0, 1, 2, 3, 127, 255, rng.randrange(256))
                                    if v != original])  # fmt: skip

    if mutation in ("decode_type", "dcm_version", "type_version", "params"):
        offset = {"decode_type": 0, "dcm_version": 1, "type_version": 4}.get(mutation)
        offset = rng.choice((5, 6)) if offset is None else offset
        set_byte(anc_at + offset, data[anc_at + offset])
    elif mutation in ("ancillary_length", "encoded_length"):
        at, length = (anc_at, anc_len) if mutation == "ancillary_length" else (enc_at, enc_len)
        smaller = rng.choice((1, 16, length // 2, length - 1, length - 4))
        struct.pack_into("<I", out, at - 4, max(0, min(smaller, length - 1)))
    elif mutation == "tables":
        position = anc_at + 16 + rng.randrange(max(anc_len - 16, 1))
        out[position] ^= rng.choice((1, 1 << rng.randrange(8), rng.randrange(1, 256)))
    else:  # stream
        position = enc_at + rng.randrange(enc_len)
        out[position] ^= rng.choice((1, 1 << rng.randrange(8), rng.randrange(1, 256)))
    return bytes(out)


# ----------------------------------------------------------------------- graph mutants


def _schema():
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def _decode_ops(model) -> list[tuple[int, object]]:
    codes = {i for i, c in enumerate(model.operatorCodes) if c.customCode == b"TFLM_DECODE"}
    ops = model.subgraphs[0].operators
    return [(i, op) for i, op in enumerate(ops) if op.opcodeIndex in codes]


def _readers(model, tensor: int) -> list[int]:
    ops = model.subgraphs[0].operators
    return [i for i, op in enumerate(ops) if op.inputs is not None and tensor in list(op.inputs)]


def _decoded_outputs(model) -> list[tuple[int, int]]:
    """``(DECODE operator position, output tensor)`` of every DECODE output with a reader."""
    return [
        (i, int(t)) for i, op in _decode_ops(model) for t in op.outputs if _readers(model, int(t))
    ]


def _graph_mutation(model, mutation: str, rng: random.Random) -> None:
    ops = model.subgraphs[0].operators
    tensors = model.subgraphs[0].tensors
    decode_at, out = rng.choice(_decoded_outputs(model))
    reader = rng.choice(_readers(model, out))
    if mutation == "graph_order":
        if rng.random() < 0.5:  # the DECODE operator after its reader
            ops.insert(reader, ops.pop(decode_at))
        else:  # the reader first
            ops.insert(0, ops.pop(reader))
    elif mutation == "quantization":
        q = tensors[out].quantization
        if rng.random() < 0.3 or q is None or q.scale is None:
            tensors[out].quantization = None
        else:
            q.scale = [float(v) * rng.choice((2.0, 0.5)) for v in q.scale]
    elif mutation == "rewiring":
        others = [t for _, t in _decoded_outputs(model) if t != out]
        same = [t for t in others if list(tensors[t].shape) == list(tensors[out].shape)]
        inputs = list(ops[reader].inputs)
        inputs[inputs.index(out)] = rng.choice(same or others or [out])
        ops[reader].inputs = inputs
    elif mutation == "activation_scale":
        constant = {i for i, t in enumerate(tensors) if _has_data(model, t)}
        activations = [
            i for i, t in enumerate(tensors)
            if i not in constant and t.quantization is not None and t.quantization.scale is not None
            and len(t.quantization.scale) == 1 and _readers(model, i)
        ]  # fmt: skip
        q = tensors[rng.choice(activations)].quantization
        q.scale = [float(q.scale[0]) * 2.0]


def _has_data(model, tensor) -> bool:
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _flip_raw_bit(model, rng: random.Random) -> None:
    decode_inputs = {int(t) for _, op in _decode_ops(model) for t in op.inputs}
    tensors = model.subgraphs[0].tensors
    raw = [
        t for i, t in enumerate(tensors)
        if i not in decode_inputs and _has_data(model, t)
    ]  # fmt: skip
    buffer = model.buffers[rng.choice(raw).buffer]
    data = np.array(buffer.data, dtype=np.uint8)
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    buffer.data = data


def graph_mutate(data: bytes, mutation: str, rng: random.Random) -> bytes:
    from edge_prune.measurement.codecs import _tflm

    model = _schema().ModelT.InitFromPackedBuf(data, 0)
    if mutation == "graph_and_raw_bit":
        _graph_mutation(model, rng.choice(GRAPH_CLASSES[:4]), rng)
        _flip_raw_bit(model, rng)
    elif mutation == "raw_bit":
        _flip_raw_bit(model, rng)
    else:
        _graph_mutation(model, mutation, rng)
    return _tflm.pack(model)


def make_mutants(seeds: dict, per_class: int, seed: int, classes=CLASSES) -> list[Mutant]:
    mutants = []
    names = sorted(seeds)
    for mutation in classes:
        for k in range(per_class):
            rng = random.Random(f"{seed}:{mutation}:{k}")
            name = names[k % len(names)]
            codec, data = seeds[name]
            change = graph_mutate if mutation in GRAPH_CLASSES else mutate
            mutants.append(Mutant(len(mutants), name, codec, mutation, change(data, mutation, rng)))
    return mutants


# ---------------------------------------------------------------------------------- running


def cli_command(source: Path | None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.pop("GITHUB_STEP_SUMMARY", None)
    if source is None:
        return [str(Path(sys.executable).with_name("edge-prune"))], env
    env["PYTHONPATH"] = str(source)  # the children run from the work dir, not the repo
    return [sys.executable, "-m", "edge_prune.cli"], env


def run_report(path: Path, command, env, timeout: float) -> tuple[int | None, str]:
    argv = [*command, "report", str(path), "--target", "cortex-m4", "--format", "json"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=path.parent, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return done.returncode, done.stderr


def outputs_of(data: bytes, x: np.ndarray) -> np.ndarray | None:
    """TFLM outputs over ``x`` (None: TFLM cannot run it)."""
    from edge_prune.measurement.evaluate import check_deployable

    result = check_deployable(data, x)
    return result.outputs if result.runs_on_tflm else None


def run_all(mutants, workdir: Path, command, env, jobs: int, timeout: float, progress):
    from edge_prune.data import load_digits

    x = load_digits(seed=0).x_test
    originals: dict[str, np.ndarray | None] = {}

    def one(m: Mutant, original: np.ndarray) -> Ending:
        path = workdir / f"mutant-{m.index:05d}.tflite"
        path.write_bytes(m.data)
        try:
            code, stderr = run_report(path, command, env, timeout)
            lines = stderr.splitlines()
            one_line = code == 2 and len(lines) == 1 and lines[0].startswith("edge-prune: error:")
            changed = None
            if code in (0, 1):
                got = outputs_of(m.data, x)
                changed = got is None or not np.array_equal(got, original)
            error = lines[-1].replace(str(path), "FILE")[:160] if code == 2 and lines else ""
            return Ending(code, one_line, changed, error)
        finally:
            path.unlink()

    endings = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = []
        for m in mutants:
            if m.seed_model not in originals:
                originals[m.seed_model] = outputs_of(seeds_cache[m.seed_model], x)
            futures.append(pool.submit(one, m, originals[m.seed_model]))
        for n, future in enumerate(futures, 1):
            endings.append(future.result())
            if n % 40 == 0:
                progress(f"  {n}/{len(mutants)} mutants")
    return endings


seeds_cache: dict[str, bytes] = {}


# --------------------------------------------------------------------------------- printing


def table_lines(mutants, endings) -> list[str]:
    header = (f"  {'class':<18}{'codec':<9}{'mutants':>8}{'exit 0':>8}{'exit 1':>8}{'exit 2':>8}"
              f"{'other':>7}{'0+changed':>11}{'1+changed':>11}")  # fmt: skip
    lines = [header]
    groups: dict[tuple[str, str], list[Ending]] = {}
    for m, e in zip(mutants, endings, strict=True):
        groups.setdefault((m.mutation, m.codec), []).append(e)
        groups.setdefault((m.mutation, "all"), []).append(e)
        groups.setdefault(("all", "all"), []).append(e)
    order = [
        (c, k)
        for c in (*CLASSES, *GRAPH_CLASSES, "all")
        for k in ("lut", "huffman", "pruning", "all")
    ]
    for mutation, codec in order:
        group = groups.get((mutation, codec))
        if not group or (mutation == "all" and codec != "all"):
            continue
        codes = Counter(e.code for e in group)
        other = len(group) - codes[0] - codes[1] - codes[2]
        changed0 = sum(1 for e in group if e.code == 0 and e.outputs_changed)
        changed1 = sum(1 for e in group if e.code == 1 and e.outputs_changed)
        lines.append(
            f"  {mutation:<18}{codec:<9}{len(group):>8}{codes[0]:>8}{codes[1]:>8}{codes[2]:>8}"
            f"{other:>7}{changed0:>11}{changed1:>11}"
        )
    bad_two = sum(1 for e in endings if e.code == 2 and not e.one_line)
    lines.append(f"  exit 2 without exactly one 'edge-prune: error:' line: {bad_two}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=REPO / "build" / "cortex-m4")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--edge-prune-src", type=Path, help="run the CLI from this source tree")
    parser.add_argument("--json", type=Path, help="also write the endings as JSON here")
    parser.add_argument(
        "--classes",
        default="all",
        help="'data' (the DECODE data classes), 'graph' (the classes of issue 30), or 'all'",
    )
    args = parser.parse_args(argv)

    seeds = seed_models(args.build)
    seeds_cache.update({name: data for name, (_, data) in seeds.items()})
    classes = {"data": CLASSES, "graph": GRAPH_CLASSES}.get(args.classes, CLASSES + GRAPH_CLASSES)
    mutants = make_mutants(seeds, args.per_class, args.seed, classes)
    workdir = Path(tempfile.mkdtemp(prefix="edge-prune-fuzz-decode-"))
    for name in REFERENCES:  # the uncompressed models beside the mutants, as in a build dir
        shutil.copy(args.build / name, workdir / name)
    command, env = cli_command(args.edge_prune_src)
    start = time.perf_counter()
    try:
        endings = run_all(
            mutants, workdir, command, env, args.jobs, args.timeout,
            lambda m: print(m, file=sys.stderr, flush=True),
        )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.perf_counter() - start
    source = args.edge_prune_src or "this checkout"
    print(f"edge-prune report on DECODE mutants: seed {args.seed}, {len(mutants)} mutants of "
          f"{', '.join(sorted(seeds))}; CLI from {source}; wall {wall:.0f} s")  # fmt: skip
    print("'0+changed': exit 0 and TFLM outputs on the 359 held-out digits differ from the "
          "unmutated model's (or TFLM cannot run it); the aim is 0")  # fmt: skip
    print("\n".join(table_lines(mutants, endings)))
    if args.json:
        args.json.write_text(json.dumps([
            {"mutation": m.mutation, "codec": m.codec, "seed_model": m.seed_model,
             "code": e.code, "one_line": e.one_line, "outputs_changed": e.outputs_changed,
             "error": e.error}
            for m, e in zip(mutants, endings, strict=True)
        ], indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
