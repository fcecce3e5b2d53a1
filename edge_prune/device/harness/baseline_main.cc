// edge-prune device harness: the baseline firmware, the same start-up, semihosting and C library
// calls as the other harness mains and no TFLM. What a TFLM firmware links beyond this, from the
// toolchain's libraries, is linked because of TFLM.
#include <cstdio>
#include <cstring>

extern "C" const unsigned char* volatile g_edge_prune_model;
const unsigned char* volatile g_edge_prune_model = nullptr;

int main() {
  char line[64];
  memset(line, 0, sizeof(line));
  if (g_edge_prune_model != nullptr) memcpy(line, (const void*)g_edge_prune_model, 8);
  printf("status %d arena %u\n", memcmp(line, "TFL3", 4), 0u);
  fputs(line, stdout);
  return 0;
}
