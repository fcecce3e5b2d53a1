"""Fuzz ``edge-prune report`` with mutated ``.tflite`` files and count how each case ends.

    .venv/bin/python bench/fuzz_report.py [--cases 2000] [--seed 0] [--jobs 2]
                                          [--case-timeout 60] [--tflm-timeout 20]
                                          [--keep DIR]

Each case is one of the committed test models (``tests/data/*.tflite``) mutated once: byte or
bit flips, truncation, inflated flatbuffer offsets, swapped tables, swapped or zeroed chunks,
inserted or deleted bytes, splices of two models. The mutated file is given to the installed
``edge-prune report FILE --target cortex-m4 --format json`` in its own process (own session,
killed with its TFLM child after ``--case-timeout`` seconds). A case ends as:

- report: exit 0 or 1, and stdout is a JSON report of this file whose verdict matches the code;
- clean error: exit 2, and stderr is exactly one line ``edge-prune: error: FILE: ...``;
- crash: anything else (a signal, a Python traceback, another exit code, a malformed answer);
- hang: the case did not end within ``--case-timeout``.

The same seed gives the same cases (each case draws from its own ``Random(f"{seed}:{index}")``).

``--surfaces N`` runs N hostile cases of each of three other surfaces instead (issue 30), each
in its own process with the same judging; a password shown on stderr/stdout is a crash:

- ``device_data``: ``edge-prune device cnn_int8.tflite --target cortex-m4 --data FILE`` with
  broken .npz files (bytes flipped, cut, a .npy, 0-d, complex, strings, pickled objects, NaN,
  wrong sample size, "PK" garbage) or a FIFO, /dev/zero, a directory, a symlink loop (none is
  valid: the device build is never reached; the toolchain and ``$EDGE_PRUNE_TFLM`` are needed);
- ``target_file``: ``edge-prune report MODEL --target FILE`` with cortex-m4.toml changed (a key
  set to 0, -1, a float, a string, a huge integer, a table; a key removed; op names made up in
  ``[throughput.*]``/``[runtime.kernel_flash_bytes]``; a zero ``[runtime]``; bytes flipped or
  cut; not UTF-8) or a FIFO, /dev/zero, a directory, a symlink loop;
- ``storage_url``: ``edge-prune search --storage URL`` with URLs that name no usable study
  (empty, ``sqlite:///`` without a file, a FIFO or a directory as SQLite file, unreachable
  servers with passwords in the user info or the query, unknown schemes, garbage).

``--edge-prune-src DIR`` runs the CLI from another source tree (e.g. an export of an older
commit): the before/after tables of ``bench/results/``.
Cases that crash or hang are written to ``--keep`` (default: a temporary directory that is
printed) so they can be replayed. ``tests/test_fuzz.py`` runs a few hundred of these cases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED_MODELS = tuple(sorted((REPO / "tests" / "data").glob("*.tflite")))
EDGE_PRUNE = str(Path(sys.executable).with_name("edge-prune"))
CLI = [EDGE_PRUNE]  # --edge-prune-src: [python, -m, edge_prune.cli] with PYTHONPATH set
SOURCE: list[str] = []  # the PYTHONPATH of --edge-prune-src
ERROR_PREFIX = "edge-prune: error: "
KINDS = ("report", "clean error", "crash", "hang")


# ---------------------------------------------------------------------------------------------
# Mutations. Each takes (data, rng, corpus) and returns new bytes; corpus is every seed model.


def _words(data: bytes) -> list[tuple[int, int]]:
    """(position, value) of every 4-byte-aligned little-endian uint32."""
    usable = len(data) - len(data) % 4
    return [(p, struct.unpack_from("<I", data, p)[0]) for p in range(0, usable, 4)]


def _offset_words(data: bytes) -> list[tuple[int, int]]:
    """Aligned words that look like flatbuffer offsets or vector lengths (small, in the file).

    uoffset_t fields are relative to their own position, so a word at p with value v points at
    p + v; vtable entries are 16-bit and are covered by the byte mutations.
    """
    found = [(p, v) for p, v in _words(data) if 0 < v < len(data) and p + v < len(data)]
    return found or [(0, struct.unpack_from("<I", data, 0)[0])]


def flip_bytes(data: bytes, rng: random.Random, corpus) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def flip_bits(data: bytes, rng: random.Random, corpus) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random, corpus) -> bytes:
    cut = rng.choice(
        (rng.randrange(len(data)), len(data) - rng.randrange(1, 64), rng.randrange(64))
    )
    return data[: max(cut, 0)]


def inflate_offset(data: bytes, rng: random.Random, corpus) -> bytes:
    """Point one offset (or vector length) past the end, far away, or a little off."""
    position, value = rng.choice(_offset_words(data))
    new = rng.choice(
        (
            value + len(data),
            value + rng.randrange(1, 16),
            max(value - rng.randrange(1, 16), 0),
            0x7FFFFFFF,
            0xFFFFFFFF,
            0x80000000,
            value * rng.choice((2, 16, 256)),
            0,
        )
    )
    out = bytearray(data)
    struct.pack_into("<I", out, position, new & 0xFFFFFFFF)
    return bytes(out)


def swap_tables(data: bytes, rng: random.Random, corpus) -> bytes:
    """Make two offsets point at each other's target (a table or vector where another is due)."""
    words = _offset_words(data)
    (p1, v1), (p2, v2) = rng.choice(words), rng.choice(words)
    v1_new, v2_new = (p2 + v2) - p1, (p1 + v1) - p2
    out = bytearray(data)
    if v1_new > 0 and v2_new > 0:
        struct.pack_into("<I", out, p1, v1_new)
        struct.pack_into("<I", out, p2, v2_new)
    else:  # the targets are not both ahead of both fields: swap the raw values instead
        struct.pack_into("<I", out, p1, v2)
        struct.pack_into("<I", out, p2, v1)
    return bytes(out)


def swap_chunks(data: bytes, rng: random.Random, corpus) -> bytes:
    size = rng.choice((4, 8, 16, 32, 64))
    if len(data) < 2 * size:
        return flip_bytes(data, rng, corpus)
    a, b = sorted(rng.sample(range(0, len(data) - size + 1, 4), 2))
    if b - a < size:
        b = min(a + size, len(data) - size)
    out = bytearray(data)
    out[a : a + size], out[b : b + size] = data[b : b + size], data[a : a + size]
    return bytes(out)


def zero_or_fill(data: bytes, rng: random.Random, corpus) -> bytes:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((4, 16, 64, 256)))
    fill = rng.choice((0x00, 0xFF, 0x7F, 0x80))
    return data[:start] + bytes([fill]) * (end - start) + data[end:]


def insert_or_delete(data: bytes, rng: random.Random, corpus) -> bytes:
    at = rng.randrange(len(data))
    n = rng.choice((1, 3, 4, 16, 100))
    if rng.random() < 0.5:
        return data[:at] + bytes(rng.randrange(256) for _ in range(n)) + data[at:]
    return data[:at] + data[at + n :]


def splice(data: bytes, rng: random.Random, corpus) -> bytes:
    other = rng.choice(corpus)
    cut = rng.randrange(8, len(data))
    return data[:cut] + other[min(cut, len(other) - 1) :]


def garbage_after_header(data: bytes, rng: random.Random, corpus) -> bytes:
    """A valid root offset and identifier followed by random bytes of a random length."""
    n = rng.choice((0, 4, 16, 256, 4096))
    return data[:8] + bytes(rng.randrange(256) for _ in range(n))


# (mutation, weight): structure-aware mutations get more weight than uniform noise, which
# mostly lands in weight buffers and only changes numbers.
MUTATIONS: tuple[tuple[Callable, int], ...] = (
    (flip_bytes, 4),
    (flip_bits, 2),
    (truncate, 2),
    (inflate_offset, 4),
    (swap_tables, 3),
    (swap_chunks, 2),
    (zero_or_fill, 2),
    (insert_or_delete, 2),
    (splice, 1),
    (garbage_after_header, 1),
)


@dataclass(frozen=True)
class Case:
    index: int
    seed_model: str
    mutation: str
    data: bytes


def load_corpus() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in SEED_MODELS]


def make_case(seed: int, index: int, corpus: list[tuple[str, bytes]]) -> Case:
    rng = random.Random(f"{seed}:{index}")
    name, data = rng.choice(corpus)
    functions, weights = zip(*MUTATIONS, strict=True)
    mutation = rng.choices(functions, weights)[0]
    mutated = mutation(data, rng, [d for _, d in corpus])
    return Case(index, name, mutation.__name__, mutated)


def make_cases(seed: int, count: int) -> list[Case]:
    corpus = load_corpus()
    return [make_case(seed, i, corpus) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Judging one ending.


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of KINDS
    detail: str  # for reports: fits/does not fit; for errors: what kind; for crashes: why
    seconds: float


def judge(code: int | None, stdout: str, stderr: str, size: int, seconds: float) -> Outcome:
    """Classify one run of ``edge-prune report FILE --format json`` on a ``size``-byte file."""
    if code is None:
        return Outcome("hang", "no end within the time limit", seconds)
    if "Traceback (most recent call last)" in stderr:
        return Outcome("crash", "Python traceback: " + _last_line(stderr), seconds)
    if code in (0, 1):
        problem = _report_problem(code, stdout, size)
        if problem:
            return Outcome("crash", problem, seconds)
        return Outcome("report", "fits" if code == 0 else "does not fit / does not run", seconds)
    if code == 2:
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
            return Outcome("crash", f"exit 2 without a one-line error: {stderr[:200]!r}", seconds)
        return Outcome("clean error", error_kind(lines[0]), seconds)
    if code < 0:
        return Outcome("crash", f"CLI killed by {_signal_name(-code)}", seconds)
    return Outcome("crash", f"exit code {code}: {_last_line(stderr)}", seconds)


def error_kind(line: str) -> str:
    """A short name for what kind of clean error a one-line message is."""
    if "not a TFLite flatbuffer" in line:
        return "not a flatbuffer (identifier)"
    if "TFLM's reader" in line:
        return "corrupted (TFLM's flatbuffer reader, child)"
    if "corrupted TFLite flatbuffer" in line or "no subgraph" in line:
        return "corrupted (edge-prune reader, no TFLM)"
    if "TFLM interpreter was killed by" in line:
        return "TFLM child " + line.split("was killed by ", 1)[1].split()[0] + " (contained)"
    if "TFLM interpreter exited with code" in line:
        return "TFLM child exited non-zero (contained)"
    if "did not finish within" in line:
        return "TFLM child timed out (killed)"
    if "TFLM could not allocate or run" in line:
        return "TFLM refused to allocate/run"
    return "other: " + line[len(ERROR_PREFIX) :][:80]


def _report_problem(code: int, stdout: str, size: int) -> str | None:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return f"exit {code} without a JSON report: {stdout[:120]!r}"
    if report.get("footprint", {}).get("flatbuffer_bytes") != size:
        return f"report gives flatbuffer_bytes {report.get('footprint')!r:.80}, file has {size}"
    if report.get("fits_all_targets") is not (code == 0):
        return f"exit {code} but fits_all_targets is {report.get('fits_all_targets')}"
    return None


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no output)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ---------------------------------------------------------------------------------------------
# Running cases.


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GITHUB_STEP_SUMMARY", None)  # a fuzz run must not write the CI job summary
    if SOURCE:
        env["PYTHONPATH"] = SOURCE[0]
    return env


def run_case(case: Case, workdir: Path, case_timeout: float, tflm_timeout: float) -> Outcome:
    """Run the installed CLI on the mutated file in its own session; kill the group on time."""
    path = workdir / f"case-{case.index:06d}.tflite"
    path.write_bytes(case.data)
    command = [*CLI, "report", str(path), "--target", "cortex-m4", "--format", "json",
               "--timeout", f"{tflm_timeout:g}"]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=child_env(),
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=case_timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and its TFLM child
        stdout, stderr = process.communicate()
        code = None
    outcome = judge(code, stdout, stderr, len(case.data), time.perf_counter() - start)
    if outcome.kind == "report" or outcome.kind == "clean error":
        path.unlink()
    return outcome


def run_all(cases, jobs: int, workdir: Path, case_timeout: float, tflm_timeout: float, progress):
    results: list[tuple[Case, Outcome]] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            (c, pool.submit(run_case, c, workdir, case_timeout, tflm_timeout)) for c in cases
        ]
        for n, (case, future) in enumerate(futures, 1):
            results.append((case, future.result()))
            if progress and n % 100 == 0:
                progress(f"  {n}/{len(cases)} cases")
    return results


# ---------------------------------------------------------------------------------------------
# Other surfaces: device --data, target files, storage URLs.

SURFACES = ("device_data", "target_file", "storage_url")
MODEL = REPO / "tests" / "data" / "cnn_int8.tflite"
CATALOGUE_TARGET = REPO / "targets" / "cortex-m4.toml"
SECRET = "hunter2secret"


@dataclass(frozen=True)
class SurfaceCase:
    index: int
    surface: str
    variant: str
    argv: tuple[str, ...]


def _special(path: Path, kind: str) -> None:
    """Make ``path`` a FIFO, a link to /dev/zero, a directory or a symlink loop."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(path.name)


def _npz_bytes(**arrays) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _device_data(path: Path, rng: random.Random) -> str:
    import io

    import numpy as np

    x = np.random.default_rng(rng.randrange(1 << 30)).uniform(-1, 1, (4, 12, 12, 1))
    good = _npz_bytes(x_test=x.astype(np.float32))
    variants = {
        "flip_bytes": lambda: bytes(b ^ (rng.randrange(1, 256) if rng.random() < 0.02 else 0)
                                    for b in good),
        "truncate": lambda: good[: rng.randrange(len(good))],
        "npy": lambda: (lambda b: (np.save(b, x), b.getvalue())[1])(io.BytesIO()),
        "zero_d": lambda: _npz_bytes(x_test=np.float32(1.0)),
        "complex": lambda: _npz_bytes(x_test=x.astype(np.complex64) * 1j),
        "strings": lambda: _npz_bytes(x_test=np.array(["a", "b"])),
        "objects": lambda: (lambda b: (np.savez(b, x_test=np.array([{}], dtype=object)),
                                       b.getvalue())[1])(io.BytesIO()),
        "nan": lambda: _npz_bytes(x_test=np.full((2, 12, 12, 1), np.nan)),
        "sample_size": lambda: _npz_bytes(x_test=np.zeros((2, rng.randrange(1, 300)))),
        "pk_garbage": lambda: b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)),
        "empty": lambda: _npz_bytes(x_test=np.zeros((0, 12, 12, 1))),
    }  # fmt: skip
    specials = ("fifo", "dev_zero", "directory", "symlink_loop")
    variant = rng.choice([*variants, *specials])
    if variant in specials:
        _special(path, variant)
    else:
        path.write_bytes(variants[variant]())
    return variant


def _target_text(rng: random.Random) -> tuple[str, str]:
    text = CATALOGUE_TARGET.read_text()
    keys = ["flash_bytes", "ram_bytes", "reserved_flash_bytes", "reserved_ram_bytes",
            "clock_hz", "core", "tflm_kernels", "CONV_2D", "SOFTMAX", "source"]  # fmt: skip
    values = ["0", "-1", "1.5", '"x"', "1" + "0" * 40, "{a = 1}", "[1, 2]", "true", "nan", "inf"]
    variant = rng.choice(("value", "remove", "op_name", "zero_runtime", "flip", "cut", "latin1"))
    if variant == "value":
        key, value = rng.choice(keys), rng.choice(values)
        lines = [f"{key} = {value}" if ln.startswith(f"{key} = ") else ln
                 for ln in text.splitlines()]  # fmt: skip
        return f"value:{key}", "\n".join(lines) + "\n"
    if variant == "remove":
        key = rng.choice(keys)
        return f"remove:{key}", "\n".join(
            ln for ln in text.splitlines() if not ln.startswith(f"{key} = ")
        )
    if variant == "op_name":
        name = rng.choice(("CONV", "conv_2d", "SOFTMAXX", "CUSTOM:", "X" * 300, "RELU 6"))
        table = rng.choice(("[throughput.us_per_call]", "[runtime.kernel_flash_bytes]"))
        if table in text:
            return variant, text.replace(table, f'{table}\n"{name}" = 5', 1)
        return variant, text + f'\n{table}\n"{name}" = 5\n'
    if variant == "zero_runtime":
        key = rng.choice(("runtime_flash_bytes", "framework_flash_bytes"))
        return variant, text + f"\n[runtime]\n{key} = 0\n"
    if variant == "flip":
        data = bytearray(text.encode())
        for _ in range(rng.choice((1, 2, 4))):
            data[rng.randrange(len(data))] = rng.randrange(32, 127)
        return variant, data.decode("latin-1")
    if variant == "cut":
        return variant, text[: rng.randrange(len(text))]
    return variant, text.replace("Nordic", "Nordic \udcff", 1).encode(
        "utf-8", "surrogateescape"
    ).decode("latin-1")


def _target_file(path: Path, rng: random.Random) -> str:
    specials = ("fifo", "dev_zero", "directory", "symlink_loop")
    if rng.random() < 0.2:
        variant = rng.choice(specials)
        _special(path, variant)
        return variant
    variant, text = _target_text(rng)
    path.write_bytes(text.encode("latin-1", "replace"))
    return variant


def _storage_url(workdir: Path, index: int, rng: random.Random) -> tuple[str, str]:
    base = workdir / f"store-{index:04d}"
    choices = {
        "empty": lambda: "",
        "blank": lambda: "   ",
        "sqlite_no_file": lambda: rng.choice(("sqlite:///", "sqlite://", "sqlite:")),
        "sqlite_memory": lambda: "sqlite:///:memory:",
        "sqlite_fifo": lambda: (os.mkfifo(base), f"sqlite:///{base}")[1],
        "sqlite_directory": lambda: (base.mkdir(), f"sqlite:///{base}")[1],
        "sqlite_dev_zero": lambda: "sqlite:////dev/zero",
        "user_password": lambda: f"postgresql://me:{SECRET}@127.0.0.1:1/db",
        "query_password": lambda: f"postgresql://127.0.0.1:1/db?user=me&password={SECRET}",
        "redis_password": lambda: f"redis://:{SECRET}@127.0.0.1:1/0",
        "unknown_scheme": lambda: rng.choice(("nosuch://x/y", "http://example.invalid/db")),
        "garbage": lambda: "".join(rng.choice("a:/@?%&=#\\ x\x01") for _ in range(20)),
    }
    variant = rng.choice(list(choices))
    return variant, choices[variant]()


def make_surface_cases(seed: int, per_class: int, workdir: Path) -> list[SurfaceCase]:
    cases: list[SurfaceCase] = []
    for surface in SURFACES:
        for k in range(per_class):
            rng = random.Random(f"{seed}:{surface}:{k}")
            index = len(cases)
            path = workdir / f"case-{index:06d}"
            if surface == "device_data":
                variant = _device_data(path.with_suffix(".npz"), rng)
                argv = ("device", str(MODEL), "--target", "cortex-m4", "--samples", "2",
                        "--format", "json", "--data", str(path.with_suffix(".npz")))  # fmt: skip
            elif surface == "target_file":
                variant = _target_file(path.with_suffix(".toml"), rng)
                argv = ("report", str(MODEL), "--format", "json", "--target",
                        str(path.with_suffix(".toml")))  # fmt: skip
            else:
                variant, url = _storage_url(workdir, index, rng)
                argv = ("search", "--target", "cortex-m4", "--trials", "1", "--storage", url,
                        "--study", "fuzz", "--out", str(workdir / f"out-{index}"))  # fmt: skip
            cases.append(SurfaceCase(index, surface, variant, argv))
    return cases


def judge_surface(code, stdout: str, stderr: str, seconds: float) -> Outcome:
    if code is None:
        return Outcome("hang", "no end within the time limit", seconds)
    if SECRET in stdout or SECRET in stderr:
        return Outcome("crash", "a password was shown", seconds)
    if "Traceback (most recent call last)" in stderr:
        return Outcome("crash", "Python traceback: " + _last_line(stderr), seconds)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("edge-prune: ")]
    if code == 2:
        if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
            return Outcome("crash", f"exit 2 without a one-line error: {_last_line(stderr)}",
                           seconds)  # fmt: skip
        return Outcome("clean error", "exit 2, one line", seconds)
    if code in (0, 1):
        return Outcome("report", f"exit {code}", seconds)
    return Outcome("crash", f"exit code {code}: {_last_line(stderr)}", seconds)


def run_surface_case(case: SurfaceCase, case_timeout: float) -> Outcome:
    start = time.perf_counter()
    process = subprocess.Popen(
        [*CLI, *case.argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        errors="replace", env=child_env(), start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=case_timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        code = None
    return judge_surface(code, stdout, stderr, time.perf_counter() - start)


def surface_lines(results) -> list[str]:
    lines = [f"  {'surface':<13}{'variant':<28}{'cases':>6}{'exit 0/1':>9}{'clean errors':>13}"
             f"{'crashes':>8}{'hangs':>6}"]  # fmt: skip
    groups: dict[tuple[str, str], Counter] = {}
    for case, outcome in results:
        for key in ((case.surface, case.variant), (case.surface, "all"), ("all", "all")):
            groups.setdefault(key, Counter())[outcome.kind] += 1
    order = sorted(groups, key=lambda k: (k[0] == "all", SURFACES.index(k[0]) if k[0] in
                                          SURFACES else 9, k[1] == "all", k[1]))  # fmt: skip
    for surface, variant in order:
        c = groups[(surface, variant)]
        lines.append(f"  {surface:<13}{variant:<28}{sum(c.values()):>6}{c['report']:>9}"
                     f"{c['clean error']:>13}{c['crash']:>8}{c['hang']:>6}")  # fmt: skip
    return lines


# ---------------------------------------------------------------------------------------------
# Printing.


def summary_lines(results, seed: int, wall_s: float, jobs: int) -> list[str]:
    counts = Counter(o.kind for _, o in results)
    seconds = sorted(o.seconds for _, o in results)
    n = len(results)
    lines = [
        f"edge-prune report fuzz: seed {seed}, {n} cases, {jobs} parallel jobs, "
        f"wall {wall_s:.1f} s ({n / wall_s:.1f} cases/s)",
        f"per case: median {seconds[n // 2]:.2f} s, 95th percentile "
        f"{seconds[min(n - 1, int(n * 0.95))]:.2f} s, max {seconds[-1]:.2f} s",
        "",
        f"{'cases':>8} {'reports':>8} {'clean errors':>13} {'crashes':>8} {'hangs':>6}",
        f"{n:>8} {counts['report']:>8} {counts['clean error']:>13} {counts['crash']:>8} "
        f"{counts['hang']:>6}",
        "",
        "by mutation:",
        f"  {'mutation':<22}{'cases':>6}{'reports':>9}{'clean errors':>14}{'crashes':>9}"
        f"{'hangs':>7}",
    ]
    by_mutation: dict[str, Counter] = {}
    for case, outcome in results:
        by_mutation.setdefault(case.mutation, Counter())[outcome.kind] += 1
    for name, c in sorted(by_mutation.items()):
        lines.append(
            f"  {name:<22}{sum(c.values()):>6}{c['report']:>9}{c['clean error']:>14}"
            f"{c['crash']:>9}{c['hang']:>7}"
        )
    lines += ["", "how the cases ended (detail):"]
    details = Counter((o.kind, o.detail) for _, o in results)
    for (kind, detail), count in sorted(details.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:>6}  {kind}: {detail}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default: 2)")
    parser.add_argument(
        "--case-timeout", type=float, default=60.0, help="seconds before a case is a hang"
    )
    parser.add_argument(
        "--tflm-timeout", type=float, default=20.0, help="--timeout given to edge-prune report"
    )
    parser.add_argument("--keep", type=Path, help="directory for the files that crash or hang")
    parser.add_argument("--surfaces", type=int, metavar="N",
                        help="N cases of each other surface (device --data, target files, "
                        "storage URLs) instead of mutated models")  # fmt: skip
    parser.add_argument("--edge-prune-src", type=Path, help="run the CLI from this source tree")
    args = parser.parse_args(argv)
    if args.edge_prune_src:
        CLI[:] = [sys.executable, "-m", "edge_prune.cli"]
        SOURCE[:] = [str(args.edge_prune_src)]
    if args.surfaces:
        return surfaces_main(args)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="edge-prune-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cases = make_cases(args.seed, args.cases)
    print(
        f"fuzzing {EDGE_PRUNE} report with {len(cases)} mutated copies of "
        f"{', '.join(p.name for p in SEED_MODELS)}",
        file=sys.stderr,
    )
    start = time.perf_counter()
    results = run_all(
        cases,
        args.jobs,
        workdir,
        args.case_timeout,
        args.tflm_timeout,
        lambda m: print(m, file=sys.stderr, flush=True),
    )
    wall = time.perf_counter() - start
    print("\n".join(summary_lines(results, args.seed, wall, args.jobs)))
    bad = [(c, o) for c, o in results if o.kind in ("crash", "hang")]
    for case, outcome in bad:
        print(f"  {outcome.kind}: case {case.index} ({case.mutation} of {case.seed_model}): "
              f"{outcome.detail}; file {workdir / f'case-{case.index:06d}.tflite'}")  # fmt: skip
    if not bad and not args.keep:
        os.rmdir(workdir)
    return 1 if bad else 0


def surfaces_main(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="edge-prune-fuzz-surfaces-"))
    cases = make_surface_cases(args.seed, args.surfaces, workdir)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(lambda c: run_surface_case(c, args.case_timeout), cases))
    wall = time.perf_counter() - start
    results = list(zip(cases, outcomes, strict=True))
    source = args.edge_prune_src or "this checkout"
    print(f"edge-prune fuzz of other surfaces: seed {args.seed}, {len(cases)} cases "
          f"({args.surfaces} per surface), CLI from {source}, {args.jobs} jobs, "
          f"wall {wall:.0f} s")  # fmt: skip
    print("\n".join(surface_lines(results)))
    bad = [(c, o) for c, o in results if o.kind in ("crash", "hang")]
    for case, outcome in bad:
        print(f"  {outcome.kind}: case {case.index} ({case.surface}/{case.variant}): "
              f"{outcome.detail[:200]}")  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
