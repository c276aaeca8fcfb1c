// Importing models trained elsewhere into qsig's ModelSpec: ONNX files exported by
// torch.onnx.export and TorchScript files saved with torch.jit.save. The result runs on the same
// FP32 and INT8 runtimes as a JSON model (models::MakeFp32Model, models::CalibrateInt8Model).
//
// Supported graphs (everything else is refused with a message naming the node or module and
// listing what is supported):
//   - a stack of nn.LSTM layers (or of nn.GRU layers), forward direction, batch-first or not,
//     h0 = c0 = 0, followed by a head of nn.Linear layers with optional ReLU / Tanh / Sigmoid,
//     read on the last time step (out[:, -1], h_n[-1], or the head on every step then the last);
//   - an MLP: nn.Linear layers with optional ReLU / Tanh / Sigmoid after each (nn.Sequential);
//   - the model outputs one value per sample.
// Thread-safety: the functions are reentrant (no shared state).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/model.h"

namespace qsig::models::io {

// What an imported file cannot say about itself. Empty vectors take the defaults.
struct ImportOptions {
  std::string name;                        // Default: the file name without directory/extension.
  std::vector<std::string> feature_names;  // Default: f0 .. f{N-1}.
  std::vector<float> feature_mean;         // Default: 0 for every feature.
  std::vector<float> feature_std;          // Default: 1 for every feature.
  // Timesteps a recurrent model reads. An ONNX input whose time axis is static fixes the window
  // (a different value here is an error); otherwise this is the window. TorchScript files carry
  // no shapes, so a recurrent TorchScript model needs it.
  int window = 0;
};

// Imports an ONNX model (opset 13 to 21, weights stored inside the file). LSTM weights
// are mapped from ONNX's gate order (i, o, f, c) to PyTorch's (i, f, g, o); GRU from (z, r, h)
// to (r, z, n) (linear_before_reset = 1, PyTorch's form, is required). spec.sha256 is the
// SHA-256 of the file's bytes.
// QDQ models (onnxruntime quantize_static in the QDQ format, PyTorch QAT exports, qsig export
// --onnx-qdq): weights and biases behind DequantizeLinear (s8 / u8 / s16 / u16 / s32, per tensor
// or per channel; also a float weight through QuantizeLinear -> DequantizeLinear), including an
// LSTM / GRU node's W and R, are dequantized exactly, w = (q - zero_point) * scale. A
// QuantizeLinear -> DequantizeLinear pair with a constant per-tensor scale on the data path
// gives the input range of the layer reading it (spec.input_ranges, used by the INT8 runtime in
// place of calibration: models/README.md "QDQ ONNX models"). Quantized operators (QLinearMatMul,
// MatMulInteger, ...), dynamic quantization, computed scales, block quantization and
// per-channel activation scales are refused with a message naming the node.
absl::StatusOr<ModelSpec> ImportOnnx(const std::string& path, const ImportOptions& options = {});

// Imports a TorchScript file through LibTorch, traced (torch.jit.trace) or scripted: reads the
// recurrent hyper-parameters from forward()'s graph (inlined: the aten::lstm / aten::gru call's
// constant num_layers / has_biases / bidirectional / batch_first, and hidden / input sizes from
// the weight shapes; tracing drops the module attributes) and refuses, naming the node,
// bidirectional calls and packed sequences (and, naming the module, projections); walks the
// module tree (children in registration order: recurrent modules first, then Linear /
// activation modules, through nn.Sequential and user modules that only hold children); runs the
// module once on a random input and checks that qsig's FP32 runtime gives the same output
// (within 1e-4), so a forward() that does something the tree does not show is refused rather
// than imported wrongly.
// Fails with kUnimplemented when qsig was built without LibTorch (QSIG_WITH_TORCH=OFF).
absl::StatusOr<ModelSpec> ImportTorchScript(const std::string& path,
                                            const ImportOptions& options = {});

// True if this build can import TorchScript (LibTorch was found and QSIG_WITH_TORCH was ON).
bool TorchScriptSupported() noexcept;

// Where the window of the model loaded from `path` (format as LoadedModel::format) comes from,
// for the commands to say: "none (MLP)", "the model file", "fixed in the ONNX file" or
// "--window". For an ONNX model imported with a window, it re-reads the file (cold path).
std::string WindowSource(const std::string& path, const std::string& format,
                         const ImportOptions& options, const ModelSpec& spec);

// The name an importer gives a model read from `path` when ImportOptions::name is empty: the
// file name without its directory and extension.
std::string DefaultModelName(const std::string& path);

}  // namespace qsig::models::io
