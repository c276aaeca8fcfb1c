// RunTrain and RunQat (train.h): the only translation unit of models/train that includes
// LibTorch's headers (about a minute to compile); torch types stay inside it.
#include "qsig/models/train/train.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/feature_table.h"
#include "qsig/models/io/import.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/model.h"
#include "qsig/models/model_json.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/calibration.h"

namespace qsig::models::train {
namespace {

using io::FeatureTable;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Data

// Samples: windows of raw features (n x window x input) and their labels.
struct Samples {
  std::vector<float> x;
  std::vector<float> y;
  size_t size() const { return y.size(); }
};

struct Data {
  FeatureTable table;
  std::vector<int> cols;  // Model feature k reads table column cols[k].
  int window = 1;
  size_t split_row = 0;  // Rows before it are the training split.
  Samples train, val;
  float clip_lo = 0, clip_hi = 0, y_scale = 1;  // Training-label quantiles and clipped std.
};

// The windows ending at `rows` whose values and label are all finite.
Samples Gather(const FeatureTable& t, const std::vector<int>& cols, int window,
               const std::vector<size_t>& rows) {
  const size_t per = static_cast<size_t>(window) * cols.size();
  const std::vector<float> all = io::Windows(t, cols, window, rows);
  Samples s;
  s.x.reserve(all.size());
  s.y.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* w = all.data() + i * per;
    const float label = t.labels[rows[i]];
    if (!std::isfinite(label) || !std::all_of(w, w + per, [](float v) { return std::isfinite(v); }))
      continue;
    s.x.insert(s.x.end(), w, w + per);
    s.y.push_back(label);
  }
  return s;
}

double Quantile(std::vector<float> v, double q) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

absl::Status CheckDataOptions(const DataOptions& o) {
  if (o.input_csv.empty()) return absl::InvalidArgumentError("--input: no feature file given");
  if (!(o.val_fraction > 0 && o.val_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--val-fraction is ", o.val_fraction, "; expected a value in (0, 1)"));
  }
  if (o.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  if (o.threads < 1) return absl::InvalidArgumentError("--threads must be >= 1");
  if (o.max_train < 1 || o.max_val < 1) {
    return absl::InvalidArgumentError("--max-train and --max-val must be >= 1");
  }
  if (!(o.label_clip_quantile >= 0 && o.label_clip_quantile < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--label-clip is ", o.label_clip_quantile, "; expected a value in [0, 0.5)"));
  }
  return absl::OkStatus();
}

// Splits by time, gathers the samples and the label scale. `cols` empty = every feature column.
absl::StatusOr<Data> LoadData(const DataOptions& o, FeatureTable table, std::vector<int> cols,
                              int window, std::mt19937_64& rng) {
  Data d;
  d.table = std::move(table);
  d.window = window;
  if (cols.empty()) {
    cols.resize(d.table.feature_names.size());
    std::iota(cols.begin(), cols.end(), 0);
  }
  d.cols = std::move(cols);
  const size_t rows = d.table.rows();
  d.split_row = static_cast<size_t>(static_cast<double>(rows) * (1.0 - o.val_fraction));
  std::vector<size_t> tr = io::FullWindowRows(d.table, window, 0, d.split_row);
  std::vector<size_t> va = io::FullWindowRows(d.table, window, d.split_row, rows);
  if (tr.size() > o.max_train) {
    std::shuffle(tr.begin(), tr.end(), rng);
    tr.resize(o.max_train);
    std::sort(tr.begin(), tr.end());
  }
  va = io::Spread(va, o.max_val);
  d.train = Gather(d.table, d.cols, window, tr);
  d.val = Gather(d.table, d.cols, window, va);
  if (d.train.size() < 100 || d.val.size() < 10) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.input_csv, ": not enough samples with a full window of ", window,
                     " rows and a finite label: ", d.train.size(), " for training (need >= 100), ",
                     d.val.size(), " for validation (need >= 10); use a longer feature file"));
  }
  d.clip_lo = static_cast<float>(Quantile(d.train.y, o.label_clip_quantile));
  d.clip_hi = static_cast<float>(Quantile(d.train.y, 1.0 - o.label_clip_quantile));
  double s1 = 0, s2 = 0;
  for (float y : d.train.y) {
    const double c = std::clamp(y, d.clip_lo, d.clip_hi);
    s1 += c;
    s2 += c * c;
  }
  const double n = static_cast<double>(d.train.size());
  const double var = s2 / n - (s1 / n) * (s1 / n);
  d.y_scale = var > 0 ? static_cast<float>(std::sqrt(var)) : 1.0f;
  return d;
}

torch::Tensor WindowsTensor(const Samples& s, const Data& d) {
  return torch::from_blob(
             const_cast<float*>(s.x.data()),
             {static_cast<int64_t>(s.size()), d.window, static_cast<int64_t>(d.cols.size())},
             torch::kFloat)
      .clone();
}

torch::Tensor ClippedLabels(const Samples& s, const Data& d) {
  std::vector<float> y(s.y);
  for (float& v : y) v = std::clamp(v, d.clip_lo, d.clip_hi);
  return torch::from_blob(y.data(), {static_cast<int64_t>(y.size())}, torch::kFloat).clone();
}

EvalMetrics Metrics(const std::vector<float>& out, const std::vector<float>& label) {
  EvalMetrics m;
  std::vector<double> a(out.begin(), out.end()), b(label.begin(), label.end());
  // One instrument, no horizon: only the correlations and the hit rate are reported here.
  const TradingMetrics t = ComputeTradingMetrics(a, b, std::vector<uint32_t>(a.size(), 0), 0);
  m.ic_pearson = t.ic_pearson;
  m.ic_spearman = t.ic_spearman;
  m.hit_rate = t.hit_rate;
  double se = 0;
  for (size_t i = 0; i < a.size(); ++i) se += (a[i] - b[i]) * (a[i] - b[i]);
  m.mse = a.empty() ? NAN : se / static_cast<double>(a.size());
  return m;
}

json MetricsJson(const EvalMetrics& m) {
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  return {{"ic_pearson", num(m.ic_pearson)},
          {"ic_spearman", num(m.ic_spearman)},
          {"mse", num(m.mse)},
          {"hit_rate", num(m.hit_rate)}};
}

// ---------------------------------------------------------------------------------------------
// The network: a ModelSpec's layers as LibTorch tensors, with optional fake quantization.

// Moving-average min-max observer (PyTorch's MovingAverageMinMaxObserver, averaging constant
// 0.01) and u8 per-tensor fake quantization over its range (widened to include 0, as
// quant::ChooseQuantParams does).
struct ActFakeQuant {
  bool enabled = false;
  bool seen = false;
  float lo = 0, hi = 0;

  torch::Tensor Apply(const torch::Tensor& x, bool observe) {
    if (!enabled) return x;
    if (observe) {
      const float bmin = x.detach().min().item<float>();
      const float bmax = x.detach().max().item<float>();
      if (!seen) {
        lo = bmin;
        hi = bmax;
        seen = true;
      } else {
        lo += 0.01f * (bmin - lo);
        hi += 0.01f * (bmax - hi);
      }
    }
    if (!seen) return x;
    const float l = std::min(lo, 0.0f), h = std::max(hi, 0.0f);
    const double scale = (static_cast<double>(h) - l) / 255.0;
    if (!(scale > 0)) return x;
    const int64_t zp = std::clamp<int64_t>(std::llround(-l / scale), 0, 255);
    return torch::fake_quantize_per_tensor_affine(x, scale, zp, 0, 255);
  }
};

// Per-channel (per output row) symmetric s8 fake quantization with the runtime's scale
// max|w_row| / 127 of the current weights.
torch::Tensor WeightFakeQuant(const torch::Tensor& w) {
  const torch::Tensor scale = std::get<0>(w.detach().abs().max(1)).clamp_min(1e-12f) / 127.0f;
  const torch::Tensor zp = torch::zeros({w.size(0)}, torch::kInt);
  return torch::fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127);
}

torch::Tensor Param(const std::vector<float>& v, int64_t rows, int64_t cols) {
  auto t = torch::from_blob(const_cast<float*>(v.data()), {rows, cols}, torch::kFloat).clone();
  if (cols == 1) t = t.view({rows});
  return t.requires_grad_(true);
}

std::vector<float> ToVector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().contiguous().to(torch::kFloat);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

class Net {
 public:
  explicit Net(const ModelSpec& spec) : spec_(spec) {
    const int64_t in = spec.input_size;
    std::vector<float> mean(spec.feature_mean), inv(spec.feature_std);
    if (mean.empty()) mean.assign(static_cast<size_t>(in), 0.0f);
    if (inv.empty()) inv.assign(static_cast<size_t>(in), 1.0f);
    for (float& v : inv) v = v != 0.0f ? 1.0f / v : 1.0f;  // std 0 is treated as 1
    mean_ = torch::from_blob(mean.data(), {in}, torch::kFloat).clone();
    inv_std_ = torch::from_blob(inv.data(), {in}, torch::kFloat).clone();
    const int gates = spec.arch == Arch::kGru ? 3 : 4;
    auto add_rnn = [&](const auto& layers) {
      for (const auto& l : layers) {
        const int64_t g = static_cast<int64_t>(gates) * l.hidden_size;
        rnn_.push_back({Param(l.w_ih, g, l.input_size), Param(l.w_hh, g, l.hidden_size),
                        Param(l.b_ih, g, 1), Param(l.b_hh, g, 1)});
      }
    };
    if (spec.arch == Arch::kLstm) add_rnn(spec.lstm);
    if (spec.arch == Arch::kGru) add_rnn(spec.gru);
    for (const LinearLayer& l : spec.layers) {
      lin_.push_back({Param(l.weight, l.out, l.in), Param(l.bias, l.out, 1), l.activation});
    }
    const size_t n_ops = 2 * rnn_.size() + lin_.size();
    act_.resize(n_ops);
    weight_q_.assign(n_ops, false);
  }

  std::vector<torch::Tensor> parameters() const {
    std::vector<torch::Tensor> p;
    for (const Rnn& r : rnn_) p.insert(p.end(), {r.w_ih, r.w_hh, r.b_ih, r.b_hh});
    for (const Lin& l : lin_) p.insert(p.end(), {l.w, l.b});
    return p;
  }

  // Fake quantization where qsig's default INT8 plan quantizes (see train.h); returns what it
  // placed, for the report.
  std::vector<std::string> EnableFakeQuant() {
    std::vector<std::string> placed;
    const size_t n_rnn = rnn_.size(), n_ops = act_.size();
    const char* rnn = ArchName(spec_.arch);
    for (size_t id = 0; id < n_ops; ++id) {
      const bool head = id + 1 == n_ops && spec_.layers.back().out <= 16;
      if (head) continue;  // The FP32 head.
      weight_q_[id] = true;
      act_[id].enabled = id != 0;  // The model's input is s16 in the runtime: left exact.
      if (id < 2 * n_rnn) {
        const std::string l = absl::StrCat(rnn, "[", id / 2, "]");
        placed.push_back(absl::StrCat(l, id % 2 ? ".w_hh" : ".w_ih", " s8 per channel"));
        if (act_[id].enabled) {
          placed.push_back(absl::StrCat(l, id % 2 ? " hidden state h" : " input x", " u8"));
        }
      } else {
        const std::string l = absl::StrCat("layers[", id - 2 * n_rnn, "]");
        placed.push_back(absl::StrCat(l, ".weight s8 per channel"));
        if (act_[id].enabled) placed.push_back(absl::StrCat(l, " input u8"));
      }
    }
    return placed;
  }
  void set_observe(bool on) { observe_ = on; }

  // The observers' ranges as ModelSpec::input_ranges (one per QuantizableLayers entry: a
  // recurrent layer's input x_t, a Linear layer's input), so the INT8 runtime quantizes those
  // tensors on the grids QAT trained with. Hidden states are always calibrated by the runtime.
  std::vector<SourceRange> ObservedRanges() const {
    const size_t n_rnn = rnn_.size();
    std::vector<SourceRange> r(n_rnn + lin_.size());
    for (size_t id = 0; id < act_.size(); ++id) {
      if (id < 2 * n_rnn && id % 2 == 1) continue;  // h_{t-1}
      const ActFakeQuant& a = act_[id];
      if (!a.enabled || !a.seen) continue;
      const float lo = std::min(a.lo, 0.0f), hi = std::max(a.hi, 0.0f);
      if (!(lo < hi)) continue;
      SourceRange& out = r[id < 2 * n_rnn ? id / 2 : id - n_rnn];
      out.set = true;
      out.min = lo;
      out.max = hi;
    }
    return r;
  }

  // x: [batch, window, input] raw features -> [batch].
  torch::Tensor Forward(const torch::Tensor& x) {
    torch::Tensor seq = (x - mean_) * inv_std_;
    const size_t n_rnn = rnn_.size();
    torch::Tensor h;
    if (n_rnn == 0) {
      h = seq.select(1, seq.size(1) - 1);
    } else {
      for (size_t l = 0; l < n_rnn; ++l) seq = RnnLayer(l, seq);
      h = seq.select(1, seq.size(1) - 1);
    }
    for (size_t j = 0; j < lin_.size(); ++j) {
      const size_t id = 2 * n_rnn + j;
      const Lin& L = lin_[j];
      const torch::Tensor in = act_[id].Apply(h, observe_);
      h = torch::addmm(L.b, in, (weight_q_[id] ? WeightFakeQuant(L.w) : L.w).t());
      switch (L.act) {
        case Activation::kRelu:
          h = torch::relu(h);
          break;
        case Activation::kTanh:
          h = torch::tanh(h);
          break;
        case Activation::kSigmoid:
          h = torch::sigmoid(h);
          break;
        case Activation::kNone:
          break;
      }
    }
    return h.view({-1});
  }

  // The spec with the current weights (and `head_scale` folded into the last layer).
  ModelSpec ToSpec(float head_scale = 1.0f) const {
    ModelSpec s = spec_;
    auto put = [&](auto& layers) {
      for (size_t l = 0; l < layers.size(); ++l) {
        layers[l].w_ih = ToVector(rnn_[l].w_ih);
        layers[l].w_hh = ToVector(rnn_[l].w_hh);
        layers[l].b_ih = ToVector(rnn_[l].b_ih);
        layers[l].b_hh = ToVector(rnn_[l].b_hh);
      }
    };
    if (s.arch == Arch::kLstm) put(s.lstm);
    if (s.arch == Arch::kGru) put(s.gru);
    for (size_t j = 0; j < lin_.size(); ++j) {
      s.layers[j].weight = ToVector(lin_[j].w);
      s.layers[j].bias = ToVector(lin_[j].b);
    }
    if (head_scale != 1.0f) {
      for (float& v : s.layers.back().weight) v *= head_scale;
      for (float& v : s.layers.back().bias) v *= head_scale;
    }
    return s;
  }

 private:
  struct Rnn {
    torch::Tensor w_ih, w_hh, b_ih, b_hh;
  };
  struct Lin {
    torch::Tensor w, b;
    Activation act;
  };

  // One recurrent layer over the sequence [batch, T, in] -> [batch, T, hidden], h0 = c0 = 0.
  torch::Tensor RnnLayer(size_t l, const torch::Tensor& seq) {
    const Rnn& r = rnn_[l];
    const size_t id_x = 2 * l, id_h = 2 * l + 1;
    const torch::Tensor w_ih = weight_q_[id_x] ? WeightFakeQuant(r.w_ih) : r.w_ih;
    const torch::Tensor w_hh = weight_q_[id_h] ? WeightFakeQuant(r.w_hh) : r.w_hh;
    const torch::Tensor gx = torch::matmul(act_[id_x].Apply(seq, observe_), w_ih.t()) + r.b_ih;
    const int64_t batch = seq.size(0), steps = seq.size(1), hidden = r.w_hh.size(1);
    torch::Tensor h = torch::zeros({batch, hidden});
    torch::Tensor c = torch::zeros({batch, hidden});
    std::vector<torch::Tensor> outs;
    outs.reserve(static_cast<size_t>(steps));
    for (int64_t t = 0; t < steps; ++t) {
      const torch::Tensor gh = torch::addmm(r.b_hh, act_[id_h].Apply(h, observe_), w_hh.t());
      const torch::Tensor gi = gx.select(1, t);
      if (spec_.arch == Arch::kLstm) {
        const auto g = (gi + gh).chunk(4, 1);
        c = torch::sigmoid(g[1]) * c + torch::sigmoid(g[0]) * torch::tanh(g[2]);
        h = torch::sigmoid(g[3]) * torch::tanh(c);
      } else {
        const auto a = gi.chunk(3, 1);
        const auto b = gh.chunk(3, 1);
        const torch::Tensor rg = torch::sigmoid(a[0] + b[0]);
        const torch::Tensor z = torch::sigmoid(a[1] + b[1]);
        const torch::Tensor n = torch::tanh(a[2] + rg * b[2]);
        h = (1 - z) * n + z * h;
      }
      outs.push_back(h);
    }
    return torch::stack(outs, 1);
  }

  ModelSpec spec_;
  torch::Tensor mean_, inv_std_;
  std::vector<Rnn> rnn_;
  std::vector<Lin> lin_;
  std::vector<ActFakeQuant> act_;  // Per runtime operation (its input).
  std::vector<bool> weight_q_;
  bool observe_ = true;
};

// ---------------------------------------------------------------------------------------------
// The optimizer loop shared by train and qat.

std::vector<float> Predict(Net& net, const torch::Tensor& x, float out_mult) {
  torch::NoGradGuard no_grad;
  std::vector<float> out;
  out.reserve(static_cast<size_t>(x.size(0)));
  for (int64_t i = 0; i < x.size(0); i += 4096) {
    const torch::Tensor y = net.Forward(x.slice(0, i, std::min(i + 4096, x.size(0)))) * out_mult;
    const std::vector<float> v = ToVector(y);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// Trains `net` for `epochs`: predictions (in label units) are net(x) * out_mult; the loss is
// the MSE against the clipped labels, both divided by the label scale. `before_epoch(e)` runs
// first in each epoch (e from 1).
template <class BeforeEpoch>
std::vector<EpochLog> Fit(Net& net, const Data& d, const DataOptions& o, int epochs, double lr,
                          float out_mult, std::ostream& log, const char* what,
                          BeforeEpoch before_epoch) {
  const torch::Tensor xtr = WindowsTensor(d.train, d), ytr = ClippedLabels(d.train, d);
  const torch::Tensor xva = WindowsTensor(d.val, d);
  std::vector<float> yva_clip(d.val.y);
  for (float& v : yva_clip) v = std::clamp(v, d.clip_lo, d.clip_hi);
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(lr));
  const auto t0 = std::chrono::steady_clock::now();
  const double inv_scale = 1.0 / d.y_scale;
  std::vector<EpochLog> logs;
  for (int e = 1; e <= epochs; ++e) {
    before_epoch(e);
    const torch::Tensor perm = torch::randperm(xtr.size(0), torch::kLong);
    double total = 0;
    for (int64_t i = 0; i < perm.size(0); i += o.batch) {
      const torch::Tensor idx = perm.slice(0, i, std::min<int64_t>(i + o.batch, perm.size(0)));
      const torch::Tensor pred = net.Forward(xtr.index_select(0, idx)) * out_mult;
      const torch::Tensor loss = ((pred - ytr.index_select(0, idx)) * inv_scale).pow(2).mean();
      opt.zero_grad();
      loss.backward();
      opt.step();
      total += loss.item<double>() * static_cast<double>(idx.size(0));
    }
    EpochLog L;
    L.epoch = e;
    L.train_loss = total / static_cast<double>(xtr.size(0));
    const std::vector<float> pv = Predict(net, xva, out_mult);
    double vl = 0;
    for (size_t k = 0; k < pv.size(); ++k) {
      vl += std::pow((pv[k] - yva_clip[k]) * inv_scale, 2);
    }
    L.val_loss = vl / static_cast<double>(pv.size());
    L.val = Metrics(pv, d.val.y);
    L.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log << absl::StrFormat(
               "%s epoch %d/%d  train_loss %.5f  val_loss %.5f  val_ic %+.4f (rank %+.4f)  "
               "hit %.2f%%  %.1fs",
               what, e, epochs, L.train_loss, L.val_loss, L.val.ic_pearson, L.val.ic_spearman,
               100.0 * L.val.hit_rate, L.seconds)
        << std::endl;
    if (!std::isfinite(L.train_loss)) {
      logs.push_back(L);
      break;  // Diverged; the caller refuses the model.
    }
    logs.push_back(L);
  }
  return logs;
}

json EpochsJson(const std::vector<EpochLog>& epochs) {
  json a = json::array();
  for (const EpochLog& e : epochs) {
    a.push_back({{"epoch", e.epoch},
                 {"train_loss", e.train_loss},
                 {"val_loss", e.val_loss},
                 {"val", MetricsJson(e.val)},
                 {"seconds", e.seconds}});
  }
  return a;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

void SetUpTorch(const DataOptions& o) {
  at::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
}

// PyTorch's default initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for Linear weights and
// biases, U(-1/sqrt(hidden), 1/sqrt(hidden)) for every recurrent parameter.
std::vector<float> Uniform(size_t n, double fan, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(static_cast<float>(-1.0 / std::sqrt(fan)),
                                          static_cast<float>(1.0 / std::sqrt(fan)));
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

ModelSpec InitialSpec(const TrainOptions& o, const Data& d, int hidden, int layers,
                      std::mt19937_64& rng) {
  ModelSpec s;
  const int in = static_cast<int>(d.cols.size());
  s.input_size = in;
  s.window = d.window;
  s.feature_names = d.table.feature_names;
  auto linear = [&](int i, int out, Activation act) {
    LinearLayer l;
    l.in = i;
    l.out = out;
    l.activation = act;
    l.weight = Uniform(static_cast<size_t>(i) * out, i, rng);
    l.bias = Uniform(static_cast<size_t>(out), i, rng);
    return l;
  };
  if (o.arch == "mlp") {
    s.arch = Arch::kMlp;
    s.window = 1;
    int prev = in;
    for (int k = 0; k < layers; ++k) {
      s.layers.push_back(linear(prev, hidden, Activation::kRelu));
      prev = hidden;
    }
    s.layers.push_back(linear(prev, 1, Activation::kNone));
    return s;
  }
  const int gates = o.arch == "gru" ? 3 : 4;
  s.arch = o.arch == "gru" ? Arch::kGru : Arch::kLstm;
  for (int k = 0; k < layers; ++k) {
    const int i = k == 0 ? in : hidden;
    const size_t g = static_cast<size_t>(gates) * hidden;
    auto fill = [&](auto& l) {
      l.input_size = i;
      l.hidden_size = hidden;
      l.w_ih = Uniform(g * i, hidden, rng);
      l.w_hh = Uniform(g * hidden, hidden, rng);
      l.b_ih = Uniform(g, hidden, rng);
      l.b_hh = Uniform(g, hidden, rng);
    };
    if (s.arch == Arch::kGru) {
      fill(s.gru.emplace_back());
    } else {
      fill(s.lstm.emplace_back());
    }
  }
  s.layers.push_back(linear(hidden, 1, Activation::kNone));
  return s;
}

// Per-feature mean and std over the training rows' finite values (std 0 -> 1).
void Normalization(const Data& d, ModelSpec& s) {
  const size_t k = d.cols.size(), nf = d.table.feature_names.size();
  std::vector<double> s1(k, 0), s2(k, 0);
  std::vector<size_t> n(k, 0);
  for (size_t r = 0; r < d.split_row; ++r) {
    for (size_t j = 0; j < k; ++j) {
      const float v = d.table.values[r * nf + static_cast<size_t>(d.cols[j])];
      if (!std::isfinite(v)) continue;
      s1[j] += v;
      s2[j] += static_cast<double>(v) * v;
      ++n[j];
    }
  }
  s.feature_mean.assign(k, 0.0f);
  s.feature_std.assign(k, 1.0f);
  for (size_t j = 0; j < k; ++j) {
    if (n[j] == 0) continue;
    const double m = s1[j] / static_cast<double>(n[j]);
    const double var = std::max(0.0, s2[j] / static_cast<double>(n[j]) - m * m);
    s.feature_mean[j] = static_cast<float>(m);
    s.feature_std[j] = var > 0 ? static_cast<float>(std::sqrt(var)) : 1.0f;
  }
}

}  // namespace

absl::StatusOr<TrainReport> RunTrain(const TrainOptions& o) {
  std::ostream& log = o.log ? *o.log : std::cout;
  QSIG_RETURN_IF_ERROR(CheckDataOptions(o.data));
  if (o.arch != "mlp" && o.arch != "lstm" && o.arch != "gru") {
    return absl::InvalidArgumentError(
        absl::StrCat("--arch is \"", o.arch, "\"; expected mlp, lstm or gru"));
  }
  if (o.output_path.empty()) return absl::InvalidArgumentError("-o: no output file given");
  if (o.epochs < 1) return absl::InvalidArgumentError("--epochs must be >= 1");
  if (!(o.lr > 0)) return absl::InvalidArgumentError("--lr must be > 0");
  const bool mlp = o.arch == "mlp";
  const int hidden = o.hidden > 0 ? o.hidden : (mlp ? 32 : 16);
  const int layers = o.layers > 0 ? o.layers : (mlp ? 2 : 1);
  const int window = mlp ? 1 : o.window;
  if (window < 1 || window > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("--window is ", o.window, "; expected 1..4096"));
  }
  if (hidden > 4096 || layers > 16) {
    return absl::InvalidArgumentError("--hidden must be <= 4096 and --layers <= 16");
  }
  SetUpTorch(o.data);
  std::mt19937_64 rng(o.data.seed);
  QSIG_ASSIGN_OR_RETURN(FeatureTable table, io::ReadFeatureTable(o.data.input_csv, o.data.table));
  QSIG_ASSIGN_OR_RETURN(Data d, LoadData(o.data, std::move(table), {}, window, rng));

  ModelSpec spec = InitialSpec(o, d, hidden, layers, rng);
  spec.name =
      o.name.empty() ? absl::StrCat(o.arch, "_", io::DefaultModelName(o.data.input_csv)) : o.name;
  Normalization(d, spec);
  log << absl::StrFormat(
             "train %s: %zu features, window %d, hidden %d x %d; %zu training / %zu validation "
             "samples (rows %zu of %zu held out); label clipped to [%.4g, %.4g], scale %.4g",
             o.arch, d.cols.size(), window, hidden, layers, d.train.size(), d.val.size(),
             d.table.rows() - d.split_row, d.table.rows(), d.clip_lo, d.clip_hi, d.y_scale)
      << std::endl;

  Net net(spec);
  TrainReport rep;
  rep.epochs = Fit(net, d, o.data, o.epochs, o.lr, d.y_scale, log, "train", [](int) {});
  if (!std::isfinite(rep.epochs.back().train_loss)) {
    return absl::FailedPreconditionError(
        absl::StrCat("training diverged (loss ", rep.epochs.back().train_loss, " in epoch ",
                     rep.epochs.back().epoch, "); lower --lr or check the feature file"));
  }
  const std::vector<float> torch_out = Predict(net, WindowsTensor(d.val, d), d.y_scale);
  ModelSpec out = net.ToSpec(d.y_scale);  // The model outputs label units (bps).

  // What will be served: the written model on qsig's FP32 runtime, against LibTorch.
  auto shared = std::make_shared<const ModelSpec>(out);
  const std::vector<float> qsig_out = RunAll(*MakeFp32Model(shared), d.val.x);
  double rms = 0;
  for (size_t i = 0; i < qsig_out.size(); ++i) {
    rep.max_abs_diff_torch = std::max(rep.max_abs_diff_torch,
                                      std::fabs(static_cast<double>(qsig_out[i]) - torch_out[i]));
    rms += static_cast<double>(torch_out[i]) * torch_out[i];
  }
  rms = std::sqrt(rms / static_cast<double>(std::max<size_t>(1, qsig_out.size())));
  if (!(rep.max_abs_diff_torch <= 1e-3 * rms + 1e-6)) {
    return absl::InternalError(
        absl::StrCat("the exported model disagrees with LibTorch: max |difference| ",
                     rep.max_abs_diff_torch, " against an output RMS of ", rms, "; not written"));
  }
  rep.val_qsig = Metrics(qsig_out, d.val.y);

  rep.model_name = out.name;
  rep.arch = o.arch;
  rep.input_size = out.input_size;
  rep.window = out.window;
  rep.feature_names = out.feature_names;
  rep.rows = d.table.rows();
  rep.train_samples = d.train.size();
  rep.val_samples = d.val.size();
  rep.label_clip_lo = d.clip_lo;
  rep.label_clip_hi = d.clip_hi;
  rep.label_scale = d.y_scale;
  json provenance = {{"tool", "qsig train"},
                     {"features_csv", o.data.input_csv},
                     {"seed", o.data.seed},
                     {"epochs", o.epochs},
                     {"lr", o.lr},
                     {"batch", o.data.batch},
                     {"hidden", hidden},
                     {"layers", layers},
                     {"train_samples", rep.train_samples},
                     {"val_samples", rep.val_samples},
                     {"label_clip_bps", {d.clip_lo, d.clip_hi}},
                     {"val", MetricsJson(rep.val_qsig)}};
  QSIG_ASSIGN_OR_RETURN(rep.sha256, WriteModelJson(out, o.output_path, provenance.dump()));
  json r = provenance;
  r["model"] = rep.model_name;
  r["arch"] = rep.arch;
  r["output"] = o.output_path;
  r["sha256"] = rep.sha256;
  r["epochs_log"] = EpochsJson(rep.epochs);
  r["max_abs_diff_torch"] = rep.max_abs_diff_torch;
  rep.json = r.dump(2);
  if (!o.report_json.empty()) QSIG_RETURN_IF_ERROR(WriteText(o.report_json, rep.json));
  log << absl::StrFormat(
             "wrote %s (sha256 %s): validation IC %+.4f (rank %+.4f), hit rate %.2f%% on qsig's "
             "FP32 runtime; max |qsig - LibTorch| %.2g",
             o.output_path, rep.sha256, rep.val_qsig.ic_pearson, rep.val_qsig.ic_spearman,
             100.0 * rep.val_qsig.hit_rate, rep.max_abs_diff_torch)
      << std::endl;
  return rep;
}

absl::StatusOr<QatReport> RunQat(const QatOptions& o) {
  std::ostream& log = o.log ? *o.log : std::cout;
  QSIG_RETURN_IF_ERROR(CheckDataOptions(o.data));
  if (o.output_path.empty()) return absl::InvalidArgumentError("-o: no output file given");
  if (o.epochs < 1) return absl::InvalidArgumentError("--epochs must be >= 1");
  if (o.freeze_observers_after < 0) {
    return absl::InvalidArgumentError("--freeze-observers-after must be >= 0");
  }
  if (!(o.lr > 0)) return absl::InvalidArgumentError("--lr must be > 0");
  Int8Options int8;
  QSIG_ASSIGN_OR_RETURN(int8.method, quant::ParseCalibrationMethod(o.method));
  int8.percentile = o.percentile;
  int8.max_rmse = 0;  // Every layer INT8: PTQ and QAT compared on the same plan.

  QSIG_ASSIGN_OR_RETURN(io::LoadedModel loaded, io::LoadAnyModel(o.model_path));
  const ModelSpec& spec = *loaded.spec;
  SetUpTorch(o.data);
  std::mt19937_64 rng(o.data.seed);
  io::TableOptions table_options = o.data.table;
  table_options.features = spec.feature_names;
  QSIG_ASSIGN_OR_RETURN(FeatureTable table, io::ReadFeatureTable(o.data.input_csv, table_options));
  std::string note;
  QSIG_ASSIGN_OR_RETURN(std::vector<int> cols, io::MapColumns(spec, table, &note));
  QSIG_ASSIGN_OR_RETURN(Data d, LoadData(o.data, std::move(table), cols, spec.window, rng));

  std::vector<size_t> idx(d.train.size());
  std::iota(idx.begin(), idx.end(), 0);
  idx = io::Spread(idx, o.calib_windows);
  const size_t per = static_cast<size_t>(spec.window) * spec.input_size;
  std::vector<float> calib;
  calib.reserve(idx.size() * per);
  for (size_t i : idx) {
    calib.insert(calib.end(), d.train.x.begin() + static_cast<ptrdiff_t>(i * per),
                 d.train.x.begin() + static_cast<ptrdiff_t>((i + 1) * per));
  }

  QatReport rep;
  rep.model_name = spec.name;
  rep.method = o.method;
  rep.train_samples = d.train.size();
  rep.val_samples = d.val.size();
  rep.calib_windows = idx.size();
  // FP32 and PTQ INT8 of a spec on the validation split, on qsig's runtimes.
  auto evaluate = [&](const ModelSpec& s, QatColumn& f, QatColumn& q) -> absl::Status {
    auto shared = std::make_shared<const ModelSpec>(s);
    const std::vector<float> yf = RunAll(*MakeFp32Model(shared), d.val.x);
    QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, CalibrateInt8Model(shared, calib, int8));
    const std::vector<float> yq = RunAll(*m, d.val.x);
    f.val = Metrics(yf, d.val.y);
    f.rmse_over_rms = f.sign_agreement = NAN;
    q.val = Metrics(yq, d.val.y);
    const OutputError err = CompareOutputs(std::span<const float>(yq), yf);
    q.rmse_over_rms = err.rmse_over_rms;
    q.sign_agreement = err.sign_agreement;
    return absl::OkStatus();
  };
  QSIG_RETURN_IF_ERROR(evaluate(spec, rep.fp32, rep.ptq_int8));

  Net net(spec);
  rep.fake_quantized = net.EnableFakeQuant();
  log << absl::StrFormat(
             "qat %s: %zu training / %zu validation samples; fake quantization on %zu tensors; "
             "observers frozen after epoch %d",
             spec.name, d.train.size(), d.val.size(), rep.fake_quantized.size(),
             o.freeze_observers_after)
      << std::endl;
  rep.epochs = Fit(net, d, o.data, o.epochs, o.lr, 1.0f, log, "qat",
                   [&](int e) { net.set_observe(e <= o.freeze_observers_after); });
  if (!std::isfinite(rep.epochs.back().train_loss)) {
    return absl::FailedPreconditionError("quantization-aware training diverged; lower --lr");
  }
  ModelSpec tuned = net.ToSpec();
  tuned.name = absl::StrCat(spec.name, "_qat");
  // The frozen activation ranges travel with the model (ModelSpec::input_ranges, written to the
  // JSON and to artifacts): the runtime then quantizes those tensors as QAT trained.
  tuned.input_ranges = net.ObservedRanges();
  for (size_t i = 0; i < tuned.input_ranges.size(); ++i) {
    if (tuned.input_ranges[i].set) {
      rep.source_ranges.push_back(absl::StrFormat("%s [%.6g, %.6g]", QuantizableLayers(tuned)[i],
                                                  tuned.input_ranges[i].min,
                                                  tuned.input_ranges[i].max));
    }
  }
  QSIG_RETURN_IF_ERROR(evaluate(tuned, rep.qat_fp32, rep.qat_int8));

  auto column = [](const QatColumn& c) {
    json j = MetricsJson(c.val);
    if (std::isfinite(c.rmse_over_rms)) {
      j["rmse_over_rms_vs_fp32"] = c.rmse_over_rms;
      j["sign_agreement_vs_fp32"] = c.sign_agreement;
    }
    return j;
  };
  json provenance = {{"tool", "qsig qat"},
                     {"source_model", o.model_path},
                     {"source_sha256", spec.sha256},
                     {"features_csv", o.data.input_csv},
                     {"epochs", o.epochs},
                     {"freeze_observers_after", o.freeze_observers_after},
                     {"lr", o.lr},
                     {"seed", o.data.seed}};
  QSIG_ASSIGN_OR_RETURN(rep.sha256, WriteModelJson(tuned, o.output_path, provenance.dump()));
  json r = provenance;
  r["model"] = tuned.name;
  r["output"] = o.output_path;
  r["sha256"] = rep.sha256;
  r["method"] = o.method;
  r["train_samples"] = rep.train_samples;
  r["val_samples"] = rep.val_samples;
  r["calib_windows"] = rep.calib_windows;
  r["fake_quantized"] = rep.fake_quantized;
  r["qat_input_ranges"] = rep.source_ranges;
  r["epochs_log"] = EpochsJson(rep.epochs);
  r["fp32"] = column(rep.fp32);
  r["ptq_int8"] = column(rep.ptq_int8);
  r["qat_fp32"] = column(rep.qat_fp32);
  r["qat_int8"] = column(rep.qat_int8);
  rep.json = r.dump(2);
  if (!o.report_json.empty()) QSIG_RETURN_IF_ERROR(WriteText(o.report_json, rep.json));

  log << absl::StrFormat(
      "\nPTQ vs QAT on %zu validation samples (qsig runtimes; INT8 = every layer, %s "
      "calibration on %zu training windows)\n",
      rep.val_samples, o.method, rep.calib_windows);
  log << absl::StrFormat("  %-30s %12s %12s %12s %12s\n", "", "FP32", "PTQ INT8", "QAT FP32",
                         "QAT INT8");
  auto row = [&](const char* name, auto get, const char* fmt) {
    log << absl::StrFormat("  %-30s", name);
    for (const QatColumn* c : {&rep.fp32, &rep.ptq_int8, &rep.qat_fp32, &rep.qat_int8}) {
      const double v = get(*c);
      log << (std::isfinite(v) ? absl::StrFormat(" %12s", absl::StrFormat(fmt, v))
                               : absl::StrFormat(" %12s", "-"));
    }
    log << "\n";
  };
  row(
      "IC vs label (Pearson)", [](const QatColumn& c) { return c.val.ic_pearson; }, "%+.4f");
  row(
      "IC vs label (Spearman rank)", [](const QatColumn& c) { return c.val.ic_spearman; }, "%+.4f");
  row(
      "MSE vs label", [](const QatColumn& c) { return c.val.mse; }, "%.5g");
  row(
      "hit rate", [](const QatColumn& c) { return 100.0 * c.val.hit_rate; }, "%.2f%%");
  row(
      "RMSE vs own FP32 / RMS", [](const QatColumn& c) { return 100.0 * c.rmse_over_rms; },
      "%.3f%%");
  row(
      "sign agreement vs own FP32", [](const QatColumn& c) { return 100.0 * c.sign_agreement; },
      "%.2f%%");
  if (!rep.source_ranges.empty()) {
    log << "  QAT INT8 quantizes these inputs on QAT's frozen ranges (kept in the model):";
    for (const std::string& r : rep.source_ranges) log << " " << r << ";";
    log << "\n";
  }
  log << absl::StrFormat("wrote %s (sha256 %s)\n", o.output_path, rep.sha256) << std::flush;
  return rep;
}

}  // namespace qsig::models::train
