// Sparse FULLY_CONNECTED and CONV_2D on INT4 weights (edge-prune sparse
// format, version 1, int4 values; see format.py of the package).
//
// Same index, folded bias and options as the int8 kernels (edge_prune_sparse.h);
// `values` holds the 4-bit weights of the stored blocks packed two per byte,
// low nibble first (TFLite's INT4 packing), row after row, each row starting
// on a byte boundary: a row with an odd number of weights ends with a zero
// nibble. Outputs are bit-identical to TFLM's reference FULLY_CONNECTED /
// CONV_2D with INT4 filters (which unpack them to int8 first).

#ifndef EDGE_PRUNE_SPARSE_INT4_H_
#define EDGE_PRUNE_SPARSE_INT4_H_

#include <cstddef>
#include <cstdint>

#include "edge_prune_sparse.h"

namespace edge_prune {
namespace sparse {

// As CheckIndex, with values_size == the sum over rows of
// ceil(count * block / 2) bytes.
bool CheckIndexInt4(const Options& options, const uint8_t* index,
                    size_t index_size, size_t values_size);

struct Int4Filter {
  const uint8_t* values;  // packed, two weights per byte, low nibble first
  const uint8_t* index;
  const int32_t* bias;  // folded: bias - input_zero_point * row sum
};

void FullyConnectedInt4(const Options& options, int batches,
                        const int8_t* input, const Int4Filter& filter,
                        const Requantization& requant, int8_t* output);

// With kFlagSharedRequantization in options.flags, requant holds one
// multiplier and shift for every output channel.

// `patch` has ConvPatchBytes(options) bytes, 4-aligned.
void ConvInt4(const Options& options, const ConvGeometry& geometry,
              const int8_t* input, const Int4Filter& filter,
              const Requantization& requant, int8_t* patch, int8_t* output);

}  // namespace sparse
}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_INT4_H_
