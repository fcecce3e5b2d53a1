"""The device object cache is keyed by content, and a killed build leaves nothing running and
nothing half-written that a later build trusts. No toolchain needed: a stand-in compiler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_prune.measurement.device import build
from edge_prune.measurement.device.toolchain import TflmTree

# Copies its source to -o, writes the dependency list to -MF, and counts its runs.
FAKE_COMPILER = """\
#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in -o) o=$2; shift;; -MF) d=$2; shift;; -c) s=$2; shift;; esac; shift
done
echo run >> "$COUNT"
[ -n "$FAIL" ] && { echo "half" > "$o"; echo "error: failed" >&2; exit 1; }
cat "$s" kernel.h > "$o"
printf '%s: \\\\\\n %s \\\\\\n kernel.h\\n' "$o" "$s" > "$d"
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    compiler = tmp_path / "fake-g++"
    compiler.write_text(FAKE_COMPILER)
    compiler.chmod(0o755)
    monkeypatch.setenv("COUNT", str(tmp_path / "count"))
    monkeypatch.delenv("FAIL", raising=False)
    cache = tmp_path / "cache" / "obj"

    def tree(name: str, source: str, header: str = "h") -> TflmTree:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        (root / "reshape.cc").write_text(source)
        (root / "kernel.h").write_text(header)
        return TflmTree(path=root, commit="90b983c2b3f1")

    def command() -> build.CompileCommand:
        argv = (str(compiler), "-MD", "-c", "reshape.cc", "-o", str(cache / "reshape.o"))
        return build.CompileCommand("reshape.cc", str(cache / "reshape.o"), argv, "kernels")

    def compiles() -> int:
        path = tmp_path / "count"
        return len(path.read_text().splitlines()) if path.is_file() else 0

    return tree, command, compiles


def _build(tree, command) -> bool:
    """Compile unless up to date (as build_objects does); True when it compiled."""
    build._DIGESTS.clear()  # each call stands for a new edge-prune process
    if build._up_to_date(tree, command):
        return False
    assert build._compile_one(tree, command) is None
    return True


def test_two_trees_of_the_same_commit_never_share_an_object(setup):
    make_tree, command, _ = setup
    clean, patched = make_tree("clean", "clean"), make_tree("patched", "patched")
    obj = Path(command().object)
    assert _build(clean, command())
    assert _build(patched, command()) and obj.read_text().startswith("patched")
    assert _build(clean, command()) and obj.read_text().startswith("clean")
    assert not _build(clean, command())


def test_a_header_or_a_source_edited_with_an_old_mtime_is_recompiled(setup):
    make_tree, command, _ = setup
    tree = make_tree("tree", "v1")
    assert _build(tree, command())
    header = tree.path / "kernel.h"
    old = header.stat().st_mtime - 1000
    header.write_text("changed")
    os.utime(header, (old, old))  # the mtime rule would have kept the object
    assert _build(tree, command()) and Path(command().object).read_text().endswith("changed")


def test_a_failed_compile_leaves_no_object_and_no_record(setup, monkeypatch):
    make_tree, command, compiles = setup
    tree = make_tree("tree", "v1")
    monkeypatch.setenv("FAIL", "1")
    build._DIGESTS.clear()
    assert "failed" in build._compile_one(tree, command())
    obj = Path(command().object)
    assert not obj.exists() and not obj.with_suffix(".cmd").exists()
    assert not list(obj.parent.glob("*.tmp-*"))
    monkeypatch.delenv("FAIL")
    assert _build(tree, command()) and compiles() == 2


def test_an_object_without_its_record_is_not_trusted(setup):
    make_tree, command, compiles = setup
    tree = make_tree("tree", "v1")
    assert _build(tree, command())
    Path(command().object).with_suffix(".cmd").unlink()  # a record lost (or an older cache)
    assert _build(tree, command()) and compiles() == 2


@pytest.mark.parametrize("killed_at", [1, 2, 3])
def test_a_recompile_killed_at_any_file_step_leaves_no_object_without_its_record(
    setup, monkeypatch, killed_at
):
    """A rebuild (new source) stopped at its first, second or third file write: whatever is
    left, an object in place is never one without a record, and the next build recompiles."""
    make_tree, command, compiles = setup
    assert _build(make_tree("tree", "v1"), command())
    tree = make_tree("tree", "v2")
    writes = {"count": 0}
    real_write, real_replace = build.write_atomic, Path.replace

    def step() -> None:
        writes["count"] += 1
        if writes["count"] == killed_at:
            raise KeyboardInterrupt

    def write_atomic(path, text):
        step()
        real_write(path, text)

    def replace(self, target):
        if ".tmp-" in self.name and self.suffix == ".o":
            step()
        return real_replace(self, target)

    monkeypatch.setattr(build, "write_atomic", write_atomic)
    monkeypatch.setattr(Path, "replace", replace)
    build._DIGESTS.clear()
    with pytest.raises(KeyboardInterrupt):
        build._compile_one(tree, command())
    monkeypatch.undo()
    obj = Path(command().object)
    assert not obj.exists() or obj.with_suffix(".cmd").is_file()
    assert _build(tree, command()) and obj.read_text().startswith("v2")


def test_sigkill_of_the_caller_kills_the_whole_tool_group(tmp_path):
    """A tool (here a shell standing for g++) whose child (standing for cc1plus) writes a
    file every 0.1 s: after SIGKILL of the Python process that ran it, nothing writes."""
    marker = tmp_path / "alive"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from edge_prune._process import run_group
        print("started", flush=True)
        run_group(["/bin/sh", "-c", "sh -c 'while true; do date +%s%N > {marker}; sleep 0.1; done' & wait"])
    """)  # noqa: E501
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert caller.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    time.sleep(0.5)
    before = marker.read_text()
    time.sleep(0.6)
    assert marker.read_text() == before, "the tool's child still runs after SIGKILL"
