"""TensorFlow-free measurement: the host and device TFLM, flatbuffers, footprints."""
