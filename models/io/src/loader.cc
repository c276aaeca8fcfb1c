// LoadAnyModel: dispatch on content, then extension.
#include "qsig/models/io/loader.h"

#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/isa.h"

namespace qsig::models::io {
namespace {

enum class Format { kUnknown, kJson, kOnnx, kTorchScript, kQsig };

Format Sniff(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[64] = {};
  in.read(head, sizeof head);
  const size_t n = static_cast<size_t>(in.gcount());
  if (n >= 7 && std::memcmp(head, "QSIGART", 7) == 0) return Format::kQsig;
  if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return Format::kTorchScript;  // zip.
  for (size_t i = 0; i < n; ++i) {
    if (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t') continue;
    if (head[i] == '{') return Format::kJson;
    break;
  }
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".qsig")) return Format::kQsig;
  if (absl::EndsWith(lower, ".onnx")) return Format::kOnnx;
  if (absl::EndsWith(lower, ".pt") || absl::EndsWith(lower, ".ts") ||
      absl::EndsWith(lower, ".pth")) {
    return Format::kTorchScript;
  }
  if (absl::EndsWith(lower, ".json")) return Format::kJson;
  return Format::kUnknown;
}

}  // namespace

absl::StatusOr<LoadedModel> LoadAnyModel(const std::string& path, const ImportOptions& options) {
  // An unknown QSIG_MAX_ISA fails every command that loads a model, with the kernel layer's
  // message.
  if (absl::StatusOr<quant::Isa> cap = quant::EnvMaxIsa(); !cap.ok()) return cap.status();
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) return absl::NotFoundError(absl::StrCat(path, ": cannot open model file"));
  }
  LoadedModel m;
  switch (Sniff(path)) {
    case Format::kQsig: {
      QSIG_ASSIGN_OR_RETURN(Artifact a, ReadArtifact(path));
      m.spec = std::make_shared<const ModelSpec>(a.spec);
      m.format = "qsig";
      m.artifact = std::move(a);
      return m;
    }
    case Format::kJson: {
      QSIG_ASSIGN_OR_RETURN(ModelSpec s, LoadModelJson(path));
      m.spec = std::make_shared<const ModelSpec>(std::move(s));
      m.format = "json";
      return m;
    }
    case Format::kOnnx: {
      QSIG_ASSIGN_OR_RETURN(ModelSpec s, ImportOnnx(path, options));
      m.spec = std::make_shared<const ModelSpec>(std::move(s));
      m.format = "onnx";
      return m;
    }
    case Format::kTorchScript: {
      QSIG_ASSIGN_OR_RETURN(ModelSpec s, ImportTorchScript(path, options));
      m.spec = std::make_shared<const ModelSpec>(std::move(s));
      m.format = "torchscript";
      return m;
    }
    case Format::kUnknown:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path,
                   ": unknown model format; qsig reads .json (qsig.model.fp32), .onnx, TorchScript "
                   "(.pt/.ts, torch.jit.save) and .qsig artifacts"));
}

}  // namespace qsig::models::io
