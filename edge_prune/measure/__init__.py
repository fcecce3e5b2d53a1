"""TensorFlow-free measurement: what a model needs on a Cortex-M, from its flatbuffer and TFLM."""
