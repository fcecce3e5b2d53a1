"""TensorFlow-free measurement: flatbuffers, TFLM, sparse kernels, footprints."""
