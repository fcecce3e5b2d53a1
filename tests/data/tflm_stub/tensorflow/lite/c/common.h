// Test stand-in for TFLM's tensorflow/lite/c/common.h (see tests/data/tflm_stub/README.md).
#ifndef EDGE_PRUNE_STUB_TENSORFLOW_LITE_C_COMMON_H_
#define EDGE_PRUNE_STUB_TENSORFLOW_LITE_C_COMMON_H_

#include <cstdint>

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteComplex64 = 8,
  kTfLiteInt8 = 9,
  kTfLiteFloat16 = 10,
  kTfLiteFloat64 = 11,
  kTfLiteComplex128 = 12,
  kTfLiteUInt64 = 13,
  kTfLiteResource = 14,
  kTfLiteVariant = 15,
  kTfLiteUInt32 = 16,
  kTfLiteUInt16 = 17,
  kTfLiteInt4 = 18,
} TfLiteType;

typedef union TfLitePtrUnion {
  int32_t* i32;
  float* f;
  int8_t* int8;
  uint8_t* uint8;
  int16_t* i16;
  void* data;
} TfLitePtrUnion;

typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
} TfLiteTensor;

#endif  // EDGE_PRUNE_STUB_TENSORFLOW_LITE_C_COMMON_H_
