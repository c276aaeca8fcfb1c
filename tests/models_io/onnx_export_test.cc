// RunExportOnnxQdq: refusals (unit), and ONNX Runtime (npm onnxruntime-node, an independent
// runtime) running the exported QDQ model against qsig's INT8 runtime. The ORT test needs
// `node` and the package: the ctest `models_io_onnx_export_ort` (label integration) installs it
// into the build tree and runs OnnxExportOrt.* with QSIG_ORT_DIR set; without it the test skips
// with the reason.
//
// Tolerance (relative to the RMS of qsig's INT8 output; measured figures are printed):
// - the default plan (s16 model input, u8 hidden activations, FP32 head) and models without
//   normalization: RMSE <= 1e-5 and max <= 1e-4 (measured: ~1e-7, float summation order);
// - a u8 model input without normalization: RMSE <= 0.1%, max <= 0.5% (measured 0.003% /
//   0.04%: rare values within float rounding of a u8 boundary);
// - a u8 model input with normalization (not the default; quantize's --per-channel is refused):
//   RMSE <= 0.5% and max <= 8% (measured 0.25% / 5.4%): the runtime quantizes x * a + b with
//   the normalization folded into a and b, the export (x - mean) / std; the values that land on
//   the other side of a u8 rounding boundary move by one input step, a large one at u8.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/import.h"
#include "qsig/quant/isa.h"
#include "test_util.h"

namespace qsig::models::io {
using namespace ::qsig::commands;  // NOLINT: the commands under test.
namespace {

using ::testing::HasSubstr;

// n raw feature rows around the spec's normalization (mean + std * N(0, 1)).
std::vector<float> Rows(const ModelSpec& s, size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v;
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < s.input_size; ++k) {
      const float m = s.feature_mean.empty() ? 0.0f : s.feature_mean[static_cast<size_t>(k)];
      const float sd = s.feature_std.empty() ? 1.0f : s.feature_std[static_cast<size_t>(k)];
      v.push_back(m + sd * nd(rng));
    }
  }
  return v;
}

// Writes an artifact of `spec` calibrated on 2000 rows with `o`.
std::string MakeArtifactFile(const std::string& dir, const ModelSpec& spec, const Int8Options& o) {
  auto shared = std::make_shared<const ModelSpec>(spec);
  ArtifactSource src;
  src.source_path = "test";
  src.source_format = "json";
  auto a = MakeArtifact(shared, Rows(spec, 2000 * static_cast<size_t>(spec.window), 1), o, src);
  EXPECT_TRUE(a.ok()) << a.status();
  const std::string path = dir + "/" + spec.name + ".qsig";
  EXPECT_TRUE(WriteArtifact(*a, path).ok());
  return path;
}

std::string OrtDir() {
  const char* d = std::getenv("QSIG_ORT_DIR");
  return d != nullptr ? d : "";
}

TEST(OnnxExport, UnrollsAnLstmWithQdqWhereTheRuntimeQuantizes) {
  const std::string dir = testing::TempDir("export_lstm");
  ImportOptions io;
  io.feature_names = {"ret_1", "ret_5", "spread", "imb_1", "flow"};
  auto spec = ImportOnnx(testing::DataPath("lstm2_head.opset17.onnx"), io);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string art = MakeArtifactFile(dir, *spec, Int8Options{});
  ExportOptions e;
  e.artifact_path = art;
  e.output_path = dir + "/out.onnx";
  std::ostringstream log;
  e.log = &log;
  auto r = RunExportOnnxQdq(e);
  ASSERT_TRUE(r.ok()) << r.status();
  // Default plan: s16 model input (opset 21), u8 hidden states, FP32 head.
  EXPECT_EQ(r->opset, 21);
  ASSERT_EQ(r->layers.size(), 3u);
  EXPECT_THAT(r->layers[0], HasSubstr("lstm[0]: x s16, h u8 QDQ"));
  EXPECT_THAT(r->layers[1], HasSubstr("lstm[1]: x u8, h u8 QDQ"));
  EXPECT_THAT(r->layers[2], HasSubstr("layers[0]: FP32"));
  EXPECT_THAT(log.str(), HasSubstr("unrolled over " + std::to_string(spec->window) + " steps"));
  EXPECT_TRUE(std::filesystem::exists(e.output_path));
}

TEST(DescribeInt8, ReportsThePlanTheRuntimeRuns) {
  auto demo = LoadModelJson(std::string(QSIG_SOURCE_DIR) + "/models/demo_mlp.json");
  ASSERT_TRUE(demo.ok()) << demo.status();
  auto spec = std::make_shared<const ModelSpec>(*demo);
  const std::vector<float> calib = Rows(*demo, 2000, 3);
  auto d = DescribeInt8(spec, calib, Int8Options{});
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->inputs.size(), 3u);
  EXPECT_EQ(d->inputs[0].tensor, "layers[0].input");
  EXPECT_TRUE(d->inputs[0].int8 && d->inputs[0].s16);   // s16 model input
  EXPECT_TRUE(d->inputs[1].int8 && !d->inputs[1].s16);  // u8 hidden activation
  EXPECT_GT(d->inputs[1].scale[0], 0.0f);
  EXPECT_FALSE(d->inputs[2].int8);  // FP32 head
  // The accuracy guard's choice is reported too: with a budget the all-INT8 model misses,
  // DescribeInt8's plan keeps layers FP32 exactly where the calibrated runtime is "mixed".
  Int8Options tight;
  tight.fp32_head = false;
  tight.max_rmse = 1e-4;
  auto m = CalibrateInt8Model(spec, calib, tight);
  ASSERT_TRUE(m.ok());
  auto dt = DescribeInt8(spec, calib, tight);
  ASSERT_TRUE(dt.ok());
  EXPECT_EQ(std::string((*m)->precision()), "mixed");
  EXPECT_TRUE(std::any_of(dt->layers.begin(), dt->layers.end(),
                          [](Precision p) { return p == Precision::kFp32; }));
  for (size_t i = 0; i < dt->layers.size(); ++i) {
    EXPECT_EQ(dt->inputs[i].int8, dt->layers[i] != Precision::kFp32) << i;
  }
}

TEST(OnnxExport, RefusesPerFeatureInputAndMissingArtifact) {
  const std::string dir = testing::TempDir("export_pf");
  auto spec = LoadModelJson(std::string(QSIG_SOURCE_DIR) + "/models/demo_mlp.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  Int8Options o;
  o.per_feature_input = true;
  o.s16_input = false;
  ExportOptions e;
  e.artifact_path = MakeArtifactFile(dir, *spec, o);
  e.output_path = dir + "/out.onnx";
  std::ostringstream log;
  e.log = &log;
  auto r = RunExportOnnxQdq(e);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("per feature"));
  e.artifact_path = dir + "/missing.qsig";
  EXPECT_FALSE(RunExportOnnxQdq(e).ok());
}

struct OrtCase {
  std::string label;
  ModelSpec spec;
  Int8Options options;
  double max_rel_rmse = 1e-5;  // Of the RMS of qsig's INT8 output.
  double max_rel_diff = 1e-4;
};

// Runs node ort_check.js; returns ORT's outputs (empty with `why` set on failure).
std::vector<float> RunOrt(const std::string& onnx, const std::string& inputs_json,
                          std::string* why) {
  const std::string out = inputs_json + ".ort.json";
  const std::string cmd = "node '" + std::string(QSIG_SOURCE_DIR) +
                          "/tests/models_io/ort_check.js' '" + onnx + "' '" + inputs_json +
                          "' > '" + out + "' 2> '" + out + ".err'";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream err(out + ".err");
    std::stringstream ss;
    ss << err.rdbuf();
    *why = "node ort_check.js failed (" + std::to_string(rc) + "): " + ss.str();
    return {};
  }
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::cout << "  ONNX Runtime " << j["ort_version"].get<std::string>() << "\n";
  return j["data"].get<std::vector<float>>();
}

TEST(OnnxExportOrt, OnnxRuntimeMatchesQsigInt8) {
  const std::string ort = OrtDir();
  if (ort.empty() || !std::filesystem::exists(ort + "/node_modules/onnxruntime-node")) {
    GTEST_SKIP() << "onnxruntime-node not installed (QSIG_ORT_DIR='" << ort
                 << "'): run `ctest -L integration` (installs it with npm install "
                    "--ignore-scripts into the build tree)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not on PATH";
  }
  std::vector<OrtCase> cases;
  {
    auto demo = LoadModelJson(std::string(QSIG_SOURCE_DIR) + "/models/demo_mlp.json");
    ASSERT_TRUE(demo.ok()) << demo.status();
    cases.push_back({"demo_mlp, default plan (s16 input, FP32 head)", *demo, Int8Options{}});
    Int8Options all_int8;
    all_int8.fp32_head = false;
    all_int8.s16_input = false;
    all_int8.max_rmse = 0;
    cases.push_back({"demo_mlp, every layer u8/s8 (s16 head)", *demo, all_int8, 5e-3, 0.08});
    Int8Options u8;
    u8.layers = {Precision::kInt8, Precision::kInt8, Precision::kInt8};
    u8.s16_input = false;
    cases.push_back({"demo_mlp, explicit plan, every layer u8", *demo, u8, 5e-3, 0.08});
    // 7-bit weights: the export re-derives the weight grids with 63 (scale = max |w| / 63).
    Int8Options rr;
    rr.reduce_range = true;
    cases.push_back({"demo_mlp, default plan, reduce_range (7-bit weights)", *demo, rr});
    ImportOptions io;
    io.feature_names = {"a", "b", "c", "d", "e", "f"};
    auto mlp = ImportOnnx(testing::DataPath("mlp.opset17.onnx"), io);
    ASSERT_TRUE(mlp.ok()) << mlp.status();
    cases.push_back({"mlp (torch fixture, tanh), default plan", *mlp, Int8Options{}});
    Int8Options mlp_u8;
    mlp_u8.s16_input = false;
    mlp_u8.fp32_head = false;
    mlp_u8.max_rmse = 0;
    cases.push_back(
        {"mlp (torch fixture), every layer u8/s8 (s16 head)", *mlp, mlp_u8, 1e-3, 5e-3});
    // A budget the all-INT8 model misses: the guard keeps sensitive layers FP32 ("mixed"),
    // which the artifact does not record; the export finds the plan again.
    Int8Options tight;
    tight.fp32_head = false;
    tight.max_rmse = 1e-4;
    cases.push_back({"demo_mlp, mixed plan from the accuracy guard", *demo, tight});
    ImportOptions rio;
    rio.feature_names = {"ret_1", "ret_5", "spread", "imb_1", "flow"};
    auto lstm = ImportOnnx(testing::DataPath("lstm2_head.opset17.onnx"), rio);
    ASSERT_TRUE(lstm.ok()) << lstm.status();
    cases.push_back({"lstm2_head (2-layer LSTM), default plan", *lstm, Int8Options{}, 5e-3, 0.05});
    Int8Options cell;
    cell.cell_state = CellState::kS16;
    cell.max_rmse = 0;
    cases.push_back({"lstm2_head, s16 cell state", *lstm, cell, 5e-3, 0.05});
    Int8Options lstm_u8;
    lstm_u8.s16_input = false;
    lstm_u8.fp32_head = false;
    lstm_u8.max_rmse = 0;
    cases.push_back({"lstm2_head, every tensor u8 (s16 head)", *lstm, lstm_u8, 5e-3, 0.05});
    auto gru = ImportOnnx(testing::DataPath("gru_head.opset17.onnx"), ImportOptions{});
    ASSERT_TRUE(gru.ok()) << gru.status();
    cases.push_back({"gru_head, default plan", *gru, Int8Options{}, 5e-3, 0.05});
  }
  const bool host_vnni =
      quant::IsaHasVnni(quant::ChooseIsa(quant::SupportedIsaMask(), quant::Isa::kAvx512Vnni));
  const std::string dir = testing::TempDir("export_ort");
  for (size_t c = 0; c < cases.size(); ++c) {
    const OrtCase& k = cases[c];
    SCOPED_TRACE(k.label);
    ModelSpec spec = k.spec;
    spec.name = "case" + std::to_string(c);
    ExportOptions e;
    // Without VNNI, ONNX Runtime's u8 x s8 kernel sums byte products pairwise in 16-bit
    // saturating adds (vpmaddubsw), so 8-bit weights against large u8 inputs clip inside ORT
    // (measured on an AVX2-only EPYC: 17.6% RMSE on demo_mlp all-u8, 1.5% on the torch fixture;
    // qsig's own kernels split the activations and stay exact). There every case runs with
    // 7-bit weights, as qsig's calibration.reduce_range=auto does on such hosts, and the
    // tolerances stay as tight as on VNNI hosts.
    Int8Options options = k.options;
    if (!host_vnni && !options.reduce_range) {
      options.reduce_range = true;
      std::cout << "  (host without VNNI: 7-bit weights, where ONNX Runtime does not saturate)\n";
    }
    e.artifact_path = MakeArtifactFile(dir, spec, options);
    e.output_path = dir + "/" + spec.name + ".onnx";
    std::ostringstream log;
    e.log = &log;
    auto sum = RunExportOnnxQdq(e);
    ASSERT_TRUE(sum.ok()) << sum.status();
    std::cout << k.label << "\n" << log.str();
    if (k.label.find("mixed plan") != std::string::npos) {
      EXPECT_EQ(sum->int8_precision, "mixed");
    }

    auto art = ReadArtifact(e.artifact_path);
    ASSERT_TRUE(art.ok()) << art.status();
    auto int8 = BuildInt8Model(*art);
    ASSERT_TRUE(int8.ok()) << int8.status();
    const size_t n = 500;
    const size_t f = static_cast<size_t>(spec.input_size), T = static_cast<size_t>(spec.window);
    const std::vector<float> x = Rows(spec, n * T, 7);
    std::vector<float> q(n), ws((*int8)->workspace_floats());
    for (size_t i = 0; i < n; ++i) q[i] = (*int8)->Run({x.data() + i * T * f, T * f}, ws.data());
    const std::string inputs = dir + "/" + spec.name + ".inputs.json";
    {
      const nlohmann::json shape =
          spec.arch == Arch::kMlp ? nlohmann::json({n, f}) : nlohmann::json({n, T, f});
      nlohmann::json j = {{"input", "features"}, {"shape", shape}, {"data", x}};
      std::ofstream(inputs) << j.dump();
    }
    std::string why;
    const std::vector<float> y = RunOrt(e.output_path, inputs, &why);
    ASSERT_EQ(y.size(), n) << why;
    double se = 0, ss = 0, worst = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(y[i]) - q[i];
      se += d * d;
      ss += static_cast<double>(q[i]) * q[i];
      worst = std::max(worst, std::fabs(d));
    }
    const double rms = std::sqrt(ss / static_cast<double>(n));
    const double rmse = std::sqrt(se / static_cast<double>(n));
    std::cout << "  ORT vs qsig INT8 over " << n << " rows: RMSE " << rmse << " ("
              << 100.0 * rmse / rms << "% of RMS " << rms << "), max |diff| " << worst << " ("
              << 100.0 * worst / rms << "% of RMS)\n";
    EXPECT_LE(rmse, k.max_rel_rmse * rms);
    EXPECT_LE(worst, k.max_rel_diff * rms);
  }
}

}  // namespace
}  // namespace qsig::models::io
