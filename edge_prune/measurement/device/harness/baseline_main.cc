// edge-prune device harness: the baseline firmware, the same start-up, semihosting and C library
// calls as the other harness mains (printf, fputs, putchar, memset, memcpy, memcmp, setjmp,
// longjmp, exit) and no TFLM. What a TFLM firmware links beyond this from the toolchain's
// libraries is linked because of TFLM.
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" const unsigned char* volatile g_edge_prune_model;
const unsigned char* volatile g_edge_prune_model = nullptr;
static jmp_buf g_jump;

int main() {
  char line[64];
  memset(line, 0, sizeof(line));
  if (g_edge_prune_model != nullptr) memcpy(line, (const void*)g_edge_prune_model, 8);
  if (setjmp(g_jump) == 0 && g_edge_prune_model != nullptr) longjmp(g_jump, 1);
  printf("status %d arena %u\n", memcmp(line, "TFL3", 4), 0u);
  putchar('\n');
  fputs(line, stdout);
  if (g_edge_prune_model != nullptr) exit(3);
  return 0;
}
