// Sparse int8 FULLY_CONNECTED and CONV_2D computed on pruned weights read in
// place (edge-prune sparse format, version 1; see format.py of the package).
//
// A filter [out, kh, kw, in] is out rows of kh*kw*in/block blocks of `block`
// consecutive input channels. `values` holds the int8 weights of the stored
// blocks row after row; `index` holds out little-endian uint16 entry counts,
// then one uint8 delta per stored block (first: its position in the row, then
// the distance from the previous one). The bias holds
// bias - input_zero_point * row_sum, so no offset is added per weight.
// Outputs are bit-identical to TFLM's reference FullyConnected(PerChannel) and
// ConvPerChannel on the dense weights.

#ifndef EDGE_PRUNE_SPARSE_H_
#define EDGE_PRUNE_SPARSE_H_

#include <cstddef>
#include <cstdint>

namespace edge_prune {
namespace sparse {

constexpr uint8_t kFormatVersion = 1;
constexpr uint8_t kOpFullyConnected = 1;
constexpr uint8_t kOpConv = 2;
constexpr uint8_t kPaddingSame = 1;   // TfLitePadding kTfLitePaddingSame
constexpr uint8_t kPaddingValid = 2;  // TfLitePadding kTfLitePaddingValid
constexpr uint8_t kFlagKeepNumDims = 1;
// Set by the int4 ops' Prepare in their parsed options, never in a model (the
// options' parser refuses it): one multiplier and shift for every channel.
constexpr uint8_t kFlagSharedRequantization = 0x80;
constexpr size_t kOptionsSize = 24;

// The op's custom options: a fixed little-endian struct.
struct Options {
  uint8_t version;
  uint8_t op;
  uint8_t block;
  uint8_t activation;  // TfLiteFusedActivation: none, relu, relu_n1_to_1, relu6
  uint32_t out_channels;
  uint32_t in_channels;
  uint8_t kernel_h, kernel_w;
  uint8_t stride_h, stride_w;
  uint8_t dilation_h, dilation_w;
  uint8_t padding;
  uint8_t flags;
  int32_t input_zero_point;
};

// Parses and checks the options; false when malformed or not implemented.
bool ParseOptions(const uint8_t* data, size_t size, Options* options);

// Blocks per row: kernel_h * kernel_w * in_channels / block.
uint32_t RowBlocks(const Options& options);

// Checks every count and delta: the index is 2 * out_channels bytes of counts
// plus one byte per entry, values_size == entries * block, and every row's
// positions increase and stay inside the row. Eval relies on it.
bool CheckIndex(const Options& options, const uint8_t* index,
                size_t index_size, size_t values_size);

struct Requantization {
  const int32_t* multiplier;  // per output channel
  const int32_t* shift;       // per output channel
  int32_t output_offset;
  int32_t activation_min;
  int32_t activation_max;
};

struct Filter {
  const int8_t* values;
  const uint8_t* index;
  const int32_t* bias;  // folded: bias - input_zero_point * row sum
};

// output[b, o] for input [batches, in_channels].
void FullyConnected(const Options& options, int batches, const int8_t* input,
                    const Filter& filter, const Requantization& requant,
                    int8_t* output);

struct ConvGeometry {
  int batches;
  int input_h, input_w;
  int output_h, output_w;
  int pad_h, pad_w;
};

// Bytes of the patch scratch buffer ConvPatch needs (0: reads the input).
size_t ConvPatchBytes(const Options& options);

// NHWC int8 convolution; `patch` has ConvPatchBytes(options) bytes, 4-aligned.
void Conv(const Options& options, const ConvGeometry& geometry,
          const int8_t* input, const Filter& filter,
          const Requantization& requant, int8_t* patch, int8_t* output);

}  // namespace sparse
}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_H_
