// The INT8 runtime and its post-training static calibration (see model.h and models/README.md).
//
// Every Linear layer and each LSTM matmul runs as
//   xq  = QuantizeRowU8(x; scale_x, zero_x)                 per-tensor asymmetric u8
//   acc = GemvU8S8S32(W_q, xq)                              per-channel symmetric s8 weights
//   y_r = float(acc_r - zero_x * row_sum_r) * (scale_x * scale_w[r]) + bias_r
// (the integer subtraction is the zero-point compensation, exact in s32); activations, LSTM gate
// nonlinearities and the cell state stay in FP32.
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "internal/fp32_forward.h"
#include "qsig/models/model.h"
#include "qsig/quant/gemv.h"
#include "qsig/quant/observer.h"
#include "qsig/quant/quantize.h"

namespace qsig::models {
namespace {

using quant::MinMaxObserver;
using quant::PerChannelS8;
using quant::QuantParams;

// One quantized matmul: W (rows x cols) applied to an activation quantized with `in`.
struct QMatmul {
  PerChannelS8 w;  // s8 data, per-row scales and row sums
  QuantParams in;  // per-tensor u8 parameters of the input

  static absl::StatusOr<QMatmul> Make(const std::vector<float>& weight, int rows, int cols,
                                      const QuantParams& in) {
    auto w = quant::QuantizePerChannelSymmetricS8(weight, rows, cols);
    if (!w.ok()) return w.status();
    return QMatmul{std::move(*w), in};
  }
  // Dequantized, zero-point-compensated row r of the product: the integer subtraction is exact.
  float Output(const int32_t* acc, int r) const noexcept {
    const size_t i = static_cast<size_t>(r);
    return static_cast<float>(acc[r] - in.zero_point * w.row_sums[i]) * (in.scale * w.scales[i]);
  }
  size_t bytes() const noexcept { return w.bytes() + sizeof(QuantParams); }
};

struct QLstmLayer {
  int input_size = 0;
  int hidden_size = 0;
  QMatmul ih, hh;           // hh is unused (empty) when window == 1.
  std::vector<float> bias;  // b_ih + b_hh
};

struct QLinearLayer {
  int in = 0;
  int out = 0;
  QMatmul w;
  std::vector<float> bias;
  Activation activation = Activation::kNone;
};

// Observers for every tensor the INT8 runtime quantizes; plugged into ForwardF32 as hooks.
struct CalibrationHooks {
  std::vector<MinMaxObserver> lstm_x, lstm_h, linear;
  void LstmInput(size_t l, const float* x, int n) noexcept { lstm_x[l].Observe({x, size_t(n)}); }
  void LstmHidden(size_t l, const float* h, int n) noexcept { lstm_h[l].Observe({h, size_t(n)}); }
  void LinearInput(size_t k, const float* x, int n) noexcept { linear[k].Observe({x, size_t(n)}); }
};

// Workspace layout of the INT8 runtime: the FP32 regions, then s32 accumulators and u8 inputs.
struct Int8Layout {
  internal::Fp32Layout f;
  size_t acc = 0;  // int32 accumulators, max(4H, layer out) of them
  size_t q = 0;    // u8 quantized input, max width bytes
  size_t total = 0;

  static Int8Layout For(const ModelSpec& s) {
    Int8Layout l;
    l.f = internal::Fp32Layout::For(s);
    static_assert(sizeof(int32_t) == sizeof(float) && alignof(int32_t) <= alignof(float));
    const size_t acc_n = static_cast<size_t>(std::max(l.f.max_gates, l.f.max_width));
    l.acc = l.f.total;
    l.q = l.acc + internal::AlignFloats(acc_n);
    l.total = l.q + internal::AlignFloats((static_cast<size_t>(l.f.max_width) + 3) / 4);
    return l;
  }
};

class Int8Model final : public Model {
 public:
  Int8Model(std::shared_ptr<const ModelSpec> spec, std::vector<QLstmLayer> lstm,
            std::vector<QLinearLayer> layers)
      : Model(std::move(spec)),
        layout_(Int8Layout::For(*spec_)),
        lstm_(std::move(lstm)),
        layers_(std::move(layers)) {
    size_t n = (spec_->feature_mean.size() + spec_->feature_std.size()) * sizeof(float);
    for (const QLstmLayer& l : lstm_) {
      n += l.ih.bytes() + l.hh.bytes() + l.bias.size() * sizeof(float);
    }
    for (const QLinearLayer& l : layers_) n += l.w.bytes() + l.bias.size() * sizeof(float);
    weight_bytes_ = n;
  }

  float Run(std::span<const float> window, float* ws) const noexcept override {
    const ModelSpec& s = *spec_;
    const int in_size = s.input_size;
    if (window.size() != static_cast<size_t>(s.window) * in_size || ws == nullptr) {
      return std::numeric_limits<float>::quiet_NaN();
    }
    const internal::Fp32Layout& f = layout_.f;
    // The accumulator and byte regions are only ever accessed as int32 / uint8 (never as float),
    // so reusing the caller's float storage for them does not alias float accesses.
    auto* acc = reinterpret_cast<int32_t*>(ws + layout_.acc);
    auto* q = reinterpret_cast<uint8_t*>(ws + layout_.q);
    float* xn = ws + f.xn;
    const float* x = xn;
    int width = in_size;
    if (s.arch == Arch::kLstm) {
      for (size_t l = 0; l < lstm_.size(); ++l) {
        const int hs = lstm_[l].hidden_size;
        for (int j = 0; j < hs; ++j) ws[f.h[l] + j] = ws[f.c[l] + j] = 0.0f;
      }
      float* gates = ws + f.gates;
      for (int t = 0; t < s.window; ++t) {
        internal::Normalize(s, window.data() + static_cast<size_t>(t) * in_size, xn);
        x = xn;
        width = in_size;
        for (size_t l = 0; l < lstm_.size(); ++l) {
          const QLstmLayer& ly = lstm_[l];
          const int hs = ly.hidden_size;
          const int g4 = 4 * hs;
          float* h = ws + f.h[l];
          float* c = ws + f.c[l];
          MatmulInto(ly.ih, x, width, q, acc);
          for (int r = 0; r < g4; ++r) {
            gates[r] = ly.ih.Output(acc, r) + ly.bias[static_cast<size_t>(r)];
          }
          if (t > 0) {  // h_0 = 0 contributes exactly nothing.
            MatmulInto(ly.hh, h, hs, q, acc);
            for (int r = 0; r < g4; ++r) {
              gates[r] += ly.hh.Output(acc, r);
            }
          }
          internal::LstmCell(hs, gates, h, c);
          x = h;
          width = hs;
        }
      }
    } else {
      internal::Normalize(s, window.data() + static_cast<size_t>(s.window - 1) * in_size, xn);
    }
    for (size_t k = 0; k < layers_.size(); ++k) {
      const QLinearLayer& ly = layers_[k];
      float* y = ws + (k % 2 == 0 ? f.act_a : f.act_b);
      MatmulInto(ly.w, x, ly.in, q, acc);
      for (int r = 0; r < ly.out; ++r) {
        y[r] = internal::Activate(ly.w.Output(acc, r) + ly.bias[static_cast<size_t>(r)],
                                  ly.activation);
      }
      x = y;
      width = ly.out;
    }
    return x[0];
  }

  size_t workspace_floats() const noexcept override { return layout_.total; }
  size_t weight_bytes() const noexcept override { return weight_bytes_; }
  const char* precision() const noexcept override { return "int8"; }

 private:
  // acc = W_q * quantize(x).
  void MatmulInto(const QMatmul& m, const float* x, int n, uint8_t* q,
                  int32_t* acc) const noexcept {
    quant::QuantizeRowU8(x, static_cast<size_t>(n), m.in, q);
    gemv_(m.w.rows, m.w.cols, m.w.data.data(), m.w.cols, q, acc);
  }

  Int8Layout layout_;
  std::vector<QLstmLayer> lstm_;
  std::vector<QLinearLayer> layers_;
  size_t weight_bytes_ = 0;
  // The kernel; a later ISA dispatch chooses among variants with the same signature.
  quant::GemvU8S8S32Fn gemv_ = &quant::GemvU8S8S32Ref;
};

absl::StatusOr<QuantParams> ActivationParams(const MinMaxObserver& obs, absl::string_view tensor) {
  auto p = obs.Params(quant::kU8Min, quant::kU8Max, /*symmetric=*/false);
  if (!p.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration: ", tensor, ": ", p.status().message(), " (observed ",
                     obs.count(), " values, range [", obs.min(), ", ", obs.max(), "])"));
  }
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows) {
  if (spec == nullptr) return absl::InvalidArgumentError("calibration: model spec is null");
  if (absl::Status st = ValidateSpec(*spec); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: invalid model: ", st.message()));
  }
  const ModelSpec& s = *spec;
  const size_t per_window = static_cast<size_t>(s.window) * s.input_size;
  if (calib_windows.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration: no samples; pass at least one window of ", s.window, " x ", s.input_size,
        " raw features (ideally thousands, covering the live distribution)"));
  }
  if (calib_windows.size() % per_window != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration: got ", calib_windows.size(), " floats, not a multiple of one window (",
        s.window, " timesteps x ", s.input_size, " features = ", per_window, ")"));
  }
  const size_t n_windows = calib_windows.size() / per_window;
  for (size_t i = 0; i < calib_windows.size(); ++i) {
    if (!std::isfinite(calib_windows[i])) {
      const size_t w = i / per_window;
      const size_t t = (i % per_window) / static_cast<size_t>(s.input_size);
      const size_t k = i % static_cast<size_t>(s.input_size);
      return absl::InvalidArgumentError(
          absl::StrCat("calibration: window ", w, " timestep ", t, " feature ", k,
                       " is not finite (", calib_windows[i], "); clean the calibration data"));
    }
  }

  // 1. Run the FP32 model over every window, observing every tensor the INT8 model quantizes.
  CalibrationHooks hooks;
  hooks.lstm_x.resize(s.lstm.size());
  hooks.lstm_h.resize(s.lstm.size());
  hooks.linear.resize(s.layers.size());
  const internal::Fp32Layout lay = internal::Fp32Layout::For(s);
  std::vector<float> ws(lay.total);
  for (size_t w = 0; w < n_windows; ++w) {
    const float out =
        internal::ForwardF32(s, lay, calib_windows.data() + w * per_window, ws.data(), hooks);
    if (!std::isfinite(out)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration: the FP32 model's output on window ", w, " is not finite (", out, ")"));
    }
  }

  // 2. Choose activation parameters and quantize the weights.
  std::vector<QLstmLayer> lstm;
  for (size_t l = 0; l < s.lstm.size(); ++l) {
    const LstmLayer& ly = s.lstm[l];
    QLstmLayer q;
    q.input_size = ly.input_size;
    q.hidden_size = ly.hidden_size;
    const std::string name = absl::StrCat("lstm[", l, "]");
    auto px = ActivationParams(hooks.lstm_x[l], name + " input x_t");
    if (!px.ok()) return px.status();
    auto ih = QMatmul::Make(ly.w_ih, 4 * ly.hidden_size, ly.input_size, *px);
    if (!ih.ok()) return ih.status();
    q.ih = std::move(*ih);
    if (s.window > 1) {
      auto ph = ActivationParams(hooks.lstm_h[l], name + " hidden state h_{t-1}");
      if (!ph.ok()) return ph.status();
      auto hh = QMatmul::Make(ly.w_hh, 4 * ly.hidden_size, ly.hidden_size, *ph);
      if (!hh.ok()) return hh.status();
      q.hh = std::move(*hh);
    }
    q.bias.resize(ly.b_ih.size());
    for (size_t r = 0; r < q.bias.size(); ++r) q.bias[r] = ly.b_ih[r] + ly.b_hh[r];
    lstm.push_back(std::move(q));
  }
  std::vector<QLinearLayer> layers;
  for (size_t k = 0; k < s.layers.size(); ++k) {
    const LinearLayer& ly = s.layers[k];
    QLinearLayer q;
    q.in = ly.in;
    q.out = ly.out;
    q.activation = ly.activation;
    q.bias = ly.bias;
    auto p = ActivationParams(hooks.linear[k], absl::StrCat("layers[", k, "] input"));
    if (!p.ok()) return p.status();
    auto w = QMatmul::Make(ly.weight, ly.out, ly.in, *p);
    if (!w.ok()) return w.status();
    q.w = std::move(*w);
    layers.push_back(std::move(q));
  }
  return std::unique_ptr<Model>(
      std::make_unique<Int8Model>(std::move(spec), std::move(lstm), std::move(layers)));
}

}  // namespace qsig::models
