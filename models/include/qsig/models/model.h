// Signal models: the FP32 description loaded from disk and the runtimes that execute it.
//
// A ModelSpec is plain data (weights in FP32, PyTorch layouts). Runtimes built from it are
// immutable after construction and may be shared by threads; the mutable scratch space lives in
// a caller-owned workspace, so one model object serves every worker and an INT8 model can be
// swapped atomically by pointer.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::models {

enum class Arch { kMlp, kLstm };
enum class Activation { kNone, kRelu, kTanh, kSigmoid };

// y = act(W x + b); W is out x in, row-major (torch.nn.Linear layout).
struct LinearLayer {
  int in = 0;
  int out = 0;
  std::vector<float> weight;
  std::vector<float> bias;
  Activation activation = Activation::kNone;
};

// One torch.nn.LSTM layer: gate order i, f, g, o; w_ih is 4H x I, w_hh is 4H x H, both biases.
struct LstmLayer {
  int input_size = 0;
  int hidden_size = 0;
  std::vector<float> w_ih, w_hh, b_ih, b_hh;
};

// The FP32 model as trained. For kLstm, the stacked LSTM runs over the window and `layers`
// form the head applied to the last hidden state; for kMlp, `layers` run on the last input.
struct ModelSpec {
  std::string name;
  Arch arch = Arch::kMlp;
  int input_size = 0;  // Features per timestep.
  int window = 1;      // Timesteps the model reads (1 for an MLP).
  std::vector<std::string> feature_names;
  // Per-feature normalization applied before the first layer: (x - mean) / std.
  std::vector<float> feature_mean, feature_std;
  std::vector<LstmLayer> lstm;
  std::vector<LinearLayer> layers;
  std::string sha256;  // Hex SHA-256 of the file the spec was loaded from.
};

// Loads the JSON model format written by scripts/train_demo_model.py (see models/README.md).
// Errors name the file and the offending field.
absl::StatusOr<ModelSpec> LoadModelJson(const std::string& path);

// Checks shapes and sizes; the loaders call it, tests may too.
absl::Status ValidateSpec(const ModelSpec& spec);

// A runnable model. Run() reads `window()` timesteps of raw (un-normalized) features,
// oldest first, `input_size()` floats each, and returns the scalar signal. Run() is noexcept,
// allocates nothing and takes no lock; `workspace` must hold workspace_floats() floats and be
// used by one thread at a time. Thread-safety: const methods may be called concurrently.
class Model {
 public:
  virtual ~Model() = default;
  virtual float Run(std::span<const float> window, float* workspace) const noexcept = 0;
  virtual size_t workspace_floats() const noexcept = 0;
  virtual size_t weight_bytes() const noexcept = 0;
  virtual const char* precision() const noexcept = 0;  // "fp32" or "int8"
  const ModelSpec& spec() const noexcept { return *spec_; }
  int window() const noexcept { return spec_->window; }
  int input_size() const noexcept { return spec_->input_size; }

 protected:
  explicit Model(std::shared_ptr<const ModelSpec> spec) : spec_(std::move(spec)) {}
  std::shared_ptr<const ModelSpec> spec_;
};

// The FP32 reference runtime (also the shadow model).
std::unique_ptr<Model> MakeFp32Model(std::shared_ptr<const ModelSpec> spec);

// Post-training static quantization: per-channel symmetric int8 weights; activation ranges of
// every quantized tensor observed with min-max while the FP32 model runs over `calib_windows`
// (n windows, each window() x input_size() raw features, contiguous). Fails if there are no
// samples or the ranges are degenerate.
absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows);

}  // namespace qsig::models
