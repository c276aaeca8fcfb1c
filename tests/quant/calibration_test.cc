#include "qsig/quant/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace qsig::quant {
namespace {

CalibrationOptions Opts(CalibrationMethod m, bool symmetric = false) {
  CalibrationOptions o;
  o.method = m;
  o.symmetric = symmetric;
  return o;
}

// n evenly spaced midpoints of [lo, hi]: an exact uniform distribution.
std::vector<float> Uniform(float lo, float hi, int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[i] = lo + (hi - lo) * (static_cast<float>(i) + 0.5f) / n;
  return v;
}

// N(0, 1) samples with a fraction `outliers` of them at +50 and -50 (half each).
std::vector<float> GaussianWithOutliers(int n, double outliers, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  const int k = static_cast<int>(std::lround(n * outliers));
  for (int i = 0; i < k; ++i)
    v[static_cast<size_t>(i) * (n / std::max(k, 1))] = i % 2 ? 50.f : -50.f;
  return v;
}

std::pair<float, float> RangeOf(const TensorCalibrator& c) {
  auto r = c.Range();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::pair<float, float>{0.0f, 0.0f};
}

TEST(QuantCalibration, MethodNamesRoundTrip) {
  for (auto m :
       {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverageMinMax,
        CalibrationMethod::kPercentile, CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    auto parsed = ParseCalibrationMethod(CalibrationMethodName(m));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, m);
  }
  auto bad = ParseCalibrationMethod("kl");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("entropy"), std::string_view::npos) << bad.status();
}

TEST(QuantCalibration, InvalidOptionsAreReported) {
  CalibrationOptions o = Opts(CalibrationMethod::kPercentile);
  o.percentile = 40.0;
  TensorCalibrator c(o);
  c.Observe(Uniform(-1, 1, 100));
  auto r = c.Range();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("percentile"), std::string_view::npos) << r.status();
  o.percentile = 99.0;
  o.quant_levels = 4096;
  EXPECT_FALSE(ValidateCalibrationOptions(o).ok());
}

TEST(QuantCalibration, NothingFiniteObservedFails) {
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kEntropy}) {
    TensorCalibrator c(Opts(m));
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    c.Observe(std::vector<float>{nan, inf, -inf});
    EXPECT_EQ(c.count(), 0u);
    EXPECT_EQ(c.non_finite(), 3u);
    auto r = c.Range();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("no finite"), std::string_view::npos) << r.status();
  }
}

TEST(QuantCalibration, NonFiniteValuesAreIgnoredAndCounted) {
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverageMinMax,
                 CalibrationMethod::kPercentile}) {
    SCOPED_TRACE(CalibrationMethodName(m));
    CalibrationOptions o = Opts(m);
    o.percentile = 100.0;
    TensorCalibrator c(o);
    c.Observe(std::vector<float>{-1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f,
                                 std::numeric_limits<float>::infinity()});
    EXPECT_EQ(c.count(), 2u);
    EXPECT_EQ(c.non_finite(), 2u);
    auto [lo, hi] = RangeOf(c);
    EXPECT_FLOAT_EQ(lo, -1.0f);
    EXPECT_FLOAT_EQ(hi, 2.0f);
  }
}

TEST(QuantCalibration, MinMaxIsExactAndContainsZero) {
  TensorCalibrator c(Opts(CalibrationMethod::kMinMax));
  c.Observe(Uniform(-2.0f, 3.0f, 1000));
  const std::vector<float> u = Uniform(-2.0f, 3.0f, 1000);
  EXPECT_EQ(RangeOf(c), (std::pair<float, float>{u.front(), u.back()}));

  TensorCalibrator sym(Opts(CalibrationMethod::kMinMax, /*symmetric=*/true));
  sym.Observe(u);
  EXPECT_EQ(RangeOf(sym), (std::pair<float, float>{-u.back(), u.back()}));

  TensorCalibrator positive(Opts(CalibrationMethod::kMinMax));
  positive.Observe(std::vector<float>{1.0f, 5.0f, 2.5f});
  EXPECT_EQ(RangeOf(positive), (std::pair<float, float>{0.0f, 5.0f}));

  auto p = positive.Params(kU8Min, kU8Max);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FLOAT_EQ(p->scale, 5.0f / 255.0f);
  EXPECT_EQ(p->zero_point, 0);
}

TEST(QuantCalibration, MovingAverageMatchesPyTorchFormulaByHand) {
  CalibrationOptions o = Opts(CalibrationMethod::kMovingAverageMinMax);
  o.averaging_constant = 0.5;
  TensorCalibrator c(o);
  c.Observe(std::vector<float>{1.0f, 2.0f});   // first batch: min 1, max 2
  c.Observe(std::vector<float>{-1.0f, 4.0f});  // min 1 + .5(-1 - 1) = 0, max 2 + .5(4 - 2) = 3
  c.Observe(std::vector<float>{std::numeric_limits<float>::quiet_NaN()});  // no finite: no update
  c.Observe(std::vector<float>{3.0f, 3.0f, 3.0f});  // min 0 + .5 * 3 = 1.5, max 3 + 0 = 3
  // Internal range [1.5, 3] is widened to contain 0.
  EXPECT_EQ(RangeOf(c), (std::pair<float, float>{0.0f, 3.0f}));
  c.Observe(std::vector<float>{-5.0f, 1.0f});  // min 1.5 + .5(-5 - 1.5) = -1.75, max 3 - 1 = 2
  EXPECT_EQ(RangeOf(c), (std::pair<float, float>{-1.75f, 2.0f}));
  // The exact min/max are tracked beside the average.
  EXPECT_EQ(c.min(), -5.0f);
  EXPECT_EQ(c.max(), 4.0f);
}

TEST(QuantCalibration, MovingAverageUsesFloatArithmeticLikePyTorch) {
  CalibrationOptions o = Opts(CalibrationMethod::kMovingAverageMinMax);
  o.averaging_constant = 0.01;
  TensorCalibrator c(o);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  float mn = std::numeric_limits<float>::infinity();
  float mx = -mn;
  for (int batch = 0; batch < 50; ++batch) {
    std::vector<float> v(17);
    for (float& x : v) x = u(rng);
    float bmin = v[0], bmax = v[0];
    for (float x : v) bmin = std::min(bmin, x), bmax = std::max(bmax, x);
    if (batch == 0) {
      mn = bmin;
      mx = bmax;
    } else {
      const float k = 0.01f;
      mn = mn + k * (bmin - mn);
      mx = mx + k * (bmax - mx);
    }
    c.Observe(v);
  }
  EXPECT_EQ(RangeOf(c), (std::pair<float, float>{std::min(mn, 0.0f), std::max(mx, 0.0f)}));
}

TEST(QuantCalibration, PercentileOfUniformIsTheKnownQuantile) {
  const std::vector<float> u = Uniform(-1.0f, 1.0f, 1 << 20);
  const float bin = 2.0f / 2048;  // upper bound on one bin's width at bins = 2048
  CalibrationOptions o = Opts(CalibrationMethod::kPercentile);
  o.percentile = 99.0;
  TensorCalibrator c(o);
  c.Observe(u);
  auto [lo, hi] = RangeOf(c);
  EXPECT_NEAR(hi, 0.98f, bin);
  EXPECT_NEAR(lo, -0.98f, bin);

  o.symmetric = true;  // 99th percentile of |x| for x ~ U(-1, 1) is 0.99
  TensorCalibrator s(o);
  s.Observe(u);
  auto [slo, shi] = RangeOf(s);
  EXPECT_NEAR(shi, 0.99f, bin);
  EXPECT_EQ(slo, -shi);

  o.percentile = 100.0;  // the max, never beyond the data
  TensorCalibrator full(o);
  full.Observe(u);
  EXPECT_FLOAT_EQ(RangeOf(full).second, u.back());
}

TEST(QuantCalibration, PercentileSkewedPositiveData) {
  // U(0, 10): the asymmetric range keeps 0 and clips the top 1%.
  CalibrationOptions o = Opts(CalibrationMethod::kPercentile);
  o.percentile = 99.0;
  TensorCalibrator c(o);
  c.Observe(Uniform(0.0f, 10.0f, 1 << 18));
  auto [lo, hi] = RangeOf(c);
  EXPECT_EQ(lo, 0.0f);
  EXPECT_NEAR(hi, 9.9f, 10.0f / 2048);
}

TEST(QuantCalibration, EntropyClipsOutliersOfGaussian) {
  const std::vector<float> g = GaussianWithOutliers(1 << 20, 0.001, 1);
  for (bool sym : {true, false}) {
    SCOPED_TRACE(sym ? "symmetric" : "asymmetric");
    TensorCalibrator c(Opts(CalibrationMethod::kEntropy, sym));
    c.Observe(g);
    auto [lo, hi] = RangeOf(c);
    std::printf("entropy %s: [%.4f, %.4f]\n", sym ? "symmetric" : "asymmetric", lo, hi);
    EXPECT_GE(hi, 2.5f);
    EXPECT_LE(hi, 8.0f);
    EXPECT_LE(lo, -2.5f);
    EXPECT_GE(lo, -8.0f);
  }
}

TEST(QuantCalibration, EntropyOfPlainGaussianIsAFewSigma) {
  const std::vector<float> g = GaussianWithOutliers(1 << 20, 0.0, 2);
  TensorCalibrator c(Opts(CalibrationMethod::kEntropy, true));
  c.Observe(g);
  auto [lo, hi] = RangeOf(c);
  std::printf("entropy N(0,1): [%.4f, %.4f]\n", lo, hi);
  EXPECT_GE(hi, 2.5f);
  EXPECT_LT(hi, c.max());
}

TEST(QuantCalibration, PercentileClipsOutliersOfGaussian) {
  // 0.1% outliers: the 99.8th percentile of |x| is the Gaussian's two-sided quantile
  // P(|Z| > t) = 0.001 / 0.999, t = 3.29.
  CalibrationOptions o = Opts(CalibrationMethod::kPercentile, true);
  o.percentile = 99.8;
  TensorCalibrator c(o);
  c.Observe(GaussianWithOutliers(1 << 20, 0.001, 3));
  auto [lo, hi] = RangeOf(c);
  std::printf("percentile 99.8 symmetric: [%.4f, %.4f]\n", lo, hi);
  EXPECT_NEAR(hi, 3.29f, 0.05f);
}

TEST(QuantCalibration, MseOfPlainGaussianIsTheAnalyticOptimum) {
  // For N(0, 1) on 128 cells over [0, T] per side, d/dT [ (T/128)^2 / 12 + 2 E(|x| - T)+^2 ] = 0
  // at T = 3.95.
  for (bool sym : {true, false}) {
    SCOPED_TRACE(sym ? "symmetric" : "asymmetric");
    TensorCalibrator c(Opts(CalibrationMethod::kMse, sym));
    c.Observe(GaussianWithOutliers(1 << 20, 0.0, 4));
    auto [lo, hi] = RangeOf(c);
    std::printf("mse %s N(0,1): [%.4f, %.4f]\n", sym ? "symmetric" : "asymmetric", lo, hi);
    EXPECT_NEAR(hi, 3.95f, 0.4f);
    EXPECT_NEAR(lo, -3.95f, 0.4f);
  }
}

TEST(QuantCalibration, MseClipsRareOutliersWhereL2SaysSo) {
  // 2 outliers per million at +-50: d/dT [ (T/128)^2 / 12 + 2e-6 (50 - T)^2 ] = 0 at T = 14.1;
  // well below the outliers, above the Gaussian's tail.
  TensorCalibrator c(Opts(CalibrationMethod::kMse, true));
  c.Observe(GaussianWithOutliers(1 << 20, 2e-6, 4));
  auto [lo, hi] = RangeOf(c);
  std::printf("mse symmetric (2e-6 outliers): [%.4f, %.4f]\n", lo, hi);
  EXPECT_NEAR(hi, 14.1f, 2.0f);
}

TEST(QuantCalibration, MseKeepsOutliersWorthMoreThanRoundingNoise) {
  // 0.1% at +-50: clipping costs 0.001 * 45^2 = 2 per value, keeping them 0.013: keep.
  TensorCalibrator c(Opts(CalibrationMethod::kMse, true));
  c.Observe(GaussianWithOutliers(1 << 20, 0.001, 5));
  auto [lo, hi] = RangeOf(c);
  std::printf("mse symmetric (1e-3 outliers): [%.4f, %.4f]\n", lo, hi);
  EXPECT_GE(hi, 45.0f);
}

TEST(QuantCalibration, MergeEqualsObservingTheConcatenation) {
  std::vector<float> all = GaussianWithOutliers(1 << 18, 0.0005, 6);
  // The second half reaches further, so the first calibrator's histogram must grow on merge.
  for (size_t i = all.size() / 2; i < all.size(); i += 997) all[i] *= 3.0f;
  const std::span<const float> a(all.data(), all.size() / 2);
  const std::span<const float> b(all.data() + all.size() / 2, all.size() - all.size() / 2);
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile,
                 CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    for (bool sym : {false, true}) {
      SCOPED_TRACE(std::string(CalibrationMethodName(m)) + (sym ? " symmetric" : ""));
      CalibrationOptions o = Opts(m, sym);
      o.percentile = 99.9;
      TensorCalibrator whole(o), ca(o), cb(o), ba(o);
      whole.Observe(all);
      ca.Observe(a);
      cb.Observe(b);
      ba.Observe(b);
      ca.Merge(cb);                   // a then b
      ba.Merge(TensorCalibrator(o));  // merging an empty calibrator changes nothing
      TensorCalibrator empty(o);
      empty.Merge(ca);  // into an empty one: a copy
      EXPECT_EQ(ca.count(), whole.count());
      const auto w = RangeOf(whole);
      const auto merged = RangeOf(ca);
      const auto copied = RangeOf(empty);
      EXPECT_EQ(merged, copied);
      if (m == CalibrationMethod::kMinMax) {
        EXPECT_EQ(merged, w);
      } else {
        const float span = std::max(-whole.min(), whole.max()) - (sym ? 0.0f : whole.min());
        const float bin = span / 2048;
        EXPECT_NEAR(merged.first, w.first, bin);
        EXPECT_NEAR(merged.second, w.second, bin);
      }
    }
  }
}

TEST(QuantCalibration, MergeOfDifferentOptionsIsRefused) {
  TensorCalibrator a(Opts(CalibrationMethod::kEntropy));
  TensorCalibrator b(Opts(CalibrationMethod::kPercentile));
  a.Observe(Uniform(-1, 1, 100));
  b.Observe(Uniform(-1, 1, 100));
  a.Merge(b);
  auto r = a.Range();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("merge"), std::string_view::npos) << r.status();
}

TEST(QuantCalibration, HistogramGrowsOverManyBatchesInBoundedMemory) {
  // Ranges growing over 30 orders of two; the final answer still sees all values.
  CalibrationOptions o = Opts(CalibrationMethod::kPercentile);
  o.percentile = 100.0;
  TensorCalibrator c(o);
  float scale = 1e-6f;
  for (int i = 0; i < 30; ++i, scale *= 2.0f) c.Observe(Uniform(-scale, scale, 64));
  auto [lo, hi] = RangeOf(c);
  EXPECT_FLOAT_EQ(hi, c.max());
  EXPECT_FLOAT_EQ(lo, c.min());
  EXPECT_EQ(c.count(), 30u * 64u);
}

TEST(QuantCalibration, AllZerosGivesDegenerateParams) {
  TensorCalibrator c(Opts(CalibrationMethod::kEntropy));
  c.Observe(std::vector<float>(100, 0.0f));
  EXPECT_EQ(RangeOf(c), (std::pair<float, float>{0.0f, 0.0f}));
  EXPECT_FALSE(c.Params(kU8Min, kU8Max).ok());
}

}  // namespace
}  // namespace qsig::quant
