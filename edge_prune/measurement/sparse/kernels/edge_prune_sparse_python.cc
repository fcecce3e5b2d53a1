// Registerer for TFLM's Python interpreter (host only): the interpreter looks
// the name up with dlsym (python/tflite_micro/interpreter_wrapper.cc,
// AddCustomOpRegistererByName) and calls it with its PythonOpsResolver.

#include "edge_prune_sparse_int4_ops.h"
#include "edge_prune_sparse_ops.h"
#include "python/tflite_micro/python_ops_resolver.h"

// C linkage: dlsym looks the plain name up.
extern "C" bool EdgePruneSparseRegisterer(tflite::PythonOpsResolver* resolver);

extern "C" bool EdgePruneSparseRegisterer(tflite::PythonOpsResolver* resolver) {
  return edge_prune::AddSparseOps(*resolver) == kTfLiteOk &&
         edge_prune::AddSparseInt4Ops(*resolver) == kTfLiteOk;
}
