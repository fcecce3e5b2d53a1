// TFLM custom ops EDGE_PRUNE_SPARSE_FC_INT4 and EDGE_PRUNE_SPARSE_CONV_INT4:
// the sparse ops of edge_prune_sparse_ops.h on INT4 weights. Same inputs
// (activation, values, index), same 24-byte options; `values` is an int8
// constant tensor holding the packed 4-bit weights of edge_prune_sparse_int4.h
// (its quantization carries the filter's scales). Separate ops so that a
// firmware whose model has no int4 layer compiles no int4 code.

#ifndef EDGE_PRUNE_SPARSE_INT4_OPS_H_
#define EDGE_PRUNE_SPARSE_INT4_OPS_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace edge_prune {

constexpr char kSparseFullyConnectedInt4Name[] = "EDGE_PRUNE_SPARSE_FC_INT4";
constexpr char kSparseConvInt4Name[] = "EDGE_PRUNE_SPARSE_CONV_INT4";

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_FC_INT4();
const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_CONV_INT4();

// Adds both int4 ops to a MicroMutableOpResolver.
template <typename Resolver>
TfLiteStatus AddSparseInt4Ops(Resolver& resolver) {
  TfLiteStatus status = resolver.AddCustom(
      kSparseFullyConnectedInt4Name, Register_EDGE_PRUNE_SPARSE_FC_INT4());
  if (status != kTfLiteOk) return status;
  return resolver.AddCustom(kSparseConvInt4Name,
                            Register_EDGE_PRUNE_SPARSE_CONV_INT4());
}

}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_INT4_OPS_H_
