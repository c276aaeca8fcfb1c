// oneDNN as a second backend of the kernel layer's u8 x s8 GEMM (Kernels::gemm_u8s8f32), and the
// per-shape chooser that decides at load time which backend runs a shape.
//
// OnednnGemmU8S8 is oneDNN's int8 matmul (u8 activations x s8 weights -> s32 accumulators) for
// one fixed shape (n vectors, strides), followed by the kernels' own epilogue
// y = float(acc) * scale + add (a multiply, then an add), so the output formula is the
// reference's. The primitive and the weights in oneDNN's layout are built once (Create); each
// call then only points oneDNN at the caller's buffers. oneDNN's types stay in the .cc (pimpl).
//
// Exactness: on CPUs without VNNI oneDNN 2.6 sums pairs of u8 x s8 products with the saturating
// vpmaddubsw, so with 8-bit weights it is not bit-exact (7-bit weights are); on VNNI CPUs it is.
// The chooser therefore never trusts it: it compares every output bit against the own kernel on
// the model's real weights before choosing it.
//
// Thread-safety: Create and ChooseGemmBackend are cold-path (allocate, may be slow). Run is
// noexcept, allocates nothing in qsig and takes no lock: it claims one of a few preallocated
// execution contexts (oneDNN memory objects, scratchpad, accumulators) with an atomic exchange;
// when all are busy, or oneDNN reports an error, it returns false and the caller runs its own
// kernel, which gives the same bits. oneDNN itself runs with its OpenMP runtime: set
// OMP_NUM_THREADS=1 for a process that may choose it on the tick path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "qsig/quant/kernels.h"

namespace qsig::quant {

class OnednnGemmU8S8 {
 public:
  // Builds the matmul for `n` vectors of w's padded shape (rows_pad x cols_pad): x_i at
  // x + i * ldx (cols_pad bytes), y_i at y + i * ldy (rows_pad floats). Copies the weights.
  static absl::StatusOr<std::unique_ptr<OnednnGemmU8S8>> Create(const PackedS8& w, int n,
                                                                size_t ldx, size_t ldy);
  ~OnednnGemmU8S8();
  OnednnGemmU8S8(const OnednnGemmU8S8&) = delete;
  OnednnGemmU8S8& operator=(const OnednnGemmU8S8&) = delete;

  // Kernels::gemm_u8s8f32(w, n(), x, ldx(), add, ldadd, y, ldy()) computed by oneDNN. Returns
  // false without writing y if no execution context is free or oneDNN fails.
  bool Run(const uint8_t* x, const float* add, size_t ldadd, float* y) const noexcept;
  // True if this object was built for a call with these n and strides.
  bool Serves(int n, size_t ldx, size_t ldy) const noexcept;
  int n() const noexcept;
  // Calls that ran on oneDNN (diagnostics and tests).
  uint64_t runs() const noexcept;
  // oneDNN's implementation name (e.g. "gemm:jit", "brg:avx512_core_vnni").
  const std::string& impl() const noexcept;

 private:
  struct Impl;
  explicit OnednnGemmU8S8(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How the runtime may use oneDNN: kOff never, kAuto when bit-exact and faster by kOnednnMargin,
// kPreferIfExact whenever bit-exact (tests only: runs the oneDNN path where it is slower).
enum class OnednnMode { kOff, kAuto, kPreferIfExact };
// oneDNN must be at least this much faster: own_us > onednn_us * kOnednnMargin.
inline constexpr double kOnednnMargin = 1.10;

// "off", "auto", "prefer_if_exact".
const char* OnednnModeName(OnednnMode m) noexcept;
// The mode in effect: SetOnednnModeForTesting's if set, else the environment variable
// QSIG_ONEDNN (off | auto, any case; unset or empty: auto). An unknown value is an
// InvalidArgument error naming the variable, the value and the accepted names (every model
// build fails with it, as with QSIG_MAX_ISA).
absl::StatusOr<OnednnMode> ActiveOnednnMode();
// Overrides QSIG_ONEDNN for this process (tests); ClearOnednnModeForTesting undoes it.
void SetOnednnModeForTesting(OnednnMode m) noexcept;
void ClearOnednnModeForTesting() noexcept;

// One chooser decision: which backend runs w's GEMM for n vectors.
struct GemmChoice {
  int rows = 0, cols = 0, n = 0;
  double own_us = -1.0;     // median of a few timed calls of the own kernel; < 0: not measured
  double onednn_us = -1.0;  // the same for oneDNN; < 0: not measured
  bool measured = false;    // both backends ran on the test block
  bool exact = false;       // oneDNN's outputs equalled the own kernel's bit for bit
  bool onednn = false;      // the choice
  std::string onednn_impl;  // oneDNN's implementation, if built
  std::string reason;
};

// Decides for w's GEMM with n vectors and strides ldx, ldy: in kOff returns the own kernel
// without measuring. Otherwise builds the oneDNN primitive on w (the model's real weights), runs
// both on one fixed-seed activation block (random u8 values, the first and last rows all 255,
// padding columns 0, a random addend) and requires every output bit to be equal, then times
// `reps` calls of each (interleaved; the median counts). *backend receives the oneDNN object
// when it is chosen. Cold path.
GemmChoice ChooseGemmBackend(const Kernels& k, const PackedS8& w, int n, size_t ldx, size_t ldy,
                             OnednnMode mode, int reps, std::unique_ptr<OnednnGemmU8S8>* backend);

}  // namespace qsig::quant
