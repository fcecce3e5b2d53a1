"""The import contracts in pyproject.toml hold on the tree, and fail when a layer is crossed.

Each case copies the package, adds one import that breaks a contract and runs lint-imports on
the copy: a contract that cannot fail would pass all of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports not installed")


def _lint(tree: Path, *contract: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    only = [arg for c in contract for arg in ("--contract", c)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *only], cwd=tree, env=env, capture_output=True, text=True
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(
        REPO / "edge_prune", tree / "edge_prune", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _append(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # measurement reaching training, even through a root module
        (
            "edge_prune.measurement.footprint",
            "import edge_prune.training.prune",
            "measurement-below-training",
        ),
        ("edge_prune.measurement.tflm", "import edge_prune.config", "measurement-below-training"),
        # TensorFlow outside training._tf
        ("edge_prune.training.prune", "import tensorflow", "tensorflow-in-one-module"),
        ("edge_prune.measurement.report", "import tf_keras", "tensorflow-in-one-module"),
        # a lower layer importing a higher one
        ("edge_prune.training.convert", "import edge_prune.stages.state", "layers"),
        ("edge_prune.measurement.choose", "import edge_prune.search.point", "layers"),
        # a cycle between siblings of one package
        ("edge_prune.search.point", "import edge_prune.search.render", "acyclic"),
    ],
)
def test_a_crossed_layer_breaks_its_contract(tmp_path, module, line, broken):
    tree = _copy(tmp_path)
    _append(tree, module, line)
    result = _lint(tree, broken)
    assert result.returncode != 0, result.stdout
    assert "0 kept, 1 broken" in result.stdout
