// LoadAnyModel, RunPredict and RunQuantize on a small generated `qsig features` CSV.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/model_json.h"
#include "test_util.h"

namespace qsig::models::io {
using namespace ::qsig::commands;  // NOLINT: the commands under test.
namespace {

using ::testing::HasSubstr;

constexpr int kRows = 3000;
constexpr int kLocates = 3;
const std::vector<std::string> kNames = {"ret_1", "ret_5", "spread", "imb_1", "flow"};

struct Csv {
  std::string path;
  std::vector<uint32_t> locate;
  std::vector<std::vector<float>> x;  // Per row, 5 features.
};

// Rows cycle through 3 locates; features are AR(1) per locate; the label is the FP32 model's
// output on the row's window plus noise (so the IC is clearly positive) or noise alone.
Csv MakeCsv(const std::string& dir, const Model& truth) {
  Csv c;
  c.path = dir + "/features.csv";
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::ofstream out(c.path);
  out.precision(9);  // Exact float32 round trip, so outputs can be compared bit for bit.
  out << "locate,symbol,msg_seq,exchange_ts_ns,mid";
  for (const auto& n : kNames) out << "," << n;
  out << ",label\n";
  std::vector<std::vector<float>> state(kLocates, std::vector<float>(5, 0.0f));
  std::vector<std::vector<int>> history(kLocates);
  std::vector<float> ws(truth.workspace_floats());
  for (int r = 0; r < kRows; ++r) {
    const uint32_t loc = static_cast<uint32_t>(r % kLocates + 1);
    auto& s = state[loc - 1];
    for (float& v : s) v = 0.8f * v + 0.6f * nd(rng);
    c.locate.push_back(loc);
    c.x.push_back(s);
    auto& h = history[loc - 1];
    h.push_back(r);
    float label = 0.5f * nd(rng);
    const int w = truth.window();
    if (static_cast<int>(h.size()) >= w) {
      std::vector<float> win;
      for (int k = static_cast<int>(h.size()) - w; k < static_cast<int>(h.size()); ++k) {
        win.insert(win.end(), c.x[h[k]].begin(), c.x[h[k]].end());
      }
      label += 10.0f * truth.Run(win, ws.data());
    }
    out << loc << ",SYM" << loc << "," << r + 1 << "," << 34200000000000LL + 1000LL * r
        << ",100.0000";
    for (float v : s) out << "," << v;
    out << "," << label << "\n";
  }
  return c;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("commands");
    onnx_ = testing::DataPath("lstm2_head.opset17.onnx");
    import_.feature_names = kNames;
    auto spec = ImportOnnx(onnx_, import_);
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec_ = std::make_shared<const ModelSpec>(*spec);
    fp32_ = MakeFp32Model(spec_);
    csv_ = MakeCsv(dir_, *fp32_);
  }

  // FP32 output for row r computed directly (window = the locate's last `window` rows).
  float Direct(size_t r) {
    std::vector<int> rows;
    for (int k = static_cast<int>(r); k >= 0 && static_cast<int>(rows.size()) < spec_->window;
         --k) {
      if (csv_.locate[k] == csv_.locate[r]) rows.insert(rows.begin(), k);
    }
    std::vector<float> win;
    for (int k : rows) win.insert(win.end(), csv_.x[k].begin(), csv_.x[k].end());
    std::vector<float> ws(fp32_->workspace_floats());
    return fp32_->Run(win, ws.data());
  }

  std::string dir_, onnx_;
  ImportOptions import_;
  std::shared_ptr<const ModelSpec> spec_;
  std::unique_ptr<Model> fp32_;
  Csv csv_;
};

TEST_F(CommandsTest, LoadAnyModelDispatchesOnContentAndExtension) {
  auto onnx = LoadAnyModel(onnx_);
  ASSERT_TRUE(onnx.ok()) << onnx.status();
  EXPECT_EQ(onnx->format, "onnx");
  auto json = LoadAnyModel(std::string(QSIG_SOURCE_DIR) + "/models/demo_mlp.json");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->format, "json");
  if (TorchScriptSupported()) {
    ImportOptions w;
    w.window = 6;
    auto pt = LoadAnyModel(testing::DataPath("lstm2_head.pt"), w);
    ASSERT_TRUE(pt.ok()) << pt.status();
    EXPECT_EQ(pt->format, "torchscript");
  }
  // An artifact under a misleading name is still recognised by its magic.
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/model.bin";
  q.import = import_;
  std::ostringstream log;
  q.log = &log;
  ASSERT_TRUE(RunQuantize(q).ok());
  auto art = LoadAnyModel(dir_ + "/model.bin");
  ASSERT_TRUE(art.ok()) << art.status();
  EXPECT_EQ(art->format, "qsig");
  ASSERT_TRUE(art->artifact.has_value());
  EXPECT_EQ(art->spec->feature_names, kNames);

  const std::string junk = dir_ + "/junk.dat";
  std::ofstream(junk) << "hello";
  auto bad = LoadAnyModel(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown model format"));
}

TEST_F(CommandsTest, PredictFp32WritesOneLinePerRowMatchingTheModel) {
  PredictCommandOptions p;
  p.model_path = onnx_;
  p.input_csv = csv_.path;
  p.output_csv = dir_ + "/out.csv";
  p.import = import_;
  std::ostringstream log;
  p.log = &log;
  auto s = RunPredict(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->rows, static_cast<size_t>(kRows));
  EXPECT_EQ(s->outputs, static_cast<size_t>(kRows - kLocates * (spec_->window - 1)));
  EXPECT_EQ(s->precision, "fp32");
  EXPECT_THAT(log.str(), HasSubstr("predict: lstm2_head.opset17 (onnx, fp32, window 6)"));
  const std::vector<std::string> lines = ReadLines(p.output_csv);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kRows + 1));
  EXPECT_EQ(lines[0], "locate,msg_seq,exchange_ts_ns,output");
  EXPECT_EQ(lines[1], "1,1,34200000000000,");  // First row of locate 1: no full window.
  for (size_t r : {15u, 16u, 17u, 1234u, 2999u}) {
    SCOPED_TRACE(r);
    const std::vector<std::string> f = absl::StrSplit(lines[r + 1], ',');
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(std::stof(f[3]), Direct(r));
  }
}

TEST_F(CommandsTest, PredictInt8CalibratesOrUsesTheArtifact) {
  PredictCommandOptions p;
  p.model_path = onnx_;
  p.input_csv = csv_.path;
  p.output_csv = dir_ + "/int8.csv";
  p.precision = "int8";
  p.calib_rows = 1000;
  p.import = import_;
  std::ostringstream log;
  p.log = &log;
  auto s = RunPredict(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->precision, "int8");
  const std::vector<std::string> lines = ReadLines(p.output_csv);
  double se = 0, ss = 0;
  for (size_t r = 100; r < static_cast<size_t>(kRows); r += 7) {
    const std::vector<std::string> f = absl::StrSplit(lines[r + 1], ',');
    const double y = Direct(r), q = std::stod(f[3]);
    se += (q - y) * (q - y);
    ss += y * y;
  }
  EXPECT_LT(std::sqrt(se / ss), 0.05);

  // From an artifact: the rebuilt, verified INT8 runtime.
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/m.qsig";
  q.import = import_;
  q.log = &log;
  ASSERT_TRUE(RunQuantize(q).ok());
  p.model_path = q.output_path;
  p.output_csv = dir_ + "/art.csv";
  s = RunPredict(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->format, "qsig");
  auto art = ReadArtifact(q.output_path);
  ASSERT_TRUE(art.ok());
  auto m = BuildInt8Model(*art);
  ASSERT_TRUE(m.ok());
  const std::vector<std::string> out = ReadLines(p.output_csv);
  std::vector<float> ws((*m)->workspace_floats());
  // Row 2999 (locate 3): its window is rows 2984, 2987, ..., 2999.
  std::vector<float> win;
  for (int k = 2999 - 3 * (spec_->window - 1); k <= 2999; k += 3) {
    win.insert(win.end(), csv_.x[k].begin(), csv_.x[k].end());
  }
  const std::vector<std::string> f = absl::StrSplit(out.back(), ',');
  EXPECT_EQ(std::stof(f[3]), (*m)->Run(win, ws.data()));
}

TEST_F(CommandsTest, QuantizeWritesArtifactReportAndTable) {
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/q.qsig";
  q.method = "entropy";
  q.import = import_;
  std::ostringstream log;
  q.log = &log;
  auto rep = RunQuantize(q);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->method, "entropy");
  EXPECT_LT(rep->int8_weight_bytes, rep->fp32_weight_bytes);
  EXPECT_GT(rep->sign_agreement, 0.9);
  EXPECT_LT(rep->rmse_over_rms, 0.1);
  EXPECT_GT(rep->ic_spearman_fp32, 0.3);  // The label was built from the FP32 output.
  EXPECT_GT(rep->ic_spearman_int8, 0.3);
  EXPECT_EQ(rep->eval_windows, static_cast<size_t>(kRows / 5));  // Held-out rows all complete.
  EXPECT_EQ(rep->labelled_eval_windows, rep->eval_windows);
  ASSERT_EQ(rep->layers.size(), 3u);  // lstm[0], lstm[1], layers[0].
  for (const LayerReport& l : rep->layers) {
    EXPECT_GT(l.weight_sqnr_db, 20.0) << l.layer;
  }
  std::ifstream in(q.output_path + ".report.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["calibration"]["method"], "entropy");
  EXPECT_EQ(j["artifact"]["sha256"], rep->artifact_sha256);
  EXPECT_EQ(j["layers"].size(), 3u);
  std::cout << log.str();  // The table, for whoever reads the test log.
  EXPECT_THAT(log.str(), HasSubstr("IC vs label (Spearman rank)"));
  EXPECT_THAT(log.str(), HasSubstr("weight bytes"));
  auto art = ReadArtifact(q.output_path);
  ASSERT_TRUE(art.ok()) << art.status();
  EXPECT_EQ(art->calibration.windows_seen, static_cast<size_t>(kRows * 4 / 5 - 3 * 5));
  EXPECT_EQ(art->calibration.source, csv_.path);
}

TEST_F(CommandsTest, MixedAutoMeetsTheBudgetAndTheArtifactKeepsThePlan) {
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/mixed.qsig";
  q.import = import_;
  q.mixed = "auto";
  q.budget = 0.005;  // Tighter than the all-INT8 plan (0.6%) reaches on this model.
  q.method = "minmax";
  std::ostringstream log;
  q.log = &log;
  auto rep = RunQuantize(q);
  ASSERT_TRUE(rep.ok()) << rep.status();
  ASSERT_GE(rep->plan_search.size(), 2u) << log.str();
  EXPECT_EQ(rep->plan_search.front().change, "start");
  EXPECT_GT(rep->plan_search.front().rmse_over_rms, q.budget);
  EXPECT_TRUE(rep->budget_met) << log.str();
  // Every kept step lowered the error; the chosen plan is the last kept one and meets the budget.
  double best = rep->plan_search.front().rmse_over_rms;
  for (const PlanStep& st : rep->plan_search) best = std::min(best, st.rmse_over_rms);
  EXPECT_LE(best, q.budget);
  const std::vector<std::string> names = QuantizableLayers(*spec_);
  ASSERT_EQ(rep->plan.size(), names.size());
  EXPECT_EQ(rep->int8_precision, "mixed") << log.str();
  EXPECT_LT(rep->plan_search.back().relative_cost, 4.0) << log.str();  // Not all FP32.
  EXPECT_THAT(log.str(), HasSubstr("mixed precision (--mixed auto"));
  EXPECT_THAT(rep->json, HasSubstr("\"budget_met\": true"));
  // The artifact stores the plan, and the server's rebuild (BuildInt8Model) reproduces it.
  auto art = ReadArtifact(q.output_path);
  ASSERT_TRUE(art.ok()) << art.status();
  ASSERT_EQ(art->calibration.options.layers.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const char* want = rep->plan[i].second == "int8"       ? "int8"
                       : rep->plan[i].second == "int8_s16" ? "int8_s16"
                                                           : "fp32";
    const Precision p = art->calibration.options.layers[i];
    EXPECT_EQ(p == Precision::kInt8      ? "int8"
              : p == Precision::kInt8S16 ? "int8_s16"
                                         : "fp32",
              std::string(want));
  }
  EXPECT_TRUE(BuildInt8Model(*art).ok());

  q.mixed = "sometimes";
  auto bad = RunQuantize(q);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--mixed"));
  q.mixed = "auto";
  q.budget = 0;
  bad = RunQuantize(q);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--budget"));
}

TEST_F(CommandsTest, InspectShowsProvenanceAndVerifiesTheArtifact) {
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/inspect.qsig";
  q.import = import_;
  std::ostringstream qlog;
  q.log = &qlog;
  ASSERT_TRUE(RunQuantize(q).ok());
  InspectOptions i;
  i.model_path = q.output_path;
  std::ostringstream log;
  i.log = &log;
  auto r = RunInspect(i);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->artifact);
  EXPECT_TRUE(r->verified) << r->verify_message;
  EXPECT_THAT(log.str(), HasSubstr("LSTM(")) << log.str();
  EXPECT_THAT(log.str(), HasSubstr("verified    rebuilds the validated INT8 runtime"));
  EXPECT_THAT(log.str(), HasSubstr("from        " + onnx_));
  const nlohmann::json j = nlohmann::json::parse(r->json);
  EXPECT_EQ(j["calibration"]["method"], "percentile");
  EXPECT_EQ(j["model"]["window"], spec_->window);
  EXPECT_TRUE(j["verification"]["verified"].get<bool>());
  // The INT8 runtime's per-shape backend choice (qsig or oneDNN), as text and JSON.
  EXPECT_THAT(log.str(), HasSubstr("kernels (per GEMM shape: qsig or oneDNN)")) << log.str();
  EXPECT_THAT(log.str(), HasSubstr("per-shape chooser")) << log.str();
  EXPECT_THAT(log.str(), HasSubstr("n=1 GEMVs")) << log.str();
  ASSERT_TRUE(j.contains("kernels"));
  EXPECT_EQ(j["kernels"]["isa"], KernelIsa());
  ASSERT_TRUE(j["kernels"]["shapes"].is_array());
  EXPECT_FALSE(j["kernels"]["shapes"].empty());  // StepBatch's shapes at least
  for (const auto& c : j["kernels"]["shapes"]) {
    const std::string b = c["backend"].get<std::string>();
    EXPECT_TRUE(b == "qsig" || b == "onednn") << c.dump();
    EXPECT_THAT(log.str(), HasSubstr(c["op"].get<std::string>()));
  }
  // A plain model: no artifact section.
  i.model_path = onnx_;
  i.import = import_;
  i.json = true;
  auto plain = RunInspect(i);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->artifact);
  EXPECT_FALSE(nlohmann::json::parse(plain->json).contains("artifact"));
  EXPECT_TRUE(nlohmann::json::parse(plain->json)["kernels"].contains("notes"));
  i.model_path = dir_ + "/missing.qsig";
  EXPECT_FALSE(RunInspect(i).ok());
  // A bad QSIG_ONEDNN is an error, as a bad QSIG_MAX_ISA is (no runtime can be built).
  i.model_path = q.output_path;
  ASSERT_EQ(setenv("QSIG_ONEDNN", "sometimes", 1), 0);
  auto bad = RunInspect(i);
  ASSERT_EQ(unsetenv("QSIG_ONEDNN"), 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("QSIG_ONEDNN"));
}

TEST_F(CommandsTest, QuantizeUsesOrIgnoresTheRangesTheModelCarries) {
  ModelSpec with = *spec_;
  with.input_ranges.assign(QuantizableLayers(with).size(), SourceRange{});
  with.input_ranges[1] = SourceRange{true, -0.9f, 0.9f};  // lstm[1]'s input x_t
  const std::string model = dir_ + "/ranged.json";
  ASSERT_TRUE(WriteModelJson(with, model).ok());
  QuantizeCommandOptions q;
  q.model_path = model;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/ranged.qsig";
  std::ostringstream log;
  q.log = &log;
  auto used = RunQuantize(q);
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(used->source_ranges_used, 1u);
  EXPECT_THAT(log.str(), HasSubstr("1 layer input(s) quantized on the ranges the model file"));
  q.source_ranges = false;
  auto ignored = RunQuantize(q);
  ASSERT_TRUE(ignored.ok()) << ignored.status();
  EXPECT_EQ(ignored->source_ranges_used, 0u);
  auto art = ReadArtifact(q.output_path);
  ASSERT_TRUE(art.ok());
  EXPECT_FALSE(art->calibration.options.use_source_ranges);
}

TEST_F(CommandsTest, RefusesBadMethodAndMissingFeatures) {
  QuantizeCommandOptions q;
  q.model_path = onnx_;
  q.calib_csv = csv_.path;
  q.output_path = dir_ + "/x.qsig";
  q.method = "magic";
  q.import = import_;
  auto bad = RunQuantize(q);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("minmax"));
  q.method = "minmax";
  q.import.feature_names = {"a", "b", "c", "d", "e"};
  bad = RunQuantize(q);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("lacks the model's features a, b, c, d, e"));
}

}  // namespace
}  // namespace qsig::models::io

namespace qsig::models::io {
using namespace ::qsig::commands;  // NOLINT: the commands under test.
namespace {

// Opt-in: the committed demo LSTM on a real `qsig features` CSV (QSIG_DEMO_FEATURES_CSV=path).
TEST(CommandsDemo, DemoLstmOnRealFeatures) {
  const char* csv = std::getenv("QSIG_DEMO_FEATURES_CSV");
  if (csv == nullptr) GTEST_SKIP() << "set QSIG_DEMO_FEATURES_CSV to a `qsig features` CSV";
  const std::string dir = testing::TempDir("demo");
  PredictCommandOptions p;
  p.model_path = std::string(QSIG_SOURCE_DIR) + "/models/demo_lstm.json";
  p.input_csv = csv;
  p.output_csv = dir + "/demo_lstm.fp32.csv";
  ASSERT_TRUE(RunPredict(p).ok());
  QuantizeCommandOptions q;
  q.model_path = p.model_path;
  q.calib_csv = csv;
  q.output_path = dir + "/demo_lstm.qsig";
  q.method = "percentile";
  auto rep = RunQuantize(q);
  ASSERT_TRUE(rep.ok()) << rep.status();
}

}  // namespace
}  // namespace qsig::models::io
