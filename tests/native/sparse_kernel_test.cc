// Exactness test of the edge-prune sparse kernels against TFLM's reference
// integer kernels (reference_integer_ops::FullyConnected(PerChannel),
// ConvPerChannel) on the dense weights. Cases come from a file written by
// tests/sparse_cases.py (format below); every output must be byte-identical
// to TFLM's and to the numpy reference's. Also checks that CheckIndex accepts
// every encoded index and refuses simple corruptions. Int4 cases carry the
// dense filter packed as TFLite stores an INT4 tensor; it is unpacked with
// TFLM's UnpackDenseInt4IntoInt8 before the reference kernel runs, as TFLM's
// FULLY_CONNECTED / CONV_2D do, and the int4 sparse kernels run on the packed
// sparse values.
//
// usage: sparse_kernel_test CASES_FILE
// prints: "cases N compared M mismatches K"; exit 0 only when K == 0.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "edge_prune_sparse.h"
#include "edge_prune_sparse_int4.h"
#include "tensorflow/lite/kernels/internal/portable_tensor_utils.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h"
#include "tensorflow/lite/kernels/padding.h"

namespace {

using edge_prune::sparse::Options;

class Reader {
 public:
  explicit Reader(std::vector<uint8_t> data) : data_(std::move(data)) {}
  bool ok() const { return ok_; }
  template <typename T>
  T Get() {
    T value{};
    if (pos_ + sizeof(T) > data_.size()) {
      ok_ = false;
      return value;
    }
    std::memcpy(&value, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  template <typename T>
  std::vector<T> Array() {
    const uint32_t n = Get<uint32_t>();
    std::vector<T> out(n);
    if (pos_ + n * sizeof(T) > data_.size()) {
      ok_ = false;
      return {};
    }
    if (n > 0) std::memcpy(out.data(), data_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return out;
  }

 private:
  std::vector<uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

struct Case {
  std::vector<uint8_t> options;  // the op's 24-byte custom options
  int32_t int4;                  // 1: int4 weights (packed dense and sparse)
  int32_t batches, input_h, input_w;
  float input_scale, output_scale;
  int32_t input_zero_point, output_zero_point, act_min, act_max;
  std::vector<float> scales;
  std::vector<int8_t> dense;
  std::vector<int32_t> bias, folded_bias;
  std::vector<int8_t> values;
  std::vector<uint8_t> index;
  std::vector<int8_t> input, expected;
};

tflite::RuntimeShape Shape(std::vector<int32_t> dims) {
  return tflite::RuntimeShape(static_cast<int>(dims.size()), dims.data());
}

Case ReadCase(Reader& r) {
  Case c;
  c.options = r.Array<uint8_t>();
  c.int4 = r.Get<int32_t>();
  c.batches = r.Get<int32_t>();
  c.input_h = r.Get<int32_t>();
  c.input_w = r.Get<int32_t>();
  c.input_scale = r.Get<float>();
  c.input_zero_point = r.Get<int32_t>();
  c.output_scale = r.Get<float>();
  c.output_zero_point = r.Get<int32_t>();
  c.act_min = r.Get<int32_t>();
  c.act_max = r.Get<int32_t>();
  c.scales = r.Array<float>();
  c.dense = r.Array<int8_t>();
  c.bias = r.Array<int32_t>();
  c.folded_bias = r.Array<int32_t>();
  c.values = r.Array<int8_t>();
  c.index = r.Array<uint8_t>();
  c.input = r.Array<int8_t>();
  c.expected = r.Array<int8_t>();
  if (c.int4 && c.options.size() == edge_prune::sparse::kOptionsSize) {
    // TFLM's path for an INT4 filter: unpack it to int8 first.
    Options o;
    if (edge_prune::sparse::ParseOptions(c.options.data(), c.options.size(),
                                         &o)) {
      const size_t n = static_cast<size_t>(o.out_channels) * o.kernel_h *
                       o.kernel_w * o.in_channels;
      std::vector<int8_t> unpacked(n);
      if ((n + 1) / 2 == c.dense.size()) {
        tflite::tensor_utils::UnpackDenseInt4IntoInt8(
            c.dense.data(), static_cast<int>(n), unpacked.data());
      }
      c.dense = unpacked;
    }
  }
  return c;
}

// Multipliers as TFLM's Prepare computes them (see edge_prune_sparse_ops.cc).
void Multipliers(const Options& o, const Case& c, std::vector<int32_t>* mult,
                 std::vector<int32_t>* shift) {
  const bool float_product =
      o.op == edge_prune::sparse::kOpFullyConnected && c.scales.size() == 1;
  for (uint32_t ch = 0; ch < o.out_channels; ++ch) {
    const float s = c.scales[c.scales.size() == 1 ? 0 : ch];
    const double product =
        float_product ? static_cast<double>(c.input_scale * s)
                      : static_cast<double>(c.input_scale) * static_cast<double>(s);
    int32_t m;
    int sh;
    tflite::QuantizeMultiplier(product / static_cast<double>(c.output_scale),
                               &m, &sh);
    mult->push_back(m);
    shift->push_back(sh);
  }
}

std::vector<int8_t> ReferenceFc(const Options& o, const Case& c,
                                const std::vector<int32_t>& mult,
                                const std::vector<int32_t>& shift) {
  const int out = static_cast<int>(o.out_channels);
  const int in = static_cast<int>(o.in_channels);
  std::vector<int8_t> output(static_cast<size_t>(c.batches) * out);
  tflite::FullyConnectedParams p{};
  p.input_offset = -c.input_zero_point;
  p.weights_offset = 0;
  p.output_offset = c.output_zero_point;
  p.quantized_activation_min = c.act_min;
  p.quantized_activation_max = c.act_max;
  const tflite::RuntimeShape input_shape = Shape({c.batches, in});
  const tflite::RuntimeShape filter_shape = Shape({out, in});
  const tflite::RuntimeShape bias_shape = Shape({out});
  const tflite::RuntimeShape output_shape = Shape({c.batches, out});
  if (c.scales.size() == 1) {
    p.output_multiplier = mult[0];
    p.output_shift = shift[0];
    tflite::reference_integer_ops::FullyConnected(
        p, input_shape, c.input.data(), filter_shape, c.dense.data(),
        bias_shape, c.bias.data(), output_shape, output.data());
  } else {
    tflite::reference_integer_ops::FullyConnectedPerChannel(
        p, mult.data(), reinterpret_cast<const int*>(shift.data()),
        input_shape, c.input.data(), filter_shape, c.dense.data(), bias_shape,
        c.bias.data(), output_shape, output.data());
  }
  return output;
}

edge_prune::sparse::ConvGeometry Geometry(const Options& o, const Case& c) {
  edge_prune::sparse::ConvGeometry g{};
  g.batches = c.batches;
  g.input_h = c.input_h;
  g.input_w = c.input_w;
  const TfLitePaddingValues pad = tflite::ComputePaddingHeightWidth(
      o.stride_h, o.stride_w, o.dilation_h, o.dilation_w, c.input_h, c.input_w,
      o.kernel_h, o.kernel_w, static_cast<TfLitePadding>(o.padding),
      &g.output_h, &g.output_w);
  g.pad_h = pad.height;
  g.pad_w = pad.width;
  return g;
}

std::vector<int8_t> ReferenceConv(const Options& o, const Case& c,
                                  const edge_prune::sparse::ConvGeometry& g,
                                  const std::vector<int32_t>& mult,
                                  const std::vector<int32_t>& shift) {
  const int out = static_cast<int>(o.out_channels);
  const int in = static_cast<int>(o.in_channels);
  std::vector<int8_t> output(static_cast<size_t>(g.batches) * g.output_h *
                             g.output_w * out);
  tflite::ConvParams p{};
  p.padding_values.height = g.pad_h;
  p.padding_values.width = g.pad_w;
  p.stride_height = o.stride_h;
  p.stride_width = o.stride_w;
  p.dilation_height_factor = o.dilation_h;
  p.dilation_width_factor = o.dilation_w;
  p.input_offset = -c.input_zero_point;
  p.output_offset = c.output_zero_point;
  p.quantized_activation_min = c.act_min;
  p.quantized_activation_max = c.act_max;
  tflite::reference_integer_ops::ConvPerChannel(
      p, mult.data(), shift.data(),
      Shape({g.batches, g.input_h, g.input_w, in}),
      c.input.data(),
      Shape({out, o.kernel_h, o.kernel_w, in}), c.dense.data(),
      Shape({out}), c.bias.data(),
      Shape({g.batches, g.output_h, g.output_w, out}),
      output.data());
  return output;
}

bool Check(const Case& c, const Options& o, const uint8_t* index, size_t n,
           size_t values) {
  return c.int4 ? edge_prune::sparse::CheckIndexInt4(o, index, n, values)
                : edge_prune::sparse::CheckIndex(o, index, n, values);
}

bool IndexChecksHold(const Options& o, const Case& c) {
  const uint8_t* index = c.index.data();
  const size_t n = c.index.size();
  const size_t values = c.values.size();
  if (!Check(c, o, index, n, values)) return false;
  if (Check(c, o, index, n - 1, values)) return false;
  if (Check(c, o, index, n, values + (c.int4 ? 1 : o.block))) return false;
  if (c.int4 && values > 0 && Check(c, o, index, n, values - 1)) return false;
  std::vector<uint8_t> bumped(c.index);
  bumped[0] = static_cast<uint8_t>(bumped[0] + 1);
  if (bumped[0] != 0 && Check(c, o, bumped.data(), n, values)) {
    return false;
  }
  if (n > 2 * o.out_channels) {  // push the last entry past its row
    std::vector<uint8_t> far(c.index);
    far.back() = 255;
    const uint32_t row_blocks = edge_prune::sparse::RowBlocks(o);
    const bool still_inside = row_blocks > 255;
    if (!still_inside &&
        Check(c, o, far.data(), n, values)) {
      return false;
    }
  }
  return true;
}

int Run(const Case& c, int number) {
  Options o;
  if (!edge_prune::sparse::ParseOptions(c.options.data(), c.options.size(),
                                        &o)) {
    std::printf("case %d: options refused\n", number);
    return 1;
  }
  if (!IndexChecksHold(o, c)) {
    std::printf("case %d: CheckIndex accepted a corrupt index or refused a good one\n",
                number);
    return 1;
  }
  std::vector<int32_t> mult, shift;
  Multipliers(o, c, &mult, &shift);
  // The int4 ops' Prepare keeps one multiplier for per-tensor scales and says
  // so in the parsed options: the kernels get one-element arrays.
  Options ko = o;
  std::vector<int32_t> kmult(mult), kshift(shift);
  if (c.int4 && c.scales.size() == 1) {
    ko.flags |= edge_prune::sparse::kFlagSharedRequantization;
    kmult.assign(1, mult[0]);
    kshift.assign(1, shift[0]);
  }
  edge_prune::sparse::Requantization q{kmult.data(), kshift.data(),
                                       c.output_zero_point, c.act_min,
                                       c.act_max};
  edge_prune::sparse::Filter f{c.values.data(), c.index.data(),
                               c.folded_bias.data()};
  edge_prune::sparse::Int4Filter f4{
      reinterpret_cast<const uint8_t*>(c.values.data()), c.index.data(),
      c.folded_bias.data()};
  std::vector<int8_t> want, got;
  if (o.op == edge_prune::sparse::kOpFullyConnected) {
    want = ReferenceFc(o, c, mult, shift);
    got.resize(want.size());
    if (c.int4) {
      edge_prune::sparse::FullyConnectedInt4(ko, c.batches, c.input.data(), f4,
                                             q, got.data());
    } else {
      edge_prune::sparse::FullyConnected(o, c.batches, c.input.data(), f, q,
                                         got.data());
    }
  } else {
    const edge_prune::sparse::ConvGeometry g = Geometry(o, c);
    want = ReferenceConv(o, c, g, mult, shift);
    got.resize(want.size());
    std::vector<uint32_t> patch(edge_prune::sparse::ConvPatchBytes(o) / 4 + 1);
    int8_t* scratch = reinterpret_cast<int8_t*>(patch.data());
    if (c.int4) {
      edge_prune::sparse::ConvInt4(ko, g, c.input.data(), f4, q, scratch,
                                   got.data());
    } else {
      edge_prune::sparse::Conv(o, g, c.input.data(), f, q, scratch,
                               got.data());
    }
  }
  if (got != want || c.expected != want) {
    size_t i = 0;
    while (i < want.size() && got[i] == want[i] &&
           (i >= c.expected.size() || c.expected[i] == want[i])) {
      ++i;
    }
    std::printf(
        "case %d: op %d block %d int4 %d: output %zu: TFLM %d, sparse %d, "
        "numpy %d\n",
        number, o.op, o.block, c.int4, i, i < want.size() ? want[i] : 0,
                i < got.size() ? got[i] : 0,
                i < c.expected.size() ? c.expected[i] : 0);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CASES_FILE\n", argv[0]);
    return 2;
  }
  FILE* f = std::fopen(argv[1], "rb");
  if (f == nullptr) return 2;
  std::vector<uint8_t> data;
  uint8_t buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) {
    data.insert(data.end(), buffer, buffer + n);
  }
  std::fclose(f);
  Reader r(std::move(data));
  if (r.Get<uint32_t>() != 0x4b535045u) return 2;  // "EPSK"
  const uint32_t cases = r.Get<uint32_t>();
  int mismatches = 0;
  uint32_t compared = 0;
  for (uint32_t i = 0; i < cases && r.ok(); ++i) {
    const Case c = ReadCase(r);
    if (!r.ok()) break;
    mismatches += Run(c, static_cast<int>(i));
    ++compared;
  }
  std::printf("cases %u compared %u mismatches %d\n", cases, compared,
              mismatches);
  return (mismatches == 0 && compared == cases) ? 0 : 1;
}
