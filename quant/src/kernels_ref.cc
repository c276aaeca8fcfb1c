// Packing and the reference kernels (the specification, plain C++); the dispatch is in isa.cc.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "qsig/quant/kernels.h"

namespace qsig::quant {
namespace {

// Offset of (r, c) in a PackedS8 with `groups` column groups and `blocks` row blocks.
size_t S8Offset(int r, int c, int groups, int blocks) noexcept {
  const int rb = r / kRowBlock;
  const int chunk = rb / kChunkBlocks;
  const int nbc = std::min(kChunkBlocks, blocks - chunk * kChunkBlocks);
  const size_t base = static_cast<size_t>(chunk) * kChunkBlocks * groups * 64;
  return base + (static_cast<size_t>(c / 4) * nbc + rb % kChunkBlocks) * 64 +
         static_cast<size_t>(r % kRowBlock) * 4 + static_cast<size_t>(c % 4);
}

size_t F32Offset(int r, int c, int cols, int blocks) noexcept {
  const int rb = r / kRowBlock;
  const int chunk = rb / kChunkBlocks;
  const int nbc = std::min(kChunkBlocks, blocks - chunk * kChunkBlocks);
  const size_t base = static_cast<size_t>(chunk) * kChunkBlocks * cols * kRowBlock;
  return base + (static_cast<size_t>(c) * nbc + rb % kChunkBlocks) * kRowBlock +
         static_cast<size_t>(r % kRowBlock);
}

float SigmoidRef(float x) noexcept { return 1.0f / (1.0f + std::exp(-x)); }
float TanhRef(float x) noexcept { return 2.0f / (1.0f + std::exp(-2.0f * x)) - 1.0f; }

void GemvU8S8S32Ref(const PackedS8& w, const uint8_t* x, int32_t* acc) noexcept {
  const int groups = w.cols_pad / 4, blocks = w.rows_pad / kRowBlock;
  for (int r = 0; r < w.rows_pad; ++r) {
    int32_t s = 0;
    for (int c = 0; c < w.cols_pad; ++c) {
      s += static_cast<int32_t>(w.data[S8Offset(r, c, groups, blocks)]) * x[c];
    }
    acc[r] = s;
  }
}

void GemmU8S8F32Ref(const PackedS8& w, int n, const uint8_t* x, size_t ldx, const float* add,
                    size_t ldadd, float* y, size_t ldy) noexcept {
  int32_t acc[kRowBlock * kChunkBlocks];
  for (int i = 0; i < n; ++i) {
    const uint8_t* xi = x + i * ldx;
    const float* ai = add ? add + i * ldadd : nullptr;
    float* yi = y + i * ldy;
    const int groups = w.cols_pad / 4, blocks = w.rows_pad / kRowBlock;
    for (int r0 = 0; r0 < w.rows_pad; r0 += kRowBlock * kChunkBlocks) {
      const int r1 = std::min(w.rows_pad, r0 + kRowBlock * kChunkBlocks);
      for (int r = r0; r < r1; ++r) {
        int32_t s = 0;
        for (int c = 0; c < w.cols_pad; ++c) {
          s += static_cast<int32_t>(w.data[S8Offset(r, c, groups, blocks)]) * xi[c];
        }
        acc[r - r0] = s;
      }
      for (int r = r0; r < r1; ++r) {
        const float v = static_cast<float>(acc[r - r0]) * Bf16ToFloat(w.scales[r]);
        yi[r] = ai ? v + ai[r] : v;
      }
    }
  }
}

void GemmS16S8F32Ref(const PackedS8& w, int n, const int16_t* x, size_t ldx, const float* add,
                     size_t ldadd, float* y, size_t ldy) noexcept {
  const int groups = w.cols_pad / 4, blocks = w.rows_pad / kRowBlock;
  for (int i = 0; i < n; ++i) {
    const int16_t* xi = x + i * ldx;
    const float* ai = add ? add + i * ldadd : nullptr;
    float* yi = y + i * ldy;
    for (int r = 0; r < w.rows_pad; ++r) {
      int32_t s = 0;
      for (int c = 0; c < w.cols_pad; ++c) {
        s += static_cast<int32_t>(w.data[S8Offset(r, c, groups, blocks)]) * xi[c];
      }
      const float v = static_cast<float>(s) * Bf16ToFloat(w.scales[r]);
      yi[r] = ai ? v + ai[r] : v;
    }
  }
}

void QuantizeS16Ref(const float* x, int n, const float* a, const float* b, float a0, float b0,
                    int16_t* q, int n_pad) noexcept {
  for (int k = 0; k < n; ++k) {
    const float ak = a ? a[k] : a0, bk = b ? b[k] : b0;
    const float prod = x[k] * ak;
    float v = std::nearbyint(prod + bk);
    v = v > -32767.0f ? (v < 32767.0f ? v : 32767.0f) : -32767.0f;  // NaN -> -32767
    q[k] = static_cast<int16_t>(v);
  }
  for (int k = n; k < n_pad; ++k) q[k] = 0;
}

void GemmF32Ref(const PackedF32& w, int n, const float* x, size_t ldx, const float* add,
                size_t ldadd, float* y, size_t ldy) noexcept {
  const int blocks = w.rows_pad / kRowBlock;
  for (int i = 0; i < n; ++i) {
    const float* xi = x + i * ldx;
    const float* ai = add ? add + i * ldadd : nullptr;
    float* yi = y + i * ldy;
    for (int r = 0; r < w.rows_pad; ++r) {
      float s = 0.0f;
      for (int c = 0; c < w.cols; ++c) s += w.data[F32Offset(r, c, w.cols, blocks)] * xi[c];
      yi[r] = ai ? s + ai[r] : s;
    }
  }
}

void QuantizeU8Ref(const float* x, int n, const float* a, const float* b, float a0, float b0,
                   uint8_t* q, int n_pad) noexcept {
  for (int k = 0; k < n; ++k) {
    const float ak = a ? a[k] : a0, bk = b ? b[k] : b0;
    const float prod = x[k] * ak;  // no contraction into an FMA: the spec is mul, then add
    float v = std::nearbyint(prod + bk);
    v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;  // NaN -> 0
    q[k] = static_cast<uint8_t>(v);
  }
  for (int k = n; k < n_pad; ++k) q[k] = 0;
}

void LstmCellRef(int hidden, const float* g, float* h, float* c, float c_step) noexcept {
  for (int j = 0; j < hidden; ++j) {
    const float i = SigmoidRef(g[j]);
    const float f = SigmoidRef(g[hidden + j]);
    const float gg = TanhRef(g[2 * hidden + j]);
    const float o = SigmoidRef(g[3 * hidden + j]);
    float cj = f * c[j] + i * gg;
    if (c_step > 0.0f) {
      float k = std::nearbyint(cj / c_step);
      k = k > -32767.0f ? (k < 32767.0f ? k : 32767.0f) : -32767.0f;
      cj = k * c_step;
    }
    c[j] = cj;
    h[j] = o * TanhRef(cj);
  }
}

void GruCellRef(int hidden, const float* gi, const float* gh, float* h) noexcept {
  for (int j = 0; j < hidden; ++j) {
    const float r = SigmoidRef(gi[j] + gh[j]);
    const float z = SigmoidRef(gi[hidden + j] + gh[hidden + j]);
    const float n = TanhRef(gi[2 * hidden + j] + r * gh[2 * hidden + j]);
    h[j] = (1.0f - z) * n + z * h[j];
  }
}

void ActivateRef(int n, Activation act, float* y) noexcept {
  for (int k = 0; k < n; ++k) {
    switch (act) {
      case Activation::kNone:
        break;
      case Activation::kRelu:
        y[k] = y[k] > 0.0f ? y[k] : 0.0f;
        break;
      case Activation::kTanh:
        y[k] = TanhRef(y[k]);
        break;
      case Activation::kSigmoid:
        y[k] = SigmoidRef(y[k]);
        break;
    }
  }
}

constexpr Kernels kRef = {Isa::kRef,       &GemvU8S8S32Ref, &GemmU8S8F32Ref, &GemmS16S8F32Ref,
                          &QuantizeS16Ref, &GemmF32Ref,     &QuantizeU8Ref,  &LstmCellRef,
                          &GruCellRef,     &ActivateRef};

}  // namespace

PackedS8 PackS8(const int8_t* q, int rows, int cols) {
  PackedS8 p;
  p.rows = rows;
  p.cols = cols;
  p.rows_pad = static_cast<int>(Pad16(static_cast<size_t>(rows)));
  p.cols_pad = (cols + 3) / 4 * 4;
  p.data.resize(static_cast<size_t>(p.rows_pad) * p.cols_pad);
  p.scales.resize(static_cast<size_t>(p.rows_pad));
  const int groups = p.cols_pad / 4, blocks = p.rows_pad / kRowBlock;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const int8_t v = q[static_cast<size_t>(r) * cols + c];
      p.data[S8Offset(r, c, groups, blocks)] = v;
      p.max_abs = std::max(p.max_abs, std::abs(static_cast<int>(v)));
    }
  }
  return p;
}

int8_t PackedAt(const PackedS8& p, int r, int c) noexcept {
  return p.data[S8Offset(r, c, p.cols_pad / 4, p.rows_pad / kRowBlock)];
}

PackedF32 PackF32(const float* w, int rows, int cols) {
  PackedF32 p;
  p.rows = rows;
  p.cols = cols;
  p.rows_pad = static_cast<int>(Pad16(static_cast<size_t>(rows)));
  p.data.resize(static_cast<size_t>(p.rows_pad) * cols);
  const int blocks = p.rows_pad / kRowBlock;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      p.data[F32Offset(r, c, cols, blocks)] = w[static_cast<size_t>(r) * cols + c];
    }
  }
  if (rows <= kSmallRows) {
    const size_t ld = Pad16(static_cast<size_t>(cols));
    p.small.resize(static_cast<size_t>(rows) * ld);
    for (int r = 0; r < rows; ++r) {
      std::memcpy(p.small.data() + r * ld, w + static_cast<size_t>(r) * cols,
                  static_cast<size_t>(cols) * sizeof(float));
    }
  }
  return p;
}

const Kernels& RefKernels() noexcept { return kRef; }

}  // namespace qsig::quant
