// Test fixture for tests/test_op_resolver.py, written for edge-prune: the shapes of Add*
// method that TFLM's micro_mutable_op_resolver.h (tflite-micro 90b983c2) uses, one or two of
// each, so that the table generator is tested without a TFLM tree. Not TFLM's code: only the
// method names, parameters and registration calls the generator reads are the same.
namespace tflite {

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddCustom(const char* name,
                         const TFLMRegistration* registration) {
    return Store(name, registration);
  }

  // A builtin op with a defaulted registration parameter.
  TfLiteStatus AddAbs(const TFLMRegistration& registration = Register_ABS()) {
    return AddBuiltin(BuiltinOperator_ABS, registration, ParseAbs);
  }

  // The signature split over two lines.
  TfLiteStatus AddAveragePool2D(
      const TFLMRegistration& registration = Register_AVERAGE_POOL_2D()) {
    return AddBuiltin(BuiltinOperator_AVERAGE_POOL_2D, registration, ParsePool);
  }

  // A custom op registered under a string literal.
  TfLiteStatus AddCircularBuffer() {
    return AddCustom("CIRCULAR_BUFFER", tflite::Register_CIRCULAR_BUFFER());
  }

  // A custom op whose registration is a local first.
  TfLiteStatus AddDecode() {
    const TFLMRegistration& registration = tflite::Register_DECODE();
    return AddCustom("TFLM_DECODE", &registration);
  }

  // A Signal library op: the custom name differs from the method name.
  TfLiteStatus AddDelay() {
    return AddCustom("SignalDelay", tflite::tflm_signal::Register_DELAY());
  }

  // A custom name from a function defined in a kernel source.
  TfLiteStatus AddEthosU() {
    TFLMRegistration* registration = tflite::Register_ETHOSU();
    if (registration) {
      return AddCustom(tflite::GetString_ETHOSU(), registration);
    }
    return kTfLiteOk;
  }

  // The registration passed inline, the call split over lines.
  TfLiteStatus AddResizeNearestNeighbor() {
    return AddBuiltin(BuiltinOperator_RESIZE_NEAREST_NEIGHBOR,
                      Register_RESIZE_NEAREST_NEIGHBOR(),
                      ParseResizeNearestNeighbor);
  }

  // A pointer parameter with a default split over lines.
  TfLiteStatus AddRfft(const TFLMRegistration* registration =
                           tflite::tflm_signal::Register_RFFT()) {
    return AddCustom("SignalRfft", registration);
  }

  TfLiteStatus AddSum(const TFLMRegistration& registration = Register_SUM()) {
    return AddBuiltin(BuiltinOperator_SUM, registration, ParseReducer);
  }

 private:
  TfLiteStatus AddBuiltin(tflite::BuiltinOperator op,
                          const TFLMRegistration& registration,
                          TfLiteBridgeBuiltinParseFunction parser) {
    return Store(op, registration, parser);
  }
};

}  // namespace tflite
