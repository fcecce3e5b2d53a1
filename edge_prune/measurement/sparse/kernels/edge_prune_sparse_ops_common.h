// TFLM glue shared by edge-prune's sparse custom ops (internal: included by
// edge_prune_sparse_ops.cc and edge_prune_sparse_int4_ops.cc only). Init
// parses the custom options, Prepare checks every tensor and the whole index
// and computes the requantization as TFLM's FULLY_CONNECTED / CONV_2D do, Eval
// only computes. `Kernels` gives the values' type, the index check and the
// compute functions of one weight type (int8, int4).

#ifndef EDGE_PRUNE_SPARSE_OPS_COMMON_H_
#define EDGE_PRUNE_SPARSE_OPS_COMMON_H_

#include <cstdint>

#include "edge_prune_sparse.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/kernels/padding.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"

namespace edge_prune {
namespace sparse_ops {
// TU-local: each op file keeps its own copy, compiled as one file would be.
namespace {


using sparse::Options;

constexpr int kInput = 0;
constexpr int kValues = 1;
constexpr int kIndex = 2;  // folded bias (int32 per output channel), then the index
constexpr int kOutput = 0;

// Kept small: TFLM keeps it in the arena for the model's lifetime.
struct OpData {
  Options options;
  int32_t* multiplier;
  int32_t* shift;
  int32_t batches;  // FULLY_CONNECTED
  int8_t output_offset;  // the int8 output's zero point
  int8_t activation_min;
  int8_t activation_max;
  bool options_valid;
};

// CONV_2D: the common part first, so that a ConvData* is an OpData*.
struct ConvData {
  OpData common;
  sparse::ConvGeometry geometry;
  int patch_buffer_index;
};

// Multipliers (and shifts) the op keeps: one for an op whose weights are
// always quantized per tensor (an INT4 FULLY_CONNECTED, as TFLM computes it),
// else one per output channel.
template <typename Kernels>
int MultiplierCapacity(const Options& options) {
  return Kernels::kSharedPerTensor && options.op == sparse::kOpFullyConnected
             ? 1
             : static_cast<int>(options.out_channels);
}

// Every persistent buffer is taken here, before Prepare holds temporary
// tensors: TFLM's AllocatePersistentBuffer checks the tail against the head
// only, not against the temporary allocations above it
// (single_arena_buffer_allocator.cc), so a persistent buffer taken while
// temporary tensors are live can overwrite them on a tight arena.
template <typename Data, typename Kernels>
void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(Data));
  if (raw == nullptr) return nullptr;
  OpData* data = static_cast<OpData*>(raw);
  data->multiplier = nullptr;
  data->shift = nullptr;
  data->options_valid = sparse::ParseOptions(
      reinterpret_cast<const uint8_t*>(buffer), length, &data->options);
  if (data->options_valid) {
    const size_t bytes =
        MultiplierCapacity<Kernels>(data->options) * sizeof(int32_t);
    data->multiplier = static_cast<int32_t*>(
        context->AllocatePersistentBuffer(context, bytes));
    data->shift = static_cast<int32_t*>(
        context->AllocatePersistentBuffer(context, bytes));
  }
  return raw;
}

// The multipliers of TFLM's Prepare: a per-tensor FULLY_CONNECTED multiplies
// the float scales first (GetQuantizedConvolutionMultipler), per-channel FC
// and CONV_2D multiply doubles (PopulateConvolutionQuantizationParams). With
// Kernels::kSharedPerTensor, per-tensor scales keep one multiplier and shift
// (not one per output channel) and set kFlagSharedRequantization in the
// parsed options, which the kernels read.
template <typename Kernels>
TfLiteStatus ComputeMultipliers(TfLiteContext* context, OpData* data,
                                const TfLiteTensor* input,
                                const TfLiteTensor* values,
                                const TfLiteTensor* output) {
  TF_LITE_ENSURE_EQ(context, values->quantization.type,
                    kTfLiteAffineQuantization);
  const auto* q =
      static_cast<const TfLiteAffineQuantization*>(values->quantization.params);
  TF_LITE_ENSURE(context, q != nullptr && q->scale != nullptr);
  const int channels = static_cast<int>(data->options.out_channels);
  const int scales = q->scale->size;
  TF_LITE_ENSURE(context, scales == 1 || scales == channels);
  if (q->zero_point != nullptr) {
    for (int i = 0; i < q->zero_point->size; ++i) {
      TF_LITE_ENSURE_EQ(context, q->zero_point->data[i], 0);
    }
  }
  const bool shared = Kernels::kSharedPerTensor && scales == 1;
  const int stored = shared ? 1 : channels;
  TF_LITE_ENSURE(context, stored <= MultiplierCapacity<Kernels>(data->options));
  if (shared) data->options.flags |= sparse::kFlagSharedRequantization;
  TF_LITE_ENSURE(context, data->multiplier != nullptr && data->shift != nullptr);
  const bool float_product =
      data->options.op == sparse::kOpFullyConnected && scales == 1;
  for (int c = 0; c < stored; ++c) {
    const float filter_scale = q->scale->data[scales == 1 ? 0 : c];
    const double product =
        float_product ? static_cast<double>(input->params.scale * filter_scale)
                      : static_cast<double>(input->params.scale) *
                            static_cast<double>(filter_scale);
    const double real = product / static_cast<double>(output->params.scale);
    int shift = 0;
    tflite::QuantizeMultiplier(real, &data->multiplier[c], &shift);
    data->shift[c] = shift;
  }
  return kTfLiteOk;
}

template <typename Kernels>
TfLiteStatus CheckConstants(TfLiteContext* context, const OpData* data,
                            const TfLiteTensor* values,
                            const TfLiteTensor* index) {
  TF_LITE_ENSURE_TYPES_EQ(context, values->type, kTfLiteInt8);
  TF_LITE_ENSURE_TYPES_EQ(context, index->type, kTfLiteUInt8);
  TF_LITE_ENSURE(context, tflite::IsConstantTensor(values));
  TF_LITE_ENSURE(context, tflite::IsConstantTensor(index));
  TF_LITE_ENSURE(context, index->data.raw != nullptr);
  // The bias is read as int32: the buffer must be 4-aligned (TFLM's flatbuffer
  // aligner gives 16).
  TF_LITE_ENSURE(context,
                 reinterpret_cast<uintptr_t>(index->data.raw) % 4 == 0);
  const size_t bias_bytes = 4 * static_cast<size_t>(data->options.out_channels);
  TF_LITE_ENSURE(context, index->bytes >= bias_bytes);
  TF_LITE_ENSURE_MSG(
      context,
      Kernels::CheckIndex(data->options, index->data.uint8 + bias_bytes,
                          index->bytes - bias_bytes, values->bytes),
      "EDGE_PRUNE_SPARSE: index does not match the values and options");
  return kTfLiteOk;
}

TfLiteStatus PrepareFullyConnected(TfLiteContext* context, OpData* data,
                                   const TfLiteTensor* input,
                                   const TfLiteTensor* output) {
  const Options& o = data->options;
  const int64_t size = tflite::NumElements(input);
  TF_LITE_ENSURE(context, size % o.in_channels == 0);
  data->batches = static_cast<int>(size / o.in_channels);
  TF_LITE_ENSURE(context, output->dims->size >= 1);
  TF_LITE_ENSURE_EQ(context, output->dims->data[output->dims->size - 1],
                    static_cast<int>(o.out_channels));
  TF_LITE_ENSURE_EQ(context, tflite::NumElements(output),
                    static_cast<int64_t>(data->batches) * o.out_channels);
  return kTfLiteOk;
}

TfLiteStatus PrepareConv(TfLiteContext* context, OpData* common,
                         const TfLiteTensor* input,
                         const TfLiteTensor* output) {
  ConvData* data = reinterpret_cast<ConvData*>(common);
  const Options& o = common->options;
  TF_LITE_ENSURE_EQ(context, input->dims->size, 4);
  TF_LITE_ENSURE_EQ(context, output->dims->size, 4);
  TF_LITE_ENSURE_EQ(context, input->dims->data[3],
                    static_cast<int>(o.in_channels));
  sparse::ConvGeometry& g = data->geometry;
  g.batches = input->dims->data[0];
  g.input_h = input->dims->data[1];
  g.input_w = input->dims->data[2];
  const TfLitePaddingValues padding = tflite::ComputePaddingHeightWidth(
      o.stride_h, o.stride_w, o.dilation_h, o.dilation_w, g.input_h, g.input_w,
      o.kernel_h, o.kernel_w, static_cast<TfLitePadding>(o.padding),
      &g.output_h, &g.output_w);
  g.pad_h = padding.height;
  g.pad_w = padding.width;
  TF_LITE_ENSURE(context, g.output_h > 0 && g.output_w > 0);
  TF_LITE_ENSURE_EQ(context, output->dims->data[0], g.batches);
  TF_LITE_ENSURE_EQ(context, output->dims->data[1], g.output_h);
  TF_LITE_ENSURE_EQ(context, output->dims->data[2], g.output_w);
  TF_LITE_ENSURE_EQ(context, output->dims->data[3],
                    static_cast<int>(o.out_channels));
  const size_t patch = sparse::ConvPatchBytes(o);
  data->patch_buffer_index = -1;
  if (patch > 0) {
    TF_LITE_ENSURE_STATUS(context->RequestScratchBufferInArena(
        context, patch, &data->patch_buffer_index));
  }
  return kTfLiteOk;
}

template <typename Kernels>
TfLiteStatus PrepareTensors(TfLiteContext* context, TfLiteNode* node,
                            OpData* data, int op) {
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro_context->AllocateTempInputTensor(node, kInput);
  TfLiteTensor* values = micro_context->AllocateTempInputTensor(node, kValues);
  TfLiteTensor* index = micro_context->AllocateTempInputTensor(node, kIndex);
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, kOutput);
  TfLiteStatus status = kTfLiteError;
  int32_t activation_min = 0;
  int32_t activation_max = 0;
  if (input != nullptr && values != nullptr && index != nullptr &&
      output != nullptr && input->type == kTfLiteInt8 &&
      output->type == kTfLiteInt8 &&
      input->params.zero_point == data->options.input_zero_point &&
      CheckConstants<Kernels>(context, data, values, index) == kTfLiteOk &&
      ComputeMultipliers<Kernels>(context, data, input, values, output) ==
          kTfLiteOk &&
      tflite::CalculateActivationRangeQuantized(
          context, static_cast<TfLiteFusedActivation>(data->options.activation),
          output, &activation_min, &activation_max) == kTfLiteOk) {
    data->output_offset = static_cast<int8_t>(output->params.zero_point);
    data->activation_min = static_cast<int8_t>(activation_min);
    data->activation_max = static_cast<int8_t>(activation_max);
    status = op == sparse::kOpFullyConnected
                 ? PrepareFullyConnected(context, data, input, output)
                 : PrepareConv(context, data, input, output);
  }
  for (TfLiteTensor* t : {input, values, index, output}) {
    if (t != nullptr) micro_context->DeallocateTempTfLiteTensor(t);
  }
  return status;
}

template <typename Kernels>
TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node, int op) {
  TF_LITE_ENSURE(context, node->user_data != nullptr);
  OpData* data = static_cast<OpData*>(node->user_data);
  TF_LITE_ENSURE_MSG(context, data->options_valid,
                     "EDGE_PRUNE_SPARSE: malformed custom options");
  TF_LITE_ENSURE_EQ(context, data->options.op, op);
  TF_LITE_ENSURE_EQ(context, node->inputs->size, 3);
  TF_LITE_ENSURE_EQ(context, node->outputs->size, 1);
  TF_LITE_ENSURE_MSG(context, PrepareTensors<Kernels>(context, node, data, op) == kTfLiteOk,
                     "EDGE_PRUNE_SPARSE: tensors do not match the op");
  return kTfLiteOk;
}

template <typename Kernels>
TfLiteStatus PrepareFc(TfLiteContext* context, TfLiteNode* node) {
  return Prepare<Kernels>(context, node, sparse::kOpFullyConnected);
}

template <typename Kernels>
TfLiteStatus PrepareConvOp(TfLiteContext* context, TfLiteNode* node) {
  return Prepare<Kernels>(context, node, sparse::kOpConv);
}

template <typename Kernels>
typename Kernels::Filter FilterOf(TfLiteContext* context, TfLiteNode* node,
                                  const OpData* data) {
  typename Kernels::Filter filter;
  filter.values = tflite::micro::GetTensorData<typename Kernels::Value>(
      tflite::micro::GetEvalInput(context, node, kValues));
  const uint8_t* index = tflite::micro::GetTensorData<uint8_t>(
      tflite::micro::GetEvalInput(context, node, kIndex));
  filter.bias = reinterpret_cast<const int32_t*>(index);
  filter.index = index + 4 * static_cast<size_t>(data->options.out_channels);
  return filter;
}

sparse::Requantization RequantizationOf(const OpData* data) {
  sparse::Requantization q;
  q.multiplier = data->multiplier;
  q.shift = data->shift;
  q.output_offset = data->output_offset;
  q.activation_min = data->activation_min;
  q.activation_max = data->activation_max;
  return q;
}

template <typename Kernels>
TfLiteStatus EvalFc(TfLiteContext* context, TfLiteNode* node) {
  const OpData* data = static_cast<const OpData*>(node->user_data);
  const TfLiteEvalTensor* input =
      tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output =
      tflite::micro::GetEvalOutput(context, node, kOutput);
  Kernels::FullyConnected(data->options, data->batches,
                          tflite::micro::GetTensorData<int8_t>(input),
                          FilterOf<Kernels>(context, node, data),
                          RequantizationOf(data),
                          tflite::micro::GetTensorData<int8_t>(output));
  return kTfLiteOk;
}

template <typename Kernels>
TfLiteStatus EvalConv(TfLiteContext* context, TfLiteNode* node) {
  const ConvData* conv = static_cast<const ConvData*>(node->user_data);
  const OpData* data = &conv->common;
  const TfLiteEvalTensor* input =
      tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output =
      tflite::micro::GetEvalOutput(context, node, kOutput);
  int8_t* patch = nullptr;
  if (conv->patch_buffer_index >= 0) {
    patch = static_cast<int8_t*>(
        context->GetScratchBuffer(context, conv->patch_buffer_index));
    TF_LITE_ENSURE(context, patch != nullptr);
  }
  Kernels::Conv(data->options, conv->geometry,
                tflite::micro::GetTensorData<int8_t>(input),
                FilterOf<Kernels>(context, node, data), RequantizationOf(data),
                patch, tflite::micro::GetTensorData<int8_t>(output));
  return kTfLiteOk;
}

}  // namespace
}  // namespace sparse_ops
}  // namespace edge_prune

#endif  // EDGE_PRUNE_SPARSE_OPS_COMMON_H_
