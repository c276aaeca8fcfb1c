// One entry point for every model file qsig reads: the JSON format, ONNX, TorchScript and the
// .qsig artifact, chosen by content first (artifact magic, zip archive, JSON object) and by
// extension otherwise. For the server, `qsig predict` and `qsig quantize`.
// Thread-safety: reentrant.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/import.h"
#include "qsig/models/model.h"

namespace qsig::models::io {

struct LoadedModel {
  std::shared_ptr<const ModelSpec> spec;  // The FP32 model.
  std::string format;                     // "json", "onnx", "torchscript" or "qsig".
  // Set for .qsig files: the calibration that rebuilds the validated INT8 runtime
  // (BuildInt8Model(*artifact)).
  std::optional<Artifact> artifact;
};

// Loads `path`. `options` applies to ONNX and TorchScript (window, feature names,
// normalization); JSON models and artifacts carry their own and ignore it.
absl::StatusOr<LoadedModel> LoadAnyModel(const std::string& path,
                                         const ImportOptions& options = {});

}  // namespace qsig::models::io
