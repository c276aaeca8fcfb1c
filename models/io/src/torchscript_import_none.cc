// ImportTorchScript without LibTorch: the variant the server and the qsig command link (LibTorch
// in the server process stops prometheus-cpp's exposer from starting; see
// models/io/CMakeLists.txt).
#include "absl/strings/str_cat.h"
#include "qsig/models/io/import.h"

namespace qsig::models::io {

absl::StatusOr<ModelSpec> ImportTorchScript(const std::string& path, const ImportOptions&) {
  return absl::UnimplementedError(absl::StrCat(
      path,
      ": this qsig binary does not load TorchScript (LibTorch cannot share the server "
      "process with the metrics exporter); export the model to ONNX (torch.onnx.export) "
      "and use the .onnx file, or `qsig quantize` it into a .qsig artifact"));
}

bool TorchScriptSupported() noexcept { return false; }

}  // namespace qsig::models::io
