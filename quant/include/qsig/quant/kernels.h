// The INT8 / FP32 kernel layer: packed weight formats, one function table per ISA and the one
// ordered dispatch table (isa.h chooses the ISA; this file maps it to kernels).
//
// Layouts (both chosen so one SIMD register holds 16 consecutive output rows and a GEMV needs no
// horizontal reduction; rows are padded to 16, so every vector a kernel reads or writes is too):
//   PackedS8   s8 weights for u8 x s8 -> s32 dot products, 4 columns per 32-bit lane (VNNI's
//              vpdpbusd). Rows are grouped in chunks of up to kChunkBlocks blocks of 16 rows;
//              inside a chunk, for each group of 4 columns, the chunk's blocks follow each other,
//              each 16 rows x 4 bytes. The accumulators of a whole chunk (256 rows) stay in
//              registers while the columns stream by.
//   PackedF32  the same with one column per lane: for each column, the chunk's blocks of 16.
// Integer results of every ISA equal the reference exactly; float results (dequantization with
// FMA, polynomial exp) agree to a few ulp (tests/quant/kernels_test.cc holds them to it).
//
// Kernel names read <Op><Types><Isa> (GemvU8S8S32Avx512Vnni, GemvU8S8S32Ref); the reference
// table is the specification. The ISA variants live in their own files under quant/src, each
// compiled with its own ISA flags (quant/CMakeLists.txt), and are reached only through the table.
//
// Thread-safety: every kernel is noexcept, allocates nothing, takes no lock and may be called
// from any thread; the tables are immutable. Packing (PackS8, PackF32) is cold-path and
// allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>

#include "qsig/quant/isa.h"
#include "qsig/quant/quantize.h"

namespace qsig::quant {

// The element-wise activations of Kernels::activate (models::Activation is this type).
enum class Activation { kNone, kRelu, kTanh, kSigmoid };

inline constexpr int kRowBlock = 16;     // rows per SIMD register
inline constexpr int kChunkBlocks = 16;  // row blocks whose accumulators stay in registers
// s16 x s8 products accumulate exactly in s32 up to this many columns (32767 * 127 * 516 < 2^31).
inline constexpr int kMaxS16Cols = 512;

// vpmaddubsw sums two u8 x s8 products into s16 with saturation: exact while
// 2 * 255 * max|w| <= 32767, i.e. for weights in [-64, 64] (7-bit weights: [-63, 63]).
inline constexpr int kMaddubsExactMax = 64;
static_assert(2 * 255 * kMaddubsExactMax <= 32767);

inline size_t Pad16(size_t n) noexcept { return (n + 15) / 16 * 16; }

// A 64-byte aligned, zero-initialised array (weights, packed matrices).
template <class T>
class AlignedVec {
 public:
  AlignedVec() = default;
  explicit AlignedVec(size_t n) { resize(n); }
  AlignedVec(const AlignedVec& o) { *this = o; }
  AlignedVec& operator=(const AlignedVec& o) {
    if (this != &o) {
      resize(o.n_);
      if (n_) std::memcpy(p_.get(), o.p_.get(), n_ * sizeof(T));
    }
    return *this;
  }
  AlignedVec(AlignedVec&&) noexcept = default;
  AlignedVec& operator=(AlignedVec&&) noexcept = default;
  void resize(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    p_.reset(bytes ? static_cast<T*>(std::aligned_alloc(64, bytes)) : nullptr);
    if (bytes && !p_) throw std::bad_alloc();
    if (bytes) std::memset(static_cast<void*>(p_.get()), 0, bytes);
    n_ = n;
  }
  T* data() noexcept { return p_.get(); }
  const T* data() const noexcept { return p_.get(); }
  size_t size() const noexcept { return n_; }
  T& operator[](size_t i) noexcept { return p_.get()[i]; }
  const T& operator[](size_t i) const noexcept { return p_.get()[i]; }

 private:
  struct Free {
    void operator()(T* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<T, Free> p_;
  size_t n_ = 0;
};

struct PackedS8 {
  int rows = 0, cols = 0;
  int rows_pad = 0;  // multiple of 16
  int cols_pad = 0;  // multiple of 4; x vectors must hold cols_pad bytes
  AlignedVec<int8_t> data;
  // max |weight| (PackS8 measures it): <= kMaddubsExactMax (7-bit weights, Int8Options::
  // reduce_range) lets the AVX2 kernels use vpmaddubsw on unsplit u8 activations.
  int max_abs = 0;
  // Per-row dequantization scales stored as bfloat16 (the upper half of a float32): the
  // quantizer picks scales that bf16 represents exactly, so nothing is lost, and the model is
  // 2 bytes per row smaller. rows_pad entries, 0 in padding rows.
  AlignedVec<uint16_t> scales;
};

// float <-> bf16 (exact for values bf16 represents; RoundUpToBf16 gives the smallest bf16 >= v
// for v > 0).
inline float Bf16ToFloat(uint16_t b) noexcept {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint16_t FloatToBf16Truncate(float f) noexcept {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>(u >> 16);
}

// Matrices of at most this many rows (a one-output head) also keep a row-major copy: a GEMV on
// the 16-row packing would stream 16x the weights for one useful lane.
inline constexpr int kSmallRows = 4;

struct PackedF32 {
  int rows = 0, cols = 0;
  int rows_pad = 0;
  AlignedVec<float> data;
  // rows <= kSmallRows: row r at small[r * Pad16(cols)], zero-padded; empty otherwise. The SIMD
  // kernels compute those rows as dot products (the reference always uses `data`).
  AlignedVec<float> small;
};

// Packs row-major q (rows x cols s8) / w (rows x cols float); PackS8 also sets max_abs.
PackedS8 PackS8(const int8_t* q, int rows, int cols);
PackedF32 PackF32(const float* w, int rows, int cols);
// Element (r, c) of a packed matrix (tests and diagnostics).
int8_t PackedAt(const PackedS8& p, int r, int c) noexcept;

struct Kernels {
  Isa isa;
  // acc[r] = sum_c W[r,c] * x[c] for r < rows_pad (x: cols_pad u8 bytes).
  void (*gemv_u8s8s32)(const PackedS8& w, const uint8_t* x, int32_t* acc) noexcept;
  // y[r] = float(acc[r]) * scale[r] + add[r] for r < rows_pad, for n vectors: x_i = x + i*ldx
  // (u8 bytes), y_i = y + i*ldy, add_i = add + i*ldadd (ldadd 0: shared; add may be null).
  // scale: w.scales (bf16).
  void (*gemm_u8s8f32)(const PackedS8& w, int n, const uint8_t* x, size_t ldx, const float* add,
                       size_t ldadd, float* y, size_t ldy) noexcept;
  // The same for s16 activations (x_i: cols_pad int16 values, pairs of columns per vpdpwssd
  // lane): y[r] = float(sum_c W[r,c] * x[c]) * scale[r] + add[r]. Exact in s32 for
  // cols <= kMaxS16Cols.
  void (*gemm_s16s8f32)(const PackedS8& w, int n, const int16_t* x, size_t ldx, const float* add,
                        size_t ldadd, float* y, size_t ldy) noexcept;
  // q[k] = clamp(round_half_even(x[k] * a_k + b_k), -32767, 32767), as quantize_u8.
  void (*quantize_s16)(const float* x, int n, const float* a, const float* b, float a0, float b0,
                       int16_t* q, int n_pad) noexcept;
  // y_i = W x_i + add_i (rows_pad floats; x_i: cols floats) for n vectors, as above.
  void (*gemm_f32)(const PackedF32& w, int n, const float* x, size_t ldx, const float* add,
                   size_t ldadd, float* y, size_t ldy) noexcept;
  // q[k] = clamp(round_half_even(x[k] * a_k + b_k), 0, 255) for k < n (mul, then add: no
  // FMA), with a_k = a[k] (b_k = b[k]) if a (b) is not null (per column), a0 (b0) otherwise;
  // q[k] = 0 for n <= k < n_pad.
  void (*quantize_u8)(const float* x, int n, const float* a, const float* b, float a0, float b0,
                      uint8_t* q, int n_pad) noexcept;
  // LSTM cell (gate order i, f, g, o; 4 * hidden pre-activations):
  //   c = sigmoid(f) * c + sigmoid(i) * tanh(g); h = sigmoid(o) * tanh(c).
  // c_step > 0 stores c on an s16 grid: c = clamp(round(c / c_step), -32767, 32767) * c_step.
  // Writes h[0..hidden) and c[0..hidden) only.
  void (*lstm_cell)(int hidden, const float* gates, float* h, float* c, float c_step) noexcept;
  // GRU cell (PyTorch, gate order r, z, n; gi = W_ih x + b_ih, gh = W_hh h + b_hh):
  //   r = sigmoid(gi_r + gh_r); z = sigmoid(gi_z + gh_z); n = tanh(gi_n + r * gh_n);
  //   h = (1 - z) * n + z * h.
  void (*gru_cell)(int hidden, const float* gi, const float* gh, float* h) noexcept;
  // y[k] = act(y[k]) for k < n.
  void (*activate)(int n, Activation act, float* y) noexcept;
};

// The reference table (the specification, plain C++).
const Kernels& RefKernels() noexcept;
// The table of `isa`, or nullptr when this CPU or OS cannot run it (isa.h's probe). Tests run
// every non-null table against the reference.
const Kernels* KernelsFor(Isa isa) noexcept;
// The table of ActiveIsa(): what the runtimes use (a runtime keeps the table it was built with).
const Kernels& ActiveKernels() noexcept;

}  // namespace qsig::quant
