// Helpers shared by the importers (internal/import_common.h).
#include "internal/import_common.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "qsig/models/io/import.h"
#include "qsig/models/sha256.h"

namespace qsig::models::io::internal {

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  std::string bytes = std::move(ss).str();
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": file is empty"));
  return bytes;
}

std::string FileStem(const std::string& path) {
  std::string s = path.substr(path.find_last_of('/') + 1);
  const size_t dot = s.find_last_of('.');
  if (dot != std::string::npos && dot > 0) s.resize(dot);
  return s;
}

absl::Status FinishSpec(const std::string& path, const std::string& file_bytes,
                        const ImportOptions& options, ModelSpec& spec) {
  const size_t n = static_cast<size_t>(spec.input_size);
  spec.name = options.name.empty() ? FileStem(path) : options.name;
  if (options.window > 0) spec.window = options.window;
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (!options.feature_names.empty() && options.feature_names.size() != n) {
    return bad(absl::StrCat("ImportOptions.feature_names has ", options.feature_names.size(),
                            " names; the model reads ", n, " features"));
  }
  if (!options.feature_mean.empty() && options.feature_mean.size() != n) {
    return bad(absl::StrCat("ImportOptions.feature_mean has ", options.feature_mean.size(),
                            " values; the model reads ", n, " features"));
  }
  if (!options.feature_std.empty() && options.feature_std.size() != n) {
    return bad(absl::StrCat("ImportOptions.feature_std has ", options.feature_std.size(),
                            " values; the model reads ", n, " features"));
  }
  spec.feature_names = options.feature_names;
  if (spec.feature_names.empty()) {
    for (size_t i = 0; i < n; ++i) spec.feature_names.push_back(absl::StrCat("f", i));
  }
  // A normalization the importer found in the file (spec already sized) stays unless the
  // options give one.
  if (!options.feature_mean.empty() || spec.feature_mean.size() != n) {
    spec.feature_mean =
        options.feature_mean.empty() ? std::vector<float>(n, 0.0f) : options.feature_mean;
  }
  if (!options.feature_std.empty() || spec.feature_std.size() != n) {
    spec.feature_std =
        options.feature_std.empty() ? std::vector<float>(n, 1.0f) : options.feature_std;
  }
  spec.sha256 = Sha256Hex(file_bytes);
  if (absl::Status st = ValidateSpec(spec); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat(path, ": imported model is not valid: ", st.message()));
  }
  return absl::OkStatus();
}

}  // namespace qsig::models::io::internal

namespace qsig::models::io {

std::string DefaultModelName(const std::string& path) { return internal::FileStem(path); }

std::string WindowSource(const std::string& path, const std::string& format,
                         const ImportOptions& options, const ModelSpec& spec) {
  if (spec.window <= 1 && spec.lstm.empty() && spec.gru.empty()) return "none (MLP)";
  if (format == "torchscript") return "--window (TorchScript files do not record it)";
  if (format != "onnx") return "the model file";
  if (options.window <= 0) return "fixed in the ONNX file";
  ImportOptions without = options;
  without.window = 0;
  return ImportOnnx(path, without).ok() ? "fixed in the ONNX file (--window agrees)"
                                        : "--window (the ONNX file's time axis is dynamic)";
}

}  // namespace qsig::models::io
