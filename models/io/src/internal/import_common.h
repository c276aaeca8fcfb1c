// Shared by the ONNX and TorchScript importers: reading the file, finishing a spec.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "qsig/models/io/import.h"
#include "qsig/models/model.h"

namespace qsig::models::io::internal {

// The whole file; NotFound / a clear message if it cannot be read or is empty.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Sets name, window (if `window` > 0), feature names and normalization from `options` (defaults
// f0.., 0, 1), sha256 from `file_bytes`, and validates. Errors are prefixed with `path`.
absl::Status FinishSpec(const std::string& path, const std::string& file_bytes,
                        const ImportOptions& options, ModelSpec& spec);

// "path/to/model.opset13.onnx" -> "model.opset13".
std::string FileStem(const std::string& path);

}  // namespace qsig::models::io::internal
