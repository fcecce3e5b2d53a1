"""edge-prune: prune a tf_keras model while training, convert it to TFLite, measure it with the
TFLM interpreter against a microcontroller's memory budget, and write deployable artifacts.

The public names below load their module on first use, so ``import edge_prune`` stays cheap and
the paths that do not need TensorFlow (reading a .tflite, the footprint report) never import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    # tf_keras, set up for tfmot (TF_USE_LEGACY_KERAS=1 before TensorFlow is imported)
    "keras": "edge_prune.training._tf",
    # prune while training
    "PruningSchedule": "edge_prune.training.schedule",
    "SparsityHeldBackWarning": "edge_prune.training.prune",
    "prune": "edge_prune.training.prune",
    "prune_in_stages": "edge_prune.training.prune",
    "record_weights": "edge_prune.training.rewind",
    "strip": "edge_prune.training.prune",
    "sparsity_report": "edge_prune.training.prune",
    "SparsityReport": "edge_prune.training.prune",
    "PrunedModel": "edge_prune.training.prune",
    "StagedPruning": "edge_prune.training.prune",
    # structured pruning and cost
    "prune_channels": "edge_prune.training.structured",
    "remove_dead_units": "edge_prune.training.structured",
    "count_costs": "edge_prune.training.macs",
    # convert and compress
    "convert": "edge_prune.training.convert",
    "convert_all": "edge_prune.training.convert",
    "TFLiteModel": "edge_prune.training.convert",
    "ConversionRecord": "edge_prune.training.convert",
    "cluster": "edge_prune.training.cluster",
    "strip_clustering": "edge_prune.training.cluster",
    "lut_compress": "edge_prune.measurement.codecs",
    "compress_for_mcu": "edge_prune.measurement.codecs",
    "strip_for_mcu": "edge_prune.measurement.codecs",
    # measure
    "read_model": "edge_prune.measurement.tflite_file",
    "measure": "edge_prune.measurement.footprint",
    "fit_report": "edge_prune.measurement.report",
    "load_target": "edge_prune.measurement.targets",
    "list_targets": "edge_prune.measurement.targets",
    "check_deployable": "edge_prune.measurement.evaluate",
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


if TYPE_CHECKING:  # for editors and type checkers; nothing is imported at run time
    from edge_prune.measurement.codecs import (  # noqa: F401
        compress_for_mcu,
        lut_compress,
        strip_for_mcu,
    )
    from edge_prune.training.cluster import cluster, strip_clustering  # noqa: F401
    from edge_prune.training.convert import convert, convert_all  # noqa: F401
    from edge_prune.training.prune import (  # noqa: F401
        SparsityReport,
        prune,
        prune_in_stages,
        sparsity_report,
        strip,
    )
    from edge_prune.training.schedule import PruningSchedule  # noqa: F401
