// The issue-3 reference models and a realistic wide feature stream, shared by the models tests
// and bench/models (no GoogleTest dependency, so the benchmark can compile it).
//
//   LSTM-A: input 32, hidden 64, 1 layer, window 32, Linear(64, 1) head.
//   LSTM-B: input 32, hidden 128, 2 layers, window 64, Linear(128, 1) head.
//   MLP-C:  64 -> 256 -> 256 -> 1, ReLU, ReLU, none.
//   GRU-D:  input 32, hidden 64, 1 layer, window 32, Linear(64, 1) head (GRU coverage).
//
// Weights are PyTorch's default init (uniform +-1/sqrt(fan)), fixed by the seed. Normalization
// (feature_mean / feature_std) is set from a simulated session, as training would, and the head's
// bias is shifted so the FP32 output averages 0 (a return forecast), so sign agreement means
// something.
#pragma once

#include <cstdint>
#include <vector>

#include "qsig/models/model.h"

namespace qsig::models::reference {

enum class Ref { kLstmA, kLstmB, kMlpC, kGruD };
const char* RefName(Ref r);

// The untrained, unnormalized architecture with fixed random weights.
ModelSpec RawSpec(Ref r, uint64_t seed = 1);

// Simulated ticks of `width` features in natural units: groups of 8 (returns in bps at three
// horizons, spread, two book imbalances, signed trade flow, microprice deviation) per instrument
// or venue, every other group with queue sizes (hundreds to thousands of shares) in place of the
// spread; autocorrelated and heavy-tailed (Student-t 4). n_ticks x width floats.
std::vector<float> Features(uint64_t seed, int n_ticks, int width);

// Sliding windows (stride `stride`) of `window` ticks: n x window x width floats.
std::vector<float> Windows(const std::vector<float>& ticks, int window, int width, int stride = 1);

// RawSpec with normalization from a calibration session and the output centred at 0.
ModelSpec TrainedSpec(Ref r, uint64_t seed = 1);

// RMSE of b against a (relative to RMS(a)) and sign agreement.
struct Agreement {
  double rmse_over_rms = 0;
  double sign_agreement = 0;
  size_t n = 0;
};
Agreement Compare(const std::vector<float>& a, const std::vector<float>& b);

// Runs `m` (stateless Run) over every window.
std::vector<float> RunAll(const Model& m, const std::vector<float>& windows);

}  // namespace qsig::models::reference
