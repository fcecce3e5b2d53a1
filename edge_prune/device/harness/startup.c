// edge-prune device harness: start-up code for a bare Cortex-M in QEMU (or for a size-only link).
// Vector table (initial stack pointer, reset, faults), FPU enable on cores with one (CPACR,
// before any floating-point instruction), .data copy, .bss clear, newlib's semihosting handles
// (rdimon: stdout goes to the QEMU console), static constructors, main, exit.
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);

// Any fault: semihosting SYS_EXIT (0x18) with ADP_Stopped_RunTimeErrorUnknown, so that QEMU
// stops with a failure instead of spinning until the time limit.
static void Fault_Handler(void) {
  register uint32_t op __asm__("r0") = 0x18;
  register uint32_t reason __asm__("r1") = 0x20024;
  __asm__ volatile("bkpt 0xab" : : "r"(op), "r"(reason));
  for (;;) {
  }
}

__attribute__((section(".isr_vector"), used)) const void* const g_edge_prune_vectors[16] = {
    &_estack,      (void*)Reset_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
    (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler, 0,
    0,             0,                    0,                    (void*)Fault_Handler,
    (void*)Fault_Handler, 0,             (void*)Fault_Handler, (void*)Fault_Handler};

__attribute__((used, noreturn)) void edge_prune_reset_c(void) {
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

__attribute__((naked, noreturn)) void Reset_Handler(void) {
  __asm__ volatile(
#if defined(__ARM_FP)
      "ldr r0, =0xE000ED88\n"  // CPACR: full access to CP10 and CP11
      "ldr r1, [r0]\n"
      "orr r1, r1, #(0xF << 20)\n"
      "str r1, [r0]\n"
      "dsb\n"
      "isb\n"
#endif
      "b edge_prune_reset_c\n");
}

// -nostartfiles leaves out crti/crtbegin: provide what they would.
void* __dso_handle = 0;
void _init(void) {}
void _fini(void) {}
