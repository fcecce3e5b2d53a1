// edge-prune device harness: the TFLM runtime of an op set, without a model. Registers exactly
// the ops of runtime_ops.h on a MicroMutableOpResolver and runs a MicroInterpreter on a model
// pointer the compiler cannot see through, so that everything a real firmware links is linked.
#include <cstdio>
#include <cstring>

#include "runtime_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

extern "C" const unsigned char* volatile g_edge_prune_model;
const unsigned char* volatile g_edge_prune_model = nullptr;
alignas(16) static uint8_t g_arena[2048];

int main() {
  static EdgePruneRuntimeResolver resolver;
  if (EdgePruneRegisterRuntimeOps(resolver) != kTfLiteOk) return 1;
  static tflite::MicroInterpreter interpreter(tflite::GetModel(g_edge_prune_model), resolver,
                                              g_arena, sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  const TfLiteStatus status = interpreter.Invoke();
  char line[64];
  memset(line, 0, sizeof(line));
  printf("status %d arena %u\n", static_cast<int>(status),
         static_cast<unsigned>(interpreter.arena_used_bytes()));
  fputs(line, stdout);
  return 0;
}
