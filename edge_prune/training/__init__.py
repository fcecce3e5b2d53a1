"""The TensorFlow side: pruning, schedules, channel removal, clustering, training,
rewinding, the layer-kind table, cost counting, model I/O and conversion. TensorFlow is imported
in ``_tf`` only."""
