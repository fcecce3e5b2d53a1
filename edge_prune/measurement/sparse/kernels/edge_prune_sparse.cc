// Sparse int8 kernels of edge-prune: format checks and compute (no TFLM glue).

#include "edge_prune_sparse.h"

#include <cstring>

#include "edge_prune_sparse_common.h"

namespace edge_prune {
namespace sparse {
namespace {

using internal::Load32;
using internal::ReadU32;
using internal::Requantize;
using internal::RowCount;
#if EDGE_PRUNE_SPARSE_DSP
using internal::Smlabb;
using internal::Smlad;
using internal::Smlatb;
using internal::Sxtb16;
using internal::Sxtb16Ror8;

// Unstructured row: 4 deltas and 4 weights per word load; SMLABB/SMLATB on
// the sign-extended weight pairs.
inline int32_t DotBlock1(const int8_t* x, const uint8_t*& deltas,
                         const int8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count >> 2; i > 0; --i) {
    const uint32_t d = Load32(deltas);
    const uint32_t w = Load32(values);
    deltas += 4;
    values += 4;
    const int32_t w02 = Sxtb16(w);
    const int32_t w13 = Sxtb16Ror8(w);
    p += d & 0xff;
    acc = Smlabb(w02, *p, acc);
    p += (d >> 8) & 0xff;
    acc = Smlabb(w13, *p, acc);
    p += (d >> 16) & 0xff;
    acc = Smlatb(w02, *p, acc);
    p += d >> 24;
    acc = Smlatb(w13, *p, acc);
  }
  for (uint32_t i = count & 3; i > 0; --i) {
    p += *deltas++;
    acc += static_cast<int32_t>(*values++) * *p;
  }
  return acc;
}

// Blocks of 4: two SMLADs on the sign-extended even and odd byte pairs.
inline int32_t DotBlock4(const int8_t* x, const uint8_t*& deltas,
                         const int8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count; i > 0; --i) {
    p += 4 * static_cast<uint32_t>(*deltas++);
    const uint32_t xv = Load32(p);
    const uint32_t w = Load32(values);
    values += 4;
    acc = Smlad(Sxtb16(w), Sxtb16(xv), acc);
    acc = Smlad(Sxtb16Ror8(w), Sxtb16Ror8(xv), acc);
  }
  return acc;
}
#else
// Portable C (Cortex-M0+ and hosts): byte loads only, no alignment assumed.
inline int32_t DotBlock1(const int8_t* x, const uint8_t*& deltas,
                         const int8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count; i > 0; --i) {
    p += *deltas++;
    acc += static_cast<int32_t>(*values++) * *p;
  }
  return acc;
}

inline int32_t DotBlock4(const int8_t* x, const uint8_t*& deltas,
                         const int8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count; i > 0; --i) {
    p += 4 * static_cast<uint32_t>(*deltas++);
    acc += values[0] * p[0] + values[1] * p[1] + values[2] * p[2] +
           values[3] * p[3];
    values += 4;
  }
  return acc;
}
#endif

// All output channels for one input row (FC) or one patch (CONV); `stride` is
// the distance between consecutive output channels in `output`.
void Rows(const Options& options, const int8_t* x, const Filter& filter,
          const Requantization& requant, int8_t* output) {
  const uint32_t rows = options.out_channels;
  const uint8_t* deltas = filter.index + 2 * rows;
  const int8_t* values = filter.values;
  if (options.block == 4) {
    for (uint32_t r = 0; r < rows; ++r) {
      const int32_t acc = DotBlock4(x, deltas, values,
                                    RowCount(filter.index, r), filter.bias[r]);
      output[r] = Requantize(acc, requant, r);
    }
  } else {
    for (uint32_t r = 0; r < rows; ++r) {
      const int32_t acc = DotBlock1(x, deltas, values,
                                    RowCount(filter.index, r), filter.bias[r]);
      output[r] = Requantize(acc, requant, r);
    }
  }
}

}  // namespace

bool ParseOptions(const uint8_t* data, size_t size, Options* o) {
  if (data == nullptr || size != kOptionsSize) return false;
  o->version = data[0];
  o->op = data[1];
  o->block = data[2];
  o->activation = data[3];
  o->out_channels = ReadU32(data + 4);
  o->in_channels = ReadU32(data + 8);
  o->kernel_h = data[12];
  o->kernel_w = data[13];
  o->stride_h = data[14];
  o->stride_w = data[15];
  o->dilation_h = data[16];
  o->dilation_w = data[17];
  o->padding = data[18];
  o->flags = data[19];
  o->input_zero_point = static_cast<int32_t>(ReadU32(data + 20));
  if (o->version != kFormatVersion) return false;
  if (o->op != kOpFullyConnected && o->op != kOpConv) return false;
  if (o->block != 1 && o->block != 4) return false;
  if (o->activation > 3) return false;
  if (o->out_channels < 1 || o->out_channels > 0xFFFFFF) return false;
  if (o->in_channels < 1 || o->in_channels > 0xFFFFFF) return false;
  if (o->in_channels % o->block != 0) return false;
  if (o->input_zero_point < -128 || o->input_zero_point > 127) return false;
  return internal::ValidGeometry(*o);
}

uint32_t RowBlocks(const Options& o) {
  return static_cast<uint32_t>(o.kernel_h) * o.kernel_w * o.in_channels /
         o.block;
}

bool CheckIndex(const Options& o, const uint8_t* index, size_t index_size,
                size_t values_size) {
  if (!internal::CheckDeltas(o, index, index_size)) return false;
  const size_t entries = index_size - 2 * static_cast<size_t>(o.out_channels);
  return values_size == entries * o.block;
}

void FullyConnected(const Options& options, int batches, const int8_t* input,
                    const Filter& filter, const Requantization& requant,
                    int8_t* output) {
  for (int b = 0; b < batches; ++b) {
    Rows(options, input + static_cast<size_t>(b) * options.in_channels, filter,
         requant, output + static_cast<size_t>(b) * options.out_channels);
  }
}

size_t ConvPatchBytes(const Options& o) {
  if (o.kernel_h == 1 && o.kernel_w == 1) return 0;
  return static_cast<size_t>(o.kernel_h) * o.kernel_w * o.in_channels;
}

void Conv(const Options& o, const ConvGeometry& g, const int8_t* input,
          const Filter& filter, const Requantization& requant, int8_t* patch,
          int8_t* output) {
  internal::ConvLoop(o, g, input, patch, output,
                     [&](const int8_t* x, int8_t* out) {
                       Rows(o, x, filter, requant, out);
                     });
}

}  // namespace sparse
}  // namespace edge_prune
