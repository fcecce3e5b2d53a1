"""TFLM's op resolver as data: every ``MicroMutableOpResolver::Add*()`` method and its operator.

``edge_prune/data/tflm_op_resolver.toml`` lists, for one TFLM tree, each public ``Add*()``
method of ``tensorflow/lite/micro/micro_mutable_op_resolver.h`` and what it registers:

- a builtin operator (``AddBuiltin(BuiltinOperator_X, ...)`` in its body) as ``"X"``;
- a custom operator (``AddCustom("NAME", ...)``) as ``"CUSTOM:NAME"``, the way
  :mod:`edge_prune.measurement.tflite_file` names an operator by its ``custom_code``. A name
  returned by a function (``AddCustom(tflite::GetString_ETHOSU(), ...)``) is looked up in the
  tree's kernel sources; a method that registers only when its kernel exists (``if
  (registration)``) says so;
- its parameters (all have defaults in the pinned tree: the firmware calls ``AddX()``).

It is generated, never edited: ``python -m edge_prune.measurement.op_resolver TFLM_DIR [--commit
C]`` rewrites it (``--check`` compares instead). :func:`firmware_methods` is what
:mod:`edge_prune.measurement.firmware` reads. No TensorFlow, no TFLM import: text parsing only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edge_prune.artifacts import write_atomic
from edge_prune.data import DATA_DIR
from edge_prune.errors import ConfigError

HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
TABLE_PATH = DATA_DIR / "tflm_op_resolver.toml"
# Where TFLM defines functions that return a custom op's name (GetString_ETHOSU).
_STRING_FUNCTION_DIRS = ("tensorflow/lite/micro/kernels",)
# Public methods that take the op as an argument rather than register one.
_GENERIC_METHODS = frozenset({"AddCustom", "AddBuiltin"})

_METHOD_START = re.compile(r"^  (template\s*<[^>]*>\s*)?TfLiteStatus (Add\w+)\(", re.M)
_BUILTIN = re.compile(r"AddBuiltin\(\s*(?:tflite::)?BuiltinOperator_(\w+)\s*,")
_CUSTOM_LITERAL = re.compile(r'AddCustom\(\s*"([^"]*)"')
_CUSTOM_CALL = re.compile(r"AddCustom\(\s*((?:\w+::)*(\w+))\(\)\s*,")
_STRING_FUNCTION = re.compile(r'const char\* (\w+)\(\)\s*\{\s*return "([^"]*)";\s*\}')
_REGISTER = re.compile(r"(Register_\w+)\(\)")


@dataclass(frozen=True)
class ResolverMethod:
    """One ``Add*()`` method: the op it registers (``"X"`` or ``"CUSTOM:NAME"``), ``kind``
    builtin/custom, its parameters as declared, and how many have no default."""

    method: str
    op: str
    kind: str
    params: tuple[str, ...]
    required_params: int
    register: str = ""  # the Register_* function whose kernel it registers (its sources)
    template: str = ""
    custom_name_from: str = ""
    registers_only_if: str = ""

    @property
    def callable_without_arguments(self) -> bool:
        return self.required_params == 0 and not self.template


@dataclass(frozen=True)
class ResolverTable:
    """The generated table: where it came from and its methods, sorted by method name."""

    tflm_commit: str
    header: str
    header_sha256: str
    methods: tuple[ResolverMethod, ...]

    def by_op(self) -> dict[str, ResolverMethod]:
        return {m.op: m for m in self.methods}


# --------------------------------------------------------------------------- parsing


def _balanced(text: str, start: int, open_char: str, close_char: str) -> int:
    """Index just past the bracket closing the one at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_char:
            depth += 1
        elif text[i] == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ConfigError(f"{HEADER}: unbalanced {open_char}{close_char} from offset {start}")


def _depth_step(ch: str) -> int:
    return 1 if ch in "(<" else -1 if ch in ")>" else 0


def _split_params(text: str) -> tuple[str, ...]:
    params, depth, current = [], 0, ""
    for ch in text:
        depth += _depth_step(ch)
        if ch == "," and depth == 0:
            params.append(current)
            current = ""
        else:
            current += ch
    params.append(current)
    return tuple(" ".join(p.split()) for p in params if p.strip())


def _has_default(param: str) -> bool:
    depth = 0
    for ch in param:
        depth += _depth_step(ch)
        if ch == "=" and depth == 0:
            return True
    return False


def _methods_in(text: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    """``(template, name, params, body)`` of every ``TfLiteStatus Add*(...) {...}`` at class
    member indentation."""
    found = []
    for match in _METHOD_START.finditer(text):
        open_paren = match.end() - 1
        close_paren = _balanced(text, open_paren, "(", ")")
        open_brace = text.index("{", close_paren)
        body = text[open_brace : _balanced(text, open_brace, "{", "}")]
        params = _split_params(text[open_paren + 1 : close_paren - 1])
        found.append((" ".join((match.group(1) or "").split()), match.group(2), params, body))
    return found


def _string_functions(tree: Path) -> dict[str, tuple[str, str]]:
    """``name -> (string, file)`` of ``const char* Name() { return "..."; }`` in TFLM's kernels;
    a non-empty definition wins over an empty stub (kernels/ethosu.cc returns "")."""
    found: dict[str, tuple[str, str]] = {}
    for directory in _STRING_FUNCTION_DIRS:
        for path in sorted((tree / directory).rglob("*.cc")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for name, value in _STRING_FUNCTION.findall(text):
                if value or name not in found:
                    found[name] = (value, path.relative_to(tree).as_posix())
    return found


def _method_entry(template, name, params, body, strings) -> ResolverMethod:
    required = sum(not _has_default(p) for p in params)
    common = {"method": name, "params": params, "required_params": required}
    register = _REGISTER.search(" ".join(params) + body)
    common["register"] = register.group(1) if register else ""
    builtin = _BUILTIN.search(body)
    literal = _CUSTOM_LITERAL.search(body)
    call = _CUSTOM_CALL.search(body)
    common["template"] = template
    if "if (registration)" in body:  # AddEthosU: Register_ETHOSU() is null without Ethos-U
        common["registers_only_if"] = "its Register_ function returns a kernel in this build"
    if builtin:
        return ResolverMethod(op=builtin.group(1), kind="builtin", **common)
    if literal:
        return ResolverMethod(op=f"CUSTOM:{literal.group(1)}", kind="custom", **common)
    if call and strings.get(call.group(2), ("", ""))[0]:
        value, source = strings[call.group(2)]
        return ResolverMethod(
            op=f"CUSTOM:{value}",
            kind="custom",
            custom_name_from=f"{call.group(1)}() in {source}",
            **common,
        )
    raise ConfigError(f"{HEADER}: cannot tell which operator {name}() registers")


def parse_header(text: str, strings: dict[str, tuple[str, str]]) -> tuple[ResolverMethod, ...]:
    """Every op-registering ``Add*()`` method of the header text, sorted by method name."""
    methods = [
        _method_entry(template, name, params, body, strings)
        for template, name, params, body in _methods_in(text)
        if name not in _GENERIC_METHODS
    ]
    ops = [m.op for m in methods]
    twice = sorted({op for op in ops if ops.count(op) > 1})
    if twice:
        raise ConfigError(f"{HEADER}: operators registered by more than one method: {twice}")
    return tuple(sorted(methods, key=lambda m: m.method))


def generate(tree: str | Path, commit: str | None = None) -> ResolverTable:
    """The table of the TFLM tree at ``tree``; ``commit`` defaults to the directory name."""
    tree = Path(tree)
    header = tree / HEADER
    if not header.is_file():
        raise ConfigError(f"{tree}: not a TFLM tree (no {HEADER})")
    data = header.read_bytes()
    return ResolverTable(
        tflm_commit=commit or tree.resolve().name,
        header=HEADER,
        header_sha256=hashlib.sha256(data).hexdigest(),
        methods=parse_header(data.decode("utf-8"), _string_functions(tree)),
    )


# --------------------------------------------------------------------------- TOML


def render(table: ResolverTable) -> str:
    """The TOML text of ``table`` (what ``edge_prune/data/tflm_op_resolver.toml`` holds)."""
    custom = sum(m.kind == "custom" for m in table.methods)
    lines = [
        "# Every Add*() method of TFLM's MicroMutableOpResolver and the operator it registers.",
        "# Generated by `python -m edge_prune.measurement.op_resolver TFLM_DIR`; "
        "do not edit, rerun it.",
        "# op: the builtin operator name, or CUSTOM:<custom_code> for a custom operator.",
        f"tflm_commit = {_toml(table.tflm_commit)}",
        f"header = {_toml(table.header)}",
        f"header_sha256 = {_toml(table.header_sha256)}",
        f"method_count = {len(table.methods)}",
        f"builtin_count = {len(table.methods) - custom}",
        f"custom_count = {custom}",
    ]
    for m in table.methods:
        lines += [
            "",
            "[[methods]]",
            f"method = {_toml(m.method)}",
            f"op = {_toml(m.op)}",
            f"kind = {_toml(m.kind)}",
            f"params = [{', '.join(_toml(p) for p in m.params)}]",
            f"required_params = {m.required_params}",
        ]
        for key in ("register", "template", "custom_name_from", "registers_only_if"):
            if getattr(m, key):
                lines.append(f"{key} = {_toml(getattr(m, key))}")
    return "\n".join(lines) + "\n"


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a JSON string is a TOML basic string


def parse_table(text: str, source: str = str(TABLE_PATH)) -> ResolverTable:
    try:
        data = tomllib.loads(text)
        methods = tuple(
            ResolverMethod(**(m | {"params": tuple(m["params"])})) for m in data["methods"]
        )
        return ResolverTable(
            tflm_commit=data["tflm_commit"],
            header=data["header"],
            header_sha256=data["header_sha256"],
            methods=methods,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{source}: not an op resolver table ({type(e).__name__}: {e})") from e


@lru_cache(maxsize=1)
def load() -> ResolverTable:
    """The shipped table."""
    return parse_table(TABLE_PATH.read_text(encoding="utf-8"))


def firmware_methods() -> dict[str, str]:
    """Op name -> the method a firmware calls with no argument to register it."""
    return {m.op: m.method for m in load().methods if m.callable_without_arguments}


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_prune.measurement.op_resolver",
        description=f"Regenerate {TABLE_PATH.name} from a TFLM tree's {HEADER}.",
    )
    parser.add_argument("tree", help="a TFLM source tree (e.g. laid out by setup.sh)")
    parser.add_argument("--commit", help="the tree's TFLM commit (default: its directory name)")
    parser.add_argument("--out", default=str(TABLE_PATH), help="where to write the table")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the table differs, write nothing"
    )
    args = parser.parse_args(argv)
    try:
        text = render(generate(args.tree, args.commit))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'up to date' if same else 'differs from ' + args.tree}")
        return 0 if same else 1
    write_atomic(out, text)
    print(f"{out}: {text.count('[[methods]]')} methods from {Path(args.tree) / HEADER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
