// A oneDNN backend for the fused u8 x s8 -> f32 GEMM of gemm.h, and a per-shape chooser that
// measures it against qsig's dispatched kernel at model load.
//
// DnnlGemmU8S8F32 computes exactly the GemmU8S8F32 formula of gemm.h for one fixed shape
// (m activation rows, w.rows x w.cols weights, fixed ldx / ldy) with a oneDNN int8 matmul:
//   - the activation zero point zx is a oneDNN src zero point, so acc - zx * row_sum is exact s32;
//   - scale[r] * sx is precomputed in float and passed as per-output-channel output scales, so
//     oneDNN rounds float(acc') * (scale[r] * sx) once, as the reference does;
//   - the bias is added by qsig after execute() (oneDNN 2.x adds a matmul bias *before* the output
//     scales, which would change the formula), so y = v + bias[r] is the reference's last rounding.
// The primitive, its weights (reordered once into oneDNN's preferred layout), the zero point and
// scratchpad are created at Create(); Run() only points the memory objects at x and y and calls
// execute() on a stream. oneDNN stays private to quant: no oneDNN type appears here.
//
// ChooseGemmBackend() times both backends on the real weights and shape (warm-up, then interleaved
// samples of a few calls each; the median per call wins). QSIG_GEMM_BACKEND=auto|qsig|onednn,
// read at each call, overrides the measurement; an unknown value is an error.
//
// Thread-safety: Create / ChooseGemmBackend are cold-path and allocate. Run() is noexcept and does
// not allocate, but one object holds one oneDNN stream and the memory objects it re-points, so an
// object must not be Run from two threads at once; use one object per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "qsig/quant/gemm.h"
#include "qsig/quant/packed.h"

namespace qsig::quant {

class DnnlGemmU8S8F32 {
 public:
  // For m rows of x (row i at x + i * ldx) and y (row i at y + i * ldy); ldx >= w.cols,
  // ldy >= w.rows. The epilogue's bias pointer is kept (it must outlive this object); the weights
  // are copied into oneDNN's layout, so `w` need not outlive it. Errors: bad sizes, or oneDNN
  // failing to create the primitive (the message carries oneDNN's).
  static absl::StatusOr<std::unique_ptr<DnnlGemmU8S8F32>> Create(const PackedWeightsS8& w, int m,
                                                                 const DequantEpilogue& e,
                                                                 ptrdiff_t ldx, ptrdiff_t ldy);
  ~DnnlGemmU8S8F32();
  DnnlGemmU8S8F32(const DnnlGemmU8S8F32&) = delete;
  DnnlGemmU8S8F32& operator=(const DnnlGemmU8S8F32&) = delete;

  // y = GemmU8S8F32(m, x, ldx, w, e, y, ldy) for the shape given to Create. False (y unspecified)
  // if oneDNN reported an error; it does not in normal operation.
  [[nodiscard]] bool Run(const uint8_t* x, float* y) noexcept;

  int m() const noexcept { return m_; }
  int rows() const noexcept { return rows_; }
  int cols() const noexcept { return cols_; }
  // oneDNN's implementation name, e.g. "brg:avx512_core_vnni" (benchmark context, logs).
  const char* impl_name() const noexcept;

 private:
  struct Impl;
  DnnlGemmU8S8F32(std::unique_ptr<Impl> impl, int m, int rows, int cols);
  std::unique_ptr<Impl> impl_;
  int m_, rows_, cols_;
};

enum class GemmBackend : int { kQsig = 0, kOnednn = 1 };
// "qsig" or "onednn".
const char* GemmBackendName(GemmBackend b);

// What ChooseGemmBackend decided and why.
struct GemmBackendChoice {
  GemmBackend backend = GemmBackend::kQsig;
  bool forced = false;     // QSIG_GEMM_BACKEND named the backend; no timing was done
  double qsig_ns = 0.0;    // median ns per call (0 if not measured)
  double onednn_ns = 0.0;  // median ns per call (0 if not measured or oneDNN failed)
};

// The QSIG_GEMM_BACKEND override: "qsig" / "onednn" give forced = true and that backend; unset,
// empty or "auto" give forced = false; anything else is an error naming the variable and value.
absl::StatusOr<GemmBackendChoice> EnvGemmBackend();

// Times qsig's dispatched GemmU8S8F32 and a DnnlGemmU8S8F32 on this shape (`iterations` calls of
// each, after a warm-up) and returns the faster, unless QSIG_GEMM_BACKEND forces one. If oneDNN
// cannot build the primitive, qsig is chosen. Cold path.
absl::StatusOr<GemmBackendChoice> ChooseGemmBackend(const PackedWeightsS8& w, int m,
                                                    const DequantEpilogue& e, ptrdiff_t ldx,
                                                    ptrdiff_t ldy, int iterations = 300);

// Holds whichever backend was chosen for one shape; Run() is the hot call.
class GemmU8S8F32Auto {
 public:
  // `w` and e.bias must outlive the object (qsig's kernel reads them at each call).
  static absl::StatusOr<GemmU8S8F32Auto> Create(const PackedWeightsS8& w, int m,
                                                const DequantEpilogue& e, ptrdiff_t ldx,
                                                ptrdiff_t ldy, int iterations = 300);
  // Builds the given backend without measuring (tests, config).
  static absl::StatusOr<GemmU8S8F32Auto> CreateWith(GemmBackend backend, const PackedWeightsS8& w,
                                                    int m, const DequantEpilogue& e, ptrdiff_t ldx,
                                                    ptrdiff_t ldy);

  // The GemmU8S8F32 formula for the shape given to Create. False only if oneDNN failed.
  [[nodiscard]] bool Run(const uint8_t* x, float* y) noexcept {
    if (dnnl_ != nullptr) return dnnl_->Run(x, y);
    GemmU8S8F32(m_, x, ldx_, *w_, e_, y, ldy_);
    return true;
  }

  GemmBackend backend() const noexcept {
    return dnnl_ != nullptr ? GemmBackend::kOnednn : GemmBackend::kQsig;
  }
  const GemmBackendChoice& choice() const noexcept { return choice_; }

 private:
  GemmU8S8F32Auto() = default;
  const PackedWeightsS8* w_ = nullptr;
  DequantEpilogue e_;
  int m_ = 0;
  ptrdiff_t ldx_ = 0, ldy_ = 0;
  std::unique_ptr<DnnlGemmU8S8F32> dnnl_;
  GemmBackendChoice choice_;
};

}  // namespace qsig::quant
