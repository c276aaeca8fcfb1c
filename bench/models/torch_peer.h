// LibTorch FP32 peer of a qsig ModelSpec (same weights), for the models benchmark. Only
// torch_peer.cc includes <torch/torch.h> (one ~45 s translation unit); this header keeps
// LibTorch types out of everything else.
#pragma once

#include <memory>
#include <string>

#include "qsig/models/model.h"

namespace qsig::models::bench {

class TorchPeer {
 public:
  virtual ~TorchPeer() = default;
  // Normalizes `window` (window() x input_size() raw features) with the spec's mean/std and runs
  // the torch module on it (batch 1); returns the scalar output.
  virtual float Run(const float* window) = 0;
};

// nullptr (and *why set) when qsig was built without LibTorch (QSIG_WITH_TORCH=OFF).
std::unique_ptr<TorchPeer> MakeTorchPeer(const ModelSpec& spec, std::string* why);

// "torch 1.13.1, 1 thread, BLAS: ..." or why it is unavailable.
std::string TorchDescription();

}  // namespace qsig::models::bench
