"""Pipeline configuration: a small TOML file, validated at the door into a frozen dataclass.

Example (every key optional; these are the defaults)::

    [train]            # dense training before pruning
    epochs = 12
    batch_size = 32
    learning_rate = 0.003
    seed = 0

    [prune]            # magnitude pruning, then fine-tuning at a lower rate
    schedule = "polynomial"  # "polynomial" (one-shot decay), "iterative", "rewind"
    iterative_steps = 3      # iterative: prune -> fine-tune rounds of equal density ratio
    rewind_epoch = 1         # rewind: the dense training epoch the survivors are reset to
    initial_sparsity = 0.0
    final_sparsity = 0.5
    begin_epoch = 0
    end_epoch = 6
    epochs = 10
    power = 3
    frequency = 10
    learning_rate = 0.001

    [structured]       # remove whole channels/units first (0 = off)
    ratio = 0.5
    criterion = "l1"
    epochs = 4

    [compress]         # sparsity-preserving clustering + TFLM compression per tensor
    enabled = true
    clusters = 8
    bitwidth = 0       # 2-4: LUT only, with indices this wide; 0 = LUT/pruning/Huffman per tensor
    epochs = 3
    learning_rate = 0.0005

    [int4]             # int4 weights candidate: 4-bit weight QAT of the pruned model
    enabled = true
    epochs = 3         # 0: post-training (the weights rounded to the 4-bit grid, no fine-tune)
    learning_rate = 0.0001

    [select]           # the deployable artifact must stay within this many points of dense
    tolerance_points = 1.0
    objective = "flash"  # least flash, "ram" (arena), "balanced", or "time" (per inference)
    max_latency_ms = 0.0 # time budget of one inference (0: none; the target's latency_ms too)
"""

from __future__ import annotations

import math
import reprlib
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_prune.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 0.003
    seed: int = 0


@dataclass(frozen=True)
class PruneConfig:
    schedule: str = "polynomial"
    iterative_steps: int = 3
    rewind_epoch: int = 1
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.5
    begin_epoch: int = 0
    end_epoch: int = 6
    epochs: int = 10
    power: int = 3
    frequency: int = 10
    learning_rate: float = 0.001
    # Blocks pruned together: (1 output channel, k consecutive input channels) of the TFLite
    # filter, as the sparse kernels compute them; (1, 1) is unstructured. Blocks of 4 by
    # default: the SMLAD kernel computes them at about half the instructions per weight, and
    # a layer whose input channels are not a multiple of 4 is pruned unstructured.
    block: tuple[int, int] = (1, 4)


@dataclass(frozen=True)
class StructuredConfig:
    ratio: float = 0.5
    criterion: str = "l1"
    epochs: int = 4


@dataclass(frozen=True)
class CompressConfig:
    enabled: bool = True
    clusters: int = 8
    bitwidth: int = 0
    epochs: int = 3
    learning_rate: float = 0.0005


@dataclass(frozen=True)
class Int4Config:
    enabled: bool = True
    epochs: int = 3
    learning_rate: float = 0.0001


@dataclass(frozen=True)
class SelectConfig:
    tolerance_points: float = 1.0  # classification: top-1 points the deployable may lose
    tolerance_relative: float = 0.1  # regression: relative increase of the error it may have
    objective: str = "flash"  # least flash, least "ram" (arena), "balanced", or least "time"
    max_latency_ms: float = 0.0  # time budget of one inference on the target; 0: none


@dataclass(frozen=True)
class PipelineConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    int4: Int4Config = field(default_factory=Int4Config)
    select: SelectConfig = field(default_factory=SelectConfig)
    # "section.key" names the user set (file or overrides), as opposed to defaults; not saved.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: vars(getattr(self, f.name)).copy() for f in _SECTIONS}

    def is_set(self, dotted: str) -> bool:
        """Whether the user gave ``section.key`` (else it holds its default)."""
        return dotted in self.explicit


_SECTIONS = tuple(f for f in fields(PipelineConfig) if f.name != "explicit")

# Above this, pruning leaves layers of fewer than 100 weights (the first conv of a small CNN)
# without a single weight; clustering and the codecs then have nothing to work on.
MAX_FINAL_SPARSITY = 0.99
_RANGE_NOTES = {
    "prune.final_sparsity": "; higher sparsity leaves small layers with no weight at all",
}
# Allowed range per key, checked after the type: (lowest, highest, highest is inclusive).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "train.epochs": (0, 10_000, True),
    "train.batch_size": (1, 1_000_000, True),
    "train.learning_rate": (1e-9, 10, True),
    "train.seed": (0, 2**31 - 1, True),
    "prune.iterative_steps": (1, 20, True),
    "prune.rewind_epoch": (0, 10_000, True),
    "prune.initial_sparsity": (0, 1, False),
    "prune.final_sparsity": (0, MAX_FINAL_SPARSITY, True),
    "prune.begin_epoch": (0, 10_000, True),
    "prune.end_epoch": (1, 10_000, True),
    "prune.epochs": (1, 10_000, True),
    "prune.power": (1, 10, True),
    "prune.frequency": (1, 1_000_000, True),
    "prune.learning_rate": (1e-9, 10, True),
    "structured.ratio": (0, 1, False),
    "structured.epochs": (0, 10_000, True),
    "compress.clusters": (2, 16, True),
    "compress.epochs": (0, 10_000, True),
    "compress.learning_rate": (1e-9, 10, True),
    "int4.epochs": (0, 10_000, True),
    "int4.learning_rate": (1e-9, 10, True),
    "select.tolerance_points": (0, 100, True),
    "select.tolerance_relative": (0, 100, True),
    "select.max_latency_ms": (0, 1_000_000, True),
}
_CHOICES = {
    "prune.schedule": ("polynomial", "iterative", "rewind"),
    "prune.block": ((1, 1), (1, 4)),
    "structured.criterion": ("l1", "l2"),
    "compress.bitwidth": (0, 2, 3, 4),
    "select.objective": ("flash", "ram", "balanced", "time"),
}
# Values quoted in error messages are shortened: a hostile file must not give a megabyte line.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def load_config(path: str | Path | None) -> PipelineConfig:
    """Read a pipeline TOML file; ``None`` gives the defaults. Raises ``ConfigError``."""
    if path is None:
        return PipelineConfig()
    from edge_prune.input_files import MAX_TEXT_BYTES, read_input

    path = Path(path)
    try:
        text = read_input(path, limit=MAX_TEXT_BYTES, error=ConfigError).decode("utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(
            f"{path}: TOML nested too deeply; expected flat [section] tables"
        ) from None
    except ValueError as e:  # an integer of more than 4,300 digits (sys.int_info)
        raise ConfigError(f"{path}: unreadable TOML value ({str(e)[:80]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    sections = {f.name: f.type for f in _SECTIONS}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section [{unknown[0]}]; expected one of {', '.join(sections)}"
        )
    built = {}
    for name, f in ((f.name, f) for f in _SECTIONS):
        section_class = f.default_factory
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(
                f"{source}: '{name}' must be a table [{name}], got {_SHORT.repr(table)}"
            )
        built[name] = _section(section_class, name, table, source)
    explicit = frozenset(f"{name}.{key}" for name, table in raw.items() for key in table)
    config = PipelineConfig(**built, explicit=explicit)
    _check_consistency(config, source)
    return config


def _section(section_class, name: str, table: dict[str, Any], source: str):
    allowed = {f.name: f for f in fields(section_class)}
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{source}: unknown key '{name}.{key}'; expected one of {', '.join(allowed)}"
            )
    values = {}
    for key, value in table.items():
        default = allowed[key].default
        values[key] = _checked_value(f"{name}.{key}", value, type(default), source)
    return section_class(**values)


def _checked_value(key: str, value: Any, expected: type, source: str) -> Any:
    if expected is tuple and isinstance(value, list):  # TOML arrays: prune.block = [1, 4]
        value = tuple(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # TOML integers have no size limit in tomllib
            value = math.inf if value > 0 else -math.inf
    if type(value) is not expected:
        raise ConfigError(
            f"{source}: '{key}' must be {expected.__name__}, "
            f"got {type(value).__name__} {_SHORT.repr(value)}"
        )
    if key in _RANGES:
        low, high, inclusive = _RANGES[key]
        if not (low <= value <= high) or (not inclusive and value >= high):
            bracket = "]" if inclusive else ")"
            raise ConfigError(
                f"{source}: '{key}' = {value!r} is outside [{low}, {high}{bracket}"
                + _RANGE_NOTES.get(key, "")
            )
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{source}: '{key}' = {value!r}; expected one of {_CHOICES[key]}")
    return value


def _check_consistency(config: PipelineConfig, source: str) -> None:
    from edge_prune.training.schedule import check_prune_section

    check_prune_section(config.prune, source)
    p = config.prune
    if p.schedule == "rewind" and config.structured.ratio > 0:
        raise ConfigError(
            f"{source}: 'prune.schedule' = 'rewind' resets weights to the dense model's, so it "
            f"needs 'structured.ratio' = 0 (got {config.structured.ratio})"
        )
    if p.schedule == "rewind" and p.rewind_epoch > config.train.epochs:
        raise ConfigError(
            f"{source}: 'prune.rewind_epoch' ({p.rewind_epoch}) must not exceed "
            f"'train.epochs' ({config.train.epochs})"
        )
    c = config.compress
    if c.bitwidth and c.clusters > 2**c.bitwidth:
        raise ConfigError(
            f"{source}: 'compress.clusters' ({c.clusters}) needs more than "
            f"'compress.bitwidth' = {c.bitwidth} bits ({2**c.bitwidth} values); use at most "
            f"{2**c.bitwidth} clusters or a wider index"
        )


def with_overrides(
    config: PipelineConfig, overrides: dict[str, Any], source: str = "<overrides>"
) -> PipelineConfig:
    """``config`` with ``{"section.key": value}`` replaced where value is not None, re-checked."""
    raw = config.to_dict()
    given = {dotted: value for dotted, value in overrides.items() if value is not None}
    for dotted, value in given.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    rebuilt = config_from_dict(raw, source=source)
    return replace(rebuilt, explicit=config.explicit | frozenset(given))
