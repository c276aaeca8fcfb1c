// Small deterministic PRNG (xoshiro256**) with uniform, normal and geometric draws.
//
// Used by the simulator so that a seed reproduces the same bytes on every platform, which
// std:: distributions do not promise.
#pragma once

#include <cmath>
#include <cstdint>

namespace qsig::feeds::internal {

class Rng {
 public:
  explicit Rng(uint64_t seed) noexcept {
    for (uint64_t& s : s_) s = SplitMix64(seed);
  }

  uint64_t Next() noexcept {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double Uniform() noexcept { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n).
  uint64_t Below(uint64_t n) noexcept { return n == 0 ? 0 : Next() % n; }
  bool Bernoulli(double p) noexcept { return Uniform() < p; }
  // Standard normal (Box-Muller; the second value is discarded to keep the state simple).
  double Normal() noexcept {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Geometric count of failures before a success with probability p: P(k) = p (1-p)^k.
  int Geometric(double p) noexcept {
    const double u = 1.0 - Uniform();
    return static_cast<int>(std::floor(std::log(u) / std::log(1.0 - p)));
  }
  double Exponential(double mean) noexcept { return -mean * std::log(1.0 - Uniform()); }

 private:
  static uint64_t Rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix64(uint64_t& x) noexcept {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

}  // namespace qsig::feeds::internal
