// .qsig artifacts: round trip, INT8 rebuild, and refusal of damaged or foreign files.
#include "qsig/models/io/artifact.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomWindows(const ModelSpec& s, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(n * static_cast<size_t>(s.window) * s.input_size);
  for (float& v : w) v = d(rng);
  return w;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class ArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spec = ImportOnnx(testing::DataPath("lstm2_head.opset17.onnx"));
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec_ = std::make_shared<const ModelSpec>(*spec);
    dir_ = testing::TempDir("artifact");
    path_ = dir_ + "/m.qsig";
    calib_ = RandomWindows(*spec_, 300, 7);
    Int8Options o;
    o.method = quant::CalibrationMethod::kMse;
    ArtifactSource src{"lstm2_head.opset17.onnx", "onnx", "calib.csv", 100, 200};
    auto a = MakeArtifact(spec_, calib_, o, src, &int8_);
    ASSERT_TRUE(a.ok()) << a.status();
    artifact_ = std::move(*a);
    ASSERT_TRUE(WriteArtifact(artifact_, path_).ok());
  }

  std::shared_ptr<const ModelSpec> spec_;
  std::string dir_, path_;
  std::vector<float> calib_;
  Artifact artifact_;
  std::unique_ptr<Model> int8_;
};

TEST_F(ArtifactTest, RoundTripKeepsModelCalibrationAndProvenance) {
  auto r = ReadArtifact(path_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->format_version, kArtifactFormatVersion);
  EXPECT_EQ(r->content_sha256, artifact_.content_sha256);
  EXPECT_EQ(r->content_sha256.size(), 64u);
  EXPECT_EQ(r->spec.sha256, spec_->sha256);
  EXPECT_EQ(r->spec.lstm[1].w_hh, spec_->lstm[1].w_hh);
  EXPECT_EQ(r->spec.layers[0].weight, spec_->layers[0].weight);
  EXPECT_EQ(r->spec.feature_names, spec_->feature_names);
  EXPECT_EQ(r->calibration.options.method, quant::CalibrationMethod::kMse);
  EXPECT_EQ(r->calibration.windows, calib_);
  EXPECT_EQ(r->calibration.windows_seen, 300u);
  EXPECT_EQ(r->calibration.first_ts_ns, 100);
  EXPECT_EQ(r->calibration.source, "calib.csv");
  EXPECT_EQ(r->source_format, "onnx");
  EXPECT_FALSE(r->qsig_build.empty());
  // lstm[0].w_ih, w_hh, lstm[1].w_ih, w_hh, layers[0].weight.
  ASSERT_EQ(r->int8_weights.size(), 5u);
  EXPECT_EQ(r->int8_weights[0].tensor, "lstm[0].w_ih");
  EXPECT_EQ(r->int8_weights[0].q.data, artifact_.int8_weights[0].q.data);
  EXPECT_EQ(r->int8_weights[0].q.scales.size(), 32u);
  // x and h per LSTM layer, the head's input.
  ASSERT_EQ(r->activation_ranges.size(), 5u);
  EXPECT_EQ(r->activation_ranges[1].tensor, "lstm[0].h");
  EXPECT_LT(r->activation_ranges[0].min, 0.0f);
  EXPECT_GT(r->activation_ranges[0].params.scale, 0.0f);
}

// The artifact stores every Int8Options field (artifact.cc OptionsToProto); a new field in
// models/model.h must be added to artifact.proto, or rebuilt INT8 runtimes would silently differ.
TEST(ArtifactSchema, CoversEveryInt8OptionsField) {
  // Compile-time tripwire: this binding names every field of models::Int8Options, so adding one
  // breaks the build here. Store the new field in models/io/proto/artifact.proto and
  // artifact.cc, add it to Int8OptionsRoundTrip below, then add it here. (A sizeof check missed
  // a bool that fit into padding.)
  Int8Options o;
  [[maybe_unused]] auto& [method, percentile, s16_input, fp32_head, per_feature_input, layers,
                          max_rmse, cell_state, use_source_ranges, reduce_range] = o;
  SUCCEED();
}

TEST_F(ArtifactTest, Int8OptionsRoundTrip) {
  Int8Options o;
  o.method = quant::CalibrationMethod::kPercentile;
  o.percentile = 99.9;
  o.s16_input = false;
  o.fp32_head = false;
  o.per_feature_input = true;
  o.max_rmse = 0.02;
  o.layers = {Precision::kInt8, Precision::kInt8S16, Precision::kFp32};
  o.cell_state = CellState::kS16;
  o.reduce_range = true;
  o.use_source_ranges = false;
  auto a = MakeArtifact(spec_, calib_, o, ArtifactSource{});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(WriteArtifact(*a, dir_ + "/opts.qsig").ok());
  auto r = ReadArtifact(dir_ + "/opts.qsig");
  ASSERT_TRUE(r.ok()) << r.status();
  const Int8Options& g = r->calibration.options;
  EXPECT_EQ(g.method, o.method);
  EXPECT_EQ(g.percentile, o.percentile);
  EXPECT_EQ(g.s16_input, o.s16_input);
  EXPECT_EQ(g.fp32_head, o.fp32_head);
  EXPECT_EQ(g.per_feature_input, o.per_feature_input);
  EXPECT_EQ(g.max_rmse, o.max_rmse);
  EXPECT_EQ(g.layers, o.layers);
  EXPECT_EQ(g.cell_state, o.cell_state);
  EXPECT_EQ(g.reduce_range, o.reduce_range);
  EXPECT_EQ(g.use_source_ranges, o.use_source_ranges);
  // The recorded int8 weights are 7-bit too.
  ASSERT_FALSE(r->int8_weights.empty());
  for (const Int8Weight& w : r->int8_weights) {
    for (int8_t v : w.q.data) ASSERT_LE(std::abs(static_cast<int>(v)), 63) << w.tensor;
  }
  // The fixture's artifact (default options) reads back as 8-bit.
  EXPECT_FALSE(ReadArtifact(path_)->calibration.options.reduce_range);
}

// An artifact quantized with reduce_range (7-bit weights) rebuilds the INT8 runtime bit for bit,
// and it is a different runtime from the 8-bit one.
TEST_F(ArtifactTest, RebuiltReduceRangeModelIsIdentical) {
  Int8Options o;
  o.method = quant::CalibrationMethod::kMse;
  o.reduce_range = true;
  std::unique_ptr<Model> int8;
  auto a = MakeArtifact(spec_, calib_, o, ArtifactSource{}, &int8);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(WriteArtifact(*a, dir_ + "/rr.qsig").ok());
  auto r = ReadArtifact(dir_ + "/rr.qsig");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->calibration.options.reduce_range);
  auto m = BuildInt8Model(*r);
  ASSERT_TRUE(m.ok()) << m.status();
  const size_t per = static_cast<size_t>(spec_->window) * spec_->input_size;
  const std::vector<float> eval = RandomWindows(*spec_, 50, 99);
  std::vector<float> w1((*m)->workspace_floats()), w2(int8->workspace_floats()),
      w3(int8_->workspace_floats());
  int differs_from_8bit = 0;
  for (size_t i = 0; i < 50; ++i) {
    std::span<const float> x(eval.data() + i * per, per);
    const float a1 = (*m)->Run(x, w1.data()), b = int8->Run(x, w2.data());
    EXPECT_EQ(std::memcmp(&a1, &b, sizeof a1), 0) << i;
    const float c = int8_->Run(x, w3.data());
    differs_from_8bit += std::memcmp(&a1, &c, sizeof a1) != 0;
  }
  EXPECT_GT(differs_from_8bit, 25);
}

TEST_F(ArtifactTest, RebuiltInt8ModelIsIdentical) {
  auto r = ReadArtifact(path_);
  ASSERT_TRUE(r.ok()) << r.status();
  auto m = BuildInt8Model(*r);
  ASSERT_TRUE(m.ok()) << m.status();
  const size_t per = static_cast<size_t>(spec_->window) * spec_->input_size;
  const std::vector<float> eval = RandomWindows(*spec_, 50, 99);
  std::vector<float> w1((*m)->workspace_floats()), w2(int8_->workspace_floats());
  for (size_t i = 0; i < 50; ++i) {
    std::span<const float> x(eval.data() + i * per, per);
    const float a = (*m)->Run(x, w1.data()), b = int8_->Run(x, w2.data());
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << i;
  }
  // A rebuild that does not reproduce the validated outputs is refused.
  Artifact tampered = *r;
  tampered.calibration.reference_outputs[3] += 0.5f;
  auto bad = BuildInt8Model(tampered);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("calibration window 3"));
  // An artifact from another qsig build whose kernels round the last bits differently still
  // loads (an upgrade must not strand the artifacts a server runs) ...
  Artifact other_build = *r;
  other_build.qsig_build = "v0.0-other";
  other_build.calibration.reference_outputs[2] =
      std::nextafter(other_build.calibration.reference_outputs[2], 1e9f);
  EXPECT_TRUE(BuildInt8Model(other_build).ok());
  // ... but not a different model.
  other_build.calibration.reference_outputs[3] += 0.5f;
  bad = BuildInt8Model(other_build);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("tolerance"));
}

TEST_F(ArtifactTest, StoresAtMost4096WindowsSpreadOverTheSet) {
  const std::vector<float> many = RandomWindows(*spec_, 5000, 3);
  auto a = MakeArtifact(spec_, many, Int8Options{}, ArtifactSource{});
  ASSERT_TRUE(a.ok()) << a.status();
  const size_t per = static_cast<size_t>(spec_->window) * spec_->input_size;
  EXPECT_EQ(a->calibration.windows.size(), kMaxStoredWindows * per);
  EXPECT_EQ(a->calibration.windows_seen, 5000u);
  // The last stored window comes from the end of the set, not from window 4095.
  const size_t last = (kMaxStoredWindows - 1) * 5000 / kMaxStoredWindows;
  EXPECT_EQ(a->calibration.windows[(kMaxStoredWindows - 1) * per], many[last * per]);
}

TEST_F(ArtifactTest, RefusesTruncatedFiles) {
  const std::string bytes = ReadAll(path_);
  WriteAll(dir_ + "/half.qsig", bytes.substr(0, bytes.size() / 2));
  auto half = ReadArtifact(dir_ + "/half.qsig");
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(half.status().message(), HasSubstr("truncated artifact: the header announces"));
  WriteAll(dir_ + "/head.qsig", bytes.substr(0, 20));
  auto head = ReadArtifact(dir_ + "/head.qsig");
  ASSERT_FALSE(head.ok());
  EXPECT_THAT(head.status().message(), HasSubstr("shorter than the 56-byte header"));
}

TEST_F(ArtifactTest, RefusesCorruptedFiles) {
  std::string bytes = ReadAll(path_);
  bytes[bytes.size() - 100] ^= 0x01;  // One bit in the payload.
  WriteAll(dir_ + "/flip.qsig", bytes);
  auto flip = ReadArtifact(dir_ + "/flip.qsig");
  ASSERT_FALSE(flip.ok());
  EXPECT_EQ(flip.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(flip.status().message(), HasSubstr("corrupted artifact: checksum mismatch"));
  WriteAll(dir_ + "/extra.qsig", ReadAll(path_) + "xx");
  auto extra = ReadArtifact(dir_ + "/extra.qsig");
  ASSERT_FALSE(extra.ok());
  EXPECT_THAT(extra.status().message(), HasSubstr("bytes after the announced payload"));
}

TEST_F(ArtifactTest, RefusesIncompatibleFiles) {
  std::string bytes = ReadAll(path_);
  bytes[8] = 2;  // Format version 2.
  WriteAll(dir_ + "/v2.qsig", bytes);
  auto v2 = ReadArtifact(dir_ + "/v2.qsig");
  ASSERT_FALSE(v2.ok());
  EXPECT_EQ(v2.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v2.status().message(),
              HasSubstr("incompatible artifact: format version 2; this qsig reads format "
                        "version 1 (written by a newer qsig"));
  auto onnx = ReadArtifact(testing::DataPath("mlp.opset13.onnx"));
  ASSERT_FALSE(onnx.ok());
  EXPECT_THAT(onnx.status().message(), HasSubstr("not a qsig artifact"));
}

}  // namespace
}  // namespace qsig::models::io
