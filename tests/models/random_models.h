// Portable random model weights for the models tests and benchmarks (header-only: the
// benchmark binary links no test framework). splitmix64, because std distributions differ
// between standard libraries.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qsig/models/model.h"

namespace qsig::models::testing {

class Rng {
 public:
  // `offset` separates streams that share a seed (the reference models use 7).
  explicit Rng(uint64_t seed, uint64_t offset = 1)
      : state_(seed * 0x9E3779B97F4A7C15ull + offset) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  double Normal() {  // N(0, 1)
    const double u1 = 1.0 - Uniform();
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double StudentT4() {  // Heavy-tailed, unit variance (var(t4) = 2).
    double chi2 = 0;
    for (int i = 0; i < 4; ++i) {
      const double z = Normal();
      chi2 += z * z;
    }
    return Normal() / std::sqrt(chi2 / 4.0) / std::sqrt(2.0);
  }

 private:
  uint64_t state_;
};

// n values uniform in [-bound, bound].
inline std::vector<float> UniformVec(Rng& rng, size_t n, double bound) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Uniform(-bound, bound));
  return v;
}

// A Linear layer with PyTorch's default init (uniform in +-1/sqrt(in)).
inline LinearLayer RandomLinear(Rng& rng, int in, int out, Activation act) {
  LinearLayer l;
  l.in = in;
  l.out = out;
  l.activation = act;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  l.weight = UniformVec(rng, static_cast<size_t>(in) * out, bound);
  l.bias = UniformVec(rng, static_cast<size_t>(out), bound);
  return l;
}

// Sets feature_mean / feature_std from the ticks (rows of spec.input_size), as training would.
inline void SetNormalization(ModelSpec& spec, const std::vector<float>& ticks) {
  const int n = spec.input_size;
  const size_t rows = ticks.size() / static_cast<size_t>(n);
  spec.feature_mean.assign(static_cast<size_t>(n), 0.0f);
  spec.feature_std.assign(static_cast<size_t>(n), 0.0f);
  for (int k = 0; k < n; ++k) {
    double s = 0, s2 = 0;
    for (size_t r = 0; r < rows; ++r) {
      const double v = ticks[r * n + k];
      s += v;
      s2 += v * v;
    }
    const double mean = s / static_cast<double>(rows);
    spec.feature_mean[static_cast<size_t>(k)] = static_cast<float>(mean);
    spec.feature_std[static_cast<size_t>(k)] =
        static_cast<float>(std::sqrt(std::max(0.0, s2 / static_cast<double>(rows) - mean * mean)));
  }
}

}  // namespace qsig::models::testing
