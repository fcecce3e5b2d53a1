// Test fixture for tests/test_op_resolver.py, written for edge-prune: the stand-in TFLM builds
// when there is no Ethos-U kernel (tflite-micro 90b983c2 kernels/ethosu.cc) names no op.
const char* GetString_ETHOSU() { return ""; }
