// Distribution drift (psi / ks) with thresholds calibrated by block bootstrap of the reference.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "distribution_drift.h"
#include "drift_monitor.h"
#include "gtest/gtest.h"
#include "model_history.h"

namespace qsig::server {
namespace {

constexpr int kFeatures = 3;
constexpr double kPhi = 0.7;

// A stationary AR(1) series per feature, x_t = phi x_{t-1} + sigma e_t, rows of kFeatures values
// (window length 1, the layout DriftMonitor reads). `sigma` can change over time via Next().
class Ar1 {
 public:
  explicit Ar1(uint64_t seed) : rng_(seed), x_(kFeatures, 0.0) {
    for (int i = 0; i < 200; ++i) Next(1.0, nullptr);  // Burn-in.
  }
  void Next(double sigma, std::vector<float>* out) {
    for (int f = 0; f < kFeatures; ++f) {
      x_[f] = kPhi * x_[f] + sigma * e_(rng_);
      if (out) out->push_back(static_cast<float>(x_[f]));
    }
  }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> e_;
  std::vector<double> x_;
};

// The last `rows` rows of a series.
std::vector<float> Tail(const std::vector<float>& series, size_t rows) {
  const size_t n = std::min(rows, series.size() / kFeatures);
  return std::vector<float>(series.end() - static_cast<std::ptrdiff_t>(n * kFeatures),
                            series.end());
}

config::DriftConfig Config() {
  config::DriftConfig cfg;
  cfg.window = 500;
  return cfg;  // alarm_quantile 0.999, consecutive 3, clear_quantile 0.99.
}

std::vector<float> Reference(uint64_t seed, int rows) {
  Ar1 ar(seed);
  std::vector<float> ref;
  for (int i = 0; i < rows; ++i) ar.Next(1.0, &ref);
  return ref;
}

TEST(DistributionDrift, CalibratesThresholdsFromTheReference) {
  DriftMonitor d("m", kFeatures, Config(), {"spread", "imbalance", "ret"});
  EXPECT_EQ(d.threshold(DriftKind::kPsi), 0);
  d.SetBaseline(Reference(1, 5000), 1, kFeatures);
  ASSERT_TRUE(d.has_baseline());
  // Block length from rho = 0.7: ceil(5000^(1/3) * (1.4 / 0.51)^(2/3)) = 34 (sample rho varies).
  EXPECT_GT(d.bootstrap_block(), 20);
  EXPECT_LT(d.bootstrap_block(), 50);
  for (DriftKind k : {DriftKind::kPsi, DriftKind::kKs}) {
    EXPECT_GT(d.threshold(k), 0) << DriftKindName(k);
    EXPECT_GT(d.clear_threshold(k), 0) << DriftKindName(k);
    EXPECT_LE(d.clear_threshold(k), d.threshold(k)) << DriftKindName(k);
  }
  // With autocorrelated data and 500-row windows the calibrated thresholds are far above what
  // i.i.d. theory gives (KS ~1.63 sqrt(1/500 + 1/5000) = 0.076 at 0.99).
  EXPECT_GT(d.threshold(DriftKind::kKs), 0.08);
  EXPECT_LT(d.threshold(DriftKind::kKs), 0.5);
}

// Same process, independent path: 2000 evaluations of sliding 500-row windows (every 100 rows,
// so consecutive windows overlap by 80%) raise no alarm, and single exceedances of the 0.999
// quantile stay about as rare as the quantile says.
TEST(DistributionDrift, SameProcessDoesNotAlarm) {
  for (uint64_t seed : {2, 7}) {
    DriftMonitor d("m", kFeatures, Config());
    d.SetBaseline(Reference(1, 5000), 1, kFeatures);
    Ar1 live(seed);
    std::vector<float> series;
    int above = 0, evaluated = 0;
    for (int eval = 0; eval < 2000; ++eval) {
      for (int i = 0; i < 100; ++i) live.Next(1.0, &series);
      if (series.size() > 1000 * kFeatures) {
        series.erase(series.begin(), series.end() - 600 * kFeatures);
      }
      d.Evaluate(Tail(series, 500), 1, -1);
      if (eval < 4) continue;  // Wait for a full window.
      ++evaluated;
      above += d.score(DriftKind::kPsi) > d.threshold(DriftKind::kPsi);
      above += d.score(DriftKind::kKs) > d.threshold(DriftKind::kKs);
      ASSERT_FALSE(d.alarm(DriftKind::kPsi)) << "seed " << seed << " evaluation " << eval;
      ASSERT_FALSE(d.alarm(DriftKind::kKs)) << "seed " << seed << " evaluation " << eval;
    }
    EXPECT_EQ(d.raised(DriftKind::kPsi) + d.raised(DriftKind::kKs), 0u);
    // 2 x 1996 comparisons at a 0.999 quantile: ~4 expected; overlapping windows cluster them.
    EXPECT_LT(above, 25) << "seed " << seed << ": " << evaluated << " evaluations";
  }
}

TEST(DistributionDrift, VolatilityChangeAlarmsMeanShiftDoesNotAndHysteresisClears) {
  DriftMonitor d("m", kFeatures, Config(), {"spread", "imbalance", "ret"});
  d.SetBaseline(Reference(1, 5000), 1, kFeatures);
  Ar1 live(3);
  std::vector<float> series;
  for (int eval = 0; eval < 10; ++eval) {
    for (int i = 0; i < 100; ++i) live.Next(1.0, &series);
    d.Evaluate(Tail(series, 500), 1, -1);
  }
  ASSERT_FALSE(d.alarm(DriftKind::kKs));
  // Three times the volatility, same mean: the window fills with the new regime within 5
  // evaluations, then 3 consecutive evaluations above the threshold raise the alarm.
  int raised_at = -1;
  for (int eval = 0; eval < 12; ++eval) {
    for (int i = 0; i < 100; ++i) live.Next(3.0, &series);
    d.Evaluate(Tail(series, 500), 1, -1);
    if (raised_at < 0 && d.alarm(DriftKind::kKs) && d.alarm(DriftKind::kPsi)) raised_at = eval;
    EXPECT_FALSE(d.alarm(DriftKind::kInputDrift)) << "evaluation " << eval;
  }
  ASSERT_GE(raised_at, 0);
  EXPECT_LE(raised_at, 6);
  EXPECT_GT(d.score(DriftKind::kKs), d.threshold(DriftKind::kKs));
  EXPECT_LT(d.score(DriftKind::kInputDrift), Config().input_z);
  EXPECT_EQ(d.raised(DriftKind::kKs), 1u);
  EXPECT_EQ(d.raised(DriftKind::kInputDrift), 0u);
  EXPECT_FALSE(d.worst_feature(DriftKind::kKs).empty());

  // Back to the calibration regime: the alarms clear once the window has left the volatile part,
  // and stay clear.
  int cleared_at = -1;
  for (int eval = 0; eval < 30; ++eval) {
    for (int i = 0; i < 100; ++i) live.Next(1.0, &series);
    d.Evaluate(Tail(series, 500), 1, -1);
    if (cleared_at < 0 && !d.alarm(DriftKind::kKs) && !d.alarm(DriftKind::kPsi)) cleared_at = eval;
  }
  ASSERT_GE(cleared_at, 0);
  EXPECT_LE(cleared_at, 10);
  EXPECT_FALSE(d.alarm(DriftKind::kKs));
  EXPECT_FALSE(d.alarm(DriftKind::kPsi));
  EXPECT_EQ(d.raised(DriftKind::kKs), 1u);
}

TEST(DistributionDrift, OneFeatureChangingIsNamed) {
  DriftMonitor d("m", kFeatures, Config(), {"spread", "imbalance", "ret"});
  d.SetBaseline(Reference(1, 5000), 1, kFeatures);
  Ar1 live(4);
  std::vector<float> series;
  for (int eval = 0; eval < 10; ++eval) {
    for (int i = 0; i < 100; ++i) {
      live.Next(1.0, &series);
      series.end()[-2] *= 3.0f;  // Only "imbalance" gets wider.
    }
    d.Evaluate(Tail(series, 500), 1, -1);
  }
  EXPECT_TRUE(d.alarm(DriftKind::kKs));
  EXPECT_EQ(d.worst_feature(DriftKind::kKs), "imbalance");
  EXPECT_EQ(d.worst_feature(DriftKind::kPsi), "imbalance");
}

TEST(DistributionDrift, RestoredBaselineKeepsReferenceAndThresholds) {
  DriftMonitor a("m", kFeatures, Config());
  a.SetBaseline(Reference(1, 5000), 1, kFeatures);
  const std::vector<float> three = Reference(3, 3000);
  std::vector<float> out_ref(3000);
  for (int i = 0; i < 3000; ++i) out_ref[i] = three[i * kFeatures];
  a.SetOutputBaseline(out_ref);
  StoredBaseline stored;
  ASSERT_TRUE(a.GetBaseline(&stored));
  EXPECT_EQ(stored.features.sorted.size(), static_cast<size_t>(kFeatures));
  EXPECT_EQ(stored.features.sorted[0].size(), DistributionReference::kMaxRows);
  EXPECT_EQ(stored.output.sorted.size(), 1u);

  // Through the state file's JSON and back.
  ModelState st;
  st.model = "m";
  st.next_version = 2;
  st.current_version = 1;
  st.has_baseline = true;
  st.baseline = stored;
  auto parsed = ParseModelState(SerializeModelState(st), "state.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  DriftMonitor b("m", kFeatures, Config());
  ASSERT_TRUE(b.RestoreBaseline(parsed->baseline));
  for (DriftKind k :
       {DriftKind::kPsi, DriftKind::kKs, DriftKind::kOutputPsi, DriftKind::kOutputKs}) {
    EXPECT_EQ(b.threshold(k), a.threshold(k)) << DriftKindName(k);
    EXPECT_EQ(b.clear_threshold(k), a.clear_threshold(k)) << DriftKindName(k);
    EXPECT_GT(b.threshold(k), 0) << DriftKindName(k);
  }
  EXPECT_EQ(b.bootstrap_block(), a.bootstrap_block());

  // The same live data scores the same on both.
  Ar1 live(5);
  std::vector<float> series;
  for (int i = 0; i < 500; ++i) live.Next(3.0, &series);
  std::vector<float> outputs = Tail(Reference(9, 600), 600);
  outputs.resize(600);
  for (int eval = 0; eval < 3; ++eval) {
    a.Evaluate(series, 1, -1, outputs);
    b.Evaluate(series, 1, -1, outputs);
  }
  EXPECT_TRUE(b.alarm(DriftKind::kKs));
  for (DriftKind k :
       {DriftKind::kPsi, DriftKind::kKs, DriftKind::kOutputPsi, DriftKind::kOutputKs}) {
    EXPECT_EQ(b.score(k), a.score(k)) << DriftKindName(k);
  }
  // A corrupt stored column is refused, not trusted.
  StoredBaseline bad = stored;
  bad.features.sorted[1].pop_back();
  DriftMonitor c("m", kFeatures, Config());
  ASSERT_TRUE(c.RestoreBaseline(bad));
  EXPECT_EQ(c.threshold(DriftKind::kKs), 0);
}

TEST(DistributionDrift, OutputDistributionChangeAlarmsOutputKinds) {
  DriftMonitor d("m", kFeatures, Config());
  std::vector<float> ref;
  Ar1 out(11);
  for (int i = 0; i < 3000; ++i) out.Next(1.0, &ref);
  std::vector<float> col(3000);
  for (int i = 0; i < 3000; ++i) col[i] = ref[i * kFeatures];
  d.SetOutputBaseline(col);
  std::vector<float> live;
  std::vector<float> row;
  for (int eval = 0; eval < 8; ++eval) {
    for (int i = 0; i < 100; ++i) {
      row.clear();
      out.Next(1.0, &row);
      live.push_back(row[0]);
    }
    d.Evaluate({}, 1, -1, live);
  }
  EXPECT_FALSE(d.alarm(DriftKind::kOutputKs));
  for (int eval = 0; eval < 12; ++eval) {
    for (int i = 0; i < 100; ++i) {
      row.clear();
      out.Next(1.0, &row);
      live.push_back(row[0] + 1.5f);  // The model's outputs moved.
    }
    d.Evaluate({}, 1, -1, std::vector<float>(live.end() - 500, live.end()));
  }
  EXPECT_TRUE(d.alarm(DriftKind::kOutputKs));
  EXPECT_TRUE(d.alarm(DriftKind::kOutputPsi));
  EXPECT_FALSE(d.alarm(DriftKind::kKs));  // No feature reference: the feature kinds stay off.
  EXPECT_EQ(d.worst_feature(DriftKind::kOutputKs), "");
}

TEST(DistributionDrift, TailQuantileExtrapolatesAnExponentialTail) {
  // Exponential(1) sample: the 0.999 quantile is ln(1000) = 6.91, beyond what 400 draws show.
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> e(1.0);
  double sum = 0;
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<double> v(400);
    for (double& x : v) x = e(rng);
    std::sort(v.begin(), v.end());
    sum += TailQuantile(v, 0.999);
    EXPECT_NEAR(TailQuantile(v, 0.5), std::log(2.0), 0.25);
  }
  EXPECT_NEAR(sum / 20, std::log(1000.0), 0.5);
}

}  // namespace
}  // namespace qsig::server
