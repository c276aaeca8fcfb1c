// ImportTorchScript when qsig is built without LibTorch (QSIG_WITH_TORCH=OFF or not found).
#include "absl/strings/str_cat.h"
#include "qsig/models/io/import.h"

namespace qsig::models::io {

absl::StatusOr<ModelSpec> ImportTorchScript(const std::string& path, const ImportOptions&) {
  return absl::UnimplementedError(absl::StrCat(
      path, ": this qsig was built without LibTorch (QSIG_WITH_TORCH=OFF), so it cannot read "
            "TorchScript; export the model to ONNX (torch.onnx.export) instead"));
}

bool TorchScriptSupported() noexcept { return false; }

}  // namespace qsig::models::io
