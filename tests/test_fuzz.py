"""Mutated .tflite files (bench/fuzz_report.py's cases) end in a report or a one-line error.

A regression slice of the fuzz harness: ``CASES`` cases with a fixed seed. The cases that the
flatbuffer reader rejects never reach TFLM, so they run through the CLI's ``main()`` in this
process (TFLM is replaced by a function that fails the test if it is reached), each under a
time limit. A stratified sample of the cases that do reach TFLM runs through the installed
``edge-prune`` entry point in its own process, as in the harness, with a smaller sample of the
rejected ones. Every case must end in exit 0/1 with a JSON report of that file, or in exit 2
with one line ``edge-prune: error: FILE: ...``: no traceback, no crash, no hang.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import signal
import sys
import time
import traceback
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge_prune.cli import main
from edge_prune.errors import ModelFileError
from edge_prune.measurement import tflm
from edge_prune.measurement.tflite_file import read_model

SEED = 7
CASES = 300
TFLM_SAMPLE = 20  # cases that reach TFLM, run through the entry point (about 1 s each)
REJECTED_SAMPLE = 6  # cases the reader rejects, also run through the entry point
IN_PROCESS_LIMIT_S = 10.0
CASE_TIMEOUT_S = 90.0
TFLM_TIMEOUT_S = 30.0


def _load_harness():
    path = Path(__file__).resolve().parent.parent / "bench" / "fuzz_report.py"
    spec = importlib.util.spec_from_file_location("fuzz_report", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_report"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz = _load_harness()


def _reaches_tflm(data: bytes) -> bool:
    """The CLI's first step on a model: read_model rejects it, or it goes on to TFLM."""
    try:
        read_model(data)
    except ModelFileError:
        return False
    return True


@pytest.fixture(scope="module")
def split_cases():
    cases = fuzz.make_cases(SEED, CASES)
    rejected = [c for c in cases if not _reaches_tflm(c.data)]
    reaching = [c for c in cases if _reaches_tflm(c.data)]
    return rejected, reaching


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_in_process(case, directory: Path):
    path = directory / f"case-{case.index}.tflite"
    path.write_bytes(case.data)
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code = None
    try:
        with (
            _time_limit(IN_PROCESS_LIMIT_S),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = main(["report", str(path), "--target", "cortex-m4", "--format", "json"])
    except _Hang:
        pass
    except BaseException:  # what would reach the user as a traceback
        err.write(traceback.format_exc())
        code = 3
    return fuzz.judge(code, out.getvalue(), err.getvalue(), len(case.data),
                      time.perf_counter() - start)  # fmt: skip


def _stratified(cases, n: int):
    """``n`` cases spread over the mutations, in a fixed order."""
    by_mutation = defaultdict(list)
    for case in cases:
        by_mutation[case.mutation].append(case)
    picked, round_ = [], 0
    while len(picked) < min(n, len(cases)):
        for group in by_mutation.values():
            if round_ < len(group) and len(picked) < n:
                picked.append(group[round_])
        round_ += 1
    return picked


def _failures(results) -> list[str]:
    return [
        f"case {c.index} ({c.mutation} of {c.seed_model}): {o.kind}: {o.detail}"
        for c, o in results
        if o.kind not in ("report", "clean error")
    ]


def test_same_seed_gives_the_same_cases_and_mutations_change_the_bytes():
    a, b = fuzz.make_cases(SEED, 40), fuzz.make_cases(SEED, 40)
    assert [c.data for c in a] == [c.data for c in b]
    originals = {name: data for name, data in fuzz.load_corpus()}
    assert sum(c.data != originals[c.seed_model] for c in a) >= 38
    assert len({c.mutation for c in fuzz.make_cases(SEED, CASES)}) == len(fuzz.MUTATIONS)


def test_judge_counts_tracebacks_signals_hangs_and_multiline_errors_as_failures():
    error = "edge-prune: error: m.tflite: truncated or corrupted TFLite flatbuffer (x)\n"
    assert fuzz.judge(2, "", error, 10, 0.1).kind == "clean error"
    traceback_text = "Traceback (most recent call last):\n  ...\nKeyError: 3\n"
    assert fuzz.judge(2, "", error + traceback_text, 10, 0.1).kind == "crash"
    assert fuzz.judge(2, "", error + "warning: something\n", 10, 0.1).kind == "crash"
    assert fuzz.judge(-11, "", "", 10, 0.1).detail == "CLI killed by SIGSEGV"
    assert fuzz.judge(0, "not json", "", 10, 0.1).kind == "crash"
    report = '{"fits_all_targets": false, "footprint": {"flatbuffer_bytes": 10}}'
    assert fuzz.judge(1, report, "", 10, 0.1).kind == "report"
    assert fuzz.judge(0, report, "", 10, 0.1).kind == "crash"  # exit 0 but does not fit
    assert fuzz.judge(1, report, "", 11, 0.1).kind == "crash"  # a report of another file
    assert fuzz.judge(None, "", "", 10, 60.0).kind == "hang"


def test_cases_the_reader_rejects_end_in_one_line_errors_without_reaching_tflm(
    split_cases, tmp_path, monkeypatch
):
    rejected, _ = split_cases
    assert len(rejected) >= 100

    def never(*args, **kwargs):
        raise AssertionError("a case the reader rejects reached TFLM")

    monkeypatch.setattr(tflm, "execute", never)
    monkeypatch.setattr(tflm, "measure_arena", never)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    results = [(case, _run_in_process(case, tmp_path)) for case in rejected]
    assert _failures(results) == []
    assert all(o.kind == "clean error" for _, o in results)


def test_cases_through_the_entry_point_end_in_a_report_or_a_one_line_error(split_cases, tmp_path):
    rejected, reaching = split_cases
    assert len(reaching) >= TFLM_SAMPLE
    sample = _stratified(reaching, TFLM_SAMPLE) + _stratified(rejected, REJECTED_SAMPLE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(lambda c: fuzz.run_case(c, tmp_path, CASE_TIMEOUT_S, TFLM_TIMEOUT_S), sample)
        )
    results = list(zip(sample, outcomes, strict=True))
    assert _failures(results) == []
    kinds = {o.kind for o in outcomes[:TFLM_SAMPLE]}
    assert kinds == {"report", "clean error"}  # the sample exercises both endings
