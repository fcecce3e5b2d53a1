"""Text, markdown and JSON renderings of a
:class:`~edge_prune.measurement.device.measure.DeviceResult`."""

from __future__ import annotations

import json

from edge_prune.measurement.device.measure import DeviceResult


def render(result: DeviceResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    rows = _rows(result)
    if fmt == "markdown":
        title = f"## `{result.model}` on {result.target} ({_config(result)})\n\n"
        table = "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
        return title + table + f"\n**{_verdict(result)}**\n"
    width = max(len(k) for k, _ in rows)
    lines = [f"{result.model} on {result.target} ({_config(result)})"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join([*lines, _verdict(result)]) + "\n"


def _config(r: DeviceResult) -> str:
    return f"{r.config.core}, {r.config.kernels} kernels, BUILD_TYPE={r.config.build_type}"


def _bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,} B"


def _rows(r: DeviceResult) -> list[tuple[str, str]]:
    machine = r.machine or f"none ({r.size_only_reason})"
    if r.machine and r.machine_note:
        machine += f" ({r.machine_note})"
    rows = [
        ("QEMU machine", machine),
        ("samples", f"{r.samples} ({r.samples_source})" if r.machine else "not run"),
        ("outputs equal host TFLM", _equal(r)),
        ("model flash (array)", _bytes(r.model_flash_bytes)),
        (
            "TFLM runtime flash",
            f"{_bytes(r.runtime_flash_bytes)} (TFLM objects + toolchain "
            "code linked only for TFLM, from the map)",
        ),  # fmt: skip
        ("TFLM static RAM", _bytes(r.runtime_ram_bytes)),
        ("harness flash (not counted)", _bytes(r.harness_flash_bytes)),
        ("arena in model_data.h", _bytes(r.configured_arena_bytes)),
        ("smallest working arena", _bytes(r.arena_min_bytes)),
        ("arena_used_bytes()", _bytes(r.arena_used_bytes)),
        ("instructions/inference", _instructions(r)),
        (
            "flash needed / available",
            f"{_bytes(r.model_flash_bytes + r.runtime_flash_bytes)} / "
            f"{_bytes(r.available_flash_bytes)}",
        ),  # fmt: skip
        ("TFLM", f"commit {r.tflm_commit or 'unknown'}; {r.compiler_version}"),
        ("host TFLM", _host(r)),
    ]
    if r.arena_probe_note:
        rows.append(("arena probe", r.arena_probe_note))
    if r.problem:
        rows.append(("problem", r.problem))
    return rows


def _host(r: DeviceResult) -> str:
    """The host interpreter the outputs are compared with, and whether it is the tree's TFLM."""
    text = r.host_tflm.describe()
    if r.tflm_commits_differ:
        return (
            f"{text}: NOT the device tree's commit; outputs are compared across two TFLM "
            "versions (install the tflite-micro wheel built from the tree's commit)"
        )
    if r.tflm_commits_differ is False:
        return f"{text}, the device tree's commit"
    return f"{text}; the device tree's commit is unknown, not compared"


def _equal(r: DeviceResult) -> str:
    if r.outputs_equal_host is None:
        return "not run (size only)"
    if r.outputs_equal_host:
        return "yes, byte for byte (max |score difference| 0)"
    diff = "n/a" if r.max_abs_score_diff is None else f"{r.max_abs_score_diff:.6g}"
    if r.outputs_within_tolerance:
        return f"float32 outputs within 1e-5 relative, not byte for byte (max difference {diff})"
    return f"NO (max |dequantized score difference| {diff})"


def _instructions(r: DeviceResult) -> str:
    if r.instructions_per_inference is None:
        return f"n/a ({r.instructions_missing})" if r.instructions_missing else "n/a"
    return (
        f"{r.instructions_per_inference:,} (emulated by QEMU -icount, not cycles; "
        f"{r.instructions_per_tick:g} per timer tick, calibrated)"
    )


def _verdict(r: DeviceResult) -> str:
    if r.ok:
        what = "fits" if r.machine is None else "runs with the host's outputs and fits"
        return f"OK: {what} {r.target}"
    reasons = []
    if r.machine and not (r.outputs_equal_host or r.outputs_within_tolerance):
        reasons.append(r.problem or "outputs differ from the host TFLM")
    if not r.fits:
        reasons.append(f"does not fit {r.target}")
    return "FAIL: " + "; ".join(reasons or [r.problem or "see above"])
