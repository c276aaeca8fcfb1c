#include "qsig/quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace qsig::quant {
namespace {

QuantParams Params(float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  QuantParams p;
  p.scale = scale;
  p.zero_point = zp;
  p.qmin = qmin;
  p.qmax = qmax;
  return p;
}

TEST(QuantRounding, HalfToEven) {
  EXPECT_EQ(RoundHalfEven(0.5f), 0.0f);
  EXPECT_EQ(RoundHalfEven(1.5f), 2.0f);
  EXPECT_EQ(RoundHalfEven(2.5f), 2.0f);
  EXPECT_EQ(RoundHalfEven(-0.5f), 0.0f);
  EXPECT_EQ(RoundHalfEven(-1.5f), -2.0f);
  EXPECT_EQ(RoundHalfEven(-2.5f), -2.0f);
  EXPECT_EQ(RoundHalfEven(0.49999997f), 0.0f);
  EXPECT_EQ(RoundHalfEven(0.50000006f), 1.0f);
}

TEST(QuantRounding, QuantizeRoundsHalfToEvenBeforeAddingZeroPoint) {
  const QuantParams s8 = Params(1.0f, 0, kS8Min, kS8Max);
  EXPECT_EQ(Quantize(0.5f, s8), 0);
  EXPECT_EQ(Quantize(1.5f, s8), 2);
  EXPECT_EQ(Quantize(-0.5f, s8), 0);
  EXPECT_EQ(Quantize(-1.5f, s8), -2);
  // Ties are decided on r / scale, not on r / scale + zero_point.
  const QuantParams u8 = Params(0.5f, 11, kU8Min, kU8Max);
  EXPECT_EQ(Quantize(0.25f, u8), 11);   // 0.5 -> 0
  EXPECT_EQ(Quantize(0.75f, u8), 13);   // 1.5 -> 2
  EXPECT_EQ(Quantize(-0.25f, u8), 11);  // -0.5 -> 0
  EXPECT_EQ(Quantize(-0.75f, u8), 9);   // -1.5 -> -2
}

TEST(QuantRounding, ClampsToIntegerRange) {
  const QuantParams u8 = Params(0.1f, 20, kU8Min, kU8Max);
  EXPECT_EQ(Quantize(1000.0f, u8), 255);
  EXPECT_EQ(Quantize(-1000.0f, u8), 0);
  EXPECT_EQ(Quantize(1e30f, u8), 255);
  EXPECT_EQ(Quantize(std::numeric_limits<float>::infinity(), u8), 255);
  EXPECT_EQ(Quantize(-std::numeric_limits<float>::infinity(), u8), 0);
  EXPECT_EQ(Quantize(std::numeric_limits<float>::quiet_NaN(), u8), 0);
  const QuantParams s8sym = Params(1.0f, 0, kS8SymMin, kS8Max);
  EXPECT_EQ(Quantize(-200.0f, s8sym), -127);
  EXPECT_EQ(Quantize(200.0f, s8sym), 127);
}

TEST(QuantRounding, DequantizeInvertsOnGrid) {
  const QuantParams u8 = Params(0.02f, 64, kU8Min, kU8Max);
  for (int q = 0; q <= 255; ++q) {
    SCOPED_TRACE(q);
    EXPECT_EQ(Quantize(Dequantize(q, u8), u8), q);
  }
}

TEST(QuantRounding, RowQuantizersAgreeWithScalarSpec) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
  const QuantParams pu8 = Params(0.03125f, 77, kU8Min, kU8Max);  // power of two: exact ties
  const QuantParams ps8 = Params(0.03125f, -5, kS8Min, kS8Max);
  std::vector<float> x;
  for (int k = -700; k <= 700; ++k) x.push_back(static_cast<float>(k) * 0.5f * pu8.scale);
  for (int i = 0; i < 4000; ++i) x.push_back(dist(rng));
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(3e38f);
  std::vector<uint8_t> qu(x.size());
  std::vector<int8_t> qs(x.size());
  QuantizeRowU8(x.data(), x.size(), pu8, qu.data());
  QuantizeRowS8(x.data(), x.size(), ps8, qs.data());
  for (size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(x[i]);
    ASSERT_EQ(qu[i], Quantize(x[i], pu8));
    ASSERT_EQ(qs[i], Quantize(x[i], ps8));
  }
}

TEST(QuantParamsChoice, AsymmetricU8) {
  auto p = ChooseQuantParams(-1.0f, 3.0f, kU8Min, kU8Max, /*symmetric=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FLOAT_EQ(p->scale, 4.0f / 255.0f);
  EXPECT_EQ(p->zero_point, 64);  // 0 - round(-63.75)
  EXPECT_EQ(p->qmin, 0);
  EXPECT_EQ(p->qmax, 255);
  EXPECT_EQ(Quantize(0.0f, *p), p->zero_point);  // 0 is exact.
}

TEST(QuantParamsChoice, AsymmetricS8) {
  auto p = ChooseQuantParams(-1.0f, 3.0f, kS8Min, kS8Max, /*symmetric=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FLOAT_EQ(p->scale, 4.0f / 255.0f);
  EXPECT_EQ(p->zero_point, -64);
}

TEST(QuantParamsChoice, RangeNotContainingZeroIsWidened) {
  auto pos = ChooseQuantParams(2.0f, 5.0f, kU8Min, kU8Max, false);
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_FLOAT_EQ(pos->scale, 5.0f / 255.0f);
  EXPECT_EQ(pos->zero_point, 0);
  auto neg = ChooseQuantParams(-5.0f, -2.0f, kU8Min, kU8Max, false);
  ASSERT_TRUE(neg.ok()) << neg.status();
  EXPECT_FLOAT_EQ(neg->scale, 5.0f / 255.0f);
  EXPECT_EQ(neg->zero_point, 255);
  EXPECT_EQ(Quantize(-5.0f, *neg), 0);
}

TEST(QuantParamsChoice, Symmetric) {
  auto s8 = ChooseQuantParams(-2.0f, 1.0f, kS8SymMin, kS8Max, true);
  ASSERT_TRUE(s8.ok()) << s8.status();
  EXPECT_FLOAT_EQ(s8->scale, 2.0f / 127.0f);
  EXPECT_EQ(s8->zero_point, 0);
  auto s8full = ChooseQuantParams(-1.0f, 1.0f, kS8Min, kS8Max, true);
  ASSERT_TRUE(s8full.ok()) << s8full.status();
  EXPECT_FLOAT_EQ(s8full->scale, 1.0f / 127.5f);  // PyTorch: (qmax - qmin) / 2
  EXPECT_EQ(s8full->zero_point, 0);
  auto u8 = ChooseQuantParams(-1.0f, 3.0f, kU8Min, kU8Max, true);
  ASSERT_TRUE(u8.ok()) << u8.status();
  EXPECT_FLOAT_EQ(u8->scale, 3.0f / 127.5f);
  EXPECT_EQ(u8->zero_point, 128);
}

TEST(QuantParamsChoice, RejectsBadRanges) {
  EXPECT_FALSE(ChooseQuantParams(0.0f, 0.0f, kU8Min, kU8Max, false).ok());
  EXPECT_FALSE(ChooseQuantParams(0.0f, 0.0f, kS8Min, kS8Max, true).ok());
  EXPECT_FALSE(ChooseQuantParams(2.0f, 1.0f, kU8Min, kU8Max, false).ok());
  EXPECT_FALSE(
      ChooseQuantParams(std::numeric_limits<float>::quiet_NaN(), 1.0f, kU8Min, kU8Max, false).ok());
  EXPECT_FALSE(
      ChooseQuantParams(0.0f, std::numeric_limits<float>::infinity(), kU8Min, kU8Max, false).ok());
  EXPECT_FALSE(ChooseQuantParams(-1.0f, 1.0f, 5, 5, false).ok());
  auto degenerate = ChooseQuantParams(0.0f, 0.0f, kU8Min, kU8Max, false);
  EXPECT_NE(degenerate.status().message().find("degenerate"), std::string::npos)
      << degenerate.status();
}

TEST(QuantPerChannel, ErrorWithinHalfScale) {
  std::mt19937 rng(11);
  for (int cols : {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129}) {
    SCOPED_TRACE(cols);
    const int rows = 9;
    std::vector<float> w(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r) {
      // Rows of very different magnitudes: per-channel scales must follow each one.
      std::normal_distribution<float> dist(0.0f, std::pow(10.0f, static_cast<float>(r - 4)));
      for (int c = 0; c < cols; ++c) w[static_cast<size_t>(r) * cols + c] = dist(rng);
    }
    auto q = QuantizePerChannelSymmetricS8(w, rows, cols);
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_EQ(q->data.size(), w.size());
    ASSERT_EQ(q->scales.size(), static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      const float scale = q->scales[static_cast<size_t>(r)];
      float max_abs = 0.0f;
      int32_t sum = 0;
      int max_q = 0;
      for (int c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r) * cols + c;
        max_abs = std::max(max_abs, std::fabs(w[i]));
        ASSERT_GE(q->data[i], -127);
        ASSERT_LE(q->data[i], 127);
        max_q = std::max(max_q, std::abs(static_cast<int>(q->data[i])));
        sum += q->data[i];
        const float err = std::fabs(w[i] - DequantizeAt(*q, r, c));
        EXPECT_LE(err, scale * 0.5f * (1.0f + 1e-5f)) << "row " << r << " col " << c;
      }
      EXPECT_FLOAT_EQ(scale, max_abs / 127.0f);
      EXPECT_EQ(max_q, 127);  // The largest weight uses the full grid.
      EXPECT_EQ(q->row_sums[static_cast<size_t>(r)], sum);
    }
  }
}

TEST(QuantPerChannel, ZeroRowQuantizesExactly) {
  const std::vector<float> w = {0, 0, 0, 1, -2, 0.5f};
  auto q = QuantizePerChannelSymmetricS8(w, 2, 3);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->scales[0], 1.0f);
  EXPECT_EQ(q->data[0], 0);
  EXPECT_EQ(q->row_sums[0], 0);
  EXPECT_EQ(q->data[4], -127);
  EXPECT_EQ(q->bytes(), 6u + 2 * 4u + 2 * 4u);
}

TEST(QuantPerChannel, RejectsBadInput) {
  const std::vector<float> w = {1, 2, 3, 4, 5};
  EXPECT_FALSE(QuantizePerChannelSymmetricS8(w, 2, 3).ok());
  std::vector<float> nan_w = {1, 2, std::numeric_limits<float>::quiet_NaN(), 4};
  auto q = QuantizePerChannelSymmetricS8(nan_w, 2, 2);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("[1, 0]"), std::string::npos) << q.status();
}

}  // namespace
}  // namespace qsig::quant
