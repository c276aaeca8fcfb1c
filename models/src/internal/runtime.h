// The one runtime behind MakeFp32Model, CalibrateInt8Model and mixed-precision plans: every
// matmul is either FP32 or INT8 on its own, so FP32, INT8 and mixed models share one forward
// pass (and the window / streaming / batch modes).
//
// INT8 matmul (per-channel symmetric s8 weights, u8 activations with one scale per tensor or
// per input column):
//   xq_k = clamp(round(x_k * a_k + b_k), 0, 255)          a_k = 1 / s_k, b_k = z_k
//   y_r  = float(sum_k Wq[r,k] * xq_k) * sw_r + add_r
// where Wq quantizes W[r,k] * s_k per row with scale sw_r (rounded up to a bf16 value), and
// the zero-point term -sw_r * sum_k Wq[r,k] z_k is a constant folded into the bias (add).
// Per-column input scales s_k are how a price return beside a queue size each keep their own
// grid: the scale moves into the weight column, so one int8 product still serves every feature.
// For the first layer, normalization ((x - mean) / std) is folded into a_k, b_k as well.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "internal/ops.h"
#include "qsig/models/model.h"
#include "qsig/quant/kernels.h"
#include "qsig/quant/onednn_gemm.h"

namespace qsig::models::internal {

// The kernel layer's types, by their short names here.
using quant::AlignedVec;
using quant::FloatToBf16Truncate;
using quant::Kernels;
using quant::kMaxS16Cols;
using quant::PackedF32;
using quant::PackedS8;
using quant::PackF32;
using quant::PackS8;
using quant::Pad16;
using quant::RoundUpToBf16;

struct MatmulOp {
  int rows = 0, cols = 0;
  bool int8 = false;
  bool s16 = false;  // int8 weights with s16 (symmetric) activations
  PackedF32 wf;
  PackedS8 wq;
  AlignedVec<float> qa, qb;  // per-column input quantization (empty: qa0 / qb0 for all)
  float qa0 = 1.0f, qb0 = 0.0f;
  // u8 INT8 ops: the batched shapes the load-time chooser gave to oneDNN (Runtime::
  // ChooseBackends); a call matching one's n and strides runs there (same bits).
  std::vector<std::shared_ptr<const quant::OnednnGemmU8S8>> onednn;

  int rows_pad() const noexcept { return int8 ? wq.rows_pad : wf.rows_pad; }
  int cols_pad() const noexcept { return int8 ? wq.cols_pad : cols; }
  // Bytes of what is stored (weights, scales, input quantization parameters).
  size_t bytes() const noexcept;
  // y_i = W x_i + add_i for n vectors (see quant::Kernels::gemm_*); q: scratch of n * qstride
  // bytes.
  void Apply(const Kernels& k, int n, const float* x, size_t ldx, const float* add, size_t ldadd,
             float* y, size_t ldy, uint8_t* q, size_t qstride) const noexcept {
    if (!int8) {
      k.gemm_f32(wf, n, x, ldx, add, ldadd, y, ldy);
      return;
    }
    const float* a = qa.size() ? qa.data() : nullptr;
    const float* b = qb.size() ? qb.data() : nullptr;
    if (s16) {
      auto* q16 = reinterpret_cast<int16_t*>(q);
      const size_t stride16 = qstride / sizeof(int16_t);
      for (int i = 0; i < n; ++i) {
        k.quantize_s16(x + i * ldx, cols, a, b, qa0, qb0, q16 + i * stride16, wq.cols_pad);
      }
      k.gemm_s16s8f32(wq, n, q16, stride16, add, ldadd, y, ldy);
      return;
    }
    for (int i = 0; i < n; ++i) {
      k.quantize_u8(x + i * ldx, cols, a, b, qa0, qb0, q + i * qstride, wq.cols_pad);
    }
    for (const auto& be : onednn) {
      if (be->Serves(n, qstride, ldy) && be->Run(q, add, ldadd, y)) return;
    }
    k.gemm_u8s8f32(wq, n, q, qstride, add, ldadd, y, ldy);
  }
};

MatmulOp MakeFp32Matmul(const std::vector<float>& w, int rows, int cols);

// Input quantization of one INT8 matmul: per-column (scale, zero_point), or one pair.
struct InputQuant {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  bool s16 = false;  // symmetric s16 (zero_point 0) instead of u8
};
// Quantizes W (rows x cols, row-major) for inputs quantized with `in` (scale/zero_point of size
// 1 or cols), `fold_mean` / `fold_std` (size cols or empty) folding normalization into the input
// quantization. Weights are quantized to [-w_max, w_max] (quant::kS8Max, or
// quant::kS8ReduceRangeMax for 7-bit weights). Returns the op and, in *bias_fold (rows floats),
// the constant to add to the bias.
MatmulOp MakeInt8Matmul(const std::vector<float>& w, int rows, int cols, const InputQuant& in,
                        const std::vector<float>& fold_mean, const std::vector<float>& fold_std,
                        std::vector<float>* bias_fold, int w_max);

struct RnnLayer {
  bool gru = false;
  int in = 0, hidden = 0;
  int gates = 0, gates_pad = 0;  // 4H (LSTM) or 3H (GRU), padded to 16
  MatmulOp ih, hh;
  AlignedVec<float> bias_x;  // LSTM: b_ih + b_hh (+ folds); GRU: b_ih (+ fold)
  AlignedVec<float> bias_h;  // GRU: b_hh (+ fold)
  float c_step = 0.0f;       // > 0: LSTM cell state on an s16 grid with this step
};

struct HeadLayer {
  int in = 0, out = 0;
  MatmulOp w;
  AlignedVec<float> bias;
  Activation act = Activation::kNone;
};

// Hooks for calibration: see every matmul input and every LSTM cell state. Operation ids: RNN
// layer l has ih = 2l and hh = 2l + 1; head layer k has 2 * n_rnn + k.
struct NoHooks {
  void MatmulInput(int, const float*, int) noexcept {}
  void CellState(int, const float*, int) noexcept {}
};
// Calibration's hooks (cold path: virtual calls are fine there).
struct Observer {
  virtual ~Observer() = default;
  virtual void MatmulInput(int id, const float* x, int n) noexcept = 0;
  virtual void CellState(int layer, const float* c, int n) noexcept = 0;
};

class Runtime final : public Model {
 public:
  Runtime(std::shared_ptr<const ModelSpec> spec, std::vector<RnnLayer> rnn,
          std::vector<HeadLayer> head, std::string precision);

  float Run(std::span<const float> window, float* ws) const noexcept override;
  size_t workspace_floats() const noexcept override { return ws_floats_; }
  size_t weight_bytes() const noexcept override { return weight_bytes_; }
  const char* precision() const noexcept override { return precision_.c_str(); }
  size_t state_floats(Mode mode) const noexcept override;
  void ResetState(Mode mode, float* state) const noexcept override;
  float PushTick(std::span<const float> tick, float* state, float* ws) const noexcept override;
  bool PrecomputeWindow(float* state, float* ws) const noexcept override;
  bool WindowPrecomputed(const float* state) const noexcept override;
  float Step(std::span<const float> tick, float* state, float* ws) const noexcept override;
  void StepBatch(int n, const float* ticks, float* const* states, float* ws,
                 float* out) const noexcept override;
  size_t batch_workspace_floats(int n) const noexcept override;

  // Run() with an observer (calibration; cold path).
  float RunObserved(const float* window, float* ws, Observer& obs) const noexcept;

  const std::vector<RnnLayer>& rnn() const noexcept { return rnn_; }
  const std::vector<HeadLayer>& head() const noexcept { return head_; }
  void set_kernels(const Kernels* k) noexcept { k_ = k; }
  void set_precision(std::string p) { precision_ = std::move(p); }

  // The per-shape backend chooser (quant::ChooseGemmBackend) over every u8 INT8 GEMM this
  // runtime runs batched: a stacked RNN's window input projections (n = kTimeBlock and the
  // window's last partial block) and StepBatch at kMaxBatch. Cold path; call before sharing the
  // runtime. Fails on a bad QSIG_ONEDNN.
  absl::Status ChooseBackends();
  const KernelReport* kernel_report() const noexcept override {
    return has_kernel_report_ ? &kernel_report_ : nullptr;
  }

 private:
  // Stacked RNNs over a window run layer-major in blocks of kTimeBlock timesteps: layer l's h
  // for the block, then layer l + 1's input projections for the whole block as one GEMM (its
  // weights read once per 4 timesteps instead of once per timestep), then its recurrence.
  static constexpr int kTimeBlock = 8;
  struct Layout {  // workspace offsets in floats for a batch of n
    size_t xn = 0;
    std::vector<size_t> h, c, gates, proj, gh;
    // n == 1 with >= 2 RNN layers: layer l's h for a time block (l < last; kTimeBlock x
    // Pad16(hidden)) and layer l's input projections for it (l > 0; kTimeBlock x gates_pad).
    std::vector<size_t> hseq, pseq;
    size_t act_a = 0, act_b = 0, q = 0, total = 0;
    size_t qstride = 0;  // bytes per vector in q
    size_t width = 0;    // floats per vector in act_a / act_b / xn
  };
  Layout MakeLayout(int n) const;
  // First-layer input (raw tick) -> layer 0's W_ih x + bias into `proj` (gates_pad), or for an
  // MLP the first head layer's output.
  template <class Hooks>
  void Project0(const float* tick, float* ws, const Layout& l, float* proj,
                Hooks& hooks) const noexcept;
  // One timestep of every RNN layer from layer 0's projection; h/c in the workspace.
  template <class Hooks>
  void StepLayers(const float* proj0, bool first, float* ws, const Layout& l,
                  Hooks& hooks) const noexcept;
  // Layer i's recurrent part of one timestep: W_hh h (+ pre) and the cell, h/c in the workspace.
  template <class Hooks>
  void CellStep(size_t i, const float* pre, bool first, float* ws, const Layout& l,
                Hooks& hooks) const noexcept;
  // A whole window (T steps from h = c = 0) layer-major (see kTimeBlock); proj0_at(t) returns
  // layer 0's input projection for step t. Equal to T StepLayers calls for INT8 layers bit for
  // bit (FP32 GEMMs may sum in another order). No hooks: calibration observes time-major.
  template <class Proj0>
  // Steps [t_begin, T) (t_begin a multiple of kTimeBlock, h and c of step t_begin - 1 in the
  // workspace).
  void WindowLayerMajor(int t_begin, int T, Proj0&& proj0_at, float* ws,
                        const Layout& l) const noexcept;
  // The head on x (n vectors of `width` floats, stride ldx); writes out[n].
  template <class Hooks>
  void Head(int n, const float* x, size_t ldx, float* ws, const Layout& l, float* out,
            Hooks& hooks) const noexcept;
  // PushTick's last step of a window from a precomputed prefix (per layer h, c, W_hh h; see
  // PrecomputeWindow): layer 0's projection `proj0`, then per layer the input projection and
  // the cell; h in the workspace.
  void LastStepFromPrefix(const float* proj0, const float* prefix, float* ws,
                          const Layout& l) const noexcept;
  template <class Hooks>
  float RunHooked(const float* window, float* ws, Hooks& hooks) const noexcept;
  // Pointer to the normalized (or raw, if the first op folds normalization) tick.
  const float* Input(const float* tick, float* dst) const noexcept;

  const Kernels* k_;
  std::vector<RnnLayer> rnn_;
  std::vector<HeadLayer> head_;
  std::string precision_;
  bool normalize_ = false;  // first op is FP32 and the spec has normalization
  AlignedVec<float> mean_, inv_std_;
  static constexpr int kMaxBatch = 16;
  std::vector<Layout> lb_;  // layouts for batches of 1..kMaxBatch
  Layout l1_;
  size_t ws_floats_ = 0;
  size_t weight_bytes_ = 0;
  int g0_pad_ = 0;  // layer 0's gates_pad (window ring stride)
  // Window-mode state: header (tick count, prefix tag), the ring of window() first-layer
  // projections, then the precomputed prefix at prefix_off_: per layer h and c (Pad16(hidden)
  // each) and the last step's W_hh h (gates_pad).
  size_t prefix_off_ = 0;
  KernelReport kernel_report_;
  bool has_kernel_report_ = false;
};

}  // namespace qsig::models::internal
