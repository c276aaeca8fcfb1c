// libFuzzer entry point for the feed decoder and session layer (clang -fsanitize=fuzzer).
#include <cstddef>
#include <cstdint>

#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qsig::feeds::testing::RunFeedFuzzInput(data, size);
  return 0;
}
