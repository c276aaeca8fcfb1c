// ImportOnnx against PyTorch: fixtures from scripts/make_import_fixtures.py (python3-torch 1.13).
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
namespace {

using ::testing::AllOf;
using testing::DataPath;
using ::testing::HasSubstr;

struct Case {
  const char* model;
  Arch arch;
};
constexpr Case kCases[] = {{"lstm2_head", Arch::kLstm},
                           {"lstm_hn_head", Arch::kLstm},
                           {"lstm_head_all_steps", Arch::kLstm},
                           {"gru_head", Arch::kGru},
                           {"mlp", Arch::kMlp}};

TEST(OnnxImport, MatchesPyTorchWithin1e5) {
  for (const Case& c : kCases) {
    const testing::Expected e = testing::LoadExpected(c.model);
    for (int opset : {13, 17}) {
      SCOPED_TRACE(absl::StrCat(c.model, " opset ", opset));
      auto spec = ImportOnnx(DataPath(absl::StrCat(c.model, ".opset", opset, ".onnx")));
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_EQ(spec->arch, c.arch);
      EXPECT_EQ(spec->window, e.window);
      EXPECT_EQ(spec->input_size, e.input_size);
      EXPECT_EQ(spec->name, absl::StrCat(c.model, ".opset", opset));
      EXPECT_EQ(spec->feature_names.front(), "f0");
      EXPECT_EQ(spec->sha256.size(), 64u);
      EXPECT_LE(testing::MaxAbsError(*spec, e), 1e-5);
    }
  }
}

TEST(OnnxImport, TwoLayerLstmKeepsPyTorchGateOrder) {
  auto spec = ImportOnnx(DataPath("lstm2_head.opset17.onnx"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->lstm.size(), 2u);
  EXPECT_EQ(spec->lstm[0].input_size, 5);
  EXPECT_EQ(spec->lstm[1].input_size, 8);
  EXPECT_EQ(spec->lstm[0].w_ih.size(), 4u * 8 * 5);
  ASSERT_EQ(spec->layers.size(), 1u);
}

TEST(OnnxImport, OptionsSetNamesNormalizationAndWindow) {
  ImportOptions o;
  o.name = "custom";
  o.feature_names = {"a", "b", "c", "d", "e", "f"};
  o.feature_mean = {1, 2, 3, 4, 5, 6};
  o.feature_std = {2, 2, 2, 0.5f, 0.5f, 0.5f};
  auto spec = ImportOnnx(DataPath("mlp.opset13.onnx"), o);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "custom");
  EXPECT_EQ(spec->feature_names[3], "d");
  // Raw inputs that normalize to the fixture's inputs give PyTorch's outputs.
  testing::Expected e = testing::LoadExpected("mlp");
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    const size_t f = i % 6;
    e.inputs[i] = e.inputs[i] * o.feature_std[f] + o.feature_mean[f];
  }
  EXPECT_LE(testing::MaxAbsError(*spec, e), 1e-5);

  o = {};
  o.feature_names = {"only", "two"};
  auto bad = ImportOnnx(DataPath("mlp.opset13.onnx"), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("feature_names has 2 names; the model reads 6"));
}

TEST(OnnxImport, RefusesUnsupportedOperatorNamingTheNode) {
  auto ln17 = ImportOnnx(DataPath("mlp_layernorm.opset17.onnx"));
  ASSERT_FALSE(ln17.ok());
  EXPECT_THAT(ln17.status().message(),
              AllOf(HasSubstr("node '/1/LayerNormalization' (op_type LayerNormalization)"),
                    HasSubstr("not supported"), HasSubstr("supported: LSTM and GRU")));
  // Opset 13 has no LayerNormalization: the exporter decomposes it (ReduceMean first).
  auto ln13 = ImportOnnx(DataPath("mlp_layernorm.opset13.onnx"));
  ASSERT_FALSE(ln13.ok());
  EXPECT_THAT(ln13.status().message(), HasSubstr("(op_type ReduceMean)"));
  auto conv = ImportOnnx(DataPath("conv1d.opset17.onnx"));
  ASSERT_FALSE(conv.ok());
  EXPECT_THAT(conv.status().message(), AllOf(HasSubstr("(op_type Conv)"), HasSubstr("supported")));
}

TEST(OnnxImport, RefusesTruncatedCorruptAndMissingFiles) {
  auto trunc = ImportOnnx(DataPath("truncated.onnx"));
  ASSERT_FALSE(trunc.ok());
  EXPECT_THAT(trunc.status().message(), HasSubstr("truncated.onnx"));
  EXPECT_THAT(trunc.status().message(), HasSubstr("truncated"));

  const std::string garbage = testing::TempDir("onnx") + "/garbage.onnx";
  {
    std::ofstream out(garbage, std::ios::binary);
    out << "this is not an onnx file at all \xff\xfe\x01";
  }
  auto bad = ImportOnnx(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("not a valid ONNX file"));

  auto missing = ImportOnnx(DataPath("no_such_model.onnx"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qsig::models::io
