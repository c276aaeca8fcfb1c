// Test helpers: deterministic random models and realistic feature streams.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qsig/models/model.h"
#include "random_models.h"

namespace qsig::models::testing {

// Portable deterministic generator (std distributions differ between standard libraries).
// A fixed random MLP 8 -> 32 -> 32 -> 1 (ReLU, ReLU, none), PyTorch-style init.
ModelSpec RandomMlpSpec(uint64_t seed);
// A fixed random LSTM: input 8, hidden 16, window 16, Linear(16, 1) head.
ModelSpec RandomLstmSpec(uint64_t seed);

// Simulated ticks of the 8 default features in their natural units (returns and spreads in bps,
// imbalances in [-1, 1], ...), autocorrelated, heavy-tailed: n_ticks x 8 floats.
std::vector<float> SimulatedFeatures(uint64_t seed, int n_ticks);

// Sliding windows (stride 1) of `window` ticks: returns n x window x 8 floats.
std::vector<float> Windows(const std::vector<float>& ticks, int window, int input_size);

// Shifts the last layer's bias so the FP32 output averages 0 over `windows`, like a return
// forecast; otherwise sign agreement would be trivially 100%.
void CenterOutput(ModelSpec& spec, const std::vector<float>& windows);

// Writes `text` to a fresh file under the test temp dir and returns its path.
std::string WriteTempFile(const std::string& name, const std::string& text);

}  // namespace qsig::models::testing
