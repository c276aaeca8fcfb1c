#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "qsig/models/model.h"

namespace qsig::models {
namespace {

using nlohmann::json;

struct Fixture {
  std::shared_ptr<const ModelSpec> spec;
  json expected;
};

// Loads tests/models/data/<name>.json and its PyTorch outputs (scripts/make_test_models.py).
Fixture LoadFixture(const std::string& name) {
  const std::string dir = QSIG_MODELS_TEST_DATA;
  Fixture f;
  std::ifstream in(dir + "/" + name + ".expected.json");
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  f.expected = json::parse(in);
  auto spec = LoadModelJson(dir + "/" + f.expected["model"].get<std::string>());
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (spec.ok()) f.spec = std::make_shared<const ModelSpec>(std::move(*spec));
  return f;
}

class ModelFp32VsTorch : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelFp32VsTorch, MatchesPyTorchWithin1e5) {
  Fixture f = LoadFixture(GetParam());
  ASSERT_NE(f.spec, nullptr);
  auto model = MakeFp32Model(f.spec);
  ASSERT_NE(model, nullptr);
  EXPECT_STREQ(model->precision(), "fp32");
  EXPECT_EQ(model->window(), f.expected["window"].get<int>());
  std::vector<float> ws(model->workspace_floats());
  const auto& inputs = f.expected["inputs"];
  const auto& outputs = f.expected["outputs"];
  ASSERT_EQ(inputs.size(), outputs.size());
  ASSERT_GT(inputs.size(), 0u);
  double max_err = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(i);
    const std::vector<float> x = inputs[i].get<std::vector<float>>();
    ASSERT_EQ(x.size(), static_cast<size_t>(model->window() * model->input_size()));
    const float y = model->Run(x, ws.data());
    const float want = outputs[i].get<float>();
    EXPECT_NEAR(y, want, 1e-5);
    max_err = std::max(max_err, std::fabs(static_cast<double>(y) - want));
  }
  RecordProperty("max_abs_err", std::to_string(max_err));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelFp32VsTorch,
                         ::testing::Values("mlp_small", "lstm_small", "lstm_window1", "lstm_a",
                                           "gru_a", "gru_small"));

TEST(ModelFp32, RepeatedRunsAreIdenticalAndIgnoreWorkspaceContents) {
  for (const char* name : {"mlp_small", "lstm_small"}) {
    SCOPED_TRACE(name);
    Fixture f = LoadFixture(name);
    ASSERT_NE(f.spec, nullptr);
    auto model = MakeFp32Model(f.spec);
    ASSERT_NE(model, nullptr);
    std::vector<float> ws(model->workspace_floats());
    const std::vector<float> x = f.expected["inputs"][0].get<std::vector<float>>();
    const float first = model->Run(x, ws.data());
    for (int rep = 0; rep < 5; ++rep) {
      // Whatever a previous call or another model left in the workspace must not matter.
      std::fill(ws.begin(), ws.end(), rep % 2 ? std::numeric_limits<float>::quiet_NaN() : 1e30f);
      EXPECT_EQ(model->Run(x, ws.data()), first);
    }
  }
}

TEST(ModelFp32, WrongWindowSizeReturnsNaN) {
  Fixture f = LoadFixture("lstm_small");
  ASSERT_NE(f.spec, nullptr);
  auto model = MakeFp32Model(f.spec);
  ASSERT_NE(model, nullptr);
  std::vector<float> ws(model->workspace_floats());
  std::vector<float> x(static_cast<size_t>(model->window() * model->input_size()) - 1, 0.0f);
  EXPECT_TRUE(std::isnan(model->Run(x, ws.data())));
  x.push_back(0.0f);
  EXPECT_FALSE(std::isnan(model->Run(x, ws.data())));
  EXPECT_TRUE(std::isnan(model->Run(x, nullptr)));
}

TEST(ModelFp32, ZeroStdFeatureIsTreatedAsOne) {
  // mlp_small's feature 3 has std 0; the runtime must use (x - mean) / 1 for it, so changing
  // that feature changes the output (a division by zero would give inf/NaN instead).
  Fixture f = LoadFixture("mlp_small");
  ASSERT_NE(f.spec, nullptr);
  ASSERT_EQ(f.spec->feature_std[3], 0.0f);
  auto model = MakeFp32Model(f.spec);
  std::vector<float> ws(model->workspace_floats());
  std::vector<float> x = f.expected["inputs"][0].get<std::vector<float>>();
  const float y = model->Run(x, ws.data());
  EXPECT_TRUE(std::isfinite(y));
}

TEST(ModelFp32, NullOrInvalidSpecGivesNoModel) {
  EXPECT_EQ(MakeFp32Model(nullptr), nullptr);
  auto empty = std::make_shared<const ModelSpec>();
  EXPECT_EQ(MakeFp32Model(empty), nullptr);
}

}  // namespace
}  // namespace qsig::models
