"""The Python API example in README.md runs as written and does what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _api_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_api_example_is_at_most_15_lines_and_uses_only_edge_prune():
    code = _api_example()
    assert len(code.strip().splitlines()) <= 15
    imports = re.findall(r"^\s*(?:import|from)\s+(\S+)", code, re.MULTILINE)
    assert imports == ["edge_prune"]


def test_readme_says_the_densify_files_of_the_example_are_not_for_tflm():
    text = " ".join(README.read_text().split())
    written = text[text.index("writes `model_float.tflite`") :][:400]
    assert "`model_int8-densify.tflite`" in written and "TFLite runtimes only" in written
    assert "model_int8-sparse.tflite" not in text


def test_readme_api_example_runs_and_writes_the_four_variants(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_api_example())
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"total\s+Sparsity: \d+/\d+ \(79\.\d%\)", result.stdout)
    for variant in ("float", "float-densify", "int8", "int8-densify"):
        assert (tmp_path / f"model_{variant}.tflite").stat().st_size > 0
    sparse = (tmp_path / "model_float-densify.tflite").stat().st_size
    assert sparse < (tmp_path / "model_float.tflite").stat().st_size
