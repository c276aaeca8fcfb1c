// INT8 post-training static calibration, mixed-precision plans and sensitivity analysis (see
// model.h and models/README.md). The runtime itself is internal/runtime.h.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "internal/builder.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/model.h"
#include "qsig/quant/calibration.h"
#include "qsig/quant/quantize.h"

namespace qsig::models {
namespace {

using internal::QuantPlan;
using internal::Runtime;
using quant::TensorCalibrator;

size_t NumRnn(const ModelSpec& s) { return s.arch == Arch::kGru ? s.gru.size() : s.lstm.size(); }

// Name of the tensor an operation quantizes (its input), for messages.
std::string OpTensorName(const ModelSpec& s, size_t id) {
  const size_t n_rnn = NumRnn(s);
  const char* rnn = ArchName(s.arch);
  if (id < 2 * n_rnn) {
    return absl::StrCat(rnn, "[", id / 2, "]",
                        id % 2 == 0 ? " input x_t" : " hidden state h_{t-1}");
  }
  return absl::StrCat("layers[", id - 2 * n_rnn, "] input");
}

// The source range (spec.input_ranges, e.g. ONNX QDQ) of operation `id`'s input, or null if it
// has none, is a hidden state, or options.use_source_ranges is off.
const SourceRange* SourceRangeOf(const ModelSpec& s, const Int8Options& o, size_t id) {
  if (!o.use_source_ranges || s.input_ranges.empty()) return nullptr;
  const size_t n_rnn = NumRnn(s);
  if (id < 2 * n_rnn && id % 2 == 1) return nullptr;
  const size_t group = id < 2 * n_rnn ? id / 2 : id - n_rnn;
  if (group >= s.input_ranges.size() || !s.input_ranges[group].set) return nullptr;
  return &s.input_ranges[group];
}

// Calibration statistics: one calibrator per operation input, per-feature calibrators for the
// first operation, and max |c| per LSTM layer.
struct Stats {
  std::vector<TensorCalibrator> op;
  std::vector<TensorCalibrator> feature;
  std::vector<float> cmax;
};

struct CalibHooks final : internal::Observer {
  CalibHooks(Stats* s, bool pf) : st(s), per_feature(pf) {}
  Stats* st;
  bool per_feature;
  void MatmulInput(int id, const float* x, int n) noexcept override {
    st->op[static_cast<size_t>(id)].Observe({x, static_cast<size_t>(n)});
    if (id == 0 && per_feature) {
      for (int k = 0; k < n; ++k) st->feature[static_cast<size_t>(k)].Observe({x + k, 1});
    }
  }
  void CellState(int l, const float* c, int n) noexcept override {
    float& m = st->cmax[static_cast<size_t>(l)];
    for (int k = 0; k < n; ++k) m = std::max(m, std::fabs(c[k]));
  }
};

absl::Status CheckWindows(const ModelSpec& s, std::span<const float> w, const char* what) {
  const size_t per_window = static_cast<size_t>(s.window) * s.input_size;
  if (w.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": no samples; pass at least one window of ", s.window, " x ", s.input_size,
        " raw features (ideally thousands, covering the live distribution)"));
  }
  if (w.size() % per_window != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": got ", w.size(), " floats, not a multiple of one window (", s.window,
                     " timesteps x ", s.input_size, " features = ", per_window, ")"));
  }
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      const size_t n = i / per_window;
      const size_t t = (i % per_window) / static_cast<size_t>(s.input_size);
      const size_t k = i % static_cast<size_t>(s.input_size);
      return absl::InvalidArgumentError(absl::StrCat(what, ": window ", n, " timestep ", t,
                                                     " feature ", k, " is not finite (", w[i],
                                                     "); clean the calibration data"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<quant::QuantParams> ParamsOf(const TensorCalibrator& c, const std::string& name) {
  auto p = c.Params(quant::kU8Min, quant::kU8Max);
  if (!p.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration: ", name, ": ", p.status().message(), " (observed ", c.count(),
                     " values, range [", c.min(), ", ", c.max(), "])"));
  }
  return p;
}

// Runs the FP32 model over the windows and collects Stats.
absl::StatusOr<Stats> Collect(std::shared_ptr<const ModelSpec> spec, std::span<const float> windows,
                              const Int8Options& o) {
  const ModelSpec& s = *spec;
  auto fp32 = internal::BuildRuntime(spec, QuantPlan{});
  if (!fp32.ok()) return fp32.status();
  quant::CalibrationOptions co;
  co.method = o.method;
  co.percentile = o.percentile;
  if (absl::Status st = quant::ValidateCalibrationOptions(co); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: options: ", st.message()));
  }
  Stats st;
  const size_t n_ops = 2 * NumRnn(s) + s.layers.size();
  st.op.assign(n_ops, TensorCalibrator(co));
  if (o.per_feature_input)
    st.feature.assign(static_cast<size_t>(s.input_size), TensorCalibrator(co));
  st.cmax.assign(NumRnn(s), 0.0f);
  CalibHooks hooks(&st, o.per_feature_input);
  const size_t per = static_cast<size_t>(s.window) * s.input_size;
  std::vector<float> ws((*fp32)->workspace_floats());
  for (size_t i = 0; i * per < windows.size(); ++i) {
    const float out = (*fp32)->RunObserved(windows.data() + i * per, ws.data(), hooks);
    if (!std::isfinite(out)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration: the FP32 model's output on window ", i, " is not finite (", out, ")"));
    }
  }
  return st;
}

// A plan from Stats: precision per layer group (QuantizableLayers order); `explicit_plan` false
// means the default plan (s16 on the model's input and the last layer's input if enabled).
absl::StatusOr<QuantPlan> MakePlan(const ModelSpec& s, const Stats& st, const Int8Options& o,
                                   const std::vector<Precision>& prec, bool explicit_plan) {
  const size_t n_rnn = NumRnn(s);
  QuantPlan plan;
  plan.ops.resize(2 * n_rnn + s.layers.size());
  plan.c_step.assign(n_rnn, 0.0f);
  plan.w_max = o.reduce_range ? quant::kS8ReduceRangeMax : quant::kS8Max;
  for (size_t id = 0; id < plan.ops.size(); ++id) {
    const size_t group = id < 2 * n_rnn ? id / 2 : id - n_rnn;
    if (prec[group] == Precision::kFp32) continue;
    internal::OpPlan& op = plan.ops[id];
    op.int8 = true;
    const std::string name = OpTensorName(s, id);
    const bool hidden = id < 2 * n_rnn && id % 2 == 1;
    const int cols =
        id < 2 * n_rnn
            ? (hidden
                   ? (s.arch == Arch::kGru ? s.gru[id / 2].hidden_size : s.lstm[id / 2].hidden_size)
                   : (s.arch == Arch::kGru ? s.gru[id / 2].input_size : s.lstm[id / 2].input_size))
            : s.layers[id - 2 * n_rnn].in;
    bool s16 = prec[group] == Precision::kInt8S16;
    if (o.s16_input && id == 0) s16 = true;
    // An INT8 head (fp32_head off) reads s16 too in the default plan: one row, negligible cost.
    if (!explicit_plan && id + 1 == plan.ops.size() && s.layers.back().out <= 16) s16 = true;
    const SourceRange* src = SourceRangeOf(s, o, id);
    if (s16 && cols <= internal::kMaxS16Cols && src != nullptr) {
      // The source's symmetric s16 grid: [-32768 * scale, 32767 * scale] covers [min, max] (the
      // runtime clamps at -32767, one step early). The model's input is widened as below.
      float lo = src->min, hi = src->max;
      if (id == 0 && !s.feature_mean.empty()) {
        float off = 0.0f;
        for (size_t k = 0; k < s.feature_mean.size(); ++k) {
          const float sd = s.feature_std[k] != 0.0f ? s.feature_std[k] : 1.0f;
          off = std::max(off, std::fabs(s.feature_mean[k] / sd));
        }
        lo -= off;
        hi += off;
      }
      const float scale = std::max(std::max(-lo, 0.0f) / 32768.0f, std::max(hi, 0.0f) / 32767.0f);
      if (!(scale > 0.0f) || !std::isfinite(scale)) {
        return absl::InvalidArgumentError(absl::StrCat("calibration: ", name, ": source range [",
                                                       src->min, ", ", src->max,
                                                       "] gives no usable s16 scale"));
      }
      op.in.s16 = true;
      op.in.scale = {scale};
      op.in.zero_point = {0};
      continue;
    }
    if (s16 && cols <= internal::kMaxS16Cols) {
      // Symmetric s16 over the observed range with 2x headroom: a step of ~6e-5 of the range.
      const TensorCalibrator& c = st.op[id];
      float amax = 1.0f;  // h never multiplied during calibration (window 1): |h| < 1
      if (c.count() > 0) amax = std::max(std::fabs(c.min()), std::fabs(c.max()));
      if (id == 0 && !s.feature_mean.empty()) {
        // The first op quantizes x / std (mean folded into the bias): widen by max |mean / std|.
        float off = 0.0f;
        for (size_t k = 0; k < s.feature_mean.size(); ++k) {
          const float sd = s.feature_std[k] != 0.0f ? s.feature_std[k] : 1.0f;
          off = std::max(off, std::fabs(s.feature_mean[k] / sd));
        }
        amax += off;
      }
      if (!(amax > 0.0f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("calibration: ", name,
                         ": quantization range is degenerate: every observed value was 0"));
      }
      op.in.s16 = true;
      op.in.scale = {2.0f * amax / 32767.0f};
      op.in.zero_point = {0};
      continue;
    }
    if (src != nullptr) {
      // u8 over the source's range: ChooseQuantParams gives back the source's scale and zero
      // point (up to float rounding). Per tensor, also where per_feature_input is on.
      auto p = quant::ChooseQuantParams(src->min, src->max, quant::kU8Min, quant::kU8Max, false);
      if (!p.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("calibration: ", name, ": source range: ", p.status().message()));
      }
      op.in.scale = {p->scale};
      op.in.zero_point = {p->zero_point};
      continue;
    }
    if (hidden && st.op[id].count() == 0) {
      // Never multiplied during calibration (window 1: h_0 = 0). |h| < 1 always.
      auto p = quant::ChooseQuantParams(-1.0f, 1.0f, quant::kU8Min, quant::kU8Max, false);
      if (!p.ok()) return p.status();
      op.in.scale = {p->scale};
      op.in.zero_point = {p->zero_point};
      continue;
    }
    auto pt = ParamsOf(st.op[id], name);
    if (!pt.ok()) return pt.status();
    if (id == 0 && o.per_feature_input && !st.feature.empty()) {
      const size_t cols = st.feature.size();
      op.in.scale.resize(cols);
      op.in.zero_point.resize(cols);
      for (size_t k = 0; k < cols; ++k) {
        auto pk = st.feature[k].Params(quant::kU8Min, quant::kU8Max);
        // A constant feature (always 0 after normalization) has no range of its own: any scale
        // represents it exactly, so it takes the tensor's.
        const quant::QuantParams& p = pk.ok() ? *pk : *pt;
        op.in.scale[k] = p.scale;
        op.in.zero_point[k] = p.zero_point;
      }
    } else {
      op.in.scale = {pt->scale};
      op.in.zero_point = {pt->zero_point};
    }
  }
  if (o.cell_state == CellState::kS16 && s.arch == Arch::kLstm) {
    for (size_t l = 0; l < n_rnn; ++l) {
      if (prec[l] != Precision::kFp32 && st.cmax[l] > 0.0f) plan.c_step[l] = st.cmax[l] / 32767.0f;
    }
  }
  return plan;
}

absl::Status CheckSpec(const std::shared_ptr<const ModelSpec>& spec) {
  if (spec == nullptr) return absl::InvalidArgumentError("calibration: model spec is null");
  if (absl::Status st = ValidateSpec(*spec); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: invalid model: ", st.message()));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> QuantizableLayers(const ModelSpec& s) {
  std::vector<std::string> names;
  const char* rnn = ArchName(s.arch);
  for (size_t l = 0; l < NumRnn(s); ++l) names.push_back(absl::StrCat(rnn, "[", l, "]"));
  for (size_t k = 0; k < s.layers.size(); ++k) names.push_back(absl::StrCat("layers[", k, "]"));
  return names;
}

absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows) {
  return CalibrateInt8Model(std::move(spec), calib_windows, Int8Options{});
}

namespace {

// A calibrated runtime with the plan it was built from (CalibrateInt8Model, DescribeInt8).
struct Calibrated {
  std::unique_ptr<internal::Runtime> runtime;
  QuantPlan plan;
  std::vector<Precision> layers;
};

absl::StatusOr<Calibrated> Calibrate(std::shared_ptr<const ModelSpec> spec,
                                     std::span<const float> calib_windows,
                                     const Int8Options& options) {
  if (absl::Status st = CheckSpec(spec); !st.ok()) return st;
  const ModelSpec& s = *spec;
  if (absl::Status st = CheckWindows(s, calib_windows, "calibration"); !st.ok()) return st;
  const std::vector<std::string> names = QuantizableLayers(s);
  std::vector<Precision> prec(names.size(), Precision::kInt8);
  if (options.layers.empty() && options.fp32_head && s.layers.back().out <= 16 &&
      names.size() > 1) {
    prec.back() = Precision::kFp32;  // the head (see Int8Options::fp32_head)
  }
  if (!options.layers.empty()) {
    if (options.layers.size() != names.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration: options.layers has ", options.layers.size(), " entries, expected ",
          names.size(), " (one per QuantizableLayers(spec): ", names.front(), ", ...)"));
    }
    prec = options.layers;
  }
  auto st = Collect(spec, calib_windows, options);
  if (!st.ok()) return st.status();
  auto plan = MakePlan(s, *st, options, prec, !options.layers.empty());
  if (!plan.ok()) return plan.status();
  auto rt = internal::BuildRuntime(spec, *plan);
  if (!rt.ok()) return rt.status();
  auto done = [&]() -> absl::StatusOr<Calibrated> {
    return Calibrated{std::move(*rt), std::move(*plan), prec};
  };
  if (!options.layers.empty()) return done();
  (*rt)->set_precision("int8");
  if (!(options.max_rmse > 0)) return done();

  // Accuracy guard: measure on up to 2000 calibration windows, demote sensitive layers to FP32.
  const size_t per = static_cast<size_t>(s.window) * s.input_size;
  const size_t n_all = calib_windows.size() / per;
  const size_t stride = std::max<size_t>(1, n_all / 2000);
  std::vector<float> eval;
  for (size_t i = 0; i < n_all; i += stride) {
    eval.insert(eval.end(), calib_windows.begin() + static_cast<std::ptrdiff_t>(i * per),
                calib_windows.begin() + static_cast<std::ptrdiff_t>((i + 1) * per));
  }
  auto fp32 = internal::BuildRuntime(spec, QuantPlan{});
  if (!fp32.ok()) return fp32.status();
  const size_t n = eval.size() / per;
  std::vector<double> ref(n);
  {
    std::vector<float> ws((*fp32)->workspace_floats());
    for (size_t i = 0; i < n; ++i) ref[i] = (*fp32)->Run({eval.data() + i * per, per}, ws.data());
  }
  double mean = 0, ss = 0;
  for (double v : ref) mean += v / static_cast<double>(n);
  for (double v : ref) ss += (v - mean) * (v - mean);
  auto rel_rmse = [&](const Model& m) {
    std::vector<float> ws(m.workspace_floats());
    double se = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = m.Run({eval.data() + i * per, per}, ws.data()) - ref[i];
      se += d * d;
    }
    return ss > 0 ? std::sqrt(se / ss) : 0.0;  // relative to the centred FP32 output
  };
  if (rel_rmse(**rt) <= options.max_rmse) return done();
  Int8Options so = options;
  auto ranked = AnalyzeSensitivity(spec, calib_windows, {eval.data(), eval.size()}, so);
  if (!ranked.ok()) return ranked.status();
  for (const LayerSensitivity& ls : *ranked) {
    const size_t g =
        static_cast<size_t>(std::find(names.begin(), names.end(), ls.layer) - names.begin());
    if (g >= prec.size() || prec[g] == Precision::kFp32) continue;
    const Precision before = prec[g];
    prec[g] = Precision::kFp32;
    if (std::all_of(prec.begin(), prec.end(), [](Precision p) { return p == Precision::kFp32; })) {
      prec[g] = before;  // Never all FP32: the last INT8 layer stays (the runtime built last).
      break;
    }
    auto p2 = MakePlan(s, *st, options, prec, false);
    if (!p2.ok()) return p2.status();
    auto r2 = internal::BuildRuntime(spec, *p2);
    if (!r2.ok()) return r2.status();
    *rt = std::move(*r2);
    *plan = std::move(*p2);
    if (rel_rmse(**rt) <= options.max_rmse) break;
  }
  return done();
}

}  // namespace

namespace {

// What a calibration chose, in the public form (DescribeInt8).
Int8Description Describe(const ModelSpec& s, const Calibrated& c) {
  Int8Description d;
  d.layers = c.layers;
  const size_t n_rnn = NumRnn(s);
  const size_t n_ops = 2 * n_rnn + s.layers.size();
  for (size_t id = 0; id < n_ops; ++id) {
    QuantizedInput q;
    q.tensor = id < 2 * n_rnn
                   ? absl::StrCat(ArchName(s.arch), "[", id / 2, id % 2 == 0 ? "].x" : "].h")
                   : absl::StrCat("layers[", id - 2 * n_rnn, "].input");
    if (id < c.plan.ops.size() && c.plan.ops[id].int8) {
      const internal::OpPlan& op = c.plan.ops[id];
      q.int8 = true;
      q.s16 = op.in.s16;
      q.scale = op.in.scale;
      q.zero_point = op.in.zero_point;
    }
    d.inputs.push_back(std::move(q));
  }
  d.cell_step = c.plan.c_step;
  return d;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows,
                                                          const Int8Options& options,
                                                          Int8Description* description) {
  auto c = Calibrate(spec, calib_windows, options);
  if (!c.ok()) return c.status();
  if (description != nullptr) *description = Describe(*spec, *c);
  // The model that will run: choose a backend per batched shape (the search above skips it).
  if (absl::Status st = c->runtime->ChooseBackends(); !st.ok()) return st;
  return std::unique_ptr<Model>(std::move(c->runtime));
}

absl::StatusOr<std::unique_ptr<Model>> BuildInt8FromDescription(
    std::shared_ptr<const ModelSpec> spec, const Int8Description& d, const Int8Options& options,
    const std::string& precision) {
  if (absl::Status st = CheckSpec(spec); !st.ok()) return st;
  const ModelSpec& s = *spec;
  const size_t n_rnn = NumRnn(s);
  const size_t n_ops = 2 * n_rnn + s.layers.size();
  if (d.inputs.size() != n_ops || d.cell_step.size() != n_rnn) {
    return absl::InvalidArgumentError(
        absl::StrCat("INT8 description: ", d.inputs.size(), " operations and ", d.cell_step.size(),
                     " cell steps for a model with ", n_ops, " and ", n_rnn));
  }
  QuantPlan plan;
  plan.ops.resize(n_ops);
  plan.c_step = d.cell_step;
  plan.w_max = options.reduce_range ? quant::kS8ReduceRangeMax : quant::kS8Max;
  for (size_t id = 0; id < n_ops; ++id) {
    const QuantizedInput& q = d.inputs[id];
    if (!q.int8) continue;
    if (q.scale.empty() || q.scale.size() != q.zero_point.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("INT8 description: ", q.tensor, ": scale and zero point sizes differ"));
    }
    for (float sc : q.scale) {
      if (!(sc > 0.0f) || !std::isfinite(sc)) {
        return absl::InvalidArgumentError(
            absl::StrCat("INT8 description: ", q.tensor, ": scale ", sc, " is not positive"));
      }
    }
    internal::OpPlan& op = plan.ops[id];
    op.int8 = true;
    op.in.s16 = q.s16;
    op.in.scale = q.scale;
    op.in.zero_point = q.zero_point;
  }
  auto rt = internal::BuildRuntime(spec, plan);
  if (!rt.ok()) return rt.status();
  (*rt)->set_precision(precision);
  if (absl::Status st = (*rt)->ChooseBackends(); !st.ok()) return st;
  return std::unique_ptr<Model>(std::move(*rt));
}

absl::StatusOr<Int8Description> DescribeInt8(std::shared_ptr<const ModelSpec> spec,
                                             std::span<const float> calib_windows,
                                             const Int8Options& options) {
  Int8Description d;
  auto m = CalibrateInt8Model(std::move(spec), calib_windows, options, &d);
  if (!m.ok()) return m.status();
  return d;
}

absl::StatusOr<std::vector<LayerSensitivity>> AnalyzeSensitivity(
    std::shared_ptr<const ModelSpec> spec, std::span<const float> calib_windows,
    std::span<const float> eval_windows, const Int8Options& options) {
  if (absl::Status st = CheckSpec(spec); !st.ok()) return st;
  const ModelSpec& s = *spec;
  if (absl::Status st = CheckWindows(s, calib_windows, "calibration"); !st.ok()) return st;
  if (absl::Status st = CheckWindows(s, eval_windows, "sensitivity: evaluation"); !st.ok()) {
    return st;
  }
  auto st = Collect(spec, calib_windows, options);
  if (!st.ok()) return st.status();
  auto fp32 = internal::BuildRuntime(spec, QuantPlan{});
  if (!fp32.ok()) return fp32.status();
  const size_t per = static_cast<size_t>(s.window) * s.input_size;
  const size_t n = eval_windows.size() / per;
  std::vector<float> ws((*fp32)->workspace_floats());
  std::vector<double> ref(n);
  for (size_t i = 0; i < n; ++i)
    ref[i] = (*fp32)->Run(eval_windows.subspan(i * per, per), ws.data());
  double ss = 0;
  for (double v : ref) ss += v * v;
  const std::vector<std::string> names = QuantizableLayers(s);
  std::vector<LayerSensitivity> out;
  for (size_t g = 0; g < names.size(); ++g) {
    // This layer INT8 as in the default plan (s16 model input, s16 head input), every other
    // layer FP32.
    std::vector<Precision> prec(names.size(), Precision::kFp32);
    prec[g] = Precision::kInt8;
    if (g + 1 == names.size() && s.layers.back().out <= 16) prec[g] = Precision::kInt8S16;
    auto plan = MakePlan(s, *st, options, prec, true);
    if (!plan.ok()) return plan.status();
    auto rt = internal::BuildRuntime(spec, *plan);
    if (!rt.ok()) return rt.status();
    std::vector<float> wq((*rt)->workspace_floats());
    double se = 0;
    size_t agree = 0;
    for (size_t i = 0; i < n; ++i) {
      const double y = (*rt)->Run(eval_windows.subspan(i * per, per), wq.data());
      se += (y - ref[i]) * (y - ref[i]);
      agree += SignsAgree(y, ref[i]);
    }
    LayerSensitivity ls;
    ls.layer = names[g];
    ls.rmse_over_rms = ss > 0 ? std::sqrt(se / ss) : 0.0;
    ls.sign_agreement = static_cast<double>(agree) / static_cast<double>(n);
    out.push_back(std::move(ls));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const LayerSensitivity& a, const LayerSensitivity& b) {
                     return a.rmse_over_rms > b.rmse_over_rms;
                   });
  return out;
}

}  // namespace qsig::models
