// Test stand-in for tflite-micro's tensorflow/lite/micro/micro_interpreter.h and GetModel
// (see tests/data/tflm_stub/README.md). Runs no model: it checks the set-up calls' order
// and arguments, and gives input and output tensors backed by the arena.
#ifndef EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_
#define EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace tflite {

struct Model {
  const void* data;
};

inline const Model* GetModel(const void* buf) {
  static Model model;
  model.data = buf;
  return &model;
}

class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size)
      : model_(model), resolver_(resolver), arena_(tensor_arena), arena_size_(tensor_arena_size) {}

  TfLiteStatus AllocateTensors() {
    if (model_ == nullptr || model_->data == nullptr || arena_ == nullptr) return kTfLiteError;
    if (reinterpret_cast<uintptr_t>(arena_) % 16 != 0) return kTfLiteError;
    if (resolver_.GetRegistrationLength() == 0 || arena_size_ < 2 * kTensorBytes) {
      return kTfLiteError;
    }
    input_.data.data = arena_;
    output_.data.data = arena_ + kTensorBytes;
    allocated_ = true;
    return kTfLiteOk;
  }

  TfLiteTensor* input(size_t) { return &input_; }
  TfLiteTensor* output(size_t) { return &output_; }
  TfLiteStatus Invoke() { return allocated_ ? kTfLiteOk : kTfLiteError; }
  size_t arena_used_bytes() const { return allocated_ ? 2 * kTensorBytes : 0; }

 private:
  static constexpr size_t kTensorBytes = 1024;  // room for the test models' tensors
  const Model* model_;
  const MicroOpResolver& resolver_;
  uint8_t* arena_;
  size_t arena_size_;
  TfLiteTensor input_ = {};
  TfLiteTensor output_ = {};
  bool allocated_ = false;
};

}  // namespace tflite

#endif  // EDGE_PRUNE_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_
