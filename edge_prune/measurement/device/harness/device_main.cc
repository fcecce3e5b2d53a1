// edge-prune device harness: runs the model through FIRMWARE.md's code (compiled from the
// generated firmware_md.cc) on QEMU and prints what the host compares, one fact per line:
//   calibration <ticks of a 2,000,002-instruction loop>
//   arena_used_bytes <n> | setup failed
//   sample <i> status <s> ticks <t> out <hex bytes of output 0> <hex of output 1> ...
//   profile <i> <op name> <ticks>   (sample 0 once more, per operator; not in release builds,
//                                     whose interpreter calls no profiler)
//   probe arena_min <n> used <arena_used_bytes with it> | probe failed
//   probe null_writes <count>     (sizes at which TFLM wrote through a null pointer)
//   probe faults <count> first pc <address>                   (when some sizes faulted)
//   probe asserts <count> first <file>:<line> <expression>   (when some sizes hit an assert
//                                                              or TFLM's TFLITE_ABORT)
//   TFLM halted: ...               (TFLITE_ABORT outside the probe; the run ends)
//   DONE
// An assert() or a fault while the probe tries an arena size counts as that size failing (the
// harness's __assert_func, and the fault handler through g_edge_prune_fault_resume, jump back
// to the probe); anywhere else either ends the run.
// device_glue.h (generated) names the model's functions and holds the samples.
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "device_glue.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

tflite::MicroInterpreter* EP_SETUP();
TfLiteStatus EP_RUN(tflite::MicroInterpreter* interpreter, const float* values);

namespace {

bool g_quiet = false;
bool g_in_probe = false;
jmp_buf g_probe_jump;
int g_probe_asserts = 0;
const char* g_assert_file = "";
const char* g_assert_expression = "";
int g_assert_line = 0;
int g_probe_faults = 0;
unsigned g_first_fault_pc = 0;
int g_probe_null_writes = 0;

}  // namespace

extern "C" void (*volatile g_edge_prune_fault_resume)(void);  // startup.c
extern "C" uint8_t __edge_prune_guard_start[], __edge_prune_guard_end[];  // link.ld
extern "C" volatile uint32_t g_edge_prune_fault_pc;

// A fault while the probe tries an arena size: back to TryArena, that size does not work.
extern "C" void EdgePruneProbeFault() {
  if (g_probe_faults++ == 0) g_first_fault_pc = g_edge_prune_fault_pc;
  longjmp(g_probe_jump, 2);
}

// newlib's assert() calls this; the harness's definition replaces the C library's.
extern "C" [[noreturn]] void __assert_func(const char* file, int line, const char* function,
                                           const char* expression) {
  (void)function;
  if (g_in_probe) {
    if (g_probe_asserts++ == 0) {
      g_assert_file = file;
      g_assert_line = line;
      g_assert_expression = expression;
    }
    longjmp(g_probe_jump, 1);
  }
  printf("assertion failed: %s:%d %s\n", file, line, expression);
  exit(3);
}

namespace {

// TFLM's TFLITE_ABORT on Cortex-M (a failed TFLITE_DCHECK; kernels/op_macros.h AbortImpl)
// logs "HALTED" and spins forever: in the probe that size counts as failing, elsewhere the run
// ends saying so, instead of QEMU running into its time limit.
[[noreturn]] void Halted() {
  if (g_in_probe) {
    if (g_probe_asserts++ == 0) {
      g_assert_file = "TFLITE_ABORT";
      g_assert_line = 0;
      g_assert_expression = "a TFLITE_DCHECK failed (TFLM logged HALTED)";
    }
    longjmp(g_probe_jump, 3);
  }
  printf("TFLM halted: a TFLITE_DCHECK failed (TFLITE_ABORT)\n");
  exit(4);
}

void Log(const char* text) {
  if (strncmp(text, "HALTED", 6) == 0) Halted();
  if (!g_quiet) fputs(text, stdout);
}

// CMSDK APB TIMER0 of the MPS2/MPS3 boards: a 32-bit down-counter at the board's clock. With
// QEMU's `-icount shift=0` virtual time advances 1 ns per emulated instruction, so ticks count
// instructions; the calibration loop gives the ratio.
#ifdef EP_TIMER_BASE
volatile uint32_t* const kTimer = reinterpret_cast<volatile uint32_t*>(EP_TIMER_BASE);
void TimerStart() {
  kTimer[2] = 0xFFFFFFFFu;  // RELOAD
  kTimer[1] = 0xFFFFFFFFu;  // VALUE
  kTimer[0] = 1;            // CTRL: enable
}
uint32_t TimerRead() { return 0xFFFFFFFFu - kTimer[1]; }
#elif defined(EP_COUNTER_ADDR)
// MPS3 AN547 (SSE-300, no CMSDK timer): the FPGAIO block's COUNTER, a 32-bit up-counter at
// the prescale clock (PRESCALE 0 after reset: it advances on every tick).
volatile uint32_t* const kCounter = reinterpret_cast<volatile uint32_t*>(EP_COUNTER_ADDR);
uint32_t g_counter_start = 0;
void TimerStart() { g_counter_start = *kCounter; }
uint32_t TimerRead() { return *kCounter - g_counter_start; }
#else
void TimerStart() {}
uint32_t TimerRead() { return 0; }
#endif

TfLiteStatus RunSample(tflite::MicroInterpreter* interpreter, int s) {
#if EP_FLOAT_INPUT
  return EP_RUN(interpreter, kEpSampleValues[s]);
#else
  // Each sample is one inference from a zero state, as on the host (variable tensors).
  if (interpreter->Reset() != kTfLiteOk) return kTfLiteError;
  const unsigned char* bytes = kEpSampleBytes[s];
  for (size_t i = 0; i < interpreter->inputs_size(); ++i) {
    TfLiteTensor* input = interpreter->input(i);
    memcpy(input->data.raw, bytes, input->bytes);
    bytes += input->bytes;
  }
  return interpreter->Invoke();
#endif
}

void PrintOutputs(tflite::MicroInterpreter* interpreter) {
  for (size_t o = 0; o < interpreter->outputs_size(); ++o) {
    const TfLiteTensor* out = interpreter->output(o);
    putchar(' ');
    for (size_t i = 0; i < out->bytes; ++i) printf("%02x", out->data.uint8[i]);
  }
  putchar('\n');
}

size_t OutputBytes(tflite::MicroInterpreter* interpreter, unsigned char* copy, size_t room) {
  size_t n = 0;
  for (size_t o = 0; o < interpreter->outputs_size(); ++o) {
    const TfLiteTensor* out = interpreter->output(o);
    if (n + out->bytes > room) return 0;
    memcpy(copy + n, out->data.raw, out->bytes);
    n += out->bytes;
  }
  return n;
}

// Smallest arena with which a plain MicroInterpreter (what FIRMWARE.md uses) allocates and
// gives sample 0's outputs: bisection over the probe buffer, in this one run.
alignas(16) uint8_t g_probe_arena[EP_PROBE_ARENA_BYTES];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter[sizeof(tflite::MicroInterpreter)];
unsigned char g_reference[EP_MAX_OUTPUT_BYTES];
unsigned char g_outputs[EP_MAX_OUTPUT_BYTES];
size_t g_reference_bytes = 0;

// The first 4 KB of the code memory hold nothing in use after start-up (startup.c moves the
// vector table to RAM): a write there is a write through a null pointer, which on a board
// would hit flash. Filled before each probe run and checked after it.
void FillGuard() {
  for (uint8_t* p = __edge_prune_guard_start; p < __edge_prune_guard_end; ++p) *p = 0xA5;
}
bool GuardIntact() {
  for (const uint8_t* p = __edge_prune_guard_start; p < __edge_prune_guard_end; ++p) {
    if (*p != 0xA5) return false;
  }
  return true;
}

bool TryArena(EP_RESOLVER& resolver, size_t size, size_t* used) {
  FillGuard();
  if (setjmp(g_probe_jump) != 0) {  // an assert or a fault: this size does not work
    g_in_probe = false;
    g_edge_prune_fault_resume = nullptr;
    return false;
  }
  g_in_probe = true;
  g_edge_prune_fault_resume = EdgePruneProbeFault;
  auto* it = new (g_interpreter)
      tflite::MicroInterpreter(tflite::GetModel(EP_MODEL), resolver, g_probe_arena, size);
  bool ok = it->AllocateTensors() == kTfLiteOk;
  if (ok) {
    *used = it->arena_used_bytes();
    ok = RunSample(it, 0) == kTfLiteOk;
    size_t n = ok ? OutputBytes(it, g_outputs, sizeof(g_outputs)) : 0;
    if (ok && g_reference_bytes == 0) {
      memcpy(g_reference, g_outputs, n);
      g_reference_bytes = n;
    }
    ok = ok && n == g_reference_bytes && memcmp(g_outputs, g_reference, n) == 0;
  }
  it->~MicroInterpreter();
  g_in_probe = false;
  g_edge_prune_fault_resume = nullptr;
  if (!GuardIntact()) {
    ++g_probe_null_writes;
    return false;
  }
  return ok;
}

EP_RESOLVER g_resolver;

// Timer ticks of every operator of one Invoke(): TFLM's interpreter opens one event per
// operator, tagged with the op name (micro_interpreter_graph.cc).
class TickProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxEvents) return kMaxEvents;
    tags_[count_] = tag;
    begin_[count_] = TimerRead();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < kMaxEvents) ticks_[handle] = TimerRead() - begin_[handle];
  }
  void Print() const {
    for (uint32_t i = 0; i < count_; ++i) {
      printf("profile %u %s %u\n", static_cast<unsigned>(i), tags_[i],
             static_cast<unsigned>(ticks_[i]));
    }
  }

 private:
  static constexpr uint32_t kMaxEvents = 512;
  const char* tags_[kMaxEvents] = {};
  uint32_t begin_[kMaxEvents] = {};
  uint32_t ticks_[kMaxEvents] = {};
  uint32_t count_ = 0;
};

void Profile() {
  static TickProfiler profiler;
  auto* it = new (g_interpreter)
      tflite::MicroInterpreter(tflite::GetModel(EP_MODEL), g_resolver, g_probe_arena,
                               sizeof(g_probe_arena), nullptr, &profiler);
  g_quiet = true;
  bool ok = it->AllocateTensors() == kTfLiteOk;
  TimerStart();
  ok = ok && RunSample(it, 0) == kTfLiteOk;
  g_quiet = false;
  if (ok) profiler.Print();
  it->~MicroInterpreter();
}

void Probe() {
  EP_RESOLVER& resolver = g_resolver;
  size_t used = 0;
  g_quiet = true;
  bool fits = TryArena(resolver, sizeof(g_probe_arena), &used);
  size_t lo = 0, hi = sizeof(g_probe_arena);  // lo fails, hi works
  while (fits && hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (TryArena(resolver, mid, &used)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  if (fits) TryArena(resolver, hi, &used);
  g_quiet = false;
  if (!fits) {
    printf("probe failed\n");
  } else {
    printf("probe arena_min %u used %u\n", static_cast<unsigned>(hi),
           static_cast<unsigned>(used));
  }
  if (g_probe_null_writes > 0) printf("probe null_writes %d\n", g_probe_null_writes);
  if (g_probe_faults > 0) {
    printf("probe faults %d first pc 0x%08x\n", g_probe_faults, g_first_fault_pc);
  }
  if (g_probe_asserts > 0) {
    printf("probe asserts %d first %s:%d %s\n", g_probe_asserts, g_assert_file, g_assert_line,
           g_assert_expression);
  }
}

}  // namespace

int main() {
  RegisterDebugLogCallback(Log);
  TimerStart();
  uint32_t c0 = TimerRead();
  __asm__ volatile(
      ".syntax unified\n"
      " ldr r0, =1000000\n"
      "1: subs r0, r0, #1\n"
      " bne 1b\n" ::
          : "r0", "cc");
  uint32_t c1 = TimerRead();
  printf("calibration %u\n", static_cast<unsigned>(c1 - c0));
  tflite::MicroInterpreter* interpreter = EP_SETUP();
  if (interpreter == nullptr) {
    printf("setup failed\n");
  } else {
    printf("arena_used_bytes %u\n", static_cast<unsigned>(interpreter->arena_used_bytes()));
    for (int s = 0; s < kEpSamples; ++s) {
      TimerStart();
      uint32_t t0 = TimerRead();
      TfLiteStatus status = RunSample(interpreter, s);
      uint32_t t1 = TimerRead();
      if (s == 0) g_reference_bytes = OutputBytes(interpreter, g_reference, sizeof(g_reference));
      printf("sample %d status %d ticks %u out", s, static_cast<int>(status),
             static_cast<unsigned>(t1 - t0));
      PrintOutputs(interpreter);
    }
  }
  if (EP_REGISTER(g_resolver) == kTfLiteOk) {
    Profile();
    Probe();
  } else {
    printf("probe failed\n");
  }
  printf("DONE\n");
  return 0;
}
