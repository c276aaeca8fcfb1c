// "A researcher's own files work the first time" (issue 10), through the commands: a traced /
// scripted TorchScript model (loaded through the qsig-torch process, as the qsig binary does)
// with a plain CSV and a .npy, through quantize, predict, backtest and bench; `qsig bench --json`
// has the contract's schema and sane values.
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
using namespace ::qsig::commands;  // NOLINT: the commands under test.
namespace {

using testing::DataPath;
using ::testing::HasSubstr;

// A plain CSV as pandas writes it: an index column, the features out of order, a text column and
// a label; one instrument, rows in time order.
std::string WritePlainCsv(const std::string& dir, int features, int rows) {
  const std::string path = dir + "/plain.csv";
  std::ofstream out(path);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  out << ",note";
  for (int j = features - 1; j >= 0; --j) out << ",f" << j;
  out << ",label\n";
  for (int r = 0; r < rows; ++r) {
    out << r << ",x";
    for (int j = 0; j < features; ++j) out << "," << nd(rng);
    out << "," << nd(rng) << "\n";
  }
  return path;
}

void CheckBenchJson(const std::string& json, const std::string& model, int iterations,
                    size_t results) {
  const nlohmann::json j = nlohmann::json::parse(json);
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  EXPECT_EQ(keys, (std::set<std::string>{"model", "arch", "isa", "results"}));
  EXPECT_EQ(j["model"], model);
  EXPECT_FALSE(j["isa"].get<std::string>().empty());
  ASSERT_EQ(j["results"].size(), results);
  std::map<std::string, int64_t> macs_of_mode;
  for (const auto& r : j["results"]) {
    std::set<std::string> rk;
    for (auto it = r.begin(); it != r.end(); ++it) rk.insert(it.key());
    EXPECT_EQ(rk, (std::set<std::string>{"mode", "precision", "p50_us", "p99_us", "p999_us",
                                         "iterations", "macs", "gmacs_per_s"}));
    const double p50 = r["p50_us"], p99 = r["p99_us"], p999 = r["p999_us"];
    EXPECT_GT(p50, 0);
    EXPECT_LE(p50, p99);
    EXPECT_LE(p99, p999);
    EXPECT_EQ(r["iterations"], iterations);
    EXPECT_GT(r["macs"].get<int64_t>(), 0);
    EXPECT_GT(r["gmacs_per_s"].get<double>(), 0);
    const std::string mode = r["mode"];
    EXPECT_TRUE(r["precision"] == "int8" || r["precision"] == "fp32");
    // INT8 and FP32 do the same multiply-accumulates in the same mode.
    auto [it, fresh] = macs_of_mode.emplace(mode, r["macs"].get<int64_t>());
    if (!fresh) {
      EXPECT_EQ(it->second, r["macs"].get<int64_t>()) << mode;
    }
  }
}

TEST(BringYourOwn, BenchJsonSchemaOnReferenceModels) {
  for (const char* name : {"demo_mlp", "demo_lstm"}) {
    SCOPED_TRACE(name);
    BenchOptions o;
    o.model_path = absl::StrCat(QSIG_SOURCE_DIR, "/models/", name, ".json");
    o.iterations = 300;
    o.json = true;
    std::ostringstream log;
    o.log = &log;
    auto r = RunBench(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(log.str(), r->json + "\n");  // --json prints the object alone.
    CheckBenchJson(r->json, o.model_path, 300, 6);
    EXPECT_THAT(r->notes[0], HasSubstr("synthetic calibration"));
    if (std::string(name) == "demo_lstm") {
      const nlohmann::json j = nlohmann::json::parse(r->json);
      int64_t full = 0, window = 0, step = 0;
      for (const auto& x : j["results"]) {
        (x["mode"] == "full" ? full : x["mode"] == "window" ? window : step) = x["macs"];
      }
      EXPECT_GT(full, window);  // The whole window vs one step per layer plus the head.
      EXPECT_EQ(window, step);
      EXPECT_EQ(j["arch"], "lstm");
    }
  }
  BenchOptions bad;
  bad.model_path = absl::StrCat(QSIG_SOURCE_DIR, "/models/demo_mlp.json");
  bad.mode = "sideways";
  EXPECT_FALSE(RunBench(bad).ok());
}

TEST(BringYourOwn, TracedTorchScriptWithPlainCsvThroughEveryCommand) {
  const std::string dir = testing::TempDir("byo");
  const std::string csv = WritePlainCsv(dir, 5, 600);
  for (const char* how : {"traced", "scripted"}) {
    SCOPED_TRACE(how);
    const std::string model = DataPath(absl::StrCat("ts_lstm_bf.", how, ".pt"));
    std::ostringstream log;

    if (std::string(how) == "scripted") {
      // The scripted file through predict only (each load starts the qsig-torch process).
      PredictCommandOptions p;
      p.model_path = model;
      p.input_csv = csv;
      p.output_csv = dir + "/pred_scripted.csv";
      p.import.window = 6;
      p.log = &log;
      auto pr = RunPredict(p);
      ASSERT_TRUE(pr.ok()) << pr.status();
      EXPECT_EQ(pr->outputs, 595u);
      continue;
    }
    QuantizeCommandOptions q;
    q.model_path = model;
    q.calib_csv = csv;
    q.output_path = absl::StrCat(dir, "/m_", how, ".qsig");
    q.import.window = 6;
    q.log = &log;
    auto qr = RunQuantize(q);
    ASSERT_TRUE(qr.ok()) << qr.status();
    EXPECT_GT(qr->calib_windows_used, 0u);
    EXPECT_THAT(log.str(), HasSubstr("window: --window"));
    EXPECT_THAT(log.str(), HasSubstr("features: csv, features matched by name"));

    PredictCommandOptions p;
    p.model_path = model;
    p.input_csv = csv;
    p.output_csv = dir + "/pred.csv";
    p.import.window = 6;
    p.log = &log;
    auto pr = RunPredict(p);
    ASSERT_TRUE(pr.ok()) << pr.status();
    EXPECT_EQ(pr->rows, 600u);
    EXPECT_EQ(pr->outputs, 595u);  // Every row with 5 rows before it.

    // The .npy (one window, model order) through predict: one output.
    p.input_csv = DataPath("ts_lstm_bf.npy");
    pr = RunPredict(p);
    ASSERT_TRUE(pr.ok()) << pr.status();
    EXPECT_EQ(pr->outputs, 1u);

    BacktestOptions b;
    b.model_path = q.output_path;  // The artifact quantize wrote.
    b.input_csv = csv;
    b.log = &log;
    auto br = RunBacktest(b);
    ASSERT_TRUE(br.ok()) << br.status();
    EXPECT_EQ(br->int8_source, "artifact");
    EXPECT_GT(br->labelled_rows, 0u);

    BenchOptions bo;
    bo.model_path = model;
    bo.calib_path = csv;
    bo.import.window = 6;
    bo.iterations = 200;
    bo.json = true;
    bo.log = &log;
    auto bench = RunBench(bo);
    ASSERT_TRUE(bench.ok()) << bench.status();
    CheckBenchJson(bench->json, model, 200, 6);
    EXPECT_THAT(bench->notes[0], HasSubstr("plain.csv"));
  }
}

TEST(BringYourOwn, BadTablesNameColumnAndRowInCommands) {
  const std::string dir = testing::TempDir("byo_bad");
  {
    std::ofstream out(dir + "/bad.csv");
    out << "f0,f1,f2,f3,f4\n1,2,3,4,5\n1,2,inf,4,5\n";
  }
  PredictCommandOptions p;
  p.model_path = DataPath("ts_lstm_bf.traced.pt");
  p.input_csv = dir + "/bad.csv";
  p.output_csv = dir + "/pred.csv";
  p.import.window = 6;
  std::ostringstream log;
  p.log = &log;
  auto pr = RunPredict(p);
  ASSERT_FALSE(pr.ok());
  EXPECT_THAT(pr.status().message(), HasSubstr("row 2, column 'f2'"));
  {
    std::ofstream out(dir + "/short.csv");
    out << "f0,f1,f3,f4\n1,2,4,5\n";
  }
  p.input_csv = dir + "/short.csv";
  pr = RunPredict(p);
  ASSERT_FALSE(pr.ok());
  EXPECT_THAT(pr.status().message(), HasSubstr("missing column"));
  EXPECT_THAT(pr.status().message(), HasSubstr("f2"));
}

}  // namespace
}  // namespace qsig::models::io
