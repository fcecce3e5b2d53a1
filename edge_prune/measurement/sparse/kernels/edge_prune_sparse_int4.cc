// Sparse INT4-weight kernels of edge-prune: compute and the values' size check
// (no TFLM glue). Separate from the int8 kernels so that a firmware without
// int4 ops compiles none of this.

#include "edge_prune_sparse_int4.h"

#include "edge_prune_sparse_common.h"

// The row loops are inlined into both instantiations of RowsOf (a call per row
// would pass the row's pointers through memory).
#if defined(__GNUC__)
#define EDGE_PRUNE_SPARSE_INLINE inline __attribute__((always_inline))
#else
#define EDGE_PRUNE_SPARSE_INLINE inline
#endif

namespace edge_prune {
namespace sparse {
namespace {

using internal::Requantize;
using internal::RowCount;

// A nibble (0..15) as the signed 4-bit value it packs, as TFLM's
// UnpackDenseInt4IntoInt8 reads it.
inline int32_t Low(uint32_t byte) {
  return static_cast<int8_t>(static_cast<uint8_t>(byte << 4)) >> 4;
}
inline int32_t High(uint32_t byte) {
  return static_cast<int8_t>(static_cast<uint8_t>(byte)) >> 4;
}

#if EDGE_PRUNE_SPARSE_DSP
using internal::Load16;
using internal::Load32;
using internal::Pkhbt;
using internal::Smlad;
using internal::Sxtb16;
using internal::Sxtb16Ror8;

// Nibble k (0..3) of a 16-bit word as a signed value: one SBFX.
template <int k>
inline int32_t Nibble(uint32_t v) {
  return static_cast<int32_t>(v << (28 - 4 * k)) >> 28;
}

// Unstructured row: 4 deltas (one word) and 4 weights (one halfword) per
// iteration; each weight one SBFX and one MLA.
EDGE_PRUNE_SPARSE_INLINE int32_t DotBlock1(const int8_t* x, const uint8_t*& deltas,
                         const uint8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count >> 2; i > 0; --i) {
    const uint32_t d = Load32(deltas);
    const uint32_t w = Load16(values);
    deltas += 4;
    values += 2;
    p += d & 0xff;
    acc += Nibble<0>(w) * *p;
    p += (d >> 8) & 0xff;
    acc += Nibble<1>(w) * *p;
    p += (d >> 16) & 0xff;
    acc += Nibble<2>(w) * *p;
    p += d >> 24;
    acc += Nibble<3>(w) * *p;
  }
  for (uint32_t i = (count & 3) >> 1; i > 0; --i) {
    const uint32_t byte = *values++;
    p += *deltas++;
    acc += Low(byte) * *p;
    p += *deltas++;
    acc += High(byte) * *p;
  }
  if (count & 1) {  // the row's last weight; its byte's high nibble is padding
    p += *deltas++;
    acc += Low(*values++) * *p;
  }
  return acc;
}

// Blocks of 4 (one halfword): the weight pairs (w0, w2) and (w1, w3) built
// with SBFX and PKHBT, two SMLADs against the even and odd input bytes.
EDGE_PRUNE_SPARSE_INLINE int32_t DotBlock4(const int8_t* x, const uint8_t*& deltas,
                         const uint8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count; i > 0; --i) {
    p += 4 * static_cast<uint32_t>(*deltas++);
    const uint32_t xv = Load32(p);
    const uint32_t w = Load16(values);
    values += 2;
    acc = Smlad(Pkhbt(Nibble<0>(w), Nibble<2>(w)), Sxtb16(xv), acc);
    acc = Smlad(Pkhbt(Nibble<1>(w), Nibble<3>(w)), Sxtb16Ror8(xv), acc);
  }
  return acc;
}
#else
// Portable C (Cortex-M0+ and hosts): byte loads only, no alignment assumed.
EDGE_PRUNE_SPARSE_INLINE int32_t DotBlock1(const int8_t* x, const uint8_t*& deltas,
                         const uint8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count >> 1; i > 0; --i) {
    const uint32_t byte = *values++;
    p += *deltas++;
    acc += Low(byte) * *p;
    p += *deltas++;
    acc += High(byte) * *p;
  }
  if (count & 1) {  // the row's last weight; its byte's high nibble is padding
    p += *deltas++;
    acc += Low(*values++) * *p;
  }
  return acc;
}

EDGE_PRUNE_SPARSE_INLINE int32_t DotBlock4(const int8_t* x, const uint8_t*& deltas,
                         const uint8_t*& values, uint32_t count, int32_t acc) {
  const int8_t* p = x;
  for (uint32_t i = count; i > 0; --i) {
    p += 4 * static_cast<uint32_t>(*deltas++);
    const uint32_t b0 = values[0];
    const uint32_t b1 = values[1];
    acc += Low(b0) * p[0] + High(b0) * p[1] + Low(b1) * p[2] + High(b1) * p[3];
    values += 2;
  }
  return acc;
}
#endif

// All output channels for one input row (FC) or one patch (CONV); kShared:
// one multiplier for every channel (kFlagSharedRequantization), a separate
// instantiation so that the row loops keep their registers.
template <bool kShared>
void RowsOf(const Options& options, const int8_t* x, const Int4Filter& filter,
            const Requantization& requant, int8_t* output) {
  const uint32_t rows = options.out_channels;
  const uint8_t* deltas = filter.index + 2 * rows;
  const uint8_t* values = filter.values;
  if (options.block == 4) {
    for (uint32_t r = 0; r < rows; ++r) {
      const int32_t acc = DotBlock4(x, deltas, values,
                                    RowCount(filter.index, r), filter.bias[r]);
      output[r] = Requantize(acc, requant, kShared ? 0 : r);
    }
  } else {
    for (uint32_t r = 0; r < rows; ++r) {
      const int32_t acc = DotBlock1(x, deltas, values,
                                    RowCount(filter.index, r), filter.bias[r]);
      output[r] = Requantize(acc, requant, kShared ? 0 : r);
    }
  }
}

void Rows(const Options& options, const int8_t* x, const Int4Filter& filter,
          const Requantization& requant, int8_t* output) {
  if ((options.flags & kFlagSharedRequantization) != 0) {
    RowsOf<true>(options, x, filter, requant, output);
  } else {
    RowsOf<false>(options, x, filter, requant, output);
  }
}

}  // namespace

bool CheckIndexInt4(const Options& o, const uint8_t* index, size_t index_size,
                    size_t values_size) {
  if (!internal::CheckDeltas(o, index, index_size)) return false;
  size_t bytes = 0;
  for (uint32_t r = 0; r < o.out_channels; ++r) {
    bytes += (static_cast<size_t>(RowCount(index, r)) * o.block + 1) / 2;
  }
  return values_size == bytes;
}

void FullyConnectedInt4(const Options& options, int batches,
                        const int8_t* input, const Int4Filter& filter,
                        const Requantization& requant, int8_t* output) {
  for (int b = 0; b < batches; ++b) {
    Rows(options, input + static_cast<size_t>(b) * options.in_channels, filter,
         requant, output + static_cast<size_t>(b) * options.out_channels);
  }
}

void ConvInt4(const Options& o, const ConvGeometry& g, const int8_t* input,
              const Int4Filter& filter, const Requantization& requant,
              int8_t* patch, int8_t* output) {
  internal::ConvLoop(o, g, input, patch, output,
                     [&](const int8_t* x, int8_t* out) {
                       Rows(o, x, filter, requant, out);
                     });
}

}  // namespace sparse
}  // namespace edge_prune
