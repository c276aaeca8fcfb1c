#include "test_models.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace qsig::models::testing {

namespace {

const std::vector<std::string> kNames = {
    "ret_1",        "ret_10",       "ret_50",     "spread_bps",
    "imbalance_l1", "imbalance_l5", "trade_flow", "microprice_dev_bps"};

}  // namespace

ModelSpec RandomMlpSpec(uint64_t seed) {
  Rng rng(seed);
  ModelSpec s;
  s.name = "random_mlp";
  s.arch = Arch::kMlp;
  s.input_size = 8;
  s.window = 1;
  s.feature_names = kNames;
  s.layers.push_back(RandomLinear(rng, 8, 32, Activation::kRelu));
  s.layers.push_back(RandomLinear(rng, 32, 32, Activation::kRelu));
  s.layers.push_back(RandomLinear(rng, 32, 1, Activation::kNone));
  return s;
}

ModelSpec RandomLstmSpec(uint64_t seed) {
  Rng rng(seed);
  ModelSpec s;
  s.name = "random_lstm";
  s.arch = Arch::kLstm;
  s.input_size = 8;
  s.window = 16;
  s.feature_names = kNames;
  LstmLayer l;
  l.input_size = 8;
  l.hidden_size = 16;
  const double bound = 1.0 / std::sqrt(16.0);
  l.w_ih = UniformVec(rng, 64 * 8, bound);
  l.w_hh = UniformVec(rng, 64 * 16, bound);
  l.b_ih = UniformVec(rng, 64, bound);
  l.b_hh = UniformVec(rng, 64, bound);
  s.lstm.push_back(l);
  s.layers.push_back(RandomLinear(rng, 16, 1, Activation::kNone));
  return s;
}

std::vector<float> SimulatedFeatures(uint64_t seed, int n_ticks) {
  Rng rng(seed);
  std::vector<float> out(static_cast<size_t>(n_ticks) * 8);
  double ret_hist[50] = {};
  double imb1 = 0, imb5 = 0, flow = 0, spread_log = std::log(2.0);
  for (int t = 0; t < n_ticks; ++t) {
    const double r1 = 0.8 * rng.StudentT4();  // bps
    for (int k = 49; k > 0; --k) ret_hist[k] = ret_hist[k - 1];
    ret_hist[0] = r1;
    double r10 = 0, r50 = 0;
    for (int k = 0; k < 50; ++k) (k < 10 ? r10 : r50) += ret_hist[k];
    r50 += r10;
    spread_log = 0.95 * spread_log + 0.05 * std::log(2.0) + 0.15 * rng.Normal();
    imb1 = std::tanh(0.7 * std::atanh(std::clamp(imb1, -0.99, 0.99)) + 0.6 * rng.Normal());
    imb5 = 0.9 * imb5 + 0.1 * imb1 + 0.05 * rng.Normal();
    imb5 = std::clamp(imb5, -1.0, 1.0);
    flow = 0.8 * flow + rng.StudentT4() * 50.0;  // signed traded volume
    const double spread = std::exp(spread_log);
    const double micro = 0.5 * spread * imb1 + 0.1 * rng.Normal();
    float* f = out.data() + static_cast<size_t>(t) * 8;
    f[0] = static_cast<float>(r1);
    f[1] = static_cast<float>(r10);
    f[2] = static_cast<float>(r50);
    f[3] = static_cast<float>(spread);
    f[4] = static_cast<float>(imb1);
    f[5] = static_cast<float>(imb5);
    f[6] = static_cast<float>(flow);
    f[7] = static_cast<float>(micro);
  }
  return out;
}

std::vector<float> Windows(const std::vector<float>& ticks, int window, int input_size) {
  const size_t n_ticks = ticks.size() / static_cast<size_t>(input_size);
  const size_t per = static_cast<size_t>(window) * input_size;
  std::vector<float> out;
  for (size_t end = static_cast<size_t>(window); end <= n_ticks; ++end) {
    const float* from = ticks.data() + (end - static_cast<size_t>(window)) * input_size;
    out.insert(out.end(), from, from + per);
  }
  return out;
}

void CenterOutput(ModelSpec& spec, const std::vector<float>& windows) {
  auto model = MakeFp32Model(std::make_shared<const ModelSpec>(spec));
  ASSERT_NE(model, nullptr);
  std::vector<float> ws(model->workspace_floats());
  const size_t per = static_cast<size_t>(spec.window) * spec.input_size;
  double sum = 0;
  const size_t n = windows.size() / per;
  for (size_t i = 0; i < n; ++i) {
    sum += model->Run({windows.data() + i * per, per}, ws.data());
  }
  spec.layers.back().bias[0] -= static_cast<float>(sum / static_cast<double>(n));
}

std::string WriteTempFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

}  // namespace qsig::models::testing
