"""The edge-prune error family.

Every error the library raises on purpose is an ``EdgePruneError``; the CLI turns each into one
line and exit code 2 (bad input, or a step that could not be done). A model that does not fit,
does not run on TFLM or does not pass the accuracy checks is not an error: the command writes
its full report and exits 1.
"""

from __future__ import annotations


class EdgePruneError(Exception):
    """Base class of every error edge-prune raises on purpose."""

    exit_code = 2


class ConfigError(EdgePruneError):
    """A target file, pipeline config or argument is missing, malformed or out of range."""


class TargetNotFoundError(ConfigError):
    """A target name matches no file in the catalogue."""


class UnsupportedModelError(EdgePruneError):
    """The model cannot be handled (Keras 3, subclassed, unknown layer, unsafe file)."""


class DataError(EdgePruneError):
    """Training, test or representative data has the wrong shape, dtype or content."""


class ConversionError(EdgePruneError):
    """The TFLite converter or a compression step failed."""


class ModelFileError(EdgePruneError):
    """A file is missing, is not a TFLite flatbuffer, or is truncated or corrupted."""


class TFLMError(EdgePruneError):
    """The TFLM interpreter could not load, allocate or run a model, or crashed on it."""


class MissingOpError(TFLMError):
    """TFLM has no kernel for an operator the model uses (e.g. DENSIFY of a sparse model)."""

    def __init__(self, message: str, op: str):
        super().__init__(message)
        self.op = op


class TFLMPrepareError(TFLMError):
    """A TFLM kernel rejected the model while preparing an operator (e.g. a DEQUANTIZE of
    float16 weights); ``op`` names the operator."""

    def __init__(self, message: str, op: str):
        super().__init__(message)
        self.op = op


class TFLMTimeoutError(TFLMError):
    """The TFLM interpreter did not finish within the time limit (the child was killed)."""


class NoDeployableArtifactError(EdgePruneError):
    """No candidate both runs on TFLM and stays within the accuracy tolerance."""


class ToolchainError(EdgePruneError):
    """The Arm GNU toolchain or QEMU is not installed (``edge-prune device`` needs both)."""


class TflmTreeError(ConfigError):
    """The TFLM source tree given for a device build is missing or incomplete."""


class DeviceBuildError(EdgePruneError):
    """Compiling or linking a firmware against TFLM failed (the compiler's message is kept)."""
