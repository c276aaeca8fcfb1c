// Prepacked s8 weights for the integer GEMV/GEMM kernels (gemm.h).
//
// Layout. The VNNI instruction vpdpbusd adds, in each 32-bit lane, the dot product of 4 u8
// activations with 4 s8 weights. Broadcasting 4 consecutive activations x[4g .. 4g+3] to every
// lane and loading the 4 matching weights of 16 consecutive rows gives 16 outputs per instruction,
// so the weights are stored as
//
//   panels of 16 rows  x  groups of 4 columns  x  16 rows  x  4 columns   (64 bytes per block)
//   data[((p * groups + g) * 16 + i) * 4 + j] = w[16 p + i, 4 g + j]
//
// (oneDNN calls this kind of layout "OI16o4i"). One block is one zmm register or two ymm
// registers (rows 0-7, rows 8-15), so the same packing serves AVX-512, AVX-VNNI and AVX2; the
// blocks of one panel are contiguous, so a panel streams through the hardware prefetcher. Rows are
// padded to a multiple of 16 and columns to a multiple of 4 with zero weights, which contribute
// nothing to any dot product; the activations are never read beyond `cols`.
//
// Beside the data: per-row sums of the s8 weights (for the activation zero point, see gemm.h),
// per-row scales (from per-channel quantization, 1.0 if not given), and the largest |w|, so that
// the AVX2 kernel knows when the fast 7-bit path is exact.
//
// Thread-safety: immutable after packing; share freely between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/quant/quantize.h"

namespace qsig::quant {

inline constexpr int kPackRows = 16;  // rows per panel
inline constexpr int kPackCols = 4;   // columns per group (one VNNI lane)
// Largest cols PackWeightsS8 accepts: keeps every s32 sum of the kernels far from overflow.
inline constexpr int kMaxPackedCols = 32768;

// std::allocator with 64-byte (cache line, one zmm) alignment.
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t n) noexcept { ::operator delete(p, n * sizeof(T), kAlign); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

struct PackedWeightsS8 {
  int rows = 0;         // logical output rows
  int cols = 0;         // logical input columns
  int rows_padded = 0;  // multiple of kPackRows
  int cols_padded = 0;  // multiple of kPackCols
  int max_abs = 0;      // max |w|; <= 63 means 7-bit ("reduce range") weights
  std::vector<int8_t, CacheAlignedAllocator<int8_t>> data;        // rows_padded * cols_padded
  std::vector<int32_t, CacheAlignedAllocator<int32_t>> row_sums;  // rows_padded, 0 in padding
  std::vector<float, CacheAlignedAllocator<float>> scales;        // rows_padded, 1.0 in padding

  int panels() const noexcept { return rows_padded / kPackRows; }
  int groups() const noexcept { return cols_padded / kPackCols; }
  // The 64-byte block of panel p, column group g.
  const int8_t* block(int p, int g) const noexcept {
    return data.data() + (static_cast<size_t>(p) * groups() + g) * (kPackRows * kPackCols);
  }
  // Weight (r, c) read back through the layout (tests, reference kernels).
  int8_t at(int r, int c) const noexcept {
    return block(r / kPackRows, c / kPackCols)[(r % kPackRows) * kPackCols + c % kPackCols];
  }
  // True when every |w| <= 63, so that u8 x s8 pair sums fit s16 (vpmaddubsw does not saturate).
  bool fits_7bit() const noexcept { return max_abs <= 63; }
  size_t bytes() const noexcept {
    return data.size() + row_sums.size() * sizeof(int32_t) + scales.size() * sizeof(float);
  }
};

// Packs a row-major rows x cols s8 matrix w (leading dimension ldw >= cols) with optional
// per-row scales (empty: 1.0). Fails on non-positive sizes, cols > kMaxPackedCols, ldw < cols or a
// scales size that is neither 0 nor rows. Cold path: allocates.
absl::StatusOr<PackedWeightsS8> PackWeightsS8(const int8_t* w, int rows, int cols, ptrdiff_t ldw,
                                              std::span<const float> scales = {});

// Packs per-channel quantized weights (QuantizePerChannelSymmetricS8), keeping their scales.
absl::StatusOr<PackedWeightsS8> PackWeightsS8(const PerChannelS8& q);

}  // namespace qsig::quant
