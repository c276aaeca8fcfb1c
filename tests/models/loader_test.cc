#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "qsig/models/model.h"
#include "test_models.h"

namespace qsig::models {
namespace {

using nlohmann::json;
using testing::WriteTempFile;

// A valid MLP 8 -> 4 -> 8 -> 1 document to mutate.
json ValidMlp() {
  auto filled = [](size_t n, float v) { return std::vector<float>(n, v); };
  json doc = {
      {"format", "qsig.model.fp32"},
      {"version", 1},
      {"name", "t"},
      {"arch", "mlp"},
      {"input_size", 8},
      {"window", 1},
      {"feature_names", {"a", "b", "c", "d", "e", "f", "g", "h"}},
      {"feature_mean", filled(8, 0.0f)},
      {"feature_std", filled(8, 1.0f)},
      {"layers",
       {{{"in", 8},
         {"out", 4},
         {"activation", "relu"},
         {"weight", filled(32, 0.1f)},
         {"bias", filled(4, 0.0f)}},
        {{"in", 4},
         {"out", 8},
         {"activation", "tanh"},
         {"weight", filled(32, 0.1f)},
         {"bias", filled(8, 0.0f)}},
        {{"in", 8},
         {"out", 1},
         {"activation", "none"},
         {"weight", filled(8, 0.1f)},
         {"bias", filled(1, 0.0f)}}}},
  };
  return doc;
}

json ValidLstm() {
  json doc = ValidMlp();
  doc["arch"] = "lstm";
  doc["window"] = 4;
  doc["lstm"] = {{{"input_size", 8},
                  {"hidden_size", 2},
                  {"w_ih", std::vector<float>(64, 0.1f)},
                  {"w_hh", std::vector<float>(16, 0.1f)},
                  {"b_ih", std::vector<float>(8, 0.0f)},
                  {"b_hh", std::vector<float>(8, 0.0f)}}};
  doc["layers"] = {{{"in", 2},
                    {"out", 1},
                    {"activation", "none"},
                    {"weight", std::vector<float>(2, 0.5f)},
                    {"bias", std::vector<float>(1, 0.0f)}}};
  return doc;
}

// Loads `text` from a temp file named `name` and returns the error message with the
// "<path>: " prefix removed ("" if it loaded; "NO PATH PREFIX: ..." if the prefix is missing).
std::string LoadError(const std::string& name, const std::string& text) {
  const std::string path = WriteTempFile(name, text);
  auto spec = LoadModelJson(path);
  if (spec.ok()) return "";
  const std::string msg(spec.status().message());
  const std::string prefix = path + ": ";
  if (msg.rfind(prefix, 0) != 0) return "NO PATH PREFIX: " + msg;
  return msg.substr(prefix.size());
}

TEST(ModelLoader, LoadsValidMlpAndLstm) {
  const std::string path = WriteTempFile("valid_mlp.json", ValidMlp().dump());
  auto spec = LoadModelJson(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->arch, Arch::kMlp);
  EXPECT_EQ(spec->input_size, 8);
  ASSERT_EQ(spec->layers.size(), 3u);
  EXPECT_EQ(spec->layers[0].activation, Activation::kRelu);
  EXPECT_EQ(spec->layers[1].activation, Activation::kTanh);
  EXPECT_EQ(spec->layers[1].weight.size(), 32u);
  EXPECT_EQ(spec->sha256.size(), 64u);

  auto lstm = LoadModelJson(WriteTempFile("valid_lstm.json", ValidLstm().dump()));
  ASSERT_TRUE(lstm.ok()) << lstm.status();
  EXPECT_EQ(lstm->arch, Arch::kLstm);
  EXPECT_EQ(lstm->window, 4);
  ASSERT_EQ(lstm->lstm.size(), 1u);
  EXPECT_EQ(lstm->lstm[0].hidden_size, 2);
}

TEST(ModelLoader, Sha256IsOfTheFileBytes) {
  // The fixture's expected hash was computed by Python's hashlib over the same bytes.
  const std::string dir = QSIG_MODELS_TEST_DATA;
  std::ifstream in(dir + "/mlp_small.expected.json");
  const json expected = json::parse(in);
  auto spec = LoadModelJson(dir + "/mlp_small.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->sha256, expected["sha256"].get<std::string>());
  // One more space changes the hash but not the model.
  std::ifstream model_in(dir + "/mlp_small.json");
  std::stringstream ss;
  ss << model_in.rdbuf();
  auto spaced = LoadModelJson(WriteTempFile("spaced.json", ss.str() + " "));
  ASSERT_TRUE(spaced.ok()) << spaced.status();
  EXPECT_NE(spaced->sha256, spec->sha256);
}

TEST(ModelLoader, MissingFileIsNotFound) {
  const std::string path = ::testing::TempDir() + "/no_such_model.json";
  auto spec = LoadModelJson(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(spec.status().message()),
            path + ": cannot open model file: No such file or directory")
      << spec.status();
}

TEST(ModelLoader, CorruptJsonIsAnError) {
  const std::string full = ValidMlp().dump();
  std::string msg = LoadError("truncated.json", full.substr(0, full.size() / 2));
  EXPECT_EQ(msg.rfind("not valid JSON at byte", 0), 0u) << msg;
  msg = LoadError("garbage.json", "\x01\x02 not json {");
  EXPECT_EQ(msg.rfind("not valid JSON", 0), 0u) << msg;
  msg = LoadError("empty.json", "");
  EXPECT_EQ(msg, "file is empty");
  msg = LoadError("array.json", "[1, 2]");
  EXPECT_EQ(msg, "top level must be a JSON object, found array");
}

TEST(ModelLoader, WrongWeightCountNamesFieldAndExpectation) {
  json doc = ValidMlp();
  doc["layers"][1]["weight"].erase(0);
  const std::string msg = LoadError("short_weight.json", doc.dump());
  EXPECT_EQ(msg, "layers[1].weight has 31 values, expected 32 (out*in)");
}

TEST(ModelLoader, WrongShapesAreReported) {
  json doc = ValidMlp();
  doc["layers"][2]["bias"] = {0.0, 0.0};
  EXPECT_EQ(LoadError("bias.json", doc.dump()), "layers[2].bias has 2 values, expected 1 (out)");
  doc = ValidMlp();
  doc["layers"][1]["in"] = 5;
  EXPECT_EQ(LoadError("chain.json", doc.dump()),
            "layers[1].in is 5, expected 4 (previous layer's out)");
  doc = ValidMlp();
  doc["feature_std"] = std::vector<float>(7, 1.0f);
  EXPECT_EQ(LoadError("std.json", doc.dump()), "feature_std has 7 values, expected 8 (input_size)");
  doc = ValidLstm();
  doc["lstm"][0]["w_hh"] = std::vector<float>(15, 0.1f);
  EXPECT_EQ(LoadError("w_hh.json", doc.dump()),
            "lstm[0].w_hh has 15 values, expected 16 (4*hidden_size*hidden_size)");
  doc = ValidLstm();
  doc["layers"][0]["out"] = 2;
  doc["layers"][0]["weight"] = std::vector<float>(4, 0.5f);
  doc["layers"][0]["bias"] = std::vector<float>(2, 0.0f);
  EXPECT_EQ(LoadError("out2.json", doc.dump()),
            "layers[0].out is 2, expected 1 (a model outputs one signal)");
}

TEST(ModelLoader, MissingAndMistypedFields) {
  json doc = ValidMlp();
  doc["layers"][0].erase("bias");
  EXPECT_EQ(LoadError("nobias.json", doc.dump()), "layers[0].bias is missing");
  doc = ValidMlp();
  doc["input_size"] = "8";
  EXPECT_EQ(LoadError("type.json", doc.dump()), "input_size must be an integer, found string");
  doc = ValidMlp();
  doc["layers"][0]["weight"][3] = "x";
  EXPECT_EQ(LoadError("elem.json", doc.dump()),
            "layers[0].weight[3] must be a number, found string");
  doc = ValidMlp();
  doc["format"] = "onnx";
  EXPECT_EQ(LoadError("format.json", doc.dump()),
            "format is \"onnx\", expected \"qsig.model.fp32\"");
  doc = ValidMlp();
  doc["version"] = 2;
  EXPECT_NE(LoadError("version.json", doc.dump()).find("version is 2"), std::string::npos);
  doc = ValidMlp();
  doc["arch"] = "transformer";
  EXPECT_EQ(LoadError("arch.json", doc.dump()),
            "arch is \"transformer\", expected \"mlp\", \"lstm\" or \"gru\"");
  doc = ValidMlp();
  doc["arch"] = "gru";
  EXPECT_EQ(LoadError("nogru.json", doc.dump()), "gru is empty; arch \"gru\" needs >= 1 layer");
  doc = ValidLstm();
  doc.erase("lstm");
  EXPECT_EQ(LoadError("nolstm.json", doc.dump()), "lstm is empty; arch \"lstm\" needs >= 1 layer");
}

TEST(ModelLoader, UnknownActivation) {
  json doc = ValidMlp();
  doc["layers"][0]["activation"] = "gelu";
  EXPECT_EQ(LoadError("gelu.json", doc.dump()),
            "layers[0].activation is \"gelu\", expected one of none, relu, tanh, "
            "sigmoid");
}

TEST(ModelLoader, NonFiniteWeightsAreRejected) {
  // Python's json.dump writes NaN / Infinity literals, which are not JSON.
  std::string text = ValidMlp().dump();
  const std::string needle = "0.10000000149011612";
  text.replace(text.find(needle), needle.size(), "NaN");
  std::string msg = LoadError("nan.json", text);
  EXPECT_EQ(msg.rfind("not valid JSON", 0), 0u) << msg;
  EXPECT_NE(msg.find("every weight must be finite"), std::string::npos) << msg;

  // Finite in JSON (and in double) but not as a float.
  json doc = ValidMlp();
  doc["layers"][0]["weight"][2] = 1e39;
  msg = LoadError("overflow.json", doc.dump());
  EXPECT_EQ(msg.rfind("layers[0].weight[2] is not finite as a float", 0), 0u) << msg;

  // A spec built in memory with a NaN is caught by ValidateSpec.
  auto spec = LoadModelJson(WriteTempFile("ok.json", ValidMlp().dump()));
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->layers[1].weight[5] = std::numeric_limits<float>::quiet_NaN();
  absl::Status st = ValidateSpec(*spec);
  EXPECT_EQ(st.message(), "layers[1].weight[5] is not finite (nan); weights must be finite");
  EXPECT_EQ(MakeFp32Model(std::make_shared<const ModelSpec>(*spec)), nullptr);
}

}  // namespace
}  // namespace qsig::models
