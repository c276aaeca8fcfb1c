// Integer matrix-vector kernels: u8 activations x s8 weights accumulated in s32.
//
// Naming follows oneDNN and ggml: <Op><Types><Isa>. The `...Ref` kernel is the specification;
// every ISA variant must produce bit-identical results for all inputs it accepts, and the
// parity tests hold it to that. Kernels are hot-path code: noexcept, no allocation, no locks.
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qsig::quant {

// y[r] = sum_{c < cols} int32(w[r*ldw + c]) * int32(x[c])  for r < rows.
//
// w is row-major with leading dimension ldw >= cols (a later packed layout may pad rows to a
// multiple of 4 or 64 bytes for VNNI); x has cols entries; y has rows entries and is
// overwritten. No overflow is possible for cols < 2^31 / (255 * 128) = 65793.
void GemvU8S8S32Ref(int rows, int cols, const int8_t* w, ptrdiff_t ldw, const uint8_t* x,
                    int32_t* y) noexcept;

// Common signature of every GemvU8S8S32 variant, for dispatch tables.
using GemvU8S8S32Fn = void (*)(int rows, int cols, const int8_t* w, ptrdiff_t ldw, const uint8_t* x,
                               int32_t* y) noexcept;

}  // namespace qsig::quant
