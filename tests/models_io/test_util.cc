#include "test_util.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qsig::models::io::testing {

std::string DataPath(const std::string& name) {
  return std::string(QSIG_MODELS_IO_TEST_DATA) + "/" + name;
}

Expected LoadExpected(const std::string& model) {
  std::ifstream in(DataPath(model + ".expected.json"));
  EXPECT_TRUE(in.good()) << model;
  const nlohmann::json doc = nlohmann::json::parse(in);
  Expected e;
  e.window = doc.at("window").get<int>();
  e.input_size = doc.at("input_size").get<int>();
  e.inputs = doc.at("inputs").get<std::vector<float>>();
  e.outputs = doc.at("outputs").get<std::vector<float>>();
  return e;
}

double MaxAbsError(const ModelSpec& spec, const Expected& e) {
  auto shared = std::make_shared<const ModelSpec>(spec);
  std::unique_ptr<Model> m = MakeFp32Model(shared);
  std::vector<float> ws(m->workspace_floats());
  const size_t per = static_cast<size_t>(e.window) * e.input_size;
  double worst = 0;
  for (size_t i = 0; i < e.outputs.size(); ++i) {
    const float y = m->Run(std::span<const float>(e.inputs.data() + i * per, per), ws.data());
    const double err = std::fabs(static_cast<double>(y) - e.outputs[i]);
    worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  return worst;
}

std::string TempDir(const std::string& tag) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path p = std::filesystem::path(base != nullptr ? base : "/tmp") /
                            ("qsig_models_io_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(p);
  return p.string();
}

}  // namespace qsig::models::io::testing
