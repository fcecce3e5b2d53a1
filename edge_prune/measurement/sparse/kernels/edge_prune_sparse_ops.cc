// TFLM custom ops EDGE_PRUNE_SPARSE_FC and EDGE_PRUNE_SPARSE_CONV (int8
// weights); the glue is edge_prune_sparse_ops_common.h.

#include "edge_prune_sparse_ops.h"

#include "edge_prune_sparse.h"
#include "edge_prune_sparse_ops_common.h"

namespace edge_prune {
namespace {

struct Int8Kernels {
  using Filter = sparse::Filter;
  using Value = int8_t;
  static constexpr bool kSharedPerTensor = false;
  static bool CheckIndex(const sparse::Options& o, const uint8_t* index,
                         size_t index_size, size_t values_size) {
    return sparse::CheckIndex(o, index, index_size, values_size);
  }
  static void FullyConnected(const sparse::Options& o, int batches,
                             const int8_t* input, const Filter& filter,
                             const sparse::Requantization& requant,
                             int8_t* output) {
    sparse::FullyConnected(o, batches, input, filter, requant, output);
  }
  static void Conv(const sparse::Options& o, const sparse::ConvGeometry& g,
                   const int8_t* input, const Filter& filter,
                   const sparse::Requantization& requant, int8_t* patch,
                   int8_t* output) {
    sparse::Conv(o, g, input, filter, requant, patch, output);
  }
};

}  // namespace

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_FC() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(
      sparse_ops::Init<sparse_ops::OpData, Int8Kernels>,
      sparse_ops::PrepareFc<Int8Kernels>, sparse_ops::EvalFc<Int8Kernels>);
  return &registration;
}

const TFLMRegistration* Register_EDGE_PRUNE_SPARSE_CONV() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(
      sparse_ops::Init<sparse_ops::ConvData, Int8Kernels>,
      sparse_ops::PrepareConvOp<Int8Kernels>,
      sparse_ops::EvalConv<Int8Kernels>);
  return &registration;
}

}  // namespace edge_prune
