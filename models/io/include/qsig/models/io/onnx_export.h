// The .qsig artifact's INT8 model as a QDQ ONNX model (`qsig export --onnx-qdq`).
//
// Writes the artifact's INT8 model as a QDQ ONNX model that ONNX Runtime (or any QDQ-aware
// runtime) runs. Where and how it quantizes is read from the runtime itself (DescribeInt8 on the
// artifact's calibration, the accuracy guard's mixed plan included): a QuantizeLinear /
// DequantizeLinear pair on every tensor the runtime quantizes (u8 with its scale and zero
// point, or symmetric s16, which needs opset 21, else the file is opset 13), per-channel s8
// weights as the runtime holds them (row r of W * s_in on the smallest bf16 scale
// sw >= max / 127, dequantized with sw / s_in) behind DequantizeLinear (axis 0), Gemm (transB),
// Relu / Tanh / Sigmoid; FP32 layers stay FP32 Gemms. Normalization: Sub / Div, or Div with the
// mean folded into the first bias where the runtime reads the input as s16.
//   MLP: input "features" [batch, input_size].
//   LSTM / GRU: input "features" [batch, window, input_size]; the recurrent layers are
//   unrolled over the window into Gemm / Split / Sigmoid / Tanh / Mul / Add with QDQ on each
//   x_t and h_{t-1} (and on the LSTM cell state when the artifact keeps it on an s16 grid), so
//   the graph quantizes exactly where the runtime does (ONNX's LSTM op could not).
// Output "signal" [batch, 1]. ONNX Runtime 1.30 (CPU) matches the qsig INT8 runtime to float
// rounding (~1e-7 of the output RMS) on the default plans of the MLP, LSTM and GRU test models;
// an all-u8 plan is within 0.25% RMSE / 5.4% max of the RMS (a u8 rounding tie broken the
// other way moves a whole step; tests/models_io/onnx_export_test.cc).
// Refused: per-feature input quantization (quantize --per-channel).
// Thread-safety: reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::models::io {

struct OnnxExportSummary {
  std::string model_name;
  int opset = 13;
  std::string int8_precision;  // precision() of the artifact's INT8 runtime.
  std::vector<std::string>
      layers;  // "layers[0]: s16 input QDQ, per-channel s8 weights", "layers[2]: FP32"
  size_t nodes = 0;
  size_t bytes = 0;  // Size of the file written.
};

// Reads and verifies `artifact_path` (ReadArtifact) and writes the ONNX model to `output_path`.
absl::StatusOr<OnnxExportSummary> ExportOnnxQdq(const std::string& artifact_path,
                                                const std::string& output_path);

}  // namespace qsig::models::io
