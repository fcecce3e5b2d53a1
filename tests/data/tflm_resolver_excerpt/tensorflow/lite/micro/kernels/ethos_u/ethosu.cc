// Test fixture for tests/test_op_resolver.py, written for edge-prune: where TFLM's AddEthosU
// takes its custom name from (tflite-micro 90b983c2 kernels/ethos_u/ethosu.cc).
const char* GetString_ETHOSU() { return "ethos-u"; }
