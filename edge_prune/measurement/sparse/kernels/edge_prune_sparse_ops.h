// TFLM custom ops EDGE_PRUNE_SPARSE_FC and EDGE_PRUNE_SPARSE_CONV.
//
// Inputs: 0 activation (int8), 1 values (int8 constant, the filter's scales
// in its quantization), 2 index (uint8 constant: the folded bias, one
// little-endian int32 per output channel, then the counts and deltas of
// edge_prune_sparse.h). Custom options: the 24-byte struct of
// edge_prune_sparse.h. Two constant inputs, not three: a dense FC/CONV with a
// bias has as many tensors, so the arena holds no extra TfLiteEvalTensor.

#ifndef EDGE_PRUNE_SPARSE_OPS_H_
#define EDGE_PRUNE_SPARSE_OPS_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace edge_prune {

constexpr char kSparseFullyConnectedName[] = "EDGE_PRUNE_SPARSE_FC";
constexpr char kSparseConvName[] = "EDGE_PRUNE_SPARSE_CONV";

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_FC();
const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_CONV();

// Adds both ops to a MicroMutableOpResolver.
template <typename Resolver>
TfLiteStatus AddSparseOps(Resolver& resolver) {
  TfLiteStatus status = resolver.AddCustom(kSparseFullyConnectedName,
                                           Register_EDGE_PRUNE_SPARSE_FC());
  if (status != kTfLiteOk) return status;
  return resolver.AddCustom(kSparseConvName, Register_EDGE_PRUNE_SPARSE_CONV());
}

}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_OPS_H_
