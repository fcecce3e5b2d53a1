// TFLM custom ops EDGE_PRUNE_SPARSE_FC_INT4 and EDGE_PRUNE_SPARSE_CONV_INT4;
// the glue (the same checks as the int8 ops) is edge_prune_sparse_ops_common.h.

#include "edge_prune_sparse_int4_ops.h"

#include "edge_prune_sparse_int4.h"
#include "edge_prune_sparse_ops_common.h"

namespace edge_prune {
namespace {

struct Int4Kernels {
  using Filter = sparse::Int4Filter;
  using Value = uint8_t;
  // Per-tensor scales (an INT4 FULLY_CONNECTED always): one multiplier, not
  // one per output channel in the arena.
  static constexpr bool kSharedPerTensor = true;
  static bool CheckIndex(const sparse::Options& o, const uint8_t* index,
                         size_t index_size, size_t values_size) {
    return sparse::CheckIndexInt4(o, index, index_size, values_size);
  }
  static void FullyConnected(const sparse::Options& o, int batches,
                             const int8_t* input, const Filter& filter,
                             const sparse::Requantization& requant,
                             int8_t* output) {
    sparse::FullyConnectedInt4(o, batches, input, filter, requant, output);
  }
  static void Conv(const sparse::Options& o, const sparse::ConvGeometry& g,
                   const int8_t* input, const Filter& filter,
                   const sparse::Requantization& requant, int8_t* patch,
                   int8_t* output) {
    sparse::ConvInt4(o, g, input, filter, requant, patch, output);
  }
};

}  // namespace

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_FC_INT4() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(
      sparse_ops::Init<sparse_ops::OpData, Int4Kernels>,
      sparse_ops::PrepareFc<Int4Kernels>, sparse_ops::EvalFc<Int4Kernels>);
  return &registration;
}

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_CONV_INT4() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(
      sparse_ops::Init<sparse_ops::ConvData, Int4Kernels>,
      sparse_ops::PrepareConvOp<Int4Kernels>,
      sparse_ops::EvalConv<Int4Kernels>);
  return &registration;
}

}  // namespace edge_prune
