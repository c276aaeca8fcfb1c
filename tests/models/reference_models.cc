#include "reference_models.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>

#include "random_models.h"

namespace qsig::models::reference {
namespace {

// The shared portable generator and layer init (test_models.h), on a stream of its own.
using testing::RandomLinear;
using testing::SetNormalization;
using testing::UniformVec;
struct Rng : testing::Rng {
  explicit Rng(uint64_t seed) : testing::Rng(seed, 7) {}
};

LstmLayer RandomLstm(Rng& rng, int in, int hidden) {
  LstmLayer l;
  l.input_size = in;
  l.hidden_size = hidden;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  const size_t g = 4 * static_cast<size_t>(hidden);
  l.w_ih = UniformVec(rng, g * in, bound);
  l.w_hh = UniformVec(rng, g * hidden, bound);
  l.b_ih = UniformVec(rng, g, bound);
  l.b_hh = UniformVec(rng, g, bound);
  return l;
}

}  // namespace

const char* RefName(Ref r) {
  switch (r) {
    case Ref::kLstmA:
      return "LSTM-A";
    case Ref::kLstmB:
      return "LSTM-B";
    case Ref::kMlpC:
      return "MLP-C";
    case Ref::kGruD:
      return "GRU-D";
  }
  return "?";
}

ModelSpec RawSpec(Ref r, uint64_t seed) {
  Rng rng(seed * 31 + static_cast<uint64_t>(r));
  ModelSpec s;
  s.name = RefName(r);
  switch (r) {
    case Ref::kLstmA:
      s.arch = Arch::kLstm;
      s.input_size = 32;
      s.window = 32;
      s.lstm.push_back(RandomLstm(rng, 32, 64));
      s.layers.push_back(RandomLinear(rng, 64, 1, Activation::kNone));
      break;
    case Ref::kLstmB:
      s.arch = Arch::kLstm;
      s.input_size = 32;
      s.window = 64;
      s.lstm.push_back(RandomLstm(rng, 32, 128));
      s.lstm.push_back(RandomLstm(rng, 128, 128));
      s.layers.push_back(RandomLinear(rng, 128, 1, Activation::kNone));
      break;
    case Ref::kMlpC:
      s.arch = Arch::kMlp;
      s.input_size = 64;
      s.window = 1;
      s.layers.push_back(RandomLinear(rng, 64, 256, Activation::kRelu));
      s.layers.push_back(RandomLinear(rng, 256, 256, Activation::kRelu));
      s.layers.push_back(RandomLinear(rng, 256, 1, Activation::kNone));
      break;
    case Ref::kGruD: {
      s.arch = Arch::kGru;
      s.input_size = 32;
      s.window = 32;
      GruLayer g;
      g.input_size = 32;
      g.hidden_size = 64;
      const double bound = 1.0 / 8.0;
      g.w_ih = UniformVec(rng, 192 * 32, bound);
      g.w_hh = UniformVec(rng, 192 * 64, bound);
      g.b_ih = UniformVec(rng, 192, bound);
      g.b_hh = UniformVec(rng, 192, bound);
      s.gru.push_back(g);
      s.layers.push_back(RandomLinear(rng, 64, 1, Activation::kNone));
      break;
    }
  }
  return s;
}

std::vector<float> Features(uint64_t seed, int n_ticks, int width) {
  const int groups = (width + 7) / 8;
  std::vector<float> out(static_cast<size_t>(n_ticks) * width);
  for (int g = 0; g < groups; ++g) {
    Rng rng(seed * 1000 + static_cast<uint64_t>(g));
    const double vol = 0.5 + 0.25 * (g % 4);  // bps per tick, per instrument
    double ret_hist[50] = {};
    double imb1 = 0, imb5 = 0, flow = 0, spread_log = std::log(2.0), queue_log = std::log(800.0);
    for (int t = 0; t < n_ticks; ++t) {
      const double r1 = vol * rng.StudentT4();
      for (int k = 49; k > 0; --k) ret_hist[k] = ret_hist[k - 1];
      ret_hist[0] = r1;
      double r10 = 0, r50 = 0;
      for (int k = 0; k < 50; ++k) (k < 10 ? r10 : r50) += ret_hist[k];
      r50 += r10;
      spread_log = 0.95 * spread_log + 0.05 * std::log(2.0) + 0.15 * rng.Normal();
      queue_log = 0.98 * queue_log + 0.02 * std::log(800.0) + 0.2 * rng.Normal();
      imb1 = std::tanh(0.7 * std::atanh(std::clamp(imb1, -0.99, 0.99)) + 0.6 * rng.Normal());
      imb5 = std::clamp(0.9 * imb5 + 0.1 * imb1 + 0.05 * rng.Normal(), -1.0, 1.0);
      flow = 0.8 * flow + rng.StudentT4() * 50.0;  // signed traded volume (shares)
      const double spread = std::exp(spread_log);
      const double micro = 0.5 * spread * imb1 + 0.1 * rng.Normal();
      const double f[8] = {r1,   r10,  r50,  g % 2 ? std::exp(queue_log) : spread,
                           imb1, imb5, flow, micro};
      for (int k = 0; k < 8 && g * 8 + k < width; ++k) {
        out[static_cast<size_t>(t) * width + g * 8 + k] = static_cast<float>(f[k]);
      }
    }
  }
  return out;
}

std::vector<float> Windows(const std::vector<float>& ticks, int window, int width, int stride) {
  const size_t n_ticks = ticks.size() / static_cast<size_t>(width);
  const size_t per = static_cast<size_t>(window) * width;
  std::vector<float> out;
  for (size_t end = static_cast<size_t>(window); end <= n_ticks;
       end += static_cast<size_t>(stride)) {
    const float* from = ticks.data() + (end - static_cast<size_t>(window)) * width;
    out.insert(out.end(), from, from + per);
  }
  return out;
}

std::vector<float> RunAll(const Model& m, const std::vector<float>& windows) {
  const size_t per = static_cast<size_t>(m.window()) * m.input_size();
  std::vector<float> ws(m.workspace_floats());
  std::vector<float> out;
  for (size_t i = 0; i + per <= windows.size(); i += per) {
    out.push_back(m.Run(std::span<const float>(windows.data() + i, per), ws.data()));
  }
  return out;
}

ModelSpec TrainedSpec(Ref r, uint64_t seed) {
  ModelSpec s = RawSpec(r, seed);
  const std::vector<float> ticks = Features(seed + 500, 4000, s.input_size);
  SetNormalization(s, ticks);
  const std::vector<float> windows = Windows(ticks, s.window, s.input_size, 7);
  auto m = MakeFp32Model(std::make_shared<const ModelSpec>(s));
  if (m == nullptr) return s;
  double sum = 0;
  const std::vector<float> y = RunAll(*m, windows);
  for (float v : y) sum += v;
  if (!y.empty())
    s.layers.back().bias[0] -= static_cast<float>(sum / static_cast<double>(y.size()));
  return s;
}

Agreement Compare(const std::vector<float>& a, const std::vector<float>& b) {
  Agreement g;
  g.n = std::min(a.size(), b.size());
  double se = 0, ss = 0;
  size_t agree = 0;
  for (size_t i = 0; i < g.n; ++i) {
    const double x = a[i], y = b[i];
    se += (x - y) * (x - y);
    ss += x * x;
    agree += (x > 0) == (y > 0);
  }
  if (g.n == 0) return g;
  g.rmse_over_rms = std::sqrt(se / ss);
  g.sign_agreement = static_cast<double>(agree) / static_cast<double>(g.n);
  return g;
}

}  // namespace qsig::models::reference
