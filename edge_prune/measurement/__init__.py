"""The TensorFlow-free measurement side: the flatbuffer reader, the TFLM child, footprint,
targets, runtime tables, instruction costs, op resolver, firmware files, scores, the choice,
report rendering, codecs and the device builds. Nothing here imports TensorFlow or
``edge_prune.training``."""
