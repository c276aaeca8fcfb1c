// `qsig train` and `qsig qat`: training signal models with LibTorch on a feature file from
// `qsig features`, and quantization-aware fine-tuning that mimics qsig's INT8 runtime.
//
// Both read the CSV `qsig features` writes (header `locate,symbol,msg_seq,exchange_ts_ns,mid,
// <feature names>,label`, rows in time order; label = forward return in bps over the horizon the
// file was made with). A sample is the window of `window` consecutive rows of one locate
// (instrument) ending at a row, with that row's label; samples with a non-finite value are
// dropped. The last `val_fraction` of the rows (by time) is the validation split: never trained
// on, and the split every figure in the reports is measured on.
//
// The models are written in qsig's JSON format (models/README.md) with the normalization
// inside, so `qsig quantize`, `qsig predict` and the server read them as they are.
//
// These functions link LibTorch. They run in the qsig-torch helper process (`qsig train` and
// `qsig qat` hand over to it), never in the server process (see models/io/CMakeLists.txt).
// Thread-safety: one call at a time per process (LibTorch's global seed and thread count).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/io/feature_file.h"

namespace qsig::models::train {

// What both commands share: the data and the optimizer loop.
struct DataOptions {
  std::string input_csv;      // --input: any table io::ReadFeatureTable reads, with labels.
  io::TableOptions table;     // --instrument-col / --time-col.
  double val_fraction = 0.2;  // --val-fraction: last fraction of rows (time) held out.
  size_t max_train = 100000;  // --max-train: training samples, sub-sampled at random.
  size_t max_val = 50000;     // --max-val: validation samples, sub-sampled evenly.
  // --label-clip: labels are clipped to the [q, 1-q] quantiles of the training labels for the
  // loss (heavy tails would otherwise dominate the MSE); figures use the raw labels.
  double label_clip_quantile = 0.005;
  int batch = 256;    // --batch.
  uint64_t seed = 1;  // --seed: initialization, shuffling and sub-sampling.
  int threads = 1;    // --threads: LibTorch intra-op threads.
};

// Information coefficient and loss of one model on the validation split.
struct EvalMetrics {
  double ic_pearson = 0;   // Correlation of output and label.
  double ic_spearman = 0;  // Rank correlation.
  double mse = 0;          // Mean squared error against the label (bps^2).
  double hit_rate = 0;     // sign(output) == sign(label), over rows where both are non-zero.
};

// qsig train --input FEATURES.csv --arch mlp|lstm|gru -o MODEL.json
struct TrainOptions {
  DataOptions data;
  std::string output_path;   // -o: the model (JSON).
  std::string report_json;   // --report: epochs and metrics as JSON; "" = none.
  std::string arch = "mlp";  // --arch: mlp, lstm or gru.
  std::string name;          // --name: default "<arch>_<input stem>".
  // MLP: `layers` hidden Linear+ReLU layers of `hidden` units, then Linear(hidden, 1).
  // LSTM / GRU: `layers` stacked recurrent layers of `hidden` units, then Linear(hidden, 1).
  int hidden = 0;               // --hidden: 0 = 32 for an MLP, 16 for a recurrent model.
  int layers = 0;               // --layers: 0 = 2 for an MLP, 1 for a recurrent model.
  int window = 16;              // --window: timesteps of a recurrent model (an MLP reads 1).
  int epochs = 5;               // --epochs.
  double lr = 1e-3;             // --lr (Adam).
  std::ostream* log = nullptr;  // Progress lines; nullptr = std::cout.
};

struct EpochLog {
  int epoch = 0;
  double train_loss = 0;  // Mean loss over the epoch, on labels scaled to unit variance.
  double val_loss = 0;
  EvalMetrics val;
  double seconds = 0;  // Since the start of training.
};

struct TrainReport {
  std::string model_name, arch, sha256;
  int input_size = 0, window = 0;
  std::vector<std::string> feature_names;
  size_t rows = 0, train_samples = 0, val_samples = 0;
  double label_clip_lo = 0, label_clip_hi = 0, label_scale = 1;
  std::vector<EpochLog> epochs;
  EvalMetrics val_qsig;           // The written model on qsig's FP32 runtime (what will be served).
  double max_abs_diff_torch = 0;  // |LibTorch - qsig FP32| over the validation samples.
  std::string json;
};

absl::StatusOr<TrainReport> RunTrain(const TrainOptions& options);

// qsig qat --model MODEL --input FEATURES.csv -o MODEL_QAT.json
// Fine-tunes a trained FP32 model (any format qsig loads) with fake quantization placed where
// qsig's default INT8 plan quantizes (models/README.md): per-channel symmetric s8 weights
// (scale max|w|/127 of the current weights, as the runtime computes it at load) on every
// INT8 layer, and asymmetric u8 activations (per-tensor, from moving-average min-max observers
// with PyTorch's averaging constant 0.01) on the inputs the runtime reads as u8 (the hidden
// state of a recurrent layer, the inputs of stacked and hidden layers). The model's input (s16
// in the runtime) and the FP32 head are left exact, as the runtime leaves them. Gradients pass
// the rounding straight through (and are zero outside the clamping range). The observers stop
// updating after `freeze_observers_after` epochs.
//
// The fine-tuned model keeps the observers' frozen ranges of the layer inputs it fake-quantized
// (ModelSpec::input_ranges, in the JSON): the runtime quantizes those tensors on them rather than
// recalibrating (hidden states are still calibrated).
//
// The report puts PTQ and QAT side by side on the same validation split, both measured on
// qsig's own runtimes: the input model in FP32 and after post-training quantization
// (CalibrateInt8Model with `method`, every layer INT8: the accuracy guard is off so the two
// are compared on the same plan), and the fine-tuned model in FP32 and after the same PTQ.
struct QatOptions {
  DataOptions data;
  std::string model_path;             // --model: .json, .onnx, .pt or .qsig.
  std::string output_path;            // -o: the fine-tuned model (JSON).
  std::string report_json;            // --report: "" = none.
  int epochs = 3;                     // --epochs.
  int freeze_observers_after = 1;     // --freeze-observers-after (epochs; >= epochs: never).
  double lr = 1e-4;                   // --lr (Adam).
  std::string method = "percentile";  // --method: activation ranges of the PTQ runs.
  double percentile = 99.99;
  size_t calib_windows = 4096;  // Training windows (spread evenly) the PTQ runs calibrate on.
  std::ostream* log = nullptr;
};

// One column of the side-by-side table.
struct QatColumn {
  EvalMetrics val;
  // Against the FP32 model the column was quantized from (NaN for the FP32 columns).
  double rmse_over_rms = 0;
  double sign_agreement = 0;
};

struct QatReport {
  std::string model_name, sha256, method;
  size_t train_samples = 0, val_samples = 0, calib_windows = 0;
  std::vector<EpochLog> epochs;
  std::vector<std::string> fake_quantized;  // "layers[0].weight s8/channel", "lstm[0] h u8", ...
  // The frozen observer ranges written into the model (ModelSpec::input_ranges), "layers[1]
  // [0, 3.2]": the QAT INT8 column (and any artifact made from the model) quantizes on them.
  std::vector<std::string> source_ranges;
  QatColumn fp32, ptq_int8, qat_fp32, qat_int8;
  std::string json;
};

absl::StatusOr<QatReport> RunQat(const QatOptions& options);

}  // namespace qsig::models::train
