// The shared FP32 / INT8 / mixed runtime (see internal/runtime.h).
#include "internal/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "qsig/quant/quantize.h"

namespace qsig::models::internal {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Floats: one cache line holding the tick counter and (window mode) the prefix tag: the tick
// count the next PushTick will reach if the precomputed prefix is valid for it, 0 for none.
constexpr size_t kHeader = 16;
constexpr size_t kTagOffset = 2;  // floats: after the 64-bit counter
// A prefix in progress (PrecomputeWindow runs at most kTimeBlock steps per call): the tag it
// will get once complete, and the steps done so far (h and c in the prefix area).
constexpr size_t kPartialOffset = 4;
constexpr size_t kProgressOffset = 6;

uint64_t LoadCount(const float* state) noexcept {
  uint64_t c;
  std::memcpy(&c, state, sizeof c);
  return c;
}
void StoreCount(float* state, uint64_t c) noexcept { std::memcpy(state, &c, sizeof c); }
uint64_t LoadTag(const float* state) noexcept {
  uint64_t t;
  std::memcpy(&t, state + kTagOffset, sizeof t);
  return t;
}
void StoreTag(float* state, uint64_t t) noexcept { std::memcpy(state + kTagOffset, &t, sizeof t); }
uint64_t LoadAt(const float* state, size_t off) noexcept {
  uint64_t v;
  std::memcpy(&v, state + off, sizeof v);
  return v;
}
void StoreAt(float* state, size_t off, uint64_t v) noexcept {
  std::memcpy(state + off, &v, sizeof v);
}

}  // namespace

size_t MatmulOp::bytes() const noexcept {
  if (!int8) return static_cast<size_t>(rows) * cols * sizeof(float);
  size_t n = static_cast<size_t>(rows) * cols + static_cast<size_t>(rows) * sizeof(uint16_t);
  n += qa.size() ? static_cast<size_t>(cols) * sizeof(float) : sizeof(float);
  if (!s16) n += qb.size() ? static_cast<size_t>(cols) * sizeof(float) : sizeof(float);
  return n;
}

MatmulOp MakeFp32Matmul(const std::vector<float>& w, int rows, int cols) {
  MatmulOp op;
  op.rows = rows;
  op.cols = cols;
  op.wf = PackF32(w.data(), rows, cols);
  return op;
}

MatmulOp MakeInt8Matmul(const std::vector<float>& w, int rows, int cols, const InputQuant& in,
                        const std::vector<float>& fold_mean, const std::vector<float>& fold_std,
                        std::vector<float>* bias_fold, int w_max) {
  MatmulOp op;
  op.rows = rows;
  op.cols = cols;
  op.int8 = true;
  op.s16 = in.s16;
  const bool per_col = in.scale.size() > 1 || !fold_mean.empty();
  auto sc = [&in](int k) {
    return in.scale.size() > 1 ? in.scale[static_cast<size_t>(k)] : in.scale[0];
  };
  auto zp = [&in](int k) {
    return in.zero_point.size() > 1 ? in.zero_point[static_cast<size_t>(k)] : in.zero_point[0];
  };
  // W'[r,k] = W[r,k] * s_k, quantized per row: q = clamp(round(W' / sw), -w_max, w_max), with sw
  // the smallest bf16 >= max|W'| / w_max (so the stored bf16 scale is exact); w_max = 127, or 63
  // with reduce_range.
  const float qmax = static_cast<float>(w_max);
  std::vector<int8_t> q(static_cast<size_t>(rows) * cols);
  std::vector<uint16_t> scales(static_cast<size_t>(rows));
  bias_fold->assign(static_cast<size_t>(rows), 0.0f);
  for (int r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (int k = 0; k < cols; ++k) {
      amax = std::max(amax, std::fabs(w[static_cast<size_t>(r) * cols + k] * sc(k)));
    }
    const float sw = amax > 0.0f ? RoundUpToBf16(amax / qmax) : 1.0f;
    int64_t comp = 0;
    for (int k = 0; k < cols; ++k) {
      const float v = quant::RoundHalfEven(w[static_cast<size_t>(r) * cols + k] * sc(k) / sw);
      const int32_t qi = static_cast<int32_t>(std::clamp(v, -qmax, qmax));
      q[static_cast<size_t>(r) * cols + k] = static_cast<int8_t>(qi);
      comp += static_cast<int64_t>(qi) * zp(k);
    }
    scales[static_cast<size_t>(r)] = FloatToBf16Truncate(sw);
    (*bias_fold)[static_cast<size_t>(r)] = -static_cast<float>(comp) * sw;
  }
  op.wq = PackS8(q.data(), rows, cols);
  for (int r = 0; r < rows; ++r)
    op.wq.scales[static_cast<size_t>(r)] = scales[static_cast<size_t>(r)];
  if (per_col && in.s16 && !fold_mean.empty() && in.scale.size() == 1) {
    // s16 with normalization folded: xq = round(x * a_k) with a_k = 1 / (s * std_k); the mean's
    // term, -sum_k W[r,k] * mean_k / std_k, is a constant of the bias. One float per feature.
    op.qa.resize(Pad16(static_cast<size_t>(cols)));
    for (int k = 0; k < cols; ++k) {
      const size_t i = static_cast<size_t>(k);
      const float sd = fold_std[i] != 0.0f ? fold_std[i] : 1.0f;
      op.qa[i] = 1.0f / (in.scale[0] * sd);
      for (int r = 0; r < rows; ++r) {
        (*bias_fold)[static_cast<size_t>(r)] -=
            w[static_cast<size_t>(r) * cols + k] * (fold_mean[i] / sd);
      }
    }
    op.qb0 = 0.0f;
  } else if (per_col) {
    op.qa.resize(Pad16(static_cast<size_t>(cols)));
    op.qb.resize(Pad16(static_cast<size_t>(cols)));
    for (int k = 0; k < cols; ++k) {
      float a = 1.0f / sc(k), b = static_cast<float>(zp(k));
      if (!fold_mean.empty()) {  // x_n = (x - mean) / std  =>  x_n * a + b = x * a' + b'
        const float sd =
            fold_std[static_cast<size_t>(k)] != 0.0f ? fold_std[static_cast<size_t>(k)] : 1.0f;
        const float a2 = a / sd;
        b = b - fold_mean[static_cast<size_t>(k)] * a2;
        a = a2;
      }
      op.qa[static_cast<size_t>(k)] = a;
      op.qb[static_cast<size_t>(k)] = b;
    }
  } else {
    op.qa0 = 1.0f / in.scale[0];
    op.qb0 = static_cast<float>(in.zero_point[0]);
  }
  return op;
}

Runtime::Runtime(std::shared_ptr<const ModelSpec> spec, std::vector<RnnLayer> rnn,
                 std::vector<HeadLayer> head, std::string precision)
    : Model(std::move(spec)),
      k_(&quant::ActiveKernels()),
      rnn_(std::move(rnn)),
      head_(std::move(head)),
      precision_(std::move(precision)) {
  const ModelSpec& s = *spec_;
  const MatmulOp& first = rnn_.empty() ? head_[0].w : rnn_[0].ih;
  normalize_ = !s.feature_mean.empty() && !first.int8;
  for (int n = 1; n <= kMaxBatch; ++n) lb_.push_back(MakeLayout(n));
  l1_ = lb_[0];
  ws_floats_ = l1_.total;
  g0_pad_ = rnn_.empty() ? 0 : rnn_[0].gates_pad;
  prefix_off_ = kHeader + static_cast<size_t>(s.window) * static_cast<size_t>(g0_pad_);
  size_t b = 0;
  for (const RnnLayer& r : rnn_) {
    b += r.ih.bytes() + r.hh.bytes() + static_cast<size_t>(r.gates) * sizeof(float);
    if (r.gru) b += static_cast<size_t>(r.gates) * sizeof(float);
  }
  for (const HeadLayer& h : head_) b += h.w.bytes() + static_cast<size_t>(h.out) * sizeof(float);
  // Normalization constants are stored unless the first op folded them into its quantization.
  if (!s.feature_mean.empty() && !first.int8) b += 2 * s.feature_mean.size() * sizeof(float);
  weight_bytes_ = b;
}

Runtime::Layout Runtime::MakeLayout(int n) const {
  const ModelSpec& s = *spec_;
  Layout l;
  size_t off = 0;
  const size_t nn = static_cast<size_t>(n);
  auto take = [&off](size_t floats) {
    const size_t at = off;
    off += Pad16(floats);
    return at;
  };
  size_t width = static_cast<size_t>(s.input_size);
  size_t cols_max = static_cast<size_t>(s.input_size);
  for (const RnnLayer& r : rnn_) {
    width = std::max(width, static_cast<size_t>(r.hidden));
    cols_max = std::max(
        {cols_max, static_cast<size_t>(r.ih.cols_pad()), static_cast<size_t>(r.hh.cols_pad())});
  }
  for (const HeadLayer& h : head_) {
    width = std::max({width, static_cast<size_t>(h.w.rows_pad()), static_cast<size_t>(h.in)});
    cols_max = std::max(cols_max, static_cast<size_t>(h.w.cols_pad()));
  }
  l.width = Pad16(width);
  l.xn = take(nn * l.width);
  for (const RnnLayer& r : rnn_) {
    const size_t hp = Pad16(static_cast<size_t>(r.hidden));
    const size_t gp = static_cast<size_t>(r.gates_pad);
    l.h.push_back(take(nn * hp));
    l.c.push_back(take(nn * hp));
    l.gates.push_back(take(nn * gp));
    l.proj.push_back(take(nn * gp));
    l.gh.push_back(take(r.gru ? nn * gp : 0));
  }
  size_t qvecs = nn;
  if (n == 1 && rnn_.size() > 1) {
    const size_t tb = static_cast<size_t>(kTimeBlock);
    for (size_t i = 0; i < rnn_.size(); ++i) {
      const RnnLayer& r = rnn_[i];
      l.hseq.push_back(i + 1 < rnn_.size() ? take(tb * Pad16(static_cast<size_t>(r.hidden))) : 0);
      l.pseq.push_back(i > 0 ? take(tb * static_cast<size_t>(r.gates_pad)) : 0);
    }
    qvecs = tb;
  }
  l.act_a = take(nn * l.width);
  l.act_b = take(nn * l.width);
  l.qstride = (2 * cols_max + 63) / 64 * 64;  // room for s16 activations
  l.q = take(qvecs * l.qstride / sizeof(float));
  l.total = off;
  return l;
}

const float* Runtime::Input(const float* tick, float* dst) const noexcept {
  if (!normalize_) return tick;
  Normalize(*spec_, tick, dst);
  return dst;
}

template <class Hooks>
void Runtime::Project0(const float* tick, float* ws, const Layout& l, float* proj,
                       Hooks& hooks) const noexcept {
  const RnnLayer& r = rnn_[0];
  const float* x = Input(tick, ws + l.xn);
  hooks.MatmulInput(0, x, r.in);
  r.ih.Apply(*k_, 1, x, 0, r.bias_x.data(), 0, proj, 0, reinterpret_cast<uint8_t*>(ws + l.q),
             l.qstride);
}

template <class Hooks>
void Runtime::CellStep(size_t i, const float* pre, bool first, float* ws, const Layout& l,
                       Hooks& hooks) const noexcept {
  const RnnLayer& r = rnn_[i];
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  const int id = static_cast<int>(2 * i);
  float* h = ws + l.h[i];
  // h_{t-1} = 0 at a window's first step: an FP32 W_hh * 0 is exactly 0 and is skipped. (An
  // INT8 hh has its zero-point term folded into the bias, so it always runs.)
  const bool skip_hh = first && !r.hh.int8;
  if (!r.gru) {
    float* c = ws + l.c[i];
    const float* gates = pre;
    if (!skip_hh) {
      if (!first) hooks.MatmulInput(id + 1, h, r.hidden);
      float* g = ws + l.gates[i];
      r.hh.Apply(*k_, 1, h, 0, pre, 0, g, 0, q, l.qstride);
      gates = g;
    }
    k_->lstm_cell(r.hidden, gates, h, c, r.c_step);
    hooks.CellState(static_cast<int>(i), c, r.hidden);
  } else {
    const float* gh = r.bias_h.data();
    if (!skip_hh) {
      if (!first) hooks.MatmulInput(id + 1, h, r.hidden);
      float* g = ws + l.gh[i];
      r.hh.Apply(*k_, 1, h, 0, r.bias_h.data(), 0, g, 0, q, l.qstride);
      gh = g;
    }
    k_->gru_cell(r.hidden, pre, gh, h);
  }
}

template <class Hooks>
void Runtime::StepLayers(const float* proj0, bool first, float* ws, const Layout& l,
                         Hooks& hooks) const noexcept {
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  const float* x = nullptr;
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const RnnLayer& r = rnn_[i];
    const float* pre = proj0;
    if (i > 0) {
      hooks.MatmulInput(static_cast<int>(2 * i), x, r.in);
      float* proj = ws + l.proj[i];
      r.ih.Apply(*k_, 1, x, 0, r.bias_x.data(), 0, proj, 0, q, l.qstride);
      pre = proj;
    }
    CellStep(i, pre, first, ws, l, hooks);
    x = ws + l.h[i];
  }
}

template <class Proj0>
void Runtime::WindowLayerMajor(int t_begin, int T, Proj0&& proj0_at, float* ws,
                               const Layout& l) const noexcept {
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  NoHooks hooks;
  const size_t nl = rnn_.size();
  for (int t0 = t_begin; t0 < T; t0 += kTimeBlock) {
    const int nb = std::min(kTimeBlock, T - t0);
    for (size_t i = 0; i < nl; ++i) {
      const RnnLayer& r = rnn_[i];
      const size_t gp = static_cast<size_t>(r.gates_pad);
      float* pseq = nullptr;
      if (i > 0) {  // this block's input projections: one GEMM over the previous layer's h's
        const size_t hp_in = Pad16(static_cast<size_t>(rnn_[i - 1].hidden));
        pseq = ws + l.pseq[i];
        r.ih.Apply(*k_, nb, ws + l.hseq[i - 1], hp_in, r.bias_x.data(), 0, pseq, gp, q, l.qstride);
      }
      const size_t hp = Pad16(static_cast<size_t>(r.hidden));
      for (int s = 0; s < nb; ++s) {
        const int t = t0 + s;
        const float* pre = i == 0 ? proj0_at(t) : pseq + static_cast<size_t>(s) * gp;
        CellStep(i, pre, t == 0, ws, l, hooks);
        if (i + 1 < nl) {
          std::memcpy(ws + l.hseq[i] + static_cast<size_t>(s) * hp, ws + l.h[i],
                      hp * sizeof(float));
        }
      }
    }
  }
}

template <class Hooks>
void Runtime::Head(int n, const float* x, size_t ldx, float* ws, const Layout& l, float* out,
                   Hooks& hooks) const noexcept {
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  const int base = static_cast<int>(2 * rnn_.size());
  for (size_t k = 0; k < head_.size(); ++k) {
    const HeadLayer& hl = head_[k];
    float* y = ws + (k % 2 == 0 ? l.act_a : l.act_b);
    if (n == 1) hooks.MatmulInput(base + static_cast<int>(k), x, hl.in);
    hl.w.Apply(*k_, n, x, ldx, hl.bias.data(), 0, y, l.width, q, l.qstride);
    if (hl.act != Activation::kNone) {
      for (int i = 0; i < n; ++i)
        k_->activate(hl.out, hl.act, y + static_cast<size_t>(i) * l.width);
    }
    x = y;
    ldx = l.width;
  }
  for (int i = 0; i < n; ++i) out[i] = x[static_cast<size_t>(i) * ldx];
}

template <class Hooks>
float Runtime::RunHooked(const float* window, float* ws, Hooks& hooks) const noexcept {
  const ModelSpec& s = *spec_;
  const Layout& l = l1_;
  const size_t in = static_cast<size_t>(s.input_size);
  float out = kNaN;
  if (rnn_.empty()) {
    const float* x = Input(window + static_cast<size_t>(s.window - 1) * in, ws + l.xn);
    Head(1, x, 0, ws, l, &out, hooks);
    return out;
  }
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const size_t hp = Pad16(static_cast<size_t>(rnn_[i].hidden));
    std::memset(ws + l.h[i], 0, hp * sizeof(float));
    std::memset(ws + l.c[i], 0, hp * sizeof(float));
  }
  float* proj0 = ws + l.proj[0];
  if constexpr (std::is_same_v<Hooks, NoHooks>) {
    if (rnn_.size() > 1) {
      WindowLayerMajor(
          0, s.window,
          [&](int t) {
            Project0(window + static_cast<size_t>(t) * in, ws, l, proj0, hooks);
            return static_cast<const float*>(proj0);
          },
          ws, l);
      Head(1, ws + l.h.back(), 0, ws, l, &out, hooks);
      return out;
    }
  }
  for (int t = 0; t < s.window; ++t) {
    Project0(window + static_cast<size_t>(t) * in, ws, l, proj0, hooks);
    StepLayers(proj0, t == 0, ws, l, hooks);
  }
  Head(1, ws + l.h.back(), 0, ws, l, &out, hooks);
  return out;
}

float Runtime::RunObserved(const float* window, float* ws, Observer& obs) const noexcept {
  return RunHooked(window, ws, obs);
}

float Runtime::Run(std::span<const float> window, float* ws) const noexcept {
  if (window.size() != static_cast<size_t>(spec_->window) * spec_->input_size || ws == nullptr) {
    return kNaN;
  }
  NoHooks hooks;
  return RunHooked(window.data(), ws, hooks);
}

size_t Runtime::state_floats(Mode mode) const noexcept {
  if (rnn_.empty()) return kHeader;
  size_t n = mode == Mode::kWindow ? prefix_off_ : kHeader;
  for (const RnnLayer& r : rnn_) {
    n += 2 * Pad16(static_cast<size_t>(r.hidden));
    // Window mode's prefix also keeps the recurrent matmul of the last step (W_hh h).
    if (mode == Mode::kWindow) n += static_cast<size_t>(r.gates_pad);
  }
  return n;
}

void Runtime::ResetState(Mode mode, float* state) const noexcept {
  if (state != nullptr) std::memset(state, 0, state_floats(mode) * sizeof(float));
}

float Runtime::PushTick(std::span<const float> tick, float* state, float* ws) const noexcept {
  const ModelSpec& s = *spec_;
  if (tick.size() != static_cast<size_t>(s.input_size) || state == nullptr || ws == nullptr) {
    return kNaN;
  }
  const uint64_t count = LoadCount(state) + 1;
  StoreCount(state, count);
  const uint64_t window = static_cast<uint64_t>(s.window);
  NoHooks hooks;
  const Layout& l = l1_;
  float out = kNaN;
  if (rnn_.empty()) {
    if (count < window) return kNaN;
    Head(1, Input(tick.data(), ws + l.xn), 0, ws, l, &out, hooks);
    return out;
  }
  // Tick number k (from 0) is cached in slot k % window.
  float* ring = state + kHeader;
  const size_t gp = static_cast<size_t>(g0_pad_);
  Project0(tick.data(), ws, l, ring + ((count - 1) % window) * gp, hooks);
  if (count < window) return kNaN;
  if (LoadTag(state) == count) {
    // Precomputed: h, c and W_hh h after the window's first window() - 1 steps; what remains
    // of the last step is each layer's input projection and cell.
    LastStepFromPrefix(ring + ((count - 1) % window) * gp, state + prefix_off_, ws, l);
    Head(1, ws + l.h.back(), 0, ws, l, &out, hooks);
    return out;
  }
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const size_t hp = Pad16(static_cast<size_t>(rnn_[i].hidden));
    std::memset(ws + l.h[i], 0, hp * sizeof(float));
    std::memset(ws + l.c[i], 0, hp * sizeof(float));
  }
  if (rnn_.size() > 1) {
    WindowLayerMajor(
        0, s.window,
        [&](int t) {
          return static_cast<const float*>(
              ring + ((count - window + static_cast<uint64_t>(t)) % window) * gp);
        },
        ws, l);
  } else {
    for (uint64_t t = 0; t < window; ++t) {
      StepLayers(ring + ((count - window + t) % window) * gp, t == 0, ws, l, hooks);
    }
  }
  Head(1, ws + l.h.back(), 0, ws, l, &out, hooks);
  return out;
}

bool Runtime::WindowPrecomputed(const float* state) const noexcept {
  return state != nullptr && !rnn_.empty() && LoadTag(state) == LoadCount(state) + 1;
}

bool Runtime::PrecomputeWindow(float* state, float* ws) const noexcept {
  if (state == nullptr || ws == nullptr || rnn_.empty()) return false;
  const uint64_t count = LoadCount(state);
  const uint64_t window = static_cast<uint64_t>(spec_->window);
  // The next window is ticks count - window + 1 .. count (from 0); its first window - 1 ticks
  // (all but the one to come) are in the ring.
  const uint64_t target = count + 1;
  if (target < window || LoadTag(state) == target) return false;
  const Layout& l = l1_;
  NoHooks hooks;
  const float* ring = state + kHeader;
  const size_t gp = static_cast<size_t>(g0_pad_);
  const uint64_t first = target - window;
  const int steps = static_cast<int>(window) - 1;
  // Resume a prefix in progress for this window, or start one (h = c = 0).
  const int done = LoadAt(state, kPartialOffset) == target
                       ? static_cast<int>(LoadAt(state, kProgressOffset))
                       : 0;
  float* pre = state + prefix_off_;
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const size_t hp = Pad16(static_cast<size_t>(rnn_[i].hidden));
    if (done == 0) {
      std::memset(ws + l.h[i], 0, hp * sizeof(float));
      std::memset(ws + l.c[i], 0, hp * sizeof(float));
    } else {
      std::memcpy(ws + l.h[i], pre, hp * sizeof(float));
      std::memcpy(ws + l.c[i], pre + hp, hp * sizeof(float));
    }
    pre += 2 * hp + static_cast<size_t>(rnn_[i].gates_pad);
  }
  // One time block per call (a caller that looks for input between calls waits at most that
  // long), on the same schedule as PushTick's full window stopped one step early: layer-major
  // blocks for stacked layers (starting at multiples of kTimeBlock, as there), time-major for
  // one layer.
  const int end = std::min(steps, done + kTimeBlock);
  if (rnn_.size() > 1) {
    WindowLayerMajor(
        done, end,
        [&](int t) {
          return static_cast<const float*>(ring +
                                           ((first + static_cast<uint64_t>(t)) % window) * gp);
        },
        ws, l);
  } else {
    for (int t = done; t < end; ++t) {
      StepLayers(ring + ((first + static_cast<uint64_t>(t)) % window) * gp, t == 0, ws, l, hooks);
    }
  }
  // Per layer: h, c, and once the prefix is complete the last step's recurrent matmul on that
  // h, exactly the call CellStep makes (LSTM: W_hh h with the input projection added later,
  // which is the kernel's own order: round(W_hh h) + add; GRU: W_hh h + b_hh). At a window's
  // first step (window() == 1) h is 0 and CellStep may skip an FP32 W_hh: the last step then
  // runs in full.
  const bool complete = end == steps;
  pre = state + prefix_off_;
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const RnnLayer& r = rnn_[i];
    const size_t hp = Pad16(static_cast<size_t>(r.hidden));
    std::memcpy(pre, ws + l.h[i], hp * sizeof(float));
    std::memcpy(pre + hp, ws + l.c[i], hp * sizeof(float));
    if (complete && steps > 0) {
      r.hh.Apply(*k_, 1, ws + l.h[i], 0, r.gru ? r.bias_h.data() : nullptr, 0, pre + 2 * hp, 0, q,
                 l.qstride);
    }
    pre += 2 * hp + static_cast<size_t>(r.gates_pad);
  }
  if (complete) {
    StoreAt(state, kPartialOffset, 0);
    StoreTag(state, target);
  } else {
    StoreAt(state, kPartialOffset, target);
    StoreAt(state, kProgressOffset, static_cast<uint64_t>(end));
  }
  return true;
}

void Runtime::LastStepFromPrefix(const float* proj0, const float* prefix, float* ws,
                                 const Layout& l) const noexcept {
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  const bool first = spec_->window == 1;
  NoHooks hooks;
  const float* x = nullptr;
  for (size_t i = 0; i < rnn_.size(); ++i) {
    const RnnLayer& r = rnn_[i];
    const size_t hp = Pad16(static_cast<size_t>(r.hidden));
    float* h = ws + l.h[i];
    float* c = ws + l.c[i];
    std::memcpy(h, prefix, hp * sizeof(float));
    std::memcpy(c, prefix + hp, hp * sizeof(float));
    const float* hh = prefix + 2 * hp;
    prefix += 2 * hp + static_cast<size_t>(r.gates_pad);
    const float* pre = proj0;
    if (i > 0) {
      float* proj = ws + l.proj[i];
      r.ih.Apply(*k_, 1, x, 0, r.bias_x.data(), 0, proj, 0, q, l.qstride);
      pre = proj;
    }
    if (first) {
      CellStep(i, pre, true, ws, l, hooks);
    } else if (!r.gru) {
      float* g = ws + l.gates[i];
      const int n = r.gates;
      for (int k = 0; k < n; ++k) g[k] = hh[k] + pre[k];
      k_->lstm_cell(r.hidden, g, h, c, r.c_step);
    } else {
      k_->gru_cell(r.hidden, pre, hh, h);
    }
    x = h;
  }
}

float Runtime::Step(std::span<const float> tick, float* state, float* ws) const noexcept {
  if (tick.size() != static_cast<size_t>(spec_->input_size) || state == nullptr || ws == nullptr) {
    return kNaN;
  }
  float out = kNaN;
  float* states[1] = {state};
  StepBatch(1, tick.data(), states, ws, &out);
  return out;
}

size_t Runtime::batch_workspace_floats(int n) const noexcept {
  return lb_[static_cast<size_t>(std::clamp(n, 1, kMaxBatch) - 1)].total;
}

void Runtime::StepBatch(int n, const float* ticks, float* const* states, float* ws,
                        float* out) const noexcept {
  if (n <= 0 || ticks == nullptr || states == nullptr || ws == nullptr || out == nullptr) return;
  const ModelSpec& s = *spec_;
  const size_t in = static_cast<size_t>(s.input_size);
  // Larger batches run as consecutive batches of kMaxBatch (layouts are precomputed per size).
  while (n > kMaxBatch) {
    StepBatch(kMaxBatch, ticks, states, ws, out);
    ticks += static_cast<size_t>(kMaxBatch) * in;
    states += kMaxBatch;
    out += kMaxBatch;
    n -= kMaxBatch;
  }
  const Layout& l = lb_[static_cast<size_t>(n - 1)];
  NoHooks hooks;
  auto* q = reinterpret_cast<uint8_t*>(ws + l.q);
  // Inputs: n normalized ticks, l.width apart (or the raw ticks, in.size apart, when the first op
  // quantizes raw features directly).
  const float* x = ticks;
  size_t ldx = in;
  if (normalize_) {
    for (int i = 0; i < n; ++i) {
      Normalize(s, ticks + static_cast<size_t>(i) * in,
                ws + l.xn + static_cast<size_t>(i) * l.width);
    }
    x = ws + l.xn;
    ldx = l.width;
  }
  if (rnn_.empty()) {
    Head(n, x, ldx, ws, l, out, hooks);
    return;
  }
  size_t soff = kHeader;  // offset of layer i's h (then c) inside a state block
  for (size_t li = 0; li < rnn_.size(); ++li) {
    const RnnLayer& r = rnn_[li];
    const size_t hp = Pad16(static_cast<size_t>(r.hidden));
    const size_t gp = static_cast<size_t>(r.gates_pad);
    float* proj = ws + l.proj[li];
    r.ih.Apply(*k_, n, x, ldx, r.bias_x.data(), 0, proj, gp, q, l.qstride);
    // h_{t-1} of every instrument, contiguous (n == 1 reads the state in place).
    float* hbuf = ws + l.h[li];
    const float* hin = states[0] + soff;
    if (n > 1) {
      for (int i = 0; i < n; ++i) {
        std::memcpy(hbuf + static_cast<size_t>(i) * hp, states[i] + soff, hp * sizeof(float));
      }
      hin = hbuf;
    }
    if (!r.gru) {
      float* g = ws + l.gates[li];
      r.hh.Apply(*k_, n, hin, hp, proj, gp, g, gp, q, l.qstride);
      for (int i = 0; i < n; ++i) {
        float* h = states[i] + soff;
        k_->lstm_cell(r.hidden, g + static_cast<size_t>(i) * gp, h, h + hp, r.c_step);
      }
    } else {
      float* g = ws + l.gh[li];
      r.hh.Apply(*k_, n, hin, hp, r.bias_h.data(), 0, g, gp, q, l.qstride);
      for (int i = 0; i < n; ++i) {
        k_->gru_cell(r.hidden, proj + static_cast<size_t>(i) * gp, g + static_cast<size_t>(i) * gp,
                     states[i] + soff);
      }
    }
    // The new h's are the next layer's (or the head's) input.
    if (n > 1) {
      for (int i = 0; i < n; ++i) {
        std::memcpy(hbuf + static_cast<size_t>(i) * hp, states[i] + soff, hp * sizeof(float));
      }
      x = hbuf;
    } else {
      x = states[0] + soff;
    }
    ldx = hp;
    soff += 2 * hp;
  }
  Head(n, x, ldx, ws, l, out, hooks);
}

absl::Status Runtime::ChooseBackends() {
  absl::StatusOr<quant::OnednnMode> mode = quant::ActiveOnednnMode();
  if (!mode.ok()) return mode.status();
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  // Bounds the load-time cost in auto mode: past it, the remaining shapes keep the own kernels
  // (the test mode prefer_if_exact measures every shape, so its decisions do not depend on time).
  constexpr double kBudgetMs = 20.0;
  constexpr int kReps = 5;
  KernelReport rep;
  rep.isa = quant::IsaName(k_->isa);
  rep.onednn_mode = quant::OnednnModeName(*mode);
  rep.notes.push_back(
      "n=1 GEMVs (every tick's Run/PushTick/Step): qsig, decided statically: oneDNN measured "
      "1.3-10.6x slower at n=1 (bench/README.md)");
  rep.notes.push_back(absl::StrCat("StepBatch with 2..", kMaxBatch - 1,
                                   " instruments: qsig (only n=", kMaxBatch, " is measured)"));
  const ModelSpec& s = *spec_;
  const char* arch = ArchName(s.arch);
  auto decide = [&](MatmulOp& op, std::string name, const char* use, int n, size_t ldx,
                    size_t ldy) {
    KernelChoice c;
    c.op = std::move(name);
    c.use = use;
    c.rows = op.rows;
    c.cols = op.cols;
    c.n = n;
    c.backend = "qsig";
    const double spent = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!op.int8) {
      c.reason = "fp32 weights (the oneDNN backend is int8 only)";
    } else if (op.s16) {
      c.reason = "s16 activations (oneDNN has no s16 x s8 matmul)";
    } else if (*mode == quant::OnednnMode::kAuto && spent > kBudgetMs) {
      c.reason = absl::StrFormat("chooser budget (%.0f ms) spent", kBudgetMs);
    } else {
      std::unique_ptr<quant::OnednnGemmU8S8> be;
      const quant::GemmChoice g =
          quant::ChooseGemmBackend(*k_, op.wq, n, ldx, ldy, *mode, kReps, &be);
      c.own_us = g.own_us;
      c.onednn_us = g.onednn_us;
      c.exact = g.exact;
      c.reason = g.reason;
      if (g.onednn && be != nullptr) {
        c.backend = "onednn";
        op.onednn.push_back(std::shared_ptr<const quant::OnednnGemmU8S8>(std::move(be)));
      }
    }
    rep.shapes.push_back(std::move(c));
  };
  // Stacked RNNs over a window: layer i > 0's input projections, kTimeBlock steps at a time.
  const int T = s.window;
  for (size_t i = 1; i < rnn_.size(); ++i) {
    RnnLayer& r = rnn_[i];
    const size_t gp = static_cast<size_t>(r.gates_pad);
    const std::string name = absl::StrCat(arch, "[", i, "].w_ih");
    const int full = std::min(kTimeBlock, T);
    if (full > 1) decide(r.ih, name, "window", full, l1_.qstride, gp);
    const int tail = T > kTimeBlock ? T % kTimeBlock : 0;
    if (tail > 1) decide(r.ih, name, "window", tail, l1_.qstride, gp);
  }
  // StepBatch at kMaxBatch instruments: every matmul.
  const Layout& lb = lb_.back();
  for (size_t i = 0; i < rnn_.size(); ++i) {
    RnnLayer& r = rnn_[i];
    const size_t gp = static_cast<size_t>(r.gates_pad);
    decide(r.ih, absl::StrCat(arch, "[", i, "].w_ih"), "step_batch", kMaxBatch, lb.qstride, gp);
    decide(r.hh, absl::StrCat(arch, "[", i, "].w_hh"), "step_batch", kMaxBatch, lb.qstride, gp);
  }
  for (size_t k = 0; k < head_.size(); ++k) {
    decide(head_[k].w, absl::StrCat("layers[", k, "]"), "step_batch", kMaxBatch, lb.qstride,
           lb.width);
  }
  rep.chooser_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  kernel_report_ = std::move(rep);
  has_kernel_report_ = true;
  return absl::OkStatus();
}

}  // namespace qsig::models::internal

namespace qsig::models {

std::string FormatKernelReport(const KernelReport& r, const std::string& indent) {
  std::string out = absl::StrFormat("%skernels %s, oneDNN backend %s, per-shape chooser %.1f ms\n",
                                    indent, r.isa, r.onednn_mode, r.chooser_ms);
  for (const KernelChoice& c : r.shapes) {
    const std::string own = c.own_us < 0 ? "-" : absl::StrFormat("%.1f us", c.own_us);
    const std::string dnn = c.onednn_us < 0 ? "-"
                            : c.exact       ? absl::StrFormat("%.1f us", c.onednn_us)
                                            : "not exact";
    absl::StrAppendFormat(&out,
                          "%s  %-14s %-10s %4dx%-4d n=%-2d qsig %-9s oneDNN %-10s -> %s (%s)\n",
                          indent, c.op, c.use, c.rows, c.cols, c.n, own, dnn, c.backend, c.reason);
  }
  for (const std::string& n : r.notes) absl::StrAppend(&out, indent, "  ", n, "\n");
  return out;
}

const char* KernelIsa() noexcept { return quant::ActiveIsaName(); }
}  // namespace qsig::models
