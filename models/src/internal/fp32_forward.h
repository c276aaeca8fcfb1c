// The FP32 forward pass, shared by the FP32 runtime and by INT8 calibration. Hooks see the input
// of every tensor that the INT8 runtime quantizes, so calibration observes exactly the values
// the FP32 model computes.
#pragma once

#include <cstddef>
#include <vector>

#include "internal/ops.h"
#include "qsig/models/model.h"

namespace qsig::models::internal {

// Rounds a float count up to a multiple of 16 floats (64 bytes) so every region starts on a
// cache line when the workspace does.
inline size_t AlignFloats(size_t n) noexcept { return (n + 15) / 16 * 16; }

// Offsets (in floats) of the FP32 forward pass's scratch regions inside a workspace.
struct Fp32Layout {
  size_t xn = 0;                // One normalized timestep, input_size floats.
  std::vector<size_t> h, c;     // Per LSTM layer: hidden and cell state, hidden_size each.
  size_t gates = 0;             // 4 * max hidden_size pre-activation gates.
  size_t act_a = 0, act_b = 0;  // Ping-pong activations of the head, max layer width each.
  size_t total = 0;             // Floats needed.
  int max_width = 0;            // Largest vector any layer reads or writes.
  int max_gates = 0;            // 4 * max hidden_size.

  static Fp32Layout For(const ModelSpec& s) {
    Fp32Layout l;
    size_t off = 0;
    auto take = [&off](size_t n) {
      const size_t at = off;
      off += AlignFloats(n);
      return at;
    };
    int width = s.input_size;
    int hmax = 0;
    for (const LstmLayer& ly : s.lstm) {
      width = width > ly.hidden_size ? width : ly.hidden_size;
      hmax = hmax > ly.hidden_size ? hmax : ly.hidden_size;
    }
    for (const LinearLayer& ly : s.layers) {
      width = width > ly.in ? width : ly.in;
      width = width > ly.out ? width : ly.out;
    }
    l.max_width = width;
    l.max_gates = 4 * hmax;
    l.xn = take(static_cast<size_t>(s.input_size));
    for (const LstmLayer& ly : s.lstm) {
      l.h.push_back(take(static_cast<size_t>(ly.hidden_size)));
      l.c.push_back(take(static_cast<size_t>(ly.hidden_size)));
    }
    l.gates = take(static_cast<size_t>(l.max_gates));
    l.act_a = take(static_cast<size_t>(width));
    l.act_b = take(static_cast<size_t>(width));
    l.total = off;
    return l;
  }
};

// Hooks that do nothing: the plain FP32 runtime.
struct NoHooks {
  void LstmInput(size_t, const float*, int) noexcept {}
  void LstmHidden(size_t, const float*, int) noexcept {}
  void LinearInput(size_t, const float*, int) noexcept {}
};

// Runs the FP32 model on `window` (window * input_size raw features, oldest first) and returns
// the scalar output. Hooks::LstmInput(l, x, n) sees the input x_t of LSTM layer l at every
// step; LstmHidden(l, h, n) sees h_{t-1} for t >= 1 (h_0 = 0 is never multiplied: W_hh * 0 = 0
// exactly, so step 0 skips that product); LinearInput(k, x, n) sees the input of layers[k].
template <class Hooks>
float ForwardF32(const ModelSpec& s, const Fp32Layout& lay, const float* window, float* ws,
                 Hooks& hooks) noexcept {
  const int in_size = s.input_size;
  float* xn = ws + lay.xn;
  const float* x = xn;
  int width = in_size;
  if (s.arch == Arch::kLstm) {
    for (size_t l = 0; l < s.lstm.size(); ++l) {
      const int hs = s.lstm[l].hidden_size;
      for (int j = 0; j < hs; ++j) ws[lay.h[l] + j] = ws[lay.c[l] + j] = 0.0f;
    }
    float* gates = ws + lay.gates;
    for (int t = 0; t < s.window; ++t) {
      Normalize(s, window + static_cast<size_t>(t) * in_size, xn);
      x = xn;
      width = in_size;
      for (size_t l = 0; l < s.lstm.size(); ++l) {
        const LstmLayer& ly = s.lstm[l];
        const int hs = ly.hidden_size;
        float* h = ws + lay.h[l];
        float* c = ws + lay.c[l];
        hooks.LstmInput(l, x, width);
        GemvF32(4 * hs, width, ly.w_ih.data(), x, ly.b_ih.data(), gates);
        if (t > 0) {
          hooks.LstmHidden(l, h, hs);
          GemvAccF32(4 * hs, hs, ly.w_hh.data(), h, gates);
        }
        for (int r = 0; r < 4 * hs; ++r) gates[r] += ly.b_hh[static_cast<size_t>(r)];
        LstmCell(hs, gates, h, c);
        x = h;
        width = hs;
      }
    }
  } else {
    Normalize(s, window + static_cast<size_t>(s.window - 1) * in_size, xn);
  }
  for (size_t k = 0; k < s.layers.size(); ++k) {
    const LinearLayer& ly = s.layers[k];
    hooks.LinearInput(k, x, width);
    float* y = ws + (k % 2 == 0 ? lay.act_a : lay.act_b);
    GemvF32(ly.out, ly.in, ly.weight.data(), x, ly.bias.data(), y);
    for (int r = 0; r < ly.out; ++r) y[r] = Activate(y[r], ly.activation);
    x = y;
    width = ly.out;
  }
  return x[0];
}

}  // namespace qsig::models::internal
