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

// A fault resumes at g_edge_prune_fault_resume when the application set it (the device
// harness does while it probes arena sizes): the stacked return address becomes that function
// and the handler returns to thread mode, with the faulting PC in g_edge_prune_fault_pc.
// Otherwise: semihosting SYS_EXIT (0x18) with ADP_Stopped_RunTimeErrorUnknown, so that QEMU
// stops with a failure instead of spinning until the time limit. ARMv6-M instructions only.
void (*volatile g_edge_prune_fault_resume)(void) = 0;
volatile uint32_t g_edge_prune_fault_pc = 0;

__attribute__((naked)) static void Fault_Handler(void) {
  __asm__ volatile(
      ".syntax unified\n"
      "ldr r0, =g_edge_prune_fault_resume\n"
      "ldr r0, [r0]\n"
      "cmp r0, #0\n"
      "beq 1f\n"
      "mrs r1, msp\n"  // thread mode runs on the main stack too: the frame is there
      "ldr r2, [r1, #24]\n"
      "ldr r3, =g_edge_prune_fault_pc\n"
      "str r2, [r3]\n"
      "movs r2, #1\n"
      "bics r0, r2\n"
      "str r0, [r1, #24]\n"  // stacked PC: the resume function
      "ldr r2, =0x01000000\n"
      "str r2, [r1, #28]\n"  // stacked xPSR: Thumb state only
      "bx lr\n"
      "1:\n"
      "movs r0, #0x18\n"
      "ldr r1, =0x20024\n"
      "bkpt 0xab\n"
      "2: b 2b\n"
      ".ltorg\n");
}

__attribute__((section(".isr_vector"), used)) const void* const g_edge_prune_vectors[16] = {
    &_estack,      (void*)Reset_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
    (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler, 0,
    0,             0,                    0,                    (void*)Fault_Handler,
    (void*)Fault_Handler, 0,             (void*)Fault_Handler, (void*)Fault_Handler};

// The vector table in use is a copy in RAM (VTOR): QEMU's boards run code from RAM, and a
// stray write through a null pointer would otherwise overwrite the fault vectors at 0x0 (the
// linker script also keeps the first 4 KB after the table free of code). 128 entries, aligned
// as VTOR requires for that many.
__attribute__((aligned(512))) static const void* g_edge_prune_ram_vectors[128];

__attribute__((used, noreturn)) void edge_prune_reset_c(void) {
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  for (int i = 0; i < 16; ++i) g_edge_prune_ram_vectors[i] = g_edge_prune_vectors[i];
  *(volatile uint32_t*)0xE000ED08u = (uint32_t)g_edge_prune_ram_vectors;  // VTOR
  __asm__ volatile("dsb\n isb\n" ::: "memory");
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
