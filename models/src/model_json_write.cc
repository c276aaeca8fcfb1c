// The model JSON writer, ModelJson / WriteModelJson (model_json.h); the reader, LoadModelJson, is
// beside it in loader.cc.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "qsig/models/model_json.h"
#include "qsig/models/sha256.h"

namespace qsig::models {
namespace {

using nlohmann::json;

// 9 significant digits identify a float32; parsing the short decimal back as a double keeps the
// file compact (nlohmann prints the shortest double that round-trips).
double Short(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return std::strtod(buf, nullptr);
}

json Floats(std::span<const float> v) {
  json a = json::array();
  for (float f : v) a.push_back(Short(f));
  return a;
}

template <class Layer>
json Recurrent(const std::vector<Layer>& layers) {
  json a = json::array();
  for (const Layer& l : layers) {
    a.push_back({{"input_size", l.input_size},
                 {"hidden_size", l.hidden_size},
                 {"w_ih", Floats(l.w_ih)},
                 {"w_hh", Floats(l.w_hh)},
                 {"b_ih", Floats(l.b_ih)},
                 {"b_hh", Floats(l.b_hh)}});
  }
  return a;
}

}  // namespace

absl::StatusOr<std::string> ModelJson(const ModelSpec& spec, const std::string& training_json) {
  if (absl::Status st = ValidateSpec(spec); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model ", spec.name, ": ", st.message()));
  }
  for (const auto* v : {&spec.feature_mean, &spec.feature_std}) {
    for (float f : *v) {
      if (!std::isfinite(f)) return absl::InvalidArgumentError("normalization is not finite");
    }
  }
  json doc;
  doc["format"] = "qsig.model.fp32";
  doc["version"] = 1;
  doc["name"] = spec.name;
  doc["arch"] = ArchName(spec.arch);
  doc["input_size"] = spec.input_size;
  doc["window"] = spec.window;
  if (!spec.feature_names.empty()) doc["feature_names"] = spec.feature_names;
  if (!spec.feature_mean.empty()) {
    doc["feature_mean"] = Floats(spec.feature_mean);
    doc["feature_std"] = Floats(spec.feature_std);
  }
  if (spec.arch == Arch::kLstm) doc["lstm"] = Recurrent(spec.lstm);
  if (spec.arch == Arch::kGru) doc["gru"] = Recurrent(spec.gru);
  json layers = json::array();
  for (const LinearLayer& l : spec.layers) {
    layers.push_back({{"in", l.in},
                      {"out", l.out},
                      {"activation", ActivationName(l.activation)},
                      {"weight", Floats(l.weight)},
                      {"bias", Floats(l.bias)}});
  }
  doc["layers"] = std::move(layers);
  if (!spec.input_ranges.empty()) {
    json ranges = json::array();
    for (const SourceRange& r : spec.input_ranges) {
      ranges.push_back(r.set ? json::array({Short(r.min), Short(r.max)}) : json(nullptr));
    }
    doc["input_ranges"] = std::move(ranges);
  }
  if (!training_json.empty()) {
    json t = json::parse(training_json, nullptr, /*allow_exceptions=*/false);
    if (t.is_discarded() || !t.is_object()) {
      return absl::InvalidArgumentError("training provenance is not a JSON object");
    }
    doc["training"] = std::move(t);
  }
  return doc.dump();
}

absl::StatusOr<std::string> WriteModelJson(const ModelSpec& spec, const std::string& path,
                                           const std::string& training_json) {
  auto text = ModelJson(spec, training_json);
  if (!text.ok()) return text.status();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << *text;
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat(tmp, ": cannot write"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(path, ": cannot rename ", tmp, " into place"));
  }
  return Sha256Hex(*text);
}

}  // namespace qsig::models
