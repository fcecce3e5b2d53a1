"""The stages of a build, grouped by what they make; :mod:`edge_prune.pipeline` orders them.

- :mod:`~edge_prune.stages.state`: the inputs and the state passed from stage to stage.
- :mod:`~edge_prune.stages.training`: Keras models (train, channel removal, the pruning
  schedules, dead units, clustering).
- :mod:`~edge_prune.stages.candidates`: flatbuffers for the MCU and their TFLM checks.
- :mod:`~edge_prune.stages.verdict`: the choice, the trust check and the footprint.
"""

from edge_prune.stages.state import (
    Artifact,
    ArtifactName,
    BuildState,
    Inputs,
    ModelKey,
    prepare_inputs,
)

__all__ = ["Artifact", "ArtifactName", "BuildState", "Inputs", "ModelKey", "prepare_inputs"]
