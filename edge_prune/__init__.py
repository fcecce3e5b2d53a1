"""edge-prune: prune a tf_keras model while training, convert it to TFLite, measure it with the
TFLM interpreter against a microcontroller's memory budget, and write deployable artifacts.

The public names below load their module on first use, so ``import edge_prune`` stays cheap and
the paths that do not need TensorFlow (reading a .tflite, the footprint report) never import it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    # tf_keras, set up for tfmot (TF_USE_LEGACY_KERAS=1 before TensorFlow is imported)
    "keras": "edge_prune._tf",
    # prune while training
    "PruningSchedule": "edge_prune.schedule",
    "SparsityHeldBackWarning": "edge_prune.prune",
    "prune": "edge_prune.prune",
    "prune_in_stages": "edge_prune.prune",
    "record_weights": "edge_prune.rewind",
    "strip": "edge_prune.prune",
    "sparsity_report": "edge_prune.prune",
    "SparsityReport": "edge_prune.prune",
    "PrunedModel": "edge_prune.prune",
    "StagedPruning": "edge_prune.prune",
    # structured pruning and cost
    "prune_channels": "edge_prune.structured",
    "remove_dead_units": "edge_prune.structured",
    "count_costs": "edge_prune.macs",
    # convert and compress
    "convert": "edge_prune.convert",
    "convert_all": "edge_prune.convert",
    "TFLiteModel": "edge_prune.convert",
    "ConversionRecord": "edge_prune.convert",
    "cluster": "edge_prune.cluster",
    "strip_clustering": "edge_prune.cluster",
    "lut_compress": "edge_prune.codecs",
    "compress_for_mcu": "edge_prune.codecs",
    "strip_for_mcu": "edge_prune.codecs",
    # measure
    "read_model": "edge_prune.tflite_file",
    "measure": "edge_prune.footprint",
    "fit_report": "edge_prune.report",
    "load_target": "edge_prune.targets",
    "list_targets": "edge_prune.targets",
    "check_deployable": "edge_prune.evaluate",
    # data and the whole pipeline
    "load_digits": "edge_prune.data",
    "load_npz": "edge_prune.data",
    "build_model": "edge_prune.deploy",
    "load_config": "edge_prune.config",
    # errors
    "EdgePruneError": "edge_prune.errors",
    "ConfigError": "edge_prune.errors",
    "DataError": "edge_prune.errors",
    "UnsupportedModelError": "edge_prune.errors",
    "ConversionError": "edge_prune.errors",
    "ModelFileError": "edge_prune.errors",
    "TFLMError": "edge_prune.errors",
    "NoDeployableArtifactError": "edge_prune.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edge_prune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _PublicNames(types.ModuleType):
    """Keeps ``edge_prune.prune`` and ``edge_prune.convert`` the functions users call.

    Importing a submodule binds it on its package under its own name; for the submodules named
    like their main function (``prune``, ``convert``) that would hide the function. The
    submodule stays reachable as ``sys.modules["edge_prune.prune"]`` and by ``from ... import``.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicNames


if TYPE_CHECKING:  # for editors and type checkers; nothing is imported at run time
    from edge_prune.cluster import cluster, strip_clustering  # noqa: F401
    from edge_prune.codecs import compress_for_mcu, lut_compress, strip_for_mcu  # noqa: F401
    from edge_prune.convert import convert, convert_all  # noqa: F401
    from edge_prune.prune import (  # noqa: F401
        SparsityReport,
        prune,
        prune_in_stages,
        sparsity_report,
        strip,
    )
    from edge_prune.schedule import PruningSchedule  # noqa: F401
