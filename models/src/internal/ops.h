// Small FP32 building blocks shared by the FP32 and INT8 runtimes (hot path: inline, noexcept).
#pragma once

#include <cmath>
#include <cstddef>

#include "qsig/models/model.h"

namespace qsig::models::internal {

inline float Sigmoid(float x) noexcept { return 1.0f / (1.0f + std::exp(-x)); }

// tanh(x) = 2 * sigmoid(2x) - 1. glibc's tanhf measured ~84 ns a call here against ~5 ns for
// expf, and an LSTM window makes 2 * hidden * window of them; the absolute error (~1e-7) is far
// inside the 1e-5 agreement with PyTorch. Saturates cleanly: exp overflow gives -1, underflow 1.
inline float Tanh(float x) noexcept { return 2.0f / (1.0f + std::exp(-2.0f * x)) - 1.0f; }

inline float Activate(float x, Activation a) noexcept {
  switch (a) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return x > 0.0f ? x : 0.0f;
    case Activation::kTanh:
      return Tanh(x);
    case Activation::kSigmoid:
      return Sigmoid(x);
  }
  return x;
}

// y[r] = b[r] + sum_c w[r*cols + c] * x[c]. b may be null.
inline void GemvF32(int rows, int cols, const float* w, const float* x, const float* b,
                    float* y) noexcept {
  for (int r = 0; r < rows; ++r) {
    const float* wr = w + static_cast<size_t>(r) * cols;
    float acc = 0.0f;
    for (int c = 0; c < cols; ++c) acc += wr[c] * x[c];
    y[r] = b ? acc + b[r] : acc;
  }
}

// y[r] += sum_c w[r*cols + c] * x[c].
inline void GemvAccF32(int rows, int cols, const float* w, const float* x, float* y) noexcept {
  for (int r = 0; r < rows; ++r) {
    const float* wr = w + static_cast<size_t>(r) * cols;
    float acc = 0.0f;
    for (int c = 0; c < cols; ++c) acc += wr[c] * x[c];
    y[r] += acc;
  }
}

// The LSTM cell update from pre-activation gates (PyTorch order i, f, g, o; 4H values):
//   c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c).
inline void LstmCell(int hidden, const float* gates, float* h, float* c) noexcept {
  for (int j = 0; j < hidden; ++j) {
    const float i = Sigmoid(gates[j]);
    const float f = Sigmoid(gates[hidden + j]);
    const float g = Tanh(gates[2 * hidden + j]);
    const float o = Sigmoid(gates[3 * hidden + j]);
    c[j] = f * c[j] + i * g;
    h[j] = o * Tanh(c[j]);
  }
}

// (x - mean) / std per feature; std == 0 (a constant feature) is treated as 1. mean/std may be
// empty (no normalization).
inline void Normalize(const ModelSpec& s, const float* x, float* out) noexcept {
  const bool has_norm = !s.feature_mean.empty();
  for (int k = 0; k < s.input_size; ++k) {
    if (has_norm) {
      const float sd = s.feature_std[static_cast<size_t>(k)];
      out[k] = (x[k] - s.feature_mean[static_cast<size_t>(k)]) / (sd != 0.0f ? sd : 1.0f);
    } else {
      out[k] = x[k];
    }
  }
}

}  // namespace qsig::models::internal
