// Writing a ModelSpec in qsig's JSON model format (models/README.md): the format
// models::LoadModelJson (model.h, models/src/loader.cc, beside the writer) reads and
// scripts/train_demo_model.py writes. Used by `qsig train` / `qsig qat` for the models they produce
// and by the qsig-torch helper process that imports TorchScript for binaries without LibTorch.
// Thread-safety: reentrant.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "qsig/models/model.h"

namespace qsig::models {

// The JSON text of `spec` (ValidateSpec must accept it), input_ranges included when set. Every
// float is written with 9 significant digits, so LoadModelJson reads back the same float32 values
// bit for bit. `training_json` (a JSON object's text, or "") is stored as the "training" member:
// provenance for humans, ignored by the loader.
absl::StatusOr<std::string> ModelJson(const ModelSpec& spec, const std::string& training_json = "");

// Writes ModelJson(spec, training_json) to `path` (through a temporary file renamed into place,
// so a reader never sees half a model) and returns the SHA-256 (hex) of the bytes written.
absl::StatusOr<std::string> WriteModelJson(const ModelSpec& spec, const std::string& path,
                                           const std::string& training_json = "");

}  // namespace qsig::models
