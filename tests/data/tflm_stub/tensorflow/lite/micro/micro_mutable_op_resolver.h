// Test stand-in for tflite-micro's tensorflow/lite/micro/micro_mutable_op_resolver.h
// (see tests/data/tflm_stub/README.md). Each Add method registers the op that the TFLM method
// of the same name registers: the builtin op's name, or "CUSTOM:" and the custom op's name.
#ifndef EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
#define EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_

#include <cstring>

#include "tensorflow/lite/c/common.h"

namespace tflite {

class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() = default;
  virtual unsigned int GetRegistrationLength() const = 0;
  virtual const char* GetRegisteredOp(unsigned int i) const = 0;
};

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  static constexpr unsigned int kCapacity = tOpCount;

  TfLiteStatus AddAbs() { return Register("ABS"); }
  TfLiteStatus AddAdd() { return Register("ADD"); }
  TfLiteStatus AddAddN() { return Register("ADD_N"); }
  TfLiteStatus AddArgMax() { return Register("ARG_MAX"); }
  TfLiteStatus AddArgMin() { return Register("ARG_MIN"); }
  TfLiteStatus AddAssignVariable() { return Register("ASSIGN_VARIABLE"); }
  TfLiteStatus AddAveragePool2D() { return Register("AVERAGE_POOL_2D"); }
  TfLiteStatus AddBatchToSpaceNd() { return Register("BATCH_TO_SPACE_ND"); }
  TfLiteStatus AddBroadcastArgs() { return Register("BROADCAST_ARGS"); }
  TfLiteStatus AddBroadcastTo() { return Register("BROADCAST_TO"); }
  TfLiteStatus AddCallOnce() { return Register("CALL_ONCE"); }
  TfLiteStatus AddCast() { return Register("CAST"); }
  TfLiteStatus AddCeil() { return Register("CEIL"); }
  TfLiteStatus AddConcatenation() { return Register("CONCATENATION"); }
  TfLiteStatus AddConv2D() { return Register("CONV_2D"); }
  TfLiteStatus AddCos() { return Register("COS"); }
  TfLiteStatus AddCumSum() { return Register("CUMSUM"); }
  TfLiteStatus AddDepthToSpace() { return Register("DEPTH_TO_SPACE"); }
  TfLiteStatus AddDepthwiseConv2D() { return Register("DEPTHWISE_CONV_2D"); }
  TfLiteStatus AddDequantize() { return Register("DEQUANTIZE"); }
  TfLiteStatus AddElu() { return Register("ELU"); }
  TfLiteStatus AddEqual() { return Register("EQUAL"); }
  TfLiteStatus AddExp() { return Register("EXP"); }
  TfLiteStatus AddExpandDims() { return Register("EXPAND_DIMS"); }
  TfLiteStatus AddFill() { return Register("FILL"); }
  TfLiteStatus AddFloor() { return Register("FLOOR"); }
  TfLiteStatus AddFloorDiv() { return Register("FLOOR_DIV"); }
  TfLiteStatus AddFloorMod() { return Register("FLOOR_MOD"); }
  TfLiteStatus AddFullyConnected() { return Register("FULLY_CONNECTED"); }
  TfLiteStatus AddGather() { return Register("GATHER"); }
  TfLiteStatus AddGatherNd() { return Register("GATHER_ND"); }
  TfLiteStatus AddGreater() { return Register("GREATER"); }
  TfLiteStatus AddGreaterEqual() { return Register("GREATER_EQUAL"); }
  TfLiteStatus AddHardSwish() { return Register("HARD_SWISH"); }
  TfLiteStatus AddIf() { return Register("IF"); }
  TfLiteStatus AddL2Normalization() { return Register("L2_NORMALIZATION"); }
  TfLiteStatus AddL2Pool2D() { return Register("L2_POOL_2D"); }
  TfLiteStatus AddLeakyRelu() { return Register("LEAKY_RELU"); }
  TfLiteStatus AddLess() { return Register("LESS"); }
  TfLiteStatus AddLessEqual() { return Register("LESS_EQUAL"); }
  TfLiteStatus AddLog() { return Register("LOG"); }
  TfLiteStatus AddLogicalAnd() { return Register("LOGICAL_AND"); }
  TfLiteStatus AddLogicalNot() { return Register("LOGICAL_NOT"); }
  TfLiteStatus AddLogicalOr() { return Register("LOGICAL_OR"); }
  TfLiteStatus AddLogistic() { return Register("LOGISTIC"); }
  TfLiteStatus AddMaximum() { return Register("MAXIMUM"); }
  TfLiteStatus AddMaxPool2D() { return Register("MAX_POOL_2D"); }
  TfLiteStatus AddMirrorPad() { return Register("MIRROR_PAD"); }
  TfLiteStatus AddMean() { return Register("MEAN"); }
  TfLiteStatus AddMinimum() { return Register("MINIMUM"); }
  TfLiteStatus AddMul() { return Register("MUL"); }
  TfLiteStatus AddNeg() { return Register("NEG"); }
  TfLiteStatus AddNotEqual() { return Register("NOT_EQUAL"); }
  TfLiteStatus AddPack() { return Register("PACK"); }
  TfLiteStatus AddPad() { return Register("PAD"); }
  TfLiteStatus AddPadV2() { return Register("PADV2"); }
  TfLiteStatus AddPrelu() { return Register("PRELU"); }
  TfLiteStatus AddQuantize() { return Register("QUANTIZE"); }
  TfLiteStatus AddReadVariable() { return Register("READ_VARIABLE"); }
  TfLiteStatus AddReduceMax() { return Register("REDUCE_MAX"); }
  TfLiteStatus AddRelu() { return Register("RELU"); }
  TfLiteStatus AddRelu6() { return Register("RELU6"); }
  TfLiteStatus AddReshape() { return Register("RESHAPE"); }
  TfLiteStatus AddResizeBilinear() { return Register("RESIZE_BILINEAR"); }
  TfLiteStatus AddResizeNearestNeighbor() { return Register("RESIZE_NEAREST_NEIGHBOR"); }
  TfLiteStatus AddRound() { return Register("ROUND"); }
  TfLiteStatus AddRsqrt() { return Register("RSQRT"); }
  TfLiteStatus AddShape() { return Register("SHAPE"); }
  TfLiteStatus AddSin() { return Register("SIN"); }
  TfLiteStatus AddSlice() { return Register("SLICE"); }
  TfLiteStatus AddSoftmax() { return Register("SOFTMAX"); }
  TfLiteStatus AddSpaceToBatchNd() { return Register("SPACE_TO_BATCH_ND"); }
  TfLiteStatus AddSpaceToDepth() { return Register("SPACE_TO_DEPTH"); }
  TfLiteStatus AddSplit() { return Register("SPLIT"); }
  TfLiteStatus AddSplitV() { return Register("SPLIT_V"); }
  TfLiteStatus AddSqueeze() { return Register("SQUEEZE"); }
  TfLiteStatus AddSqrt() { return Register("SQRT"); }
  TfLiteStatus AddSquare() { return Register("SQUARE"); }
  TfLiteStatus AddStridedSlice() { return Register("STRIDED_SLICE"); }
  TfLiteStatus AddSub() { return Register("SUB"); }
  TfLiteStatus AddSvdf() { return Register("SVDF"); }
  TfLiteStatus AddTanh() { return Register("TANH"); }
  TfLiteStatus AddTransposeConv() { return Register("TRANSPOSE_CONV"); }
  TfLiteStatus AddTranspose() { return Register("TRANSPOSE"); }
  TfLiteStatus AddUnpack() { return Register("UNPACK"); }
  TfLiteStatus AddUnidirectionalSequenceLSTM() { return Register("UNIDIRECTIONAL_SEQUENCE_LSTM"); }
  TfLiteStatus AddVarHandle() { return Register("VAR_HANDLE"); }
  TfLiteStatus AddWhile() { return Register("WHILE"); }
  TfLiteStatus AddZerosLike() { return Register("ZEROS_LIKE"); }
  TfLiteStatus AddCircularBuffer() { return Register("CUSTOM:CIRCULAR_BUFFER"); }
  TfLiteStatus AddDetectionPostprocess() { return Register("CUSTOM:TFLite_Detection_PostProcess"); }
  TfLiteStatus AddDecode() { return Register("CUSTOM:TFLM_DECODE"); }
  // The rest of tflite-micro 90b983c2's methods (Signal library ops, ETHOSU, DIV, SUM, ...):
  TfLiteStatus AddBatchMatMul() { return Register("BATCH_MATMUL"); }
  TfLiteStatus AddDelay() { return Register("CUSTOM:SignalDelay"); }
  TfLiteStatus AddDiv() { return Register("DIV"); }
  TfLiteStatus AddDynamicUpdateSlice() { return Register("DYNAMIC_UPDATE_SLICE"); }
  TfLiteStatus AddEmbeddingLookup() { return Register("EMBEDDING_LOOKUP"); }
  TfLiteStatus AddEnergy() { return Register("CUSTOM:SignalEnergy"); }
  TfLiteStatus AddEthosU() { return Register("CUSTOM:ethos-u"); }
  TfLiteStatus AddFftAutoScale() { return Register("CUSTOM:SignalFftAutoScale"); }
  TfLiteStatus AddFilterBank() { return Register("CUSTOM:SignalFilterBank"); }
  TfLiteStatus AddFilterBankLog() { return Register("CUSTOM:SignalFilterBankLog"); }
  TfLiteStatus AddFilterBankSpectralSubtraction() { return Register("CUSTOM:SignalFilterBankSpectralSubtraction"); }
  TfLiteStatus AddFilterBankSquareRoot() { return Register("CUSTOM:SignalFilterBankSquareRoot"); }
  TfLiteStatus AddFramer() { return Register("CUSTOM:SignalFramer"); }
  TfLiteStatus AddIrfft() { return Register("CUSTOM:SignalIrfft"); }
  TfLiteStatus AddLogSoftmax() { return Register("LOG_SOFTMAX"); }
  TfLiteStatus AddOverlapAdd() { return Register("CUSTOM:SignalOverlapAdd"); }
  TfLiteStatus AddPCAN() { return Register("CUSTOM:SignalPCAN"); }
  TfLiteStatus AddReduceAll() { return Register("REDUCE_ALL"); }
  TfLiteStatus AddReduceMin() { return Register("REDUCE_MIN"); }
  TfLiteStatus AddReverseV2() { return Register("REVERSE_V2"); }
  TfLiteStatus AddRfft() { return Register("CUSTOM:SignalRfft"); }
  TfLiteStatus AddSelectV2() { return Register("SELECT_V2"); }
  TfLiteStatus AddSquaredDifference() { return Register("SQUARED_DIFFERENCE"); }
  TfLiteStatus AddStacker() { return Register("CUSTOM:SignalStacker"); }
  TfLiteStatus AddSum() { return Register("SUM"); }
  TfLiteStatus AddWindow() { return Register("CUSTOM:SignalWindow"); }

  unsigned int GetRegistrationLength() const override { return registrations_len_; }
  const char* GetRegisteredOp(unsigned int i) const override { return names_[i]; }

 private:
  // Like TFLM: an op added twice, or one more than tOpCount, is an error.
  TfLiteStatus Register(const char* name) {
    for (unsigned int i = 0; i < registrations_len_; ++i) {
      if (std::strcmp(names_[i], name) == 0) return kTfLiteError;
    }
    if (registrations_len_ >= tOpCount) return kTfLiteError;
    names_[registrations_len_++] = name;
    return kTfLiteOk;
  }

  const char* names_[tOpCount] = {};
  unsigned int registrations_len_ = 0;
};

}  // namespace tflite

#endif  // EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
