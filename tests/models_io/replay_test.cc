// RunBacktest on a small generated `qsig features` CSV: every metric is recomputed here from the
// FP32 and INT8 runtimes' outputs with independent (brute-force) code.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
using namespace ::qsig::commands;  // NOLINT: the commands under test.
namespace {

using ::testing::HasSubstr;

constexpr int kRows = 2400;
constexpr int kLocates = 4;
constexpr size_t kCalibRows = 600;
const std::vector<std::string> kNames = {"a", "b", "c", "d", "e", "f"};

struct Row {
  uint32_t locate;
  std::vector<float> x;
  float label = 0.0f;  // NaN: empty label field.
};

// Average rank (1-based) by counting: rank_i = #{v_j < v_i} + (#{v_j == v_i} + 1) / 2.
std::vector<double> CountRanks(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    size_t less = 0, equal = 0;
    for (double w : v) {
      less += w < v[i];
      equal += w == v[i];
    }
    r[i] = static_cast<double>(less) + (static_cast<double>(equal) + 1.0) / 2.0;
  }
  return r;
}

double Corr(const std::vector<double>& a, const std::vector<double>& b) {
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  const double n = static_cast<double>(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    sa += a[i];
    sb += b[i];
    saa += a[i] * a[i];
    sbb += b[i] * b[i];
    sab += a[i] * b[i];
  }
  return (n * sab - sa * sb) / std::sqrt((n * saa - sa * sa) * (n * sbb - sb * sb));
}

double Sharpe(const std::vector<double>& p) {
  double m = 0;
  for (double x : p) m += x;
  m /= static_cast<double>(p.size());
  double v = 0;
  for (double x : p) v += (x - m) * (x - m);
  return m / std::sqrt(v / static_cast<double>(p.size()));
}

int Sgn(double x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }

class ReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("replay");
    onnx_ = testing::DataPath("mlp.opset17.onnx");
    import_.feature_names = kNames;
    auto spec = ImportOnnx(onnx_, import_);
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec_ = std::make_shared<const ModelSpec>(*spec);
    fp32_ = MakeFp32Model(spec_);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> ws(fp32_->workspace_floats());
    csv_ = dir_ + "/features.csv";
    std::ofstream out(csv_);
    out.precision(9);
    out << "locate,symbol,msg_seq,exchange_ts_ns,mid";
    for (const auto& n : kNames) out << "," << n;
    out << ",label\n";
    // The model's outputs sit around an offset with a small spread: the label follows the
    // standardized output (clearly positive IC), with exact zeros (no move) and missing labels.
    std::vector<double> y;
    for (int r = 0; r < kRows; ++r) {
      Row row;
      row.locate = static_cast<uint32_t>(r % kLocates + 1);
      for (int k = 0; k < 6; ++k) row.x.push_back(nd(rng));
      y.push_back(fp32_->Run(row.x, ws.data()));
      rows_.push_back(row);
    }
    double mean = 0, var = 0;
    for (double v : y) mean += v / kRows;
    for (double v : y) var += (v - mean) * (v - mean) / kRows;
    for (int r = 0; r < kRows; ++r) {
      Row& row = rows_[static_cast<size_t>(r)];
      row.label = static_cast<float>((y[static_cast<size_t>(r)] - mean) / std::sqrt(var)) + nd(rng);
      if (r % 17 == 0) row.label = 0.0f;
      if (r % 29 == 0) row.label = std::nanf("");
      out << row.locate << ",S" << row.locate << "," << r + 1 << "," << 1000 * r << ",10.0";
      for (float v : row.x) out << "," << v;
      out << ",";
      if (!std::isnan(row.label)) out << row.label;
      out << "\n";
    }
  }

  std::string dir_, onnx_, csv_;
  ImportOptions import_;
  std::shared_ptr<const ModelSpec> spec_;
  std::unique_ptr<Model> fp32_;
  std::vector<Row> rows_;
};

TEST_F(ReplayTest, MetricsMatchAnIndependentComputation) {
  BacktestOptions o;
  o.model_path = onnx_;
  o.input_csv = csv_;
  o.report_json = dir_ + "/replay.json";
  o.calib_rows = kCalibRows;
  o.horizon_label = 5;
  o.import = import_;
  std::ostringstream log;
  o.log = &log;
  auto rep = RunBacktest(o);
  ASSERT_TRUE(rep.ok()) << rep.status();

  // The same INT8 runtime, calibrated here on the same rows (window 1: one row per window).
  std::vector<float> calib;
  for (size_t r = 0; r < kCalibRows; ++r) {
    calib.insert(calib.end(), rows_[r].x.begin(), rows_[r].x.end());
  }
  auto int8 = CalibrateInt8Model(spec_, calib, o.int8);
  ASSERT_TRUE(int8.ok()) << int8.status();
  std::vector<float> ws(std::max(fp32_->workspace_floats(), (*int8)->workspace_floats()));
  double se = 0, ss = 0, max_err = 0;
  size_t agree = 0, n = 0;
  std::vector<double> lab, yf, yq;
  std::vector<uint32_t> loc;
  for (size_t r = kCalibRows; r < rows_.size(); ++r) {
    const double y = fp32_->Run(rows_[r].x, ws.data());
    const double q = (*int8)->Run(rows_[r].x, ws.data());
    se += (q - y) * (q - y);
    ss += y * y;
    max_err = std::max(max_err, std::fabs(q - y));
    agree += (q > 0) == (y > 0);
    ++n;
    if (!std::isnan(rows_[r].label)) {
      lab.push_back(rows_[r].label);
      yf.push_back(y);
      yq.push_back(q);
      loc.push_back(rows_[r].locate);
    }
  }
  EXPECT_EQ(rep->first_scored_row, kCalibRows);
  EXPECT_EQ(rep->output_rows, n);
  EXPECT_EQ(rep->labelled_rows, lab.size());
  EXPECT_NEAR(rep->rmse, std::sqrt(se / static_cast<double>(n)), 1e-9);
  EXPECT_NEAR(rep->rmse_over_rms, std::sqrt(se / ss), 1e-9);
  EXPECT_NEAR(rep->max_abs_error, max_err, 1e-9);
  EXPECT_NEAR(rep->sign_agreement, static_cast<double>(agree) / static_cast<double>(n), 1e-12);
  EXPECT_GT(rep->rmse, 0.0);  // INT8 really ran.

  for (const bool is_int8 : {false, true}) {
    SCOPED_TRACE(is_int8 ? "int8" : "fp32");
    const std::vector<double>& y = is_int8 ? yq : yf;
    const TradingMetrics& m = is_int8 ? rep->int8 : rep->fp32;
    EXPECT_NEAR(m.ic_pearson, Corr(y, lab), 1e-9);
    EXPECT_NEAR(m.ic_spearman, Corr(CountRanks(y), CountRanks(lab)), 1e-9);
    EXPECT_GT(m.ic_spearman, 0.3);  // The label follows the model.
    size_t hits = 0, hit_rows = 0;
    std::vector<double> pnl;
    std::map<uint32_t, std::vector<double>> per;
    std::map<uint32_t, std::vector<double>> every5;
    for (size_t i = 0; i < y.size(); ++i) {
      if (Sgn(y[i]) != 0 && Sgn(lab[i]) != 0) {
        ++hit_rows;
        hits += Sgn(y[i]) == Sgn(lab[i]);
      }
      pnl.push_back(Sgn(y[i]) * lab[i]);
      per[loc[i]].push_back(pnl.back());
    }
    std::vector<double> non_overlapping;
    for (auto& [l, v] : per) {
      for (size_t k = 0; k < v.size(); k += 5) non_overlapping.push_back(v[k]);
    }
    EXPECT_EQ(m.hit_rows, hit_rows);
    EXPECT_LT(hit_rows, y.size());  // The zero labels are left out.
    EXPECT_NEAR(m.hit_rate, static_cast<double>(hits) / static_cast<double>(hit_rows), 1e-12);
    EXPECT_NEAR(m.sharpe, Sharpe(pnl), 1e-9);
    double avg = 0;
    for (auto& [l, v] : per) avg += Sharpe(v);
    EXPECT_EQ(m.instruments, static_cast<size_t>(kLocates));
    EXPECT_NEAR(m.sharpe_per_instrument, avg / kLocates, 1e-9);
    EXPECT_EQ(m.non_overlapping_rows, non_overlapping.size());
    EXPECT_NEAR(m.sharpe_non_overlapping, Sharpe(non_overlapping), 1e-9);
  }

  // The JSON file and the table carry the same figures.
  std::ifstream in(o.report_json);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_NEAR(j["fp32"]["sharpe_per_row"].get<double>(), rep->fp32.sharpe, 1e-12);
  EXPECT_NEAR(j["int8_metrics"]["hit_rate"].get<double>(), rep->int8.hit_rate, 1e-12);
  EXPECT_NEAR(j["int8_vs_fp32"]["rmse"].get<double>(), rep->rmse, 1e-12);
  EXPECT_EQ(j["input"]["labelled_rows"].get<size_t>(), rep->labelled_rows);
  EXPECT_THAT(log.str(), HasSubstr("sign strategy: Sharpe per row"));
  EXPECT_THAT(log.str(), HasSubstr("non-overlapping (every 5-th row)"));
  std::cout << log.str();
}

TEST_F(ReplayTest, RefusesWhenCalibrationLeavesNothingToScore) {
  BacktestOptions o;
  o.model_path = onnx_;
  o.input_csv = csv_;
  o.calib_rows = kRows;
  o.import = import_;
  std::ostringstream log;
  o.log = &log;
  auto rep = RunBacktest(o);
  ASSERT_FALSE(rep.ok());
  EXPECT_THAT(rep.status().message(), HasSubstr("lower --calib-rows"));
}

}  // namespace
}  // namespace qsig::models::io
