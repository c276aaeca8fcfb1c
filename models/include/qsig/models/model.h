// Signal models: the FP32 description loaded from disk and the runtimes that execute it.
//
// A ModelSpec is plain data (weights in FP32, PyTorch layouts). Runtimes built from it are
// immutable after construction and may be shared by threads; the mutable scratch space lives in
// a caller-owned workspace, so one model object serves every worker and an INT8 model can be
// swapped atomically by pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/quant/calibration.h"
#include "qsig/quant/kernels.h"

namespace qsig::models {

enum class Arch { kMlp, kLstm, kGru };
// kNone, kRelu, kTanh, kSigmoid: the kernel layer's activations (qsig/quant/kernels.h).
using Activation = quant::Activation;

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

// One torch.nn.GRU layer: gate order r, z, n; w_ih is 3H x I, w_hh is 3H x H, both biases
// (n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h, as PyTorch).
struct GruLayer {
  int input_size = 0;
  int hidden_size = 0;
  std::vector<float> w_ih, w_hh, b_ih, b_hh;
};

// The range [min, max] a source file fixed for one quantized activation tensor (an ONNX QDQ
// pair: u8 scale s, zero point z gives [(0 - z) * s, (255 - z) * s]). `set` false: no range
// (the INT8 runtime calibrates that tensor). A set range is finite with min < max.
struct SourceRange {
  bool set = false;
  float min = 0.0f;
  float max = 0.0f;
};

// The FP32 model as trained. For kLstm (kGru), the stacked LSTM (GRU) runs over the window and
// `layers` form the head applied to the last hidden state; for kMlp, `layers` run on the last
// input.
struct ModelSpec {
  std::string name;
  Arch arch = Arch::kMlp;
  int input_size = 0;  // Features per timestep.
  int window = 1;      // Timesteps the model reads (1 for an MLP).
  std::vector<std::string> feature_names;
  // Per-feature normalization applied before the first layer: (x - mean) / std.
  std::vector<float> feature_mean, feature_std;
  std::vector<LstmLayer> lstm;
  std::vector<GruLayer> gru;
  std::vector<LinearLayer> layers;
  // Input ranges from the source file (ONNX QDQ import): empty, or one per
  // QuantizableLayers(*this) entry, the range of that layer's input as the source quantized it
  // (a recurrent layer: its input x_t; its hidden state h_{t-1} is always calibrated). The INT8
  // runtime uses a set range instead of calibrating that tensor (Int8Options::use_source_ranges).
  std::vector<SourceRange> input_ranges;
  std::string sha256;  // Hex SHA-256 of the file the spec was loaded from.
};

// The names the JSON format, artifacts and reports use: "mlp" / "lstm" / "gru", "none" /
// "relu" / "tanh" / "sigmoid", and (Precision, below) "int8" / "int8_s16" / "fp32".
const char* ArchName(Arch a) noexcept;
const char* ActivationName(Activation a) noexcept;

// Loads the JSON model format written by scripts/train_demo_model.py (see models/README.md).
// Errors name the file and the offending field.
absl::StatusOr<ModelSpec> LoadModelJson(const std::string& path);

// Checks shapes and sizes; the loaders call it, tests may too.
absl::Status ValidateSpec(const ModelSpec& spec);

// How a model is run per instrument when the caller keeps state between ticks.
//   kWindow:    the output over the last window() ticks exactly as trained (h0 = c0 = 0 at the
//               window's first tick); the state caches each tick's first-layer input projection
//               (W_ih x_t + b_ih), so a new tick adds one projection, not window() of them.
//   kStreaming: one recurrent step per tick; h and c carry over from tick to tick (never reset
//               by the model), which is how a stateful LSTM is served. An MLP simply runs on the
//               tick.
enum class Mode { kWindow, kStreaming };

// Which backend runs each GEMM shape an INT8 runtime executes batched (more than one vector):
// decided once when the INT8 model is built (CalibrateInt8Model, BuildInt8FromDescription) by
// quant's per-shape chooser (qsig/quant/onednn_gemm.h): oneDNN only where it equals the own
// kernel bit for bit on the model's real weights and measures faster by a margin.
struct KernelChoice {
  std::string op;   // the matmul, e.g. "lstm[1].w_ih", "layers[0]"
  std::string use;  // "window" (a time block of a stacked RNN's input projections) or
                    // "step_batch" (StepBatch over kernel_report's batch instruments)
  int rows = 0, cols = 0, n = 0;
  double own_us = -1.0, onednn_us = -1.0;  // median per call; < 0: not measured
  bool exact = false;                      // oneDNN's outputs equalled the own kernel's
  std::string backend;                     // "qsig" or "onednn"
  std::string reason;
};
struct KernelReport {
  std::string isa;          // the own kernels' ISA (quant::IsaName)
  std::string onednn_mode;  // QSIG_ONEDNN's mode (quant::OnednnModeName)
  double chooser_ms = 0.0;  // wall time the chooser spent on this model
  std::vector<KernelChoice> shapes;
  std::vector<std::string> notes;  // the shapes decided without measuring, and why
};
// One line per shape (and note), for logs and `qsig inspect`; each line starts with `indent`.
std::string FormatKernelReport(const KernelReport& r, const std::string& indent);

// A runnable model. Run() reads `window()` timesteps of raw (un-normalized) features,
// oldest first, `input_size()` floats each, and returns the scalar signal. Run() is noexcept,
// allocates nothing and takes no lock; `workspace` must hold workspace_floats() floats and be
// used by one thread at a time. Thread-safety: const methods may be called concurrently; each
// per-instrument state block and each workspace belongs to one thread at a time.
class Model {
 public:
  virtual ~Model() = default;
  virtual float Run(std::span<const float> window, float* workspace) const noexcept = 0;
  virtual size_t workspace_floats() const noexcept = 0;
  virtual size_t weight_bytes() const noexcept = 0;
  virtual const char* precision() const noexcept = 0;  // "fp32", "int8" or "mixed"
  const ModelSpec& spec() const noexcept { return *spec_; }
  int window() const noexcept { return spec_->window; }
  int input_size() const noexcept { return spec_->input_size; }

  // --- Stateful execution (hot path: noexcept, no allocation, no lock). ---
  // Floats of per-instrument state for `mode`; the caller owns one block per instrument
  // (64-byte alignment is best) and calls ResetState() before the first tick and whenever the
  // instrument's history restarts (a gap, a new session) or the model is swapped.
  virtual size_t state_floats(Mode mode) const noexcept;
  virtual void ResetState(Mode mode, float* state) const noexcept;
  // kWindow: appends one tick (input_size() raw features) and returns the output over the last
  // window() ticks, bit-identical to Run() on those ticks; NaN until window() ticks were pushed
  // since the reset (and on a wrong tick size or null pointer).
  virtual float PushTick(std::span<const float> tick, float* state,
                         float* workspace) const noexcept;
  // kWindow, precomputed sliding windows: after a tick is pushed, the next window's first
  // window() - 1 steps (the last window() - 1 ticks, from h = c = 0) are already known.
  // PrecomputeWindow() runs them now (in idle time, after publishing) and keeps h and c of every
  // recurrent layer in `state`, valid for the next PushTick only; that PushTick then runs one
  // step per layer plus the head, bit-identical to the full window (the same kernels on the
  // same inputs in the same order). A PushTick without a ready prefix (a burst: the next tick
  // came first) runs the full window as before. Each call runs at most 8 timesteps (one time
  // block), so a caller that looks for new input between calls never waits longer than that;
  // call it until WindowPrecomputed(). Returns true if it did work, false if there is nothing to
  // do (no recurrent layers, fewer than window() - 1 ticks since the reset, the prefix already
  // ready, a null pointer). ResetState() invalidates the prefix, and so does the next PushTick.
  virtual bool PrecomputeWindow(float* state, float* workspace) const noexcept;
  // True if `state` (kWindow) holds a prefix that the next PushTick will use.
  virtual bool WindowPrecomputed(const float* state) const noexcept;
  // kStreaming: one step per tick; returns the head's output on the new hidden state.
  virtual float Step(std::span<const float> tick, float* state, float* workspace) const noexcept;
  // kStreaming for n pending instruments at once (micro-batching): ticks is n x input_size(),
  // states[i] is instrument i's block, out gets n outputs. The matmuls run as GEMMs, so each
  // weight is read once per batch, not once per instrument. Results equal n Step() calls up to
  // float summation order. `workspace` holds batch_workspace_floats(n) floats.
  virtual void StepBatch(int n, const float* ticks, float* const* states, float* workspace,
                         float* out) const noexcept;
  virtual size_t batch_workspace_floats(int n) const noexcept;
  // The per-shape backend choice (see KernelReport); null for a runtime built without it (FP32
  // models, internal builds).
  virtual const KernelReport* kernel_report() const noexcept { return nullptr; }

 protected:
  explicit Model(std::shared_ptr<const ModelSpec> spec) : spec_(std::move(spec)) {}
  std::shared_ptr<const ModelSpec> spec_;
};

// Per-instrument state plus a private workspace for one model: the convenient owner of what
// PushTick / Step need. Allocates at construction only. Thread-safety: one thread at a time.
class Session {
 public:
  Session(std::shared_ptr<const Model> model, Mode mode);
  // PushTick (kWindow) or Step (kStreaming) on the next tick.
  float Push(std::span<const float> tick) noexcept;
  void Reset() noexcept;
  const Model& model() const noexcept { return *model_; }
  Mode mode() const noexcept { return mode_; }
  float* state() noexcept { return state_; }

 private:
  std::shared_ptr<const Model> model_;
  Mode mode_;
  std::vector<float> storage_;  // state then workspace, each 64-byte aligned inside
  float* state_ = nullptr;
  float* workspace_ = nullptr;
};

// The FP32 reference runtime (also the shadow model).
std::unique_ptr<Model> MakeFp32Model(std::shared_ptr<const ModelSpec> spec);

// Post-training static quantization with the default Int8Options (see below). Fails if there
// are no samples or a range is degenerate.
absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows);

// Precision of one layer in a mixed-precision plan: int8 weights with u8 activations, int8
// weights with s16 activations (exact s32 accumulation up to 512 inputs per output; about twice
// the int8 cost), or FP32.
enum class Precision { kInt8, kInt8S16, kFp32 };
const char* PrecisionName(Precision p) noexcept;
// How an INT8 LSTM layer stores its cell state: float, or on an s16 grid (step = the calibrated
// max |c| / 32767).
enum class CellState { kFp32, kS16 };

struct Int8Options {
  // How activation ranges are chosen from the calibration samples (quant::TensorCalibrator).
  // Percentile 99.99 clips the rare far tails of heavy-tailed features; kMinMax reproduces the
  // first version.
  quant::CalibrationMethod method = quant::CalibrationMethod::kPercentile;
  double percentile = 99.99;
  // Quantize the model's input (the first layer's input) to s16 (symmetric, min-max range with
  // 2x headroom) instead of u8 whenever the first layer is INT8. The heavy-tailed raw features
  // carry most of the quantization error at u8 (2-7% on the reference models), and it costs
  // little: the first projection runs once per tick (window mode caches it).
  bool s16_input = true;
  // In the default plan (`layers` empty), keep an output layer with <= 16 outputs (the head)
  // FP32: one row whose every weight's rounding error lands on the signal (0.3-0.9% RMSE alone
  // at int8), for one dot product of FP32 work. precision() still reports "int8". Costs
  // (4 - 1) bytes per head weight: LSTM-A's weight bytes go from 26.9% to 27.2% of FP32.
  bool fp32_head = true;
  // Quantize the first layer's u8 input per feature (each its own scale and zero point, folded
  // into the weight columns) instead of per tensor. For specs without normalization whose raw
  // features differ in scale by orders of magnitude; with normalized features it costs accuracy
  // (every column then spans the full grid, which enlarges the weights' rounding error).
  bool per_feature_input = false;
  // Mixed precision: one entry per QuantizableLayers(spec) name; empty means the default plan
  // (every layer INT8, s16 input / FP32 head as above).
  std::vector<Precision> layers;
  // Default plan only: if the INT8 model's RMSE against FP32 on (up to 2000 of) the
  // calibration windows exceeds this fraction of the FP32 output's RMS, keep the most sensitive
  // layers (AnalyzeSensitivity's order) FP32, one at a time, until it does not; precision()
  // then reports "mixed". 0 disables the check (always all-INT8).
  double max_rmse = 0.01;
  CellState cell_state = CellState::kFp32;
  // Use spec.input_ranges (ranges the source file carried, e.g. ONNX QDQ scales) instead of the
  // calibrated range of those layer inputs. For a u8 input the runtime takes
  // quant::ChooseQuantParams(min, max) (the source's scale and zero point again); for an s16
  // input the smallest symmetric grid covering [min, max] (no 2x headroom: the source's grid
  // saturates there), the model's input widened by max |mean / std| as for calibrated ranges;
  // a u8 model input quantized per feature (per_feature_input) takes the source range for every
  // feature. Tensors without a source range, and every hidden state, are still calibrated, so
  // calibration windows are still required. false: calibrate everything (ignore the ranges).
  bool use_source_ranges = true;
  // 7-bit weights: every INT8 weight (u8 and s16 activations alike) is quantized to [-63, 63]
  // (scale = max |w_row * s_in| / 63, rounded up to a bf16 as for 8-bit) instead of
  // [-127, 127]. Twice the weight rounding error (reference models: models/README.md), for CPUs
  // without VNNI: on AVX2 the u8 x s8 kernels then skip the activation split that makes
  // vpmaddubsw exact (LSTM-A window ~1.4x faster there; bench/README.md); with VNNI nothing
  // changes but the error. The integer arithmetic is exact on every ISA, so a model (or an
  // artifact) quantized with it computes, and rebuilds, identically anywhere.
  bool reduce_range = false;
};

// Names of the layers a plan refers to, in order: "lstm[0]", ... (or "gru[0]", ...), then
// "layers[0]", ... (the head / MLP layers). A recurrent layer's two matmuls share its entry.
std::vector<std::string> QuantizableLayers(const ModelSpec& spec);

// Post-training static quantization (see models/README.md): per-channel symmetric int8 weights;
// activation ranges of every quantized tensor chosen by `options.method` while the FP32 model
// runs over `calib_windows`, except the layer inputs spec->input_ranges sets (when
// options.use_source_ranges) (n windows, each window() x input_size() raw features, contiguous).
// precision() is "int8", or "mixed" when the plan keeps some layers FP32.
struct Int8Description;  // Below: how the runtime quantizes (DescribeInt8).
// `description`, if not null, receives how the returned runtime quantizes (as DescribeInt8,
// without calibrating a second time).
absl::StatusOr<std::unique_ptr<Model>> CalibrateInt8Model(std::shared_ptr<const ModelSpec> spec,
                                                          std::span<const float> calib_windows,
                                                          const Int8Options& options,
                                                          Int8Description* description = nullptr);

// How the INT8 runtime that CalibrateInt8Model(spec, calib_windows, options) builds quantizes each
// operation's input, for exporters (qsig export --onnx-qdq) and monitors (the same calibration,
// accuracy guard included, run again: deterministic for the same arguments).
struct QuantizedInput {
  std::string tensor;  // "lstm[0].x", "lstm[0].h", "gru[1].x", "layers[2].input"
  bool int8 = false;   // false: the operation runs in FP32 and its input is not quantized
  bool s16 = false;    // symmetric s16 (zero point 0) instead of asymmetric u8
  // One entry per tensor, or one per feature (the model's input with per_feature_input). The
  // model's input (the first operation) is quantized after normalization: x_n = (x - mean) / std.
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
};
struct Int8Description {
  std::vector<Precision> layers;  // The plan per QuantizableLayers entry (after the guard).
  // Per operation, in execution order: per recurrent layer its input x_t and hidden state
  // h_{t-1}, then each Linear layer's input.
  std::vector<QuantizedInput> inputs;
  std::vector<float> cell_step;  // Per LSTM layer: the s16 grid step of c (0: FP32 cell state).
};
absl::StatusOr<Int8Description> DescribeInt8(std::shared_ptr<const ModelSpec> spec,
                                             std::span<const float> calib_windows,
                                             const Int8Options& options = {});

// Builds the INT8 runtime a description records (no calibration: the quantization parameters
// are taken as they are), for restoring a runtime that was calibrated and verified before
// (the server's state directory checks its outputs against recorded ones). `precision` is
// what precision() reports ("int8" or "mixed"); options.reduce_range chooses the weight range.
// Fails if the description does not fit the spec (operation count, scale sizes).
absl::StatusOr<std::unique_ptr<Model>> BuildInt8FromDescription(
    std::shared_ptr<const ModelSpec> spec, const Int8Description& description,
    const Int8Options& options, const std::string& precision);

// The error one layer adds when it alone is INT8 (every other layer FP32), measured against the
// FP32 model on `eval_windows`: RMSE relative to the FP32 output's RMS, and sign agreement.
struct LayerSensitivity {
  std::string layer;
  double rmse_over_rms = 0;
  double sign_agreement = 0;
};

// Sensitivity analysis: calibrates once (with `options`, whose `layers` plan is ignored; source
// ranges are used as by CalibrateInt8Model) and
// returns every quantizable layer, most sensitive (largest RMSE) first. Keep the top ones FP32
// in Int8Options::layers if the all-INT8 model misses its accuracy budget.
absl::StatusOr<std::vector<LayerSensitivity>> AnalyzeSensitivity(
    std::shared_ptr<const ModelSpec> spec, std::span<const float> calib_windows,
    std::span<const float> eval_windows, const Int8Options& options = {});

// One step of ChooseMixedPlan's search: the plan tried and its error.
struct PlanStep {
  std::string change;  // "start", "layers[1] -> int8_s16", "lstm[0] -> fp32", ...
  double rmse_over_rms = 0;
  double relative_cost = 0;  // Sum over layers of MACs x (1 int8, 2 int8_s16, 4 fp32) / INT8's.
};

// Mixed-precision plan search (`qsig quantize --mixed auto`): starting from every layer INT8
// (a small head FP32 when options.fp32_head), upgrades the most sensitive layers first
// (AnalyzeSensitivity order on `search_windows`), each to s16 activations, then, while still
// over budget, to FP32, keeping an upgrade only if it lowers the error. The error is the INT8
// model's RMSE relative to the FP32 output's RMS on `search_windows`; every candidate is
// calibrated on `calib_windows` with `options`. Returns the plan (Int8Options::layers); `steps`
// receives every plan tried, `met` whether the last error is within `budget`.
absl::StatusOr<std::vector<Precision>> ChooseMixedPlan(std::shared_ptr<const ModelSpec> spec,
                                                       std::span<const float> calib_windows,
                                                       std::span<const float> search_windows,
                                                       const Int8Options& options, double budget,
                                                       std::vector<PlanStep>* steps, bool* met);

// The instruction set the runtimes built now use (quant::ActiveIsaName(): the most specific one
// the CPU supports within QSIG_MAX_ISA and quant::SetMaxIsa), e.g. "avx512vnni" or "ref".
const char* KernelIsa() noexcept;

}  // namespace qsig::models
