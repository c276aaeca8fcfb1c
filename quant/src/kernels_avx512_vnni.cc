// AVX-512 VNNI kernels (compiled with per-file ISA flags, see quant/CMakeLists.txt; reached
// only through KernelsFor(), which checks the CPU and OS first). Integer products and the
// dequantization / quantization arithmetic follow the reference operation for operation (no FMA
// contraction where the reference has none), so int8 layers are bit-identical to the reference;
// only the polynomial exp in sigmoid/tanh differs (relative error ~2e-7).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "internal/kernel_tables.h"
#include "qsig/quant/kernels.h"

#define QSIG_UNROLL _Pragma("GCC unroll 16")

namespace qsig::quant {
namespace {

inline __m512 Exp(__m512 x) noexcept {
  // Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial, 2^n by scalef.
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 Recip(__m512 d) noexcept {  // rcp14 + one Newton step: relative error ~1e-8
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

inline __m512 Sigmoid(__m512 x) noexcept {
  return Recip(_mm512_add_ps(_mm512_set1_ps(1.0f), Exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 Tanh(__m512 x) noexcept {  // 2 sigmoid(2x) - 1
  return _mm512_fmsub_ps(_mm512_set1_ps(2.0f), Sigmoid(_mm512_add_ps(x, x)), _mm512_set1_ps(1.0f));
}

inline __mmask16 TailMask(int left) noexcept {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// ---- int8 ----

// NX vectors x NB row blocks of one chunk; w points at the first block, gstride bytes between
// column groups.
template <int NB, int NX>
inline void DotS8(const int8_t* w, size_t gstride, int groups, const uint8_t* x, size_t ldx,
                  __m512i (&acc)[NX][NB]) noexcept {
  QSIG_UNROLL for (int i = 0; i < NX; ++i) {
    QSIG_UNROLL for (int b = 0; b < NB; ++b) acc[i][b] = _mm512_setzero_si512();
  }
  for (int g = 0; g < groups; ++g) {
    const int8_t* wg = w + static_cast<size_t>(g) * gstride;
    __m512i wv[NB];
    QSIG_UNROLL for (int b = 0; b < NB; ++b) wv[b] = _mm512_load_si512(wg + b * 64);
    QSIG_UNROLL for (int i = 0; i < NX; ++i) {
      int32_t xv;
      std::memcpy(&xv, x + i * ldx + 4 * static_cast<size_t>(g), 4);
      const __m512i xb = _mm512_set1_epi32(xv);
      QSIG_UNROLL for (int b = 0; b < NB; ++b) acc[i][b] =
          _mm512_dpbusd_epi32(acc[i][b], xb, wv[b]);
    }
  }
}

inline __m512 LoadBf16(const uint16_t* p) noexcept {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

template <int NB, int NX>
inline void BlockS8(const PackedS8& w, const int8_t* wp, size_t gstride, int r0, const uint8_t* x,
                    size_t ldx, const float* add, size_t ldadd, float* y, size_t ldy) noexcept {
  __m512i acc[NX][NB];
  DotS8<NB, NX>(wp, gstride, w.cols_pad / 4, x, ldx, acc);
  QSIG_UNROLL for (int b = 0; b < NB; ++b) {
    const int r = r0 + b * kRowBlock;
    const __m512 sc = LoadBf16(w.scales.data() + r);
    QSIG_UNROLL for (int i = 0; i < NX; ++i) {
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][b]), sc);
      if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(add + i * ldadd + r));
      _mm512_storeu_ps(y + i * ldy + r, v);
    }
  }
}

void GemvU8S8S32Avx512Vnni(const PackedS8& w, const uint8_t* x, int32_t* acc) noexcept {
  const int groups = w.cols_pad / 4, blocks = w.rows_pad / kRowBlock;
  for (int b0 = 0; b0 < blocks; ++b0) {
    const int chunk = b0 / kChunkBlocks;
    const int nbc = std::min(kChunkBlocks, blocks - chunk * kChunkBlocks);
    const int8_t* wp = w.data.data() + static_cast<size_t>(chunk) * kChunkBlocks * groups * 64 +
                       static_cast<size_t>(b0 % kChunkBlocks) * 64;
    __m512i a[1][1];
    DotS8<1, 1>(wp, static_cast<size_t>(nbc) * 64, groups, x, 0, a);
    _mm512_storeu_si512(acc + b0 * kRowBlock, a[0][0]);
  }
}

// Runs blocks [b, b + NB) of the chunk starting at row block `c0` for vectors [i, i + NX).
template <int NB, int NX>
void ChunkS8(const PackedS8& w, int c0, int nbc, int b, int i, const uint8_t* x, size_t ldx,
             const float* add, size_t ldadd, float* y, size_t ldy) noexcept {
  const int groups = w.cols_pad / 4;
  const int8_t* wp =
      w.data.data() + static_cast<size_t>(c0) * groups * 64 + static_cast<size_t>(b) * 64;
  BlockS8<NB, NX>(w, wp, static_cast<size_t>(nbc) * 64, (c0 + b) * kRowBlock, x + i * ldx, ldx,
                  add ? add + i * ldadd : nullptr, ldadd, y + i * ldy, ldy);
}

using ChunkS8Fn = void (*)(const PackedS8&, int, int, int, int, const uint8_t*, size_t,
                           const float*, size_t, float*, size_t) noexcept;

template <int... NB>
constexpr auto MakeSingle(std::integer_sequence<int, NB...>) {
  return std::array<ChunkS8Fn, sizeof...(NB)>{&ChunkS8<NB + 1, 1>...};
}
constexpr auto kSingleS8 = MakeSingle(std::make_integer_sequence<int, kChunkBlocks>{});
template <int NX>
constexpr std::array<ChunkS8Fn, 4> kQuadS8 = {&ChunkS8<1, NX>, &ChunkS8<2, NX>, &ChunkS8<3, NX>,
                                              &ChunkS8<4, NX>};

void GemmU8S8F32Avx512Vnni(const PackedS8& w, int n, const uint8_t* x, size_t ldx, const float* add,
                           size_t ldadd, float* y, size_t ldy) noexcept {
  const int blocks = w.rows_pad / kRowBlock;
  for (int c0 = 0; c0 < blocks; c0 += kChunkBlocks) {
    const int nbc = std::min(kChunkBlocks, blocks - c0);
    if (n == 1) {
      kSingleS8[static_cast<size_t>(nbc - 1)](w, c0, nbc, 0, 0, x, ldx, add, ldadd, y, ldy);
      continue;
    }
    // Several vectors: 4 row blocks x up to 4 vectors share each weight load.
    for (int b = 0; b < nbc; b += 4) {
      const size_t nb = static_cast<size_t>(std::min(4, nbc - b) - 1);
      int i = 0;
      for (; i + 4 <= n; i += 4) {
        kQuadS8<4>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
      }
      switch (n - i) {
        case 3:
          kQuadS8<3>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        case 2:
          kQuadS8<2>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        case 1:
          kQuadS8<1>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        default:
          break;
      }
    }
  }
}

// ---- s16 activations x s8 weights (vpdpwssd) ----

// NB row blocks (16 rows each) for one vector: each 64-byte group (16 rows x 4 columns) is
// widened to two registers of 8 rows x 4 s16 (lanes 2r: columns 0-1, 2r + 1: columns 2-3),
// multiplied with x's 4 columns broadcast as one 64-bit pattern, and the lane pairs summed at
// the end. Even and odd column groups use separate accumulators, so there are 4 * NB
// independent dependency chains (vpdpwssd latency is ~5 cycles).
template <int NB>
inline void DotS16(const int8_t* w, size_t gstride, int groups, const int16_t* x,
                   __m512i (&out)[NB]) noexcept {
  __m512i lo[2][NB], hi[2][NB];
  QSIG_UNROLL for (int b = 0; b < NB; ++b) {
    lo[0][b] = hi[0][b] = lo[1][b] = hi[1][b] = _mm512_setzero_si512();
  }
  auto step = [&](int g, int p) {
    const int8_t* wg = w + static_cast<size_t>(g) * gstride;
    int64_t xv;
    std::memcpy(&xv, x + 4 * static_cast<size_t>(g), 8);
    const __m512i xb = _mm512_set1_epi64(xv);
    QSIG_UNROLL for (int b = 0; b < NB; ++b) {
      const __m512i w0 =
          _mm512_cvtepi8_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(wg + b * 64)));
      const __m512i w1 = _mm512_cvtepi8_epi16(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(wg + b * 64 + 32)));
      lo[p][b] = _mm512_dpwssd_epi32(lo[p][b], xb, w0);
      hi[p][b] = _mm512_dpwssd_epi32(hi[p][b], xb, w1);
    }
  };
  int g = 0;
  for (; g + 2 <= groups; g += 2) {
    step(g, 0);
    step(g + 1, 1);
  }
  if (g < groups) step(g, 0);
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  QSIG_UNROLL for (int b = 0; b < NB; ++b) {
    const __m512i l = _mm512_add_epi32(lo[0][b], lo[1][b]);
    const __m512i h = _mm512_add_epi32(hi[0][b], hi[1][b]);
    out[b] = _mm512_add_epi32(_mm512_permutex2var_epi32(l, even, h),
                              _mm512_permutex2var_epi32(l, odd, h));
  }
}

template <int NB>
void ChunkS16(const PackedS8& w, int c0, int nbc, int b, const int16_t* x, const float* add,
              float* y) noexcept {
  const int groups = w.cols_pad / 4;
  const int8_t* wp =
      w.data.data() + static_cast<size_t>(c0) * groups * 64 + static_cast<size_t>(b) * 64;
  __m512i acc[NB];
  DotS16<NB>(wp, static_cast<size_t>(nbc) * 64, groups, x, acc);
  QSIG_UNROLL for (int k = 0; k < NB; ++k) {
    const int r = (c0 + b + k) * kRowBlock;
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[k]), LoadBf16(w.scales.data() + r));
    if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(add + r));
    _mm512_storeu_ps(y + r, v);
  }
}

using ChunkS16Fn = void (*)(const PackedS8&, int, int, int, const int16_t*, const float*,
                            float*) noexcept;
constexpr std::array<ChunkS16Fn, 4> kS16 = {&ChunkS16<1>, &ChunkS16<2>, &ChunkS16<3>, &ChunkS16<4>};

void GemmS16S8F32Avx512Vnni(const PackedS8& w, int n, const int16_t* x, size_t ldx,
                            const float* add, size_t ldadd, float* y, size_t ldy) noexcept {
  const int blocks = w.rows_pad / kRowBlock;
  for (int i = 0; i < n; ++i) {
    for (int c0 = 0; c0 < blocks; c0 += kChunkBlocks) {
      const int nbc = std::min(kChunkBlocks, blocks - c0);
      for (int b = 0; b < nbc; b += 4) {
        kS16[static_cast<size_t>(std::min(4, nbc - b) - 1)](
            w, c0, nbc, b, x + i * ldx, add ? add + i * ldadd : nullptr, y + i * ldy);
      }
    }
  }
}

void QuantizeS16Avx512Vnni(const float* x, int n, const float* a, const float* b, float a0,
                           float b0, int16_t* q, int n_pad) noexcept {
  const __m512 lo = _mm512_set1_ps(-32767.0f), hi = _mm512_set1_ps(32767.0f);
  const __m512 av = _mm512_set1_ps(a0), bv = _mm512_set1_ps(b0);
  for (int k = 0; k < n_pad; k += 16) {
    const __mmask16 m = TailMask(n - k);
    const __mmask16 mp = TailMask(n_pad - k);
    const __m512 ak = a ? _mm512_maskz_loadu_ps(m, a + k) : av;
    const __m512 bk = b ? _mm512_maskz_loadu_ps(m, b + k) : bv;
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), ak), bk);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // max(NaN, lo) = lo
    const __m512i iv = _mm512_maskz_cvtps_epi32(m, v);
    _mm512_mask_cvtepi32_storeu_epi16(q + k, mp, iv);
  }
}

// ---- fp32 ----

template <int NB, int NX>
void ChunkF32(const PackedF32& w, int c0, int nbc, int b, int i, const float* x, size_t ldx,
              const float* add, size_t ldadd, float* y, size_t ldy) noexcept {
  const float* wp = w.data.data() + static_cast<size_t>(c0) * w.cols * kRowBlock +
                    static_cast<size_t>(b) * kRowBlock;
  const size_t cstride = static_cast<size_t>(nbc) * kRowBlock;
  const int r0 = (c0 + b) * kRowBlock;
  x += i * ldx;
  y += i * ldy;
  if (add) add += i * ldadd;
  // Few blocks x vectors leave the FMA chain latency-bound (4 cycles each): split the columns
  // over S interleaved accumulator sets, summed at the end.
  constexpr int S = NB * NX >= 8 ? 1 : (NB * NX >= 4 ? 2 : 4);
  __m512 acc[NX][NB];
  __m512 part[S][NX][NB];
  QSIG_UNROLL for (int v = 0; v < NX; ++v) {
    QSIG_UNROLL for (int k = 0; k < NB; ++k) {
      acc[v][k] = add ? _mm512_loadu_ps(add + v * ldadd + r0 + k * kRowBlock) : _mm512_setzero_ps();
      QSIG_UNROLL for (int p = 0; p < S; ++p) part[p][v][k] = _mm512_setzero_ps();
    }
  }
  auto col = [&](int c, int p) {
    const float* wc = wp + static_cast<size_t>(c) * cstride;
    __m512 wv[NB];
    QSIG_UNROLL for (int k = 0; k < NB; ++k) wv[k] = _mm512_load_ps(wc + k * kRowBlock);
    QSIG_UNROLL for (int v = 0; v < NX; ++v) {
      const __m512 xb = _mm512_set1_ps(x[v * ldx + static_cast<size_t>(c)]);
      QSIG_UNROLL for (int k = 0; k < NB; ++k) {
        part[p][v][k] = _mm512_fmadd_ps(wv[k], xb, part[p][v][k]);
      }
    }
  };
  int c = 0;
  for (; c + S <= w.cols; c += S) {
    QSIG_UNROLL for (int p = 0; p < S; ++p) col(c + p, p);
  }
  for (; c < w.cols; ++c) col(c, 0);
  QSIG_UNROLL for (int v = 0; v < NX; ++v) {
    QSIG_UNROLL for (int k = 0; k < NB; ++k) {
      __m512 sum = part[0][v][k];
      QSIG_UNROLL for (int p = 1; p < S; ++p) sum = _mm512_add_ps(sum, part[p][v][k]);
      acc[v][k] = _mm512_add_ps(acc[v][k], sum);
    }
  }
  QSIG_UNROLL for (int v = 0; v < NX; ++v) {
    QSIG_UNROLL for (int k = 0; k < NB; ++k) {
      _mm512_storeu_ps(y + v * ldy + r0 + k * kRowBlock, acc[v][k]);
    }
  }
}

using ChunkF32Fn = void (*)(const PackedF32&, int, int, int, int, const float*, size_t,
                            const float*, size_t, float*, size_t) noexcept;
template <int... NB>
constexpr auto MakeSingleF32(std::integer_sequence<int, NB...>) {
  return std::array<ChunkF32Fn, sizeof...(NB)>{&ChunkF32<NB + 1, 1>...};
}
constexpr auto kSingleF32 = MakeSingleF32(std::make_integer_sequence<int, kChunkBlocks>{});
template <int NX>
constexpr std::array<ChunkF32Fn, 4> kQuadF32 = {&ChunkF32<1, NX>, &ChunkF32<2, NX>,
                                                &ChunkF32<3, NX>, &ChunkF32<4, NX>};

// rows <= kSmallRows: dot products on the row-major copy (4 partial sums, then a tree).
void SmallF32(const PackedF32& w, int n, const float* x, size_t ldx, const float* add, size_t ldadd,
              float* y, size_t ldy) noexcept {
  const size_t ld = Pad16(static_cast<size_t>(w.cols));
  for (int i = 0; i < n; ++i) {
    const float* xi = x + i * ldx;
    const float* ai = add ? add + i * ldadd : nullptr;
    float* yi = y + i * ldy;
    for (int r = 0; r < w.rows; ++r) {
      const float* wr = w.small.data() + r * ld;
      __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
      int c = 0;
      for (; c + 64 <= w.cols; c += 64) {
        QSIG_UNROLL for (int p = 0; p < 4; ++p) {
          s[p] = _mm512_fmadd_ps(_mm512_load_ps(wr + c + 16 * p), _mm512_loadu_ps(xi + c + 16 * p),
                                 s[p]);
        }
      }
      for (int p = 0; c < w.cols; c += 16, ++p) {
        const __mmask16 m = TailMask(w.cols - c);
        s[p & 3] =
            _mm512_fmadd_ps(_mm512_load_ps(wr + c), _mm512_maskz_loadu_ps(m, xi + c), s[p & 3]);
      }
      const float dot =
          _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
      yi[r] = ai ? dot + ai[r] : dot;
    }
    for (int r = w.rows; r < w.rows_pad; ++r) yi[r] = ai ? 0.0f + ai[r] : 0.0f;
  }
}

void GemmF32Avx512Vnni(const PackedF32& w, int n, const float* x, size_t ldx, const float* add,
                       size_t ldadd, float* y, size_t ldy) noexcept {
  if (w.small.size() != 0) {
    SmallF32(w, n, x, ldx, add, ldadd, y, ldy);
    return;
  }
  const int blocks = w.rows_pad / kRowBlock;
  for (int c0 = 0; c0 < blocks; c0 += kChunkBlocks) {
    const int nbc = std::min(kChunkBlocks, blocks - c0);
    if (n == 1) {
      kSingleF32[static_cast<size_t>(nbc - 1)](w, c0, nbc, 0, 0, x, ldx, add, ldadd, y, ldy);
      continue;
    }
    for (int b = 0; b < nbc; b += 4) {
      const size_t nb = static_cast<size_t>(std::min(4, nbc - b) - 1);
      int i = 0;
      for (; i + 4 <= n; i += 4) kQuadF32<4>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
      switch (n - i) {
        case 3:
          kQuadF32<3>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        case 2:
          kQuadF32<2>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        case 1:
          kQuadF32<1>[nb](w, c0, nbc, b, i, x, ldx, add, ldadd, y, ldy);
          break;
        default:
          break;
      }
    }
  }
}

// ---- element-wise ----

void QuantizeU8Avx512Vnni(const float* x, int n, const float* a, const float* b, float a0, float b0,
                          uint8_t* q, int n_pad) noexcept {
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
  const __m512 av = _mm512_set1_ps(a0), bv = _mm512_set1_ps(b0);
  for (int k = 0; k < n_pad; k += 16) {
    const __mmask16 m = TailMask(n - k);
    const __mmask16 mp = TailMask(n_pad - k);
    const __m512 ak = a ? _mm512_maskz_loadu_ps(m, a + k) : av;
    const __m512 bk = b ? _mm512_maskz_loadu_ps(m, b + k) : bv;
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), ak), bk);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // max(NaN, 0) = 0
    const __m512i iv = _mm512_maskz_cvtps_epi32(m, v);
    _mm512_mask_cvtepi32_storeu_epi8(q + k, mp, iv);
  }
}

void LstmCellAvx512Vnni(int hidden, const float* g, float* h, float* c, float c_step) noexcept {
  const __m512 step = _mm512_set1_ps(c_step);
  const __m512 kmax = _mm512_set1_ps(32767.0f), kmin = _mm512_set1_ps(-32767.0f);
  for (int j = 0; j < hidden; j += 16) {
    const __mmask16 m = TailMask(hidden - j);
    const __m512 i = Sigmoid(_mm512_maskz_loadu_ps(m, g + j));
    const __m512 f = Sigmoid(_mm512_maskz_loadu_ps(m, g + hidden + j));
    const __m512 gg = Tanh(_mm512_maskz_loadu_ps(m, g + 2 * hidden + j));
    const __m512 o = Sigmoid(_mm512_maskz_loadu_ps(m, g + 3 * hidden + j));
    __m512 cj =
        _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, c + j)), _mm512_mul_ps(i, gg));
    if (c_step > 0.0f) {
      __m512 k = _mm512_roundscale_ps(_mm512_div_ps(cj, step),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      k = _mm512_min_ps(_mm512_max_ps(k, kmin), kmax);
      cj = _mm512_mul_ps(k, step);
    }
    _mm512_mask_storeu_ps(c + j, m, cj);
    _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, Tanh(cj)));
  }
}

void GruCellAvx512Vnni(int hidden, const float* gi, const float* gh, float* h) noexcept {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int j = 0; j < hidden; j += 16) {
    const __mmask16 m = TailMask(hidden - j);
    auto ld = [m](const float* p) { return _mm512_maskz_loadu_ps(m, p); };
    const __m512 r = Sigmoid(_mm512_add_ps(ld(gi + j), ld(gh + j)));
    const __m512 z = Sigmoid(_mm512_add_ps(ld(gi + hidden + j), ld(gh + hidden + j)));
    const __m512 n =
        Tanh(_mm512_add_ps(ld(gi + 2 * hidden + j), _mm512_mul_ps(r, ld(gh + 2 * hidden + j))));
    const __m512 hv =
        _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, z), n), _mm512_mul_ps(z, ld(h + j)));
    _mm512_mask_storeu_ps(h + j, m, hv);
  }
}

void ActivateAvx512Vnni(int n, Activation act, float* y) noexcept {
  if (act == Activation::kNone) return;
  for (int k = 0; k < n; k += 16) {
    const __mmask16 m = TailMask(n - k);
    __m512 v = _mm512_maskz_loadu_ps(m, y + k);
    switch (act) {
      case Activation::kRelu:
        v = _mm512_max_ps(v, _mm512_setzero_ps());
        break;
      case Activation::kTanh:
        v = Tanh(v);
        break;
      case Activation::kSigmoid:
        v = Sigmoid(v);
        break;
      case Activation::kNone:
        break;
    }
    _mm512_mask_storeu_ps(y + k, m, v);
  }
}

constexpr Kernels kAvx512Vnni = {
    Isa::kAvx512Vnni,       &GemvU8S8S32Avx512Vnni, &GemmU8S8F32Avx512Vnni, &GemmS16S8F32Avx512Vnni,
    &QuantizeS16Avx512Vnni, &GemmF32Avx512Vnni,     &QuantizeU8Avx512Vnni,  &LstmCellAvx512Vnni,
    &GruCellAvx512Vnni,     &ActivateAvx512Vnni};

}  // namespace

const Kernels& internal::Avx512VnniKernels() noexcept { return kAvx512Vnni; }

}  // namespace qsig::quant
