// s16, packed s4 and reduce-range (7-bit) weights: the formulas of quantize.h.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "qsig/quant/kernels.h"
#include "qsig/quant/quantize.h"

namespace qsig::quant {
namespace {

std::vector<float> Values(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  // Exact ties and out-of-range values exercise rounding and clamping.
  if (n >= 4) {
    v[0] = 0.5f;
    v[1] = -1.5f;
    v[2] = 1e9f;
    v[3] = -1e9f;
  }
  return v;
}

TEST(QuantFormats, S16RowAgreesWithSpecAndRoundTrips) {
  for (bool symmetric : {false, true}) {
    auto p = ChooseQuantParams(-3.0f, 5.0f, symmetric ? kS16SymMin : kS16Min, kS16Max, symmetric);
    ASSERT_TRUE(p.ok()) << p.status();
    const std::vector<float> x = Values(1001, -3.0f, 5.0f, 1);
    std::vector<int16_t> q(x.size());
    QuantizeRowS16(x.data(), x.size(), *p, q.data());
    std::vector<float> back(x.size());
    DequantizeRowS16(q.data(), q.size(), *p, back.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(q[i], Quantize(x[i], *p)) << x[i];
      if (x[i] >= -3.0f && x[i] <= 5.0f) {
        ASSERT_LE(std::fabs(back[i] - x[i]), p->scale / 2 * 1.001f);
      }
    }
    EXPECT_EQ(q[2], p->qmax);
    EXPECT_EQ(q[3], p->qmin);
  }
}

TEST(QuantFormats, S4PackingHoldsEverySignedNibble) {
  // Every value of [-8, 7], with scale 1 and zero point 0, packs and unpacks exactly.
  QuantParams p{1.0f, 0, kS4Min, kS4Max};
  std::vector<float> x;
  for (int v = kS4Min; v <= kS4Max; ++v) x.push_back(static_cast<float>(v));
  x.push_back(3.0f);  // odd count: the last high nibble stays 0
  std::vector<uint8_t> packed((x.size() + 1) / 2, 0xff);
  QuantizeRowS4(x.data(), x.size(), p, packed.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(UnpackS4(packed.data(), i), x[i]) << i;
  EXPECT_EQ(packed.back() >> 4, 0);
  // Layout: element 0 in the low nibble of byte 0 (-8 -> 0x8), element 1 (-7 -> 0x9) high.
  EXPECT_EQ(packed[0], 0x98);
}

TEST(QuantFormats, S4RowAgreesWithSpecAndRoundTrips) {
  for (bool symmetric : {false, true}) {
    auto p = ChooseQuantParams(-1.0f, 2.0f, symmetric ? kS4SymMin : kS4Min, kS4Max, symmetric);
    ASSERT_TRUE(p.ok()) << p.status();
    const std::vector<float> x = Values(257, -1.0f, 2.0f, 2);
    std::vector<uint8_t> packed((x.size() + 1) / 2);
    QuantizeRowS4(x.data(), x.size(), *p, packed.data());
    std::vector<float> back(x.size());
    DequantizeRowS4(packed.data(), x.size(), *p, back.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(UnpackS4(packed.data(), i), Quantize(x[i], *p)) << x[i];
      ASSERT_EQ(back[i], Dequantize(Quantize(x[i], *p), *p));
      if (x[i] >= -1.0f && x[i] <= 2.0f) {
        ASSERT_LE(std::fabs(back[i] - x[i]), p->scale / 2 * 1.001f);
      }
    }
  }
}

TEST(QuantFormats, DequantizeRowsMatchScalarSpec) {
  QuantParams pu{0.05f, 128, kU8Min, kU8Max};
  QuantParams ps{0.05f, 0, kS8Min, kS8Max};
  std::vector<uint8_t> u(256);
  std::vector<int8_t> s(256);
  for (int i = 0; i < 256; ++i) {
    u[i] = static_cast<uint8_t>(i);
    s[i] = static_cast<int8_t>(i - 128);
  }
  std::vector<float> fu(256), fs(256);
  DequantizeRowU8(u.data(), u.size(), pu, fu.data());
  DequantizeRowS8(s.data(), s.size(), ps, fs.data());
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(fu[i], Dequantize(u[i], pu));
    EXPECT_EQ(fs[i], Dequantize(s[i], ps));
  }
}

TEST(QuantFormats, ReduceRangeWeightsAreSevenBitAndPackAsSuch) {
  const int rows = 17, cols = 33;
  const std::vector<float> w = Values(static_cast<size_t>(rows) * cols, -2.0f, 2.0f, 3);
  std::vector<float> wf(w.begin(), w.end());
  wf[2] = 1.9f;  // keep the matrix finite and in range (Values plants +-1e9 at 2, 3)
  wf[3] = -1.7f;
  auto q = QuantizePerChannelSymmetricS8(wf, rows, cols, /*reduce_range=*/true);
  ASSERT_TRUE(q.ok()) << q.status();
  for (int r = 0; r < rows; ++r) {
    float max_abs = 0.0f;
    int32_t sum = 0;
    for (int c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(wf[r * cols + c]));
    EXPECT_EQ(q->scales[r], max_abs / 63.0f);
    for (int c = 0; c < cols; ++c) {
      const int v = q->data[r * cols + c];
      ASSERT_LE(std::abs(v), kS8ReduceRangeMax);
      ASSERT_LE(std::fabs(DequantizeAt(*q, r, c) - wf[r * cols + c]), q->scales[r] / 2 * 1.001f);
      sum += v;
    }
    EXPECT_EQ(q->row_sums[r], sum);
  }
  const PackedS8 packed = PackS8(q->data.data(), rows, cols);
  EXPECT_LE(packed.max_abs, kS8ReduceRangeMax);  // 63: the AVX2 kernels' unsplit path
  // The full-range quantization of the same matrix uses 127 and does not fit 7 bits.
  auto full = QuantizePerChannelSymmetricS8(wf, rows, cols);
  ASSERT_TRUE(full.ok());
  const PackedS8 packed_full = PackS8(full->data.data(), rows, cols);
  EXPECT_EQ(packed_full.max_abs, 127);
  EXPECT_GT(packed_full.max_abs, kS8ReduceRangeMax);
}

TEST(QuantFormats, PerChannelS4) {
  const int rows = 5, cols = 7;  // odd cols: each row's last byte has one nibble
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (float& v : w) v = normal(rng);
  for (int c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;  // an all-zero row
  auto q = QuantizePerChannelSymmetricS4(w, rows, cols);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->bytes_per_row(), 4u);
  EXPECT_EQ(q->data.size(), 20u);
  EXPECT_EQ(q->scales[2], 1.0f);
  for (int r = 0; r < rows; ++r) {
    int32_t sum = 0;
    for (int c = 0; c < cols; ++c) {
      const int v = UnpackS4(q->row(r), c);
      ASSERT_GE(v, kS4SymMin);
      ASSERT_LE(v, kS4Max);
      ASSERT_LE(std::fabs(v * q->scales[r] - w[r * cols + c]), q->scales[r] / 2 * 1.001f);
      sum += v;
    }
    EXPECT_EQ(q->row_sums[r], sum);
  }
  EXPECT_FALSE(QuantizePerChannelSymmetricS4(w, rows, cols + 1).ok());
}

}  // namespace
}  // namespace qsig::quant
