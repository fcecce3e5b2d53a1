// Helpers shared by the int8 and int4 sparse kernels of edge-prune (internal:
// included by edge_prune_sparse.cc and edge_prune_sparse_int4.cc only).

#ifndef EDGE_PRUNE_SPARSE_COMMON_H_
#define EDGE_PRUNE_SPARSE_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "edge_prune_sparse.h"
#include "tensorflow/lite/kernels/internal/common.h"

// The DSP path (Cortex-M4/M7/M33/M55) uses ACLE's SIMD32 intrinsics; hosts can
// run the same path with EDGE_PRUNE_SPARSE_EMULATE_DSP (plain C intrinsics),
// which is how the host test checks it against TFLM's reference kernels.
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define EDGE_PRUNE_SPARSE_DSP 1
#elif defined(EDGE_PRUNE_SPARSE_EMULATE_DSP)
#define EDGE_PRUNE_SPARSE_DSP 1
#else
#define EDGE_PRUNE_SPARSE_DSP 0
#endif

namespace edge_prune {
namespace sparse {
namespace internal {

inline uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

inline uint32_t RowCount(const uint8_t* index, uint32_t row) {
  return static_cast<uint32_t>(index[2 * row]) |
         (static_cast<uint32_t>(index[2 * row + 1]) << 8);
}

// An unaligned 32-bit load (a single LDR on cores with the DSP extension).
inline uint32_t Load32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// An unaligned 16-bit load (a single LDRH on cores with the DSP extension).
inline uint32_t Load16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

#if EDGE_PRUNE_SPARSE_DSP
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
inline int32_t Sxtb16(uint32_t v) { return static_cast<int32_t>(__sxtb16(v)); }
inline int32_t Sxtb16Ror8(uint32_t v) {
  return static_cast<int32_t>(__sxtb16((v >> 8) | (v << 24)));
}
inline int32_t Smlad(int32_t a, int32_t b, int32_t acc) {
  return __smlad(a, b, acc);
}
inline int32_t Smlabb(int32_t a, int32_t b, int32_t acc) {
  return __smlabb(a, b, acc);
}
inline int32_t Smlatb(int32_t a, int32_t b, int32_t acc) {
  return __smlatb(a, b, acc);
}
#else
inline int32_t Bottom(int32_t v) { return static_cast<int16_t>(v & 0xffff); }
inline int32_t Top(int32_t v) {
  return static_cast<int16_t>((static_cast<uint32_t>(v) >> 16) & 0xffff);
}
inline int32_t Sxtb16(uint32_t v) {
  const uint32_t lo = static_cast<uint16_t>(static_cast<int8_t>(v & 0xff));
  const uint32_t hi = static_cast<uint16_t>(static_cast<int8_t>((v >> 16) & 0xff));
  return static_cast<int32_t>(lo | (hi << 16));
}
inline int32_t Sxtb16Ror8(uint32_t v) { return Sxtb16((v >> 8) | (v << 24)); }
inline int32_t Smlad(int32_t a, int32_t b, int32_t acc) {
  return static_cast<int32_t>(static_cast<uint32_t>(acc) +
                              static_cast<uint32_t>(Bottom(a) * Bottom(b)) +
                              static_cast<uint32_t>(Top(a) * Top(b)));
}
inline int32_t Smlabb(int32_t a, int32_t b, int32_t acc) {
  return acc + Bottom(a) * Bottom(b);
}
inline int32_t Smlatb(int32_t a, int32_t b, int32_t acc) {
  return acc + Top(a) * Bottom(b);
}
#endif
// The low halfword of a, and the low halfword of b in the top one (PKHBT;
// ACLE has no intrinsic for it, gcc would emit UXTH + ORR).
inline int32_t Pkhbt(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  int32_t out;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(out) : "r"(a), "r"(b));
  return out;
#else
  return static_cast<int32_t>((static_cast<uint32_t>(a) & 0xffffu) |
                              (static_cast<uint32_t>(b) << 16));
#endif
}
#endif  // EDGE_PRUNE_SPARSE_DSP

#if TFLITE_SINGLE_ROUNDING
inline int32_t MultiplyByMultiplier(int32_t x, int32_t multiplier, int shift) {
  return tflite::MultiplyByQuantizedMultiplier(x, multiplier, shift);
}
#else
// TFLM's double-rounding MultiplyByQuantizedMultiplier (internal/common.cc:
// gemmlowp's SaturatingRoundingDoublingHighMul then RoundingDivideByPOT),
// inlined: a call per output costs more than a short sparse row. The
// multiplier is >= 0 (QuantizeMultiplier), so the high-mul cannot saturate.
inline int32_t MultiplyByMultiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int32_t a = static_cast<int32_t>(static_cast<uint32_t>(x) << left);
  const int64_t ab = static_cast<int64_t>(a) * multiplier;
  const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  const int32_t high = static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));
  const int32_t mask = static_cast<int32_t>((int64_t{1} << right) - 1);
  const int32_t remainder = high & mask;
  const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + (remainder > threshold ? 1 : 0);
}
#endif

inline int8_t Requantize(int32_t acc, const Requantization& q, uint32_t row) {
  int32_t out = MultiplyByMultiplier(acc, q.multiplier[row], q.shift[row]);
  out += q.output_offset;
  out = out < q.activation_min ? q.activation_min : out;
  out = out > q.activation_max ? q.activation_max : out;
  return static_cast<int8_t>(out);
}

inline bool ValidGeometry(const Options& o) {
  if (o.op == kOpFullyConnected) {
    return o.kernel_h == 1 && o.kernel_w == 1 && o.stride_h == 1 &&
           o.stride_w == 1 && o.dilation_h == 1 && o.dilation_w == 1 &&
           o.padding == 0 && (o.flags & ~kFlagKeepNumDims) == 0;
  }
  return o.kernel_h >= 1 && o.kernel_w >= 1 && o.stride_h >= 1 &&
         o.stride_w >= 1 && o.dilation_h >= 1 && o.dilation_w >= 1 &&
         (o.padding == kPaddingSame || o.padding == kPaddingValid) &&
         o.flags == 0;
}

// Copies the receptive field of one output position, padded positions set to
// the input zero point (they then contribute zero, as TFLM skips them).
inline void FillPatch(const Options& o, const ConvGeometry& g,
                      const int8_t* image, int in_y0, int in_x0,
                      int8_t* patch) {
  const size_t depth = o.in_channels;
  for (int ky = 0; ky < o.kernel_h; ++ky) {
    const int y = in_y0 + ky * o.dilation_h;
    for (int kx = 0; kx < o.kernel_w; ++kx) {
      const int x = in_x0 + kx * o.dilation_w;
      if (y >= 0 && y < g.input_h && x >= 0 && x < g.input_w) {
        std::memcpy(patch, image + (static_cast<size_t>(y) * g.input_w + x) *
                                       depth,
                    depth);
      } else {
        std::memset(patch, static_cast<int8_t>(o.input_zero_point), depth);
      }
      patch += depth;
    }
  }
}

// The convolution's loop over batches and output positions; `rows(x, out)`
// computes every output channel of one patch (or pointwise input pixel).
template <typename RowsFn>
inline void ConvLoop(const Options& o, const ConvGeometry& g,
                     const int8_t* input, int8_t* patch, int8_t* output,
                     RowsFn rows) {
  const size_t depth = o.in_channels;
  const bool pointwise = ConvPatchBytes(o) == 0;
  for (int b = 0; b < g.batches; ++b) {
    const int8_t* image =
        input + static_cast<size_t>(b) * g.input_h * g.input_w * depth;
    for (int oy = 0; oy < g.output_h; ++oy) {
      const int in_y0 = oy * o.stride_h - g.pad_h;
      for (int ox = 0; ox < g.output_w; ++ox) {
        const int in_x0 = ox * o.stride_w - g.pad_w;
        const int8_t* x;
        if (pointwise) {
          // A 1x1 window always lies inside the image (padding is 0).
          x = image + (static_cast<size_t>(in_y0) * g.input_w + in_x0) * depth;
        } else {
          FillPatch(o, g, image, in_y0, in_x0, patch);
          x = patch;
        }
        rows(x, output);
        output += o.out_channels;
      }
    }
  }
}

// Checks the counts and deltas of an index (not the values' size): 2 *
// out_channels bytes of counts plus one byte per entry, and every row's
// positions increase and stay inside the row.
inline bool CheckDeltas(const Options& o, const uint8_t* index,
                        size_t index_size) {
  const size_t rows = o.out_channels;
  if (index == nullptr || index_size < 2 * rows) return false;
  size_t entries = 0;
  for (uint32_t r = 0; r < rows; ++r) entries += RowCount(index, r);
  if (index_size != 2 * rows + entries) return false;
  const uint32_t row_blocks = RowBlocks(o);
  const uint8_t* delta = index + 2 * rows;
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t count = RowCount(index, r);
    uint32_t position = 0;
    for (uint32_t i = 0; i < count; ++i, ++delta) {
      if (i > 0 && *delta == 0) return false;
      position += *delta;
      if (position >= row_blocks) return false;
    }
  }
  return true;
}

}  // namespace internal
}  // namespace sparse
}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_COMMON_H_
