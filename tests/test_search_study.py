"""The Optuna study behind `edge-prune search`, with a stand-in for the builds (no TensorFlow):
seeded order, the walk toward a tight budget, resume, untrusted records, shared PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from edge_prune.config import PipelineConfig
from edge_prune.data import load_digits
from edge_prune.measurement.targets import load_target
from edge_prune.search.cache import write_point_entry
from edge_prune.search.point import PointSpec, SearchOptions, SearchPoint, SearchSpace
from edge_prune.search.study import run_study, work
from edge_prune.stages import Inputs

SPACE = SearchSpace(
    ratios=(0.0, 0.25, 0.5, 0.625, 0.75, 0.875),
    sparsities=(0.0, 0.5, 0.7, 0.8, 0.9),
    clusters=(0, 4, 8),
)


class FakeWorkshop:
    """A point's figures from a formula; each build appends its key to ``built.log``."""

    def __init__(self, inputs, cache, progress):
        self.inputs, self.cache, self.model_name = inputs, Path(cache), "fake"

    def point_key(self, spec: PointSpec) -> str:
        s = spec
        return f"r{s.structured_ratio:g}-s{s.final_sparsity:g}-c{s.clusters}-{s.schedule}"

    def point_dir(self, key: str) -> Path:
        return self.cache / "points" / key

    def point(self, spec: PointSpec):
        return self.build(spec), "built"

    def build(self, spec: PointSpec) -> SearchPoint:
        key = self.point_key(spec)
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / "built.log", "a") as log:
            log.write(f"{key} {os.getpid()}\n")
        point = fake_point(spec, key, self.inputs.target.flash_bytes)
        directory = self.point_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.tflite").write_bytes(b"TFL3" + key.encode())
        write_point_entry(directory, point.to_dict())
        return point


def fake_point(spec: PointSpec, key: str, flash_bytes: int) -> SearchPoint:
    """Flash falls with ratio, sparsity and clustering; loss rises with them, steeply at the
    compact end: only a few points fit a tight part within 1 point of accuracy."""
    r, s, c = spec.structured_ratio, spec.final_sparsity, spec.clusters
    flatbuffer = int(60_000 * (1 - r) * (1 - 0.8 * s) * (0.45 if c else 1.0)) + 1_500
    loss = 0.05 + 2.0 * r**3 + 1.5 * s**4 + (0.6 if c == 4 else 0.1 if c else 0.0)
    flash = flatbuffer + 6_000
    return SearchPoint(
        key=key,
        structured_ratio=r,
        final_sparsity=s,
        clusters=c,
        schedule=spec.schedule,
        measured_sparsity=s,
        artifact="int8-sparse",
        build_deploys="int8-sparse",
        flatbuffer_bytes=flatbuffer,
        tflm_score=0.97 - loss / 100,
        loss=round(loss, 6),
        arena_bytes=4_000,
        runtime_flash_bytes=6_000,
        flash_needed_bytes=flash,
        ram_needed_bytes=5_000,
        within_tolerance=loss <= 1.0,
        fits_flash=flash <= flash_bytes,
        fits_ram=True,
        trusted=True,
        baseline_score=0.97,
    )


def tight_inputs(target_file, flash_bytes=12_000) -> Inputs:
    path = target_file("tight", flash_bytes=flash_bytes, reserved_flash_bytes=0)
    config = PipelineConfig()
    return Inputs(load_target(path), config, load_digits(seed=0))


def fitting(space: SearchSpace, flash_bytes: int) -> list[PointSpec]:
    points = [fake_point(s, "k", flash_bytes) for s in space.specs()]
    return [p.spec for p in points if p.eligible]


def _run(inputs, out: Path, trials: int, space=SPACE, jobs=1, **options):
    opts = SearchOptions(trials=trials, jobs=jobs, space=space, **options)
    return run_study(inputs, opts, out, lambda _m: None, factory=FakeWorkshop)


def _built(out: Path) -> list[str]:
    log = out / "built.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_the_default_budget_finds_a_fitting_point_on_a_tight_part(target_file, tmp_path):
    inputs = tight_inputs(target_file)
    fits = fitting(SPACE, inputs.target.flash_bytes)
    assert 0 < len(fits) <= len(SPACE.specs()) // 10  # a tight part: few points fit
    result, _ = _run(inputs, tmp_path / "a", SearchOptions().trials)
    assert result.best is not None and result.best.spec in fits


def test_one_worker_with_a_seed_samples_the_same_points(target_file, tmp_path):
    inputs = tight_inputs(target_file)
    _run(inputs, tmp_path / "a", 8)
    _run(inputs, tmp_path / "b", 8)
    assert _built(tmp_path / "a") == _built(tmp_path / "b") and len(_built(tmp_path / "a")) == 8


def test_running_again_resumes_without_building_and_more_trials_extend(target_file, tmp_path):
    inputs = tight_inputs(target_file)
    first, _ = _run(inputs, tmp_path, 5)
    again, _ = _run(inputs, tmp_path, 5)
    assert len(_built(tmp_path)) == 5 and again.points == first.points
    more, _ = _run(inputs, tmp_path, 7)
    assert len(_built(tmp_path)) == 7 and more.points[:5] == first.points


def test_no_point_is_built_twice_and_a_used_up_space_stops(target_file, tmp_path):
    small = SearchSpace(ratios=(0.0, 0.5), sparsities=(0.5,), clusters=(0, 8))
    result, _ = _run(tight_inputs(target_file), tmp_path, 10, space=small)
    built = _built(tmp_path)
    assert sorted(built) == sorted(set(built)) and len(built) == 4 == len(result.points)


@pytest.mark.parametrize("bad", [1, -5, "many"])
def test_a_tampered_study_record_is_left_out_and_built_again(target_file, tmp_path, bad, capsys):
    import optuna

    inputs = tight_inputs(target_file, flash_bytes=1_000_000)
    result, _ = _run(inputs, tmp_path, 3)
    journal = tmp_path / "study.journal"
    lines = journal.read_text().splitlines()
    victim = result.points[0].key
    for i, line in enumerate(lines):
        entry = json.loads(line)
        point = entry.get("user_attr", {}).get("point")
        if point and point["key"] == victim:
            point["flash_needed_bytes"] = bad
            lines[i] = json.dumps(entry)
    journal.write_text("\n".join(lines) + "\n")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    messages: list[str] = []
    opts = SearchOptions(trials=3, space=SPACE)
    again, _ = run_study(inputs, opts, tmp_path, messages.append, factory=FakeWorkshop)
    assert any("WARNING: study trial" in m and "left out and built again" in m for m in messages)
    assert _built(tmp_path).count(victim) == 2  # rebuilt once
    assert all(p.flash_needed_bytes > 1_000 for p in again.points)
    assert victim in {p.key for p in again.points}


def test_an_unreadable_journal_is_set_aside_with_a_warning(target_file, tmp_path):
    inputs = tight_inputs(target_file)
    (tmp_path / "study.journal").write_text('{"op_code": 0, "worker_id": "x", "study_na\n')
    messages: list[str] = []
    opts = SearchOptions(trials=2, space=SPACE)
    result, _ = run_study(inputs, opts, tmp_path, messages.append, factory=FakeWorkshop)
    assert any("study.journal: unreadable" in m for m in messages)
    assert len(result.points) == 2 and list(tmp_path.glob("study.journal.bad-*"))


def test_a_study_of_another_search_is_refused(target_file, tmp_path):
    from edge_prune.errors import ConfigError

    _run(tight_inputs(target_file), tmp_path, 2, study="shared")
    other = SearchSpace(ratios=(0.0,), sparsities=(0.5,), clusters=(0,))
    with pytest.raises(ConfigError, match="--study shared: made by a search of another"):
        _run(tight_inputs(target_file), tmp_path, 2, space=other, study="shared")


# --------------------------------------------------------------------- shared PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own on 127.0.0.1 (initdb refuses root: run as 'postgres' or
    'nobody' then), stopped at the end."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (edge-prune[postgres])")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binary (Debian: apt-get install postgresql)")
    import tempfile

    # Under /tmp itself: pytest's own temporary directories are private to root.
    root = Path(tempfile.mkdtemp(prefix="edge-prune-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user)
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", user, "--"]
    port = _free_port()
    run = lambda *args: subprocess.run(  # noqa: E731
        [*prefix, *args], check=True, capture_output=True, text=True, timeout=120
    )
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "edge", "--auth=trust", "-E", "UTF8")
    run(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
        "-o", f"-h 127.0.0.1 -p {port} -k {root}",
    )  # fmt: skip
    try:
        yield f"postgresql://edge@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_two_workers_on_one_postgres_study_build_each_point_once(postgres, target_file, tmp_path):
    import multiprocessing

    from edge_prune.search.job import Job
    from edge_prune.search.storage import open_study

    inputs = tight_inputs(target_file, flash_bytes=20_000)
    space = SearchSpace(ratios=(0.0, 0.5, 0.75), sparsities=(0.5, 0.8), clusters=(0, 8))
    trials = len(space.specs())  # both runs see the whole space: the same best point
    one, _ = _run(inputs, tmp_path / "one", trials, space=space)

    opts = SearchOptions(trials=trials, space=space, storage=postgres, study="two")
    job = Job(inputs, opts, tmp_path / "two", postgres, "two", 0, factory=FakeWorkshop)
    open_study(job, lambda _m: None, create=True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=work, args=(_replace(job, worker=i, cache=tmp_path / f"m{i}"),))
        for i in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    built = _built(tmp_path / "m0") + _built(tmp_path / "m1")
    assert len(built) == len(set(built)) == trials  # no point built twice, all built
    assert _built(tmp_path / "m0") and _built(tmp_path / "m1")  # both worked
    two, _ = run_study(inputs, opts, tmp_path / "two", lambda _m: None, factory=FakeWorkshop)
    assert {p.key for p in two.points} == set(built)  # the union is the result
    assert two.best.key == one.best.key
    assert {p.key: p for p in two.points} == {p.key: p for p in one.points}


def _replace(job, **changes):
    from dataclasses import replace

    return replace(job, **changes)


def test_postgres_url_password_is_not_shown_in_errors(tmp_path, target_file):
    from edge_prune.errors import ConfigError

    pytest.importorskip("psycopg")
    url = f"postgresql://me:secret@127.0.0.1:{_free_port()}/db"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"--storage postgresql://me:\*\*\*@") as caught:
        _run(tight_inputs(target_file), tmp_path, 1, storage=url, study="x")
    assert "secret" not in str(caught.value) and time.perf_counter() - start < 30


class RefusingWorkshop(FakeWorkshop):
    """Refuses every point without clustering, as the build refuses a model it cannot handle."""

    def point(self, spec: PointSpec):
        from edge_prune.errors import UnsupportedModelError

        if not spec.clusters:
            with open(self.cache / "refused.log", "a") as log:
                log.write(f"{self.point_key(spec)}\n")
            raise UnsupportedModelError("cannot handle this point")
        return super().point(spec)


def test_a_point_the_build_refuses_is_tried_once_and_counts(target_file, tmp_path):
    space = SearchSpace(ratios=(0.0, 0.5), sparsities=(0.5,), clusters=(0, 8))
    opts = SearchOptions(trials=4, space=space, grid=True)
    tmp_path.mkdir(exist_ok=True)
    result, _ = run_study(tight_inputs(target_file), opts, tmp_path, lambda _m: None,
                          factory=RefusingWorkshop)  # fmt: skip
    refused = (tmp_path / "refused.log").read_text().split()
    assert sorted(refused) == sorted(set(refused)) and len(refused) == 2
    assert len(result.points) == 2 and all(p.clusters == 8 for p in result.points)


def test_a_worker_steps_back_from_a_point_another_running_trial_claimed_whatever_its_number():
    """The race that built a point twice: trial 0 (lower number) looked before trial 1 had
    its parameters written, and trial 1 looked only at lower-numbered trials."""
    import optuna

    from edge_prune.search.study import _suggest, _twin
    from edge_prune.search.trials import CLAIM

    space = SearchSpace(ratios=(0.5,), sparsities=(0.8,), clusters=(0,))
    study = optuna.create_study(directions=["minimize", "minimize"])
    first, second = study.ask(), study.ask()
    spec = _suggest(second, space)
    second.set_user_attr(CLAIM, spec.label)
    assert _suggest(first, space) == spec
    assert _twin(first, spec).number == second.number  # the lower number steps back too

    third = study.ask()
    assert _suggest(third, space) == spec  # params written, no claim yet: not counted
    fourth = study.ask()
    _suggest(fourth, space)
    assert _twin(fourth, spec).number in (first.number, second.number)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    first.set_user_attr(CLAIM, spec.label)
    assert _twin(fourth, spec).number == first.number


class InterruptedWorkshop(FakeWorkshop):
    """Ctrl-C while it builds its second point (the second anchor)."""

    calls = 0

    def point(self, spec: PointSpec):
        InterruptedWorkshop.calls += 1
        if InterruptedWorkshop.calls == 2:
            raise KeyboardInterrupt
        return super().point(spec)


def test_a_search_resumed_after_ctrl_c_builds_the_same_points_in_the_same_order(
    target_file, tmp_path
):
    inputs = tight_inputs(target_file)
    _run(inputs, tmp_path / "clean", 6)
    opts = SearchOptions(trials=6, space=SPACE)
    InterruptedWorkshop.calls = 0
    with pytest.raises(KeyboardInterrupt):
        run_study(inputs, opts, tmp_path / "cut", lambda _m: None, factory=InterruptedWorkshop)
    assert len(_built(tmp_path / "cut")) == 1
    _run(inputs, tmp_path / "cut", 6)
    assert _built(tmp_path / "cut") == _built(tmp_path / "clean")


# ------------------------------------------------------------------------- lost trials


class KilledOnceWorkshop(FakeWorkshop):
    """The first build in a cache kills its own process (SIGKILL), as a worker dies mid-build;
    the trial it ran stays RUNNING in the study."""

    def point(self, spec: PointSpec):
        import signal

        marker = self.cache / "killed"
        self.cache.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text(self.point_key(spec))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().point(spec)


def _storage_url(backend: str, request, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_killed_mid_trial_loses_no_point_and_a_rerun_builds_nothing(
    backend, request, target_file, tmp_path
):
    url = _storage_url(backend, request, tmp_path)
    inputs = tight_inputs(target_file)
    opts = SearchOptions(trials=3, jobs=2, space=SPACE, storage=url, study=f"killed-{backend}")
    messages: list[str] = []
    result, _ = run_study(inputs, opts, tmp_path / "c", messages.append,
                          factory=KilledOnceWorkshop)  # fmt: skip
    lost = (tmp_path / "c" / "killed").read_text()
    assert len(result.points) == 3 and lost in {p.key for p in result.points}
    import optuna

    trials = optuna.load_study(study_name=opts.study, storage=url).get_trials()
    assert [t.user_attrs.get("lost") for t in trials].count("its worker is gone") == 1
    assert _built(tmp_path / "c").count(lost) == 1
    again, _ = run_study(inputs, opts, tmp_path / "c", lambda _m: None, factory=FakeWorkshop)
    assert len(_built(tmp_path / "c")) == 3 and len(again.points) == 3


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_trial_left_running_by_a_killed_run_is_rebuilt_once_on_resume(
    backend, request, target_file, tmp_path
):
    import multiprocessing

    from edge_prune.search.job import Job
    from edge_prune.search.storage import open_study

    url = _storage_url(backend, request, tmp_path)
    inputs = tight_inputs(target_file)
    name = f"resume-{backend}"
    opts = SearchOptions(trials=2, space=SPACE, storage=url, study=name)
    job = Job(inputs, opts, tmp_path / "c", url, name, 0, factory=KilledOnceWorkshop)
    open_study(job, lambda _m: None, create=True)
    worker = multiprocessing.get_context("spawn").Process(target=work, args=(job,))
    worker.start()
    worker.join(120)
    assert worker.exitcode == -9  # killed mid-trial: the trial stays RUNNING
    lost = (tmp_path / "c" / "killed").read_text()
    result, _ = run_study(inputs, opts, tmp_path / "c", lambda _m: None, factory=FakeWorkshop)
    assert len(result.points) == 2 and lost in {p.key for p in result.points}
    assert _built(tmp_path / "c").count(lost) == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "--storage: empty URL"),
        ("  ", "--storage: empty URL"),
        ("sqlite:///", "no database file"),
        ("sqlite://", "no database file"),
        ("sqlite:///:memory:", "no database file"),
    ],
)
def test_storage_urls_that_name_no_study_are_refused(target_file, tmp_path, url, expected):
    from edge_prune.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        _run(tight_inputs(target_file), tmp_path, 1, storage=url, study="x")


def test_a_sqlite_storage_or_a_journal_that_is_a_fifo_is_refused_unread(target_file, tmp_path):
    from edge_prune.errors import ConfigError

    os.mkfifo(tmp_path / "db.sqlite")
    with pytest.raises(ConfigError, match="FIFO"):
        _run(tight_inputs(target_file), tmp_path, 1, storage=f"sqlite:///{tmp_path}/db.sqlite",
             study="x")  # fmt: skip
    os.mkfifo(tmp_path / "study.journal")
    with pytest.raises(ConfigError, match=r"study.journal.*FIFO"):
        _run(tight_inputs(target_file), tmp_path, 1)


def test_passwords_in_storage_urls_are_never_shown():
    from edge_prune.search.storage import shown_url

    assert shown_url("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"
    shown = shown_url("postgresql://db/x?user=me&password=secret&sslmode=require")
    assert "secret" not in shown and "sslmode=require" in shown
    assert "hunter2" not in shown_url("redis://:hunter2@cache:6379/0")


def test_a_journal_cut_mid_line_is_set_aside_with_a_warning_on_the_first_run(target_file, tmp_path):
    inputs = tight_inputs(target_file)
    _run(inputs, tmp_path, 2)
    journal = tmp_path / "study.journal"
    journal.write_bytes(journal.read_bytes()[:-40])
    messages: list[str] = []
    opts = SearchOptions(trials=3, space=SPACE)
    result, _ = run_study(inputs, opts, tmp_path, messages.append, factory=FakeWorkshop)
    assert any("study.journal: unreadable (its last line is cut short)" in m for m in messages)
    assert len(result.points) == 3 and list(tmp_path.glob("study.journal.bad-*"))
