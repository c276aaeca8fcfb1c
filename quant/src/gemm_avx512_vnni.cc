// GEMM kernels for AVX512-VNNI: one vpdpbusd zmm per 16 rows x 4 columns block.
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (quant/CMakeLists.txt), and called
// only after isa.cc has checked the CPU and OS. Everything here has internal linkage and uses no
// out-of-line library templates: an inline function compiled with these flags and shared by name
// with a baseline translation unit could be the copy the linker keeps, and would then fault on an
// AVX2-only CPU.

// GCC 12 warns that the deliberately undefined pass-through operand of _mm512_undefined_*() in
// its own intrinsic headers "may be used uninitialized" (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "qsig/quant/gemm.h"

namespace qsig::quant {
namespace {

#define QSIG_INLINE inline __attribute__((always_inline))

// x[0..3] as one 32-bit lane (unaligned, aliasing-safe).
QSIG_INLINE int32_t Load4(const uint8_t* x) noexcept {
  int32_t v;
  std::memcpy(&v, x, 4);
  return v;
}
// The n < 4 bytes that remain of a row, zero above: never reads past the row.
QSIG_INLINE int32_t LoadTail(const uint8_t* x, int n) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint32_t>(x[i]) << (8 * i);
  return static_cast<int32_t>(v);
}

// Output of a tile: raw s32, or dequantized f32 (gemm.h).
struct OutS32 {
  int32_t* y;
  ptrdiff_t ldy;
};
struct OutF32 {
  float* y;
  ptrdiff_t ldy;
  const DequantEpilogue* e;
};

// Computes rows [16 p0, 16 (p0 + P)) of activation rows [i0, i0 + MB) and stores them.
// kS8: x holds s8; it is flipped to u8 (x + 128, i.e. x ^ 0x80) in the broadcast and 128 * row_sum
// is subtracted at the end. Zero-padded weight columns see flipped 0x80 bytes and still add 0.
template <int P, int MB, bool kS8, typename Out>
QSIG_INLINE void Tile(const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int p0, int i0,
                      const Out& out) noexcept {
  const int full = w.cols / kPackCols;
  const int tail = w.cols % kPackCols;
  const __m512i flip = _mm512_set1_epi32(kS8 ? static_cast<int32_t>(0x80808080u) : 0);
  const uint8_t* xr[MB];
  for (int b = 0; b < MB; ++b) xr[b] = x + (i0 + b) * ldx;
  const int8_t* wp[P];
  for (int p = 0; p < P; ++p) wp[p] = w.block(p0 + p, 0);

  __m512i acc[P][MB];
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < MB; ++b) acc[p][b] = _mm512_setzero_si512();

  // P * MB independent dependency chains hide vpdpbusd's latency; each weight block is loaded
  // once and used for MB activation rows.
  for (int g = 0; g < full; ++g) {
    __m512i xb[MB];
    for (int b = 0; b < MB; ++b) {
      xb[b] = _mm512_xor_si512(_mm512_set1_epi32(Load4(xr[b] + kPackCols * g)), flip);
    }
    for (int p = 0; p < P; ++p) {
      const __m512i wv = _mm512_load_si512(wp[p] + 64 * g);
      for (int b = 0; b < MB; ++b) acc[p][b] = _mm512_dpbusd_epi32(acc[p][b], xb[b], wv);
    }
  }
  if (tail != 0) {
    __m512i xb[MB];
    for (int b = 0; b < MB; ++b) {
      xb[b] = _mm512_xor_si512(_mm512_set1_epi32(LoadTail(xr[b] + kPackCols * full, tail)), flip);
    }
    for (int p = 0; p < P; ++p) {
      const __m512i wv = _mm512_load_si512(wp[p] + 64 * full);
      for (int b = 0; b < MB; ++b) acc[p][b] = _mm512_dpbusd_epi32(acc[p][b], xb[b], wv);
    }
  }

  for (int p = 0; p < P; ++p) {
    const int r0 = (p0 + p) * kPackRows;
    const int n = w.rows - r0 < kPackRows ? w.rows - r0 : kPackRows;
    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
    const __m512i sums = _mm512_load_si512(w.row_sums.data() + r0);
    for (int b = 0; b < MB; ++b) {
      __m512i v = acc[p][b];
      if constexpr (kS8) v = _mm512_sub_epi32(v, _mm512_slli_epi32(sums, 7));
      if constexpr (std::is_same_v<Out, OutF32>) {
        // F32: float(acc - zx * row_sum) * (scale * sx) + bias, in the reference's order.
        v = _mm512_sub_epi32(v, _mm512_mullo_epi32(sums, _mm512_set1_epi32(out.e->x_zero_point)));
        const __m512 s =
            _mm512_mul_ps(_mm512_load_ps(w.scales.data() + r0), _mm512_set1_ps(out.e->x_scale));
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
        if (out.e->bias != nullptr) {
          f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(mask, out.e->bias + r0));
        }
        _mm512_mask_storeu_ps(out.y + (i0 + b) * out.ldy + r0, mask, f);
      } else {
        _mm512_mask_storeu_epi32(out.y + (i0 + b) * out.ldy + r0, mask, v);
      }
    }
  }
}

// All panels for activation rows [i0, i0 + MB): PM panels at a time, then pairs, then one.
template <int PM, int MB, bool kS8, typename Out>
QSIG_INLINE void RowBlock(const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int i0,
                          const Out& out) noexcept {
  const int panels = w.panels();
  int p = 0;
  for (; p + PM <= panels; p += PM) Tile<PM, MB, kS8>(x, ldx, w, p, i0, out);
  if constexpr (PM > 2) {
    for (; p + 2 <= panels; p += 2) Tile<2, MB, kS8>(x, ldx, w, p, i0, out);
  }
  for (; p < panels; ++p) Tile<1, MB, kS8>(x, ldx, w, p, i0, out);
}

// GEMV (m = 1): 8 panels (128 rows) per pass, 8 chains. GEMM: 4 activation rows x 4 panels
// (16 accumulators of 32 zmm), so each weight block is loaded once per 4 rows.
template <bool kS8, typename Out>
void Gemm(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
          const Out& out) noexcept {
  if (m == 1) {
    RowBlock<8, 1, kS8>(x, ldx, w, 0, out);
    return;
  }
  int i = 0;
  for (; i + 4 <= m; i += 4) RowBlock<4, 4, kS8>(x, ldx, w, i, out);
  switch (m - i) {
    case 3:
      RowBlock<4, 3, kS8>(x, ldx, w, i, out);
      break;
    case 2:
      RowBlock<4, 2, kS8>(x, ldx, w, i, out);
      break;
    case 1:
      RowBlock<8, 1, kS8>(x, ldx, w, i, out);
      break;
    default:
      break;
  }
}

}  // namespace

void GemmU8S8S32Avx512Vnni(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                           int32_t* y, ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutS32{y, ldy});
}
void GemmS8S8S32Avx512Vnni(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                           int32_t* y, ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutS32{y, ldy});
}
void GemmU8S8F32Avx512Vnni(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                           const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutF32{y, ldy, &e});
}
void GemmS8S8F32Avx512Vnni(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                           const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutF32{y, ldy, &e});
}

}  // namespace qsig::quant
