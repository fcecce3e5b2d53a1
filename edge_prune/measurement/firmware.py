"""Firmware drop-in: the model as a C array, its op resolver and its arena size, for TFLM.

For one ``.tflite`` this writes what a firmware engineer would otherwise copy by hand from the
report:

- ``model_data.cc`` / ``model_data.h``: the flatbuffer as a 16-byte-aligned array (TFLM reads
  it in place), the tensor arena size, and each input's and output's type, shape and
  quantization (scale, zero point) as constants;
- ``model_ops.h``: a ``MicroMutableOpResolver`` sized for the model and a function that
  registers exactly the kernels it uses (``AddDecode()`` for compressed models);
- ``FIRMWARE.md``: the few lines that run the model with these files;
- for a model with edge-prune's sparse operators (``EDGE_PRUNE_SPARSE_FC`` / ``_CONV``, and
  ``_FC_INT4`` / ``_CONV_INT4`` on INT4 weights), the kernels' C++ sources
  (``edge_prune_sparse*.cc/.h``; the int4 ones only for a model that uses an int4 op), which
  ``model_ops.h`` registers with ``AddCustom``.

Every C/C++ name starts with the model's identifier, so two models link into one firmware.
Reads the flatbuffer only (:func:`edge_prune.measurement.tflite_file.read_model`); no TensorFlow.
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from edge_prune.artifacts import TFLM_ALIGNMENT_BYTES, emit_files, write_atomic
from edge_prune.errors import ConfigError, UnsupportedModelError
from edge_prune.measurement.op_resolver import HEADER as RESOLVER_HEADER
from edge_prune.measurement.op_resolver import firmware_methods
from edge_prune.measurement.op_resolver import load as load_resolver_table
from edge_prune.measurement.sparse import native as sparse_native
from edge_prune.measurement.tflite_file import ModelInfo, TensorInfo, load_bytes, read_model

DATA_HEADER = "model_data.h"
DATA_SOURCE = "model_data.cc"
OPS_HEADER = "model_ops.h"
GUIDE = "FIRMWARE.md"
DECODE_OP = "CUSTOM:TFLM_DECODE"  # how tflite_file names the custom op compressed models use
MODEL_FILE = "model.tflite"  # the model beside its firmware files, as `edge-prune model` writes it
HOST_ARENA_NOTE = (
    "the smallest arena a MicroInterpreter needs on a 32-bit Cortex-M with TFLM's reference "
    "kernels, derived from the allocations TFLM recorded on the host with measured 32-bit "
    "struct sizes; it holds non-persistent tensors (head, including decoded weights of "
    "compressed tensors) and persistent structures (tail)"
)


def verdict_arena_note(verdict) -> str:
    """What ``kModelTensorArenaSize`` is when it is ``verdict``'s arena (a
    :class:`edge_prune.measurement.footprint.Verdict`): the figure its RAM check used, for its
    target."""
    from edge_prune.measurement.footprint import arena_what

    what = arena_what(verdict.target, verdict.kernel_arena).removeprefix("tensor arena ")
    return (
        f"the tensor arena edge-prune's verdict for {verdict.target.name} uses, {what}; it "
        "holds non-persistent tensors "
        "(head: the memory plan with the kernels' scratch buffers and decoded weights of "
        "compressed tensors) and persistent structures (tail)"
    )


# The flatbuffer's op name -> the MicroMutableOpResolver method that registers its kernel:
# generated from tflite-micro's tensorflow/lite/micro/micro_mutable_op_resolver.h into
# edge_prune/data/tflm_op_resolver.toml (see edge_prune/measurement/op_resolver.py), builtin ops by
# name and custom ops as "CUSTOM:<custom code>" (AddDecode registers TFLM_DECODE, the custom op that
# LUT-, pruning- and Huffman-compressed models use; the Signal library's ops are custom ops too).
TFLM_ADD_METHODS: dict[str, str] = firmware_methods()
# edge-prune's own kernels, registered with AddCustom (edge_prune_sparse_ops.h, and
# edge_prune_sparse_int4_ops.h for the int4 ones).
SPARSE_OPS: dict[str, str] = {
    "CUSTOM:EDGE_PRUNE_SPARSE_FC": "edge_prune::Register_EDGE_PRUNE_SPARSE_FC",
    "CUSTOM:EDGE_PRUNE_SPARSE_CONV": "edge_prune::Register_EDGE_PRUNE_SPARSE_CONV",
    "CUSTOM:EDGE_PRUNE_SPARSE_FC_INT4": "edge_prune::Register_EDGE_PRUNE_SPARSE_FC_INT4",
    "CUSTOM:EDGE_PRUNE_SPARSE_CONV_INT4": "edge_prune::Register_EDGE_PRUNE_SPARSE_CONV_INT4",
}
SPARSE_INT4_OPS = frozenset(f"CUSTOM:{name}" for name in sparse_native.INT4_OPS)
SPARSE_INT8_SOURCES = (*sparse_native.HEADERS, *sparse_native.SOURCES)
SPARSE_INT4_SOURCES = (*sparse_native.INT4_HEADERS, *sparse_native.INT4_SOURCES)
SPARSE_SOURCES = (*SPARSE_INT8_SOURCES, *SPARSE_INT4_SOURCES)


def sparse_sources(ops) -> tuple[str, ...]:
    """The kernel sources a firmware with ``ops`` needs: none without a sparse op; the int8
    kernels and glue (which the int4 ones build on) for any; the int4 ones only with an int4
    op."""
    ops = set(ops)
    if not ops & SPARSE_OPS.keys():
        return ()
    return (*SPARSE_INT8_SOURCES, *(SPARSE_INT4_SOURCES if ops & SPARSE_INT4_OPS else ()))


RESOLVER_SOURCE = f"tflite-micro {load_resolver_table().tflm_commit}, {RESOLVER_HEADER}"

# TensorType names of the flatbuffer schema -> TfLiteType enumerators
# (tensorflow/lite/core/c/c_api_types.h).
_TFLITE_TYPES: dict[str, str] = {
    "FLOAT32": "kTfLiteFloat32",
    "FLOAT16": "kTfLiteFloat16",
    "FLOAT64": "kTfLiteFloat64",
    "INT4": "kTfLiteInt4",
    "INT8": "kTfLiteInt8",
    "INT16": "kTfLiteInt16",
    "INT32": "kTfLiteInt32",
    "INT64": "kTfLiteInt64",
    "UINT8": "kTfLiteUInt8",
    "UINT16": "kTfLiteUInt16",
    "UINT32": "kTfLiteUInt32",
    "UINT64": "kTfLiteUInt64",
    "BOOL": "kTfLiteBool",
}

_CXX_KEYWORDS = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast
    continue co_await co_return co_yield decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires restrict return short signed sizeof static static_assert
    static_cast struct switch template this thread_local throw true try typedef typeid typename
    union unsigned using virtual void volatile wchar_t while xor xor_eq""".split()
)


@dataclass(frozen=True)
class FirmwareSources:
    """The generated files of one model (``files``: file name -> text) and what they hold.

    ``registered_ops`` are the flatbuffer op names the resolver registers, sorted;
    ``unsupported_ops`` the ones TFLM has no ``Add...()`` method for (the model will not start
    on TFLM until they are registered by hand). ``arena_bytes`` is the arena constant as
    written (rounded up to 16 bytes), or None when no arena figure was given.
    """

    model_name: str
    prefix: str
    files: dict[str, str] = field(repr=False)
    registered_ops: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    arena_bytes: int | None


# --------------------------------------------------------------------------- names


def c_identifier(name: str) -> str:
    """A C/C++ identifier made from a model name, distinct for distinct names.

    A name that is already one (lower case, ASCII, no leading digit, no keyword, no ``__``,
    e.g. ``digits_cnn``) is kept. Any other name is folded the same way (accents dropped,
    other characters to ``_``) and gets 8 hex digits of its SHA-256 appended, so that names
    folding alike stay apart: ``digits-cnn`` → ``digits_cnn_<hash>``, never ``digits_cnn``.
    A name that already ends in ``_`` and 8 hex digits gets them too (``digits_cnn_d6581523``
    is not what ``digits-cnn`` became).
    """
    folded = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    ident = re.sub(r"[^0-9a-z]+", "_", ascii_only.lower()).strip("_") or "model"
    if ident[0].isdigit() or ident in _CXX_KEYWORDS or keyword.iskeyword(ident):
        ident = f"m_{ident}"
    if ident != name or re.search(r"_[0-9a-f]{8}$", name):
        ident = f"{ident}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"
    return ident


def camel_prefix(ident: str) -> str:
    """``digits_cnn_v2`` → ``DigitsCnnV2`` for constant and type names (``kDigitsCnnV2...``).

    A part that starts with a digit keeps its underscore (``net_5x`` → ``Net_5x``), so two
    different identifiers never give the same prefix.
    """
    parts = ident.split("_")
    out = parts[0][:1].upper() + parts[0][1:]
    for part in parts[1:]:
        out += f"_{part}" if part[:1].isdigit() else part[:1].upper() + part[1:]
    return out


# --------------------------------------------------------------------------- the C array


def c_array_sources(model: bytes, name: str, header_name: str = DATA_HEADER) -> dict[str, str]:
    """C/C++ source and header holding ``model`` as a 16-byte-aligned array with its length.

    The array is ``g_<name>_model_data`` and the length ``g_<name>_model_data_len``, as TFLM
    examples name them. Returns ``{header_name: ..., "<stem>.cc": ...}``.
    """
    ident = _array_name(c_identifier(name))
    guard = _guard(c_identifier(name), header_name)
    header = (
        f"// Generated by edge-prune: the {_comment(name)} model as a TFLite flatbuffer.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"{_array_declarations(ident)}\n"
        f"#endif  // {guard}\n"
    )
    return {header_name: header, f"{Path(header_name).stem}.cc": _array_source(model, name)}


def _array_name(prefix: str) -> str:
    return f"g_{prefix}_model_data"


def _array_declarations(ident: str) -> str:
    return f"extern const unsigned char {ident}[];\nextern const unsigned int {ident}_len;\n"


def _array_source(model: bytes, name: str, header_name: str = DATA_HEADER) -> str:
    ident = _array_name(c_identifier(name))
    rows = (
        "  " + ", ".join(f"0x{b:02x}" for b in model[i : i + 12]) for i in range(0, len(model), 12)
    )
    return (
        f"// Generated by edge-prune: the {_comment(name)} model, {len(model)} bytes of TFLite "
        "flatbuffer.\n"
        f'#include "{header_name}"\n\n'
        f"// TFLM reads the model in place: keep it aligned.\n"
        f"alignas({TFLM_ALIGNMENT_BYTES}) const unsigned char {ident}[] = {{\n"
        + ",\n".join(rows)
        + f"\n}};\nconst unsigned int {ident}_len = {len(model)};\n"
    )


def _guard(prefix: str, file_name: str) -> str:
    return f"EDGE_PRUNE_{prefix.upper()}_{re.sub(r'[^0-9A-Za-z]', '_', file_name).upper()}_"


def _comment(text: str) -> str:
    """``text`` made safe inside a ``//`` comment (one line, no trigraph or line splice)."""
    return re.sub(r"[\x00-\x1f\x7f\\?]", "_", text) or "unnamed"


# --------------------------------------------------------------------------- all files


def firmware_sources(
    tflite_bytes: bytes,
    model_name: str,
    *,
    arena_bytes: int | None,
    arena_note: str = HOST_ARENA_NOTE,
) -> FirmwareSources:
    """The firmware files of one model; see the module docstring for what each holds.

    ``arena_bytes``: the tensor arena the model needs (e.g. ``Footprint.arena_bytes``), written
    rounded up to 16 bytes with ``arena_note`` (what the figure counts) beside it; None when
    TFLM could not run the model, and then the header says so and defines no arena size.
    """
    if arena_bytes is not None and (
        isinstance(arena_bytes, bool) or not isinstance(arena_bytes, int) or arena_bytes < 0
    ):
        raise ConfigError(f"arena_bytes: got {arena_bytes!r}, expected a byte count >= 0 or None")
    info = read_model(tflite_bytes)
    prefix = c_identifier(model_name)
    registered = tuple(op for op in info.op_types if op in TFLM_ADD_METHODS or op in SPARSE_OPS)
    unsupported = tuple(op for op in info.op_types if op not in registered)
    arena = None if arena_bytes is None else _round_up(arena_bytes, TFLM_ALIGNMENT_BYTES)
    names = _Names(prefix)
    files = {
        DATA_HEADER: _data_header(info, model_name, names, arena, arena_note),
        DATA_SOURCE: _array_source(tflite_bytes, model_name),
        OPS_HEADER: _ops_header(model_name, names, registered, unsupported),
        GUIDE: _guide(model_name, names, info, registered, unsupported, arena, arena_note),
    }
    files |= {f: (sparse_native.KERNELS_DIR / f).read_text() for f in sparse_sources(registered)}
    return FirmwareSources(
        model_name=model_name,
        prefix=prefix,
        files=files,
        registered_ops=registered,
        unsupported_ops=unsupported,
        arena_bytes=arena,
    )


def write_firmware(
    directory: str | Path,
    tflite_bytes: bytes,
    model_name: str,
    *,
    arena_bytes: int | None,
    arena_note: str = HOST_ARENA_NOTE,
) -> list[Path]:
    """Write the firmware files of one model into ``directory`` (each atomically)."""
    sources = firmware_sources(
        tflite_bytes, model_name, arena_bytes=arena_bytes, arena_note=arena_note
    )
    return write_sources(directory, sources)


def write_sources(directory: str | Path, sources: FirmwareSources) -> list[Path]:
    """Write already generated files into ``directory``; returns their paths, sorted."""
    directory = Path(directory)
    return [write_atomic(directory / name, text) for name, text in sorted(sources.files.items())]


def write_report_firmware(directory: str | Path, model: str | Path, verdicts) -> list[Path]:
    """``edge-prune report --emit-c``: the firmware files of ``model`` (a .tflite path), a copy
    of the model as ``model.tflite`` (so that ``edge-prune device DIR`` builds these very
    files), and the arena of the report's verdict (``verdicts``: its
    :class:`edge_prune.measurement.footprint.Verdict` per target; with several, the largest arena,
    so that the files start on every target reported).

    The model name is the file stem. Says on stderr what was written and which ops TFLM
    cannot register, so that the report on stdout stays as it is.
    """
    data, _ = load_bytes(model)
    verdict = max(verdicts, key=lambda v: -1 if v.arena_bytes is None else v.arena_bytes)
    note = HOST_ARENA_NOTE if verdict.arena_bytes is None else verdict_arena_note(verdict)
    sources = firmware_sources(
        data, Path(model).stem, arena_bytes=verdict.arena_bytes, arena_note=note
    )
    try:
        paths = emit_files(directory, {**sources.files, MODEL_FILE: data})
    except OSError as e:
        where = e.filename or directory
        raise ConfigError(
            f"--emit-c {directory}: cannot write the firmware files ({where}: {e.strerror}); "
            "the directory is as it was"
        ) from e
    print(
        f"firmware files for {sources.prefix!r} written to {directory}: "
        + ", ".join(p.name for p in paths),
        file=sys.stderr,
    )
    if sources.unsupported_ops:
        print(
            f"model_ops.h: not registered, the op resolver of {RESOLVER_SOURCE} has no Add "
            "method for " + ", ".join(sources.unsupported_ops),
            file=sys.stderr,
        )
    return paths


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class _Names:
    prefix: str  # digits_cnn

    @property
    def camel(self) -> str:  # DigitsCnn
        return camel_prefix(self.prefix)

    @property
    def array(self) -> str:
        return _array_name(self.prefix)

    def constant(self, what: str) -> str:
        return f"k{self.camel}{what}"

    @property
    def resolver_type(self) -> str:
        return f"{self.camel}OpResolver"

    @property
    def register_function(self) -> str:
        return f"{self.camel}RegisterOps"


# --------------------------------------------------------------------------- model_data.h


def _data_header(info: ModelInfo, name: str, n: _Names, arena: int | None, note: str) -> str:
    guard = _guard(n.prefix, DATA_HEADER)
    lines = [
        f"// Generated by edge-prune: the {_comment(name)} model as a TFLite flatbuffer, its",
        "// tensor arena size, and the type, shape and quantization of its inputs and outputs.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tensorflow/lite/c/common.h"  // TfLiteType',
        "",
        _array_declarations(n.array).rstrip("\n"),
        "",
        *_arena_lines(n, arena, note),
        "",
        *_tensor_lines(n, "Input", info.input_tensors),
        *_tensor_lines(n, "Output", info.output_tensors),
        f"#endif  // {guard}",
    ]
    return "\n".join(lines) + "\n"


def _arena_lines(n: _Names, arena: int | None, note: str) -> list[str]:
    wrapped = _wrap_comment(f"Tensor arena: {note}.")
    if arena is None:
        return [
            "// No tensor arena size: the TFLM interpreter could not run this model (see",
            "// the operators named in model_ops.h).",
        ]
    return [
        *wrapped,
        f"// Rounded up to {TFLM_ALIGNMENT_BYTES} bytes. Not included: the application's own "
        "buffers, stack and heap.",
        f"constexpr unsigned int {n.constant('TensorArenaSize')} = {arena};",
    ]


def _wrap_comment(text: str, width: int = 96) -> list[str]:
    words, lines, line = _comment(text).split(), [], "//"
    for word in words:
        if len(line) + 1 + len(word) > width and line != "//":
            lines.append(line)
            line = "//"
        line += " " + word
    return [*lines, line]


def _tensor_lines(n: _Names, role: str, tensors: tuple[TensorInfo, ...]) -> list[str]:
    lines = [f"constexpr int {n.constant(role + 'Count')} = {len(tensors)};", ""]
    for i, tensor in enumerate(tensors):
        lines += _one_tensor(n, f"{role}{i}", tensor) + [""]
    return lines


def _one_tensor(n: _Names, label: str, t: TensorInfo) -> list[str]:
    tflite_type = _TFLITE_TYPES.get(t.dtype)
    if tflite_type is None:
        raise UnsupportedModelError(
            f"tensor {t.name!r}: type {t.dtype} has no TfLiteType edge-prune can name "
            f"(expected one of {', '.join(_TFLITE_TYPES)})"
        )
    const = n.constant
    elements = math.prod(t.shape)
    lines = [
        f"// {label}: tensor {t.index} '{_comment(t.name)}', {t.dtype} {list(t.shape)}",
        f"constexpr TfLiteType {const(label + 'Type')} = {tflite_type};",
        f"constexpr int {const(label + 'DimsCount')} = {len(t.shape)};",
    ]
    if t.shape:
        dims = ", ".join(str(d) for d in t.shape)
        lines.append(f"constexpr int {const(label + 'Dims')}[] = {{{dims}}};")
    lines.append(f"constexpr int {const(label + 'ElementCount')} = {elements};")
    lines += _quantization_lines(const, label, t)
    return lines


def _quantization_lines(const, label: str, t: TensorInfo) -> list[str]:
    """real_value = scale * (quantized_value - zero_point); 0 and 0 when not quantized."""
    if len(t.scale) > 1:
        note = f"// Quantized per channel ({len(t.scale)} scales): the first one below."
    elif not t.scale:
        note = "// Not quantized: scale 0 and zero point 0."
    else:
        note = "// real = scale * (quantized - zero_point)"
    scale = t.scale[0] if t.scale and math.isfinite(t.scale[0]) else 0.0
    zero_point = t.zero_point[0] if t.zero_point else 0
    return [
        note,
        f"constexpr float {const(label + 'Scale')} = {_float_literal(scale)};",
        f"constexpr int {const(label + 'ZeroPoint')} = {zero_point};",
    ]


def _float_literal(x: float) -> str:
    """A C++ float literal that reads back as the same float32 (9 significant digits)."""
    text = f"{x:.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


# --------------------------------------------------------------------------- model_ops.h


def _ops_header(
    name: str, n: _Names, registered: tuple[str, ...], unsupported: tuple[str, ...]
) -> str:
    guard = _guard(n.prefix, OPS_HEADER)
    count = n.constant("OpCount")
    lines = [
        f"// Generated by edge-prune: the TFLM kernels the {_comment(name)} model uses, and",
        "// nothing else (each kernel registered costs flash).",
        f"// Method names: {RESOLVER_SOURCE}.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
    ]
    if any(op in SPARSE_OPS for op in registered):
        compiled = [f for f in sparse_sources(registered) if f.endswith(".cc")]
        lines += [
            "// edge-prune's sparse kernels: compile "
            + ", ".join(compiled[:-1])
            + f" and {compiled[-1]}",
            "// (beside this file) with the application.",
            '#include "edge_prune_sparse_ops.h"',
        ]
        if any(op in SPARSE_INT4_OPS for op in registered):
            lines.append('#include "edge_prune_sparse_int4_ops.h"')
        lines.append("")
    if unsupported:
        lines += [
            "// NOT REGISTERED, TFLM has no kernel method for: " + ", ".join(unsupported) + ".",
            f"// ({RESOLVER_SOURCE} has no Add method for them.) The interpreter will fail",
            "// on them at start-up unless you register your own kernels.",
            "",
        ]
    lines += _conditional_lines(registered)
    if DECODE_OP in registered:
        lines += [
            "// The model holds compressed weights: AddDecode() registers TFLM_DECODE, which",
            "// needs a TFLM snapshot with the DECODE kernel (tflite-micro PR 3673, 2026-08).",
            "",
        ]
    lines += [
        f"constexpr unsigned int {count} = {max(len(registered), 1)};",
        f"using {n.resolver_type} = tflite::MicroMutableOpResolver<{count}>;",
        "",
        "// Registers the model's kernels; returns the first failing Add call's status.",
        f"inline TfLiteStatus {n.register_function}({n.resolver_type}& resolver) {{",
        "  TfLiteStatus status = kTfLiteOk;",
    ]
    for op in registered:
        lines.append(
            f"  if ((status = {_add_call(op)}) != kTfLiteOk) return status;  // {_comment(op)}"
        )
    lines += ["  return status;", "}", "", f"#endif  // {guard}"]
    return "\n".join(lines) + "\n"


def _add_call(op: str) -> str:
    if op in SPARSE_OPS:
        name = op.removeprefix("CUSTOM:")
        return f'resolver.AddCustom("{name}", {SPARSE_OPS[op]}())'
    return f"resolver.{TFLM_ADD_METHODS[op]}()"


def _conditional_lines(registered: tuple[str, ...]) -> list[str]:
    """A note for each method that registers its op only in some TFLM builds (AddEthosU)."""
    methods = load_resolver_table().by_op()
    lines = []
    for op in registered:
        if op in SPARSE_OPS:
            continue
        if methods[op].registers_only_if:
            lines += _wrap_comment(
                f"{methods[op].method}() registers {op} only when "
                f"{methods[op].registers_only_if} (a TFLM built with that kernel); otherwise "
                "it registers nothing and the interpreter fails on the op at start-up.",
                width=88,
            ) + [""]
    return lines


# --------------------------------------------------------------------------- FIRMWARE.md


def _guide(
    name: str,
    n: _Names,
    info: ModelInfo,
    registered: tuple[str, ...],
    unsupported: tuple[str, ...],
    arena: int | None,
    note: str,
) -> str:
    ops = ", ".join(f"`{op}`" for op in registered) or "none"
    lines = [
        f"# Running {_comment(name)} with TFLM",
        "",
        f"`{DATA_SOURCE}` and `{DATA_HEADER}` hold the {info.size_bytes:,}-byte flatbuffer as "
        f"`{n.array}`, the tensor arena size and the inputs' and outputs' type, shape and "
        f"quantization; `{OPS_HEADER}` registers the kernels of the model's "
        f"{len(registered)} op types ({ops}) and no other. `{DATA_HEADER}` includes "
        "`tensorflow/lite/c/common.h` (for `TfLiteType`): compile with TFLM's include path.",
        "",
    ]
    if arena is None:
        lines.append("No arena size: the TFLM interpreter could not run this model.")
    else:
        lines += [
            "```cpp",
            *guide_code(n.prefix, info),
            "```",
            "",
            f"Tensor arena: `{n.constant('TensorArenaSize')}` = {arena:,} bytes, {note}. It "
            "leaves out the application's own buffers, stack and heap.",
            "",
            "On the board, `interpreter.arena_used_bytes()` after `AllocateTensors()` reads the "
            "head and tail the model keeps (measured on a Cortex-M4 with TFLM 90b983c2: 12 B to "
            "2.3 KB below the smallest arena with which `AllocateTensors()` succeeds), not that "
            "smallest arena: while it plans the memory, TFLM also holds the planner's working "
            "data in the arena. Do not size the arena from `arena_used_bytes()`; the constant "
            "above is the smallest arena estimated for the build it names (core and kernel "
            "set), at or above the measured one: use it as it is.",
        ]
    if DECODE_OP in registered:
        lines += [
            "",
            "The model holds compressed weights and `TFLM_DECODE` operators. Use a TFLM "
            "snapshot recent enough to build and register the DECODE kernel (tflite-micro PR "
            "3673, 2026-08; the pruning and Huffman decoders came with PRs 3162 and 3188); "
            "with an older one the model fails at start-up on \"Didn't find op for custom "
            "opcode 'TFLM_DECODE'\". The decoded tensors live in the arena (counted above).",
        ]
    if any(op in SPARSE_OPS for op in registered):
        sparse = [f"`{op.removeprefix('CUSTOM:')}`" for op in registered if op in SPARSE_OPS]
        compiled = [f"`{f}`" for f in sparse_sources(registered) if f.endswith(".cc")]
        int4 = (
            " The `_INT4` ops compute on 4-bit weights packed two per byte."
            if any(op in SPARSE_INT4_OPS for op in registered)
            else ""
        )
        lines += [
            "",
            f"The model runs pruned layers with edge-prune's sparse kernels ({' / '.join(sparse)}"
            f", registered by `{OPS_HEADER}` with `AddCustom`): compile "
            f"{', '.join(compiled[:-1])} and {compiled[-1]} (written beside this file) with "
            "TFLM's include path and flags. On cores with the DSP extension (M4, M7, M33, M55) "
            "they use SMLAD; elsewhere portable C. Their weights are read in place from the "
            f"flatbuffer.{int4}",
        ]
    if unsupported:
        lines += [
            "",
            "Not registered, TFLM has no kernel for: "
            + ", ".join(f"`{op}`" for op in unsupported)
            + ". The interpreter fails on them at start-up.",
        ]
    return "\n".join(lines) + "\n"


def guide_code(prefix: str, info: ModelInfo) -> list[str]:
    """The C++ of FIRMWARE.md: set up the interpreter once, then fill input 0 and invoke."""
    n = _Names(prefix)
    c = n.constant
    return [
        "#include <cmath>",
        "#include <cstdint>",
        "",
        f'#include "{DATA_HEADER}"',
        f'#include "{OPS_HEADER}"',
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        "",
        "namespace {",
        f"alignas(16) uint8_t tensor_arena[{c('TensorArenaSize')}];",
        f"{n.resolver_type} resolver;",
        "}  // namespace",
        "",
        "// Call once at start-up: the interpreter, or nullptr if it cannot run the model.",
        f"tflite::MicroInterpreter* SetUp{n.camel}() {{",
        f"  if ({n.register_function}(resolver) != kTfLiteOk) return nullptr;",
        "  static tflite::MicroInterpreter interpreter(",
        f"      tflite::GetModel({n.array}), resolver, tensor_arena, {c('TensorArenaSize')});",
        "  if (interpreter.AllocateTensors() != kTfLiteOk) return nullptr;",
        "  return &interpreter;",
        "}",
        "",
        *_run_function(n, info),
    ]


def _run_function(n: _Names, info: ModelInfo) -> list[str]:
    c = n.constant
    head = [
        f"TfLiteStatus Run{n.camel}(tflite::MicroInterpreter* interpreter, const float* values) {{"
    ]
    dtype = info.input_tensors[0].dtype if info.input_tensors else None
    if dtype == "INT8":
        fill = [
            "  int8_t* input = interpreter->input(0)->data.int8;",
            f"  for (int i = 0; i < {c('Input0ElementCount')}; ++i) {{",
            f"    long q = std::lround(values[i] / {c('Input0Scale')}) + {c('Input0ZeroPoint')};",
            "    input[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));",
            "  }",
        ]
    elif dtype == "FLOAT32":
        fill = [
            "  float* input = interpreter->input(0)->data.f;",
            f"  for (int i = 0; i < {c('Input0ElementCount')}; ++i) input[i] = values[i];",
        ]
    else:
        fill = [f"  (void)values;  // fill interpreter->input(0) with {dtype} data here"]
    out = info.output_tensors[0].dtype if info.output_tensors else None
    read = (
        [
            f"  // After Invoke, output 0 value i is {c('Output0Scale')} *",
            f"  //     (interpreter->output(0)->data.int8[i] - {c('Output0ZeroPoint')})",
        ]
        if out == "INT8"
        else ["  // After Invoke, the result is in interpreter->output(0)."]
    )
    return [*head, *_reset(info), *fill, *read, "  return interpreter->Invoke();", "}"]


def _reset(info: ModelInfo) -> list[str]:
    """A model with variable tensors (a converted LSTM's hidden and cell state) keeps them
    across Invoke() calls; each call here is one inference from a zero state, as in Keras and
    on the host (MicroInterpreter::Reset() zeroes them, micro_interpreter.h)."""
    if not info.has_state:
        return []
    return [
        "  // The model keeps state between Invoke() calls (variable tensors): start each",
        "  // inference from a zero state. Drop this to carry the state over a stream.",
        "  if (interpreter->Reset() != kTfLiteOk) return kTfLiteError;",
    ]
