// LoadModelJson and ValidateSpec: the JSON model format (models/README.md) into a ModelSpec.
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "qsig/models/model.h"
#include "qsig/models/sha256.h"
#include "qsig/models/status_macros.h"

namespace qsig::models {
namespace {

using nlohmann::json;

constexpr absl::string_view kFormat = "qsig.model.fp32";
constexpr int kVersion = 1;
// Bounds that keep a corrupt file from asking for absurd workspaces.
constexpr int kMaxDim = 1 << 16;
constexpr int kMaxWindow = 1 << 16;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

const char* JsonTypeName(const json& v) { return v.type_name(); }

// The member `key` of object `obj`, or an error naming `path`.
absl::StatusOr<const json*> Member(const json& obj, absl::string_view key, absl::string_view path) {
  auto it = obj.find(std::string(key));
  if (it == obj.end()) return FieldError(path, "is missing");
  return &*it;
}

absl::StatusOr<std::string> GetString(const json& obj, absl::string_view key,
                                      absl::string_view path) {
  auto m = Member(obj, key, path);
  if (!m.ok()) return m.status();
  if (!(*m)->is_string()) {
    return FieldError(path, absl::StrCat("must be a string, found ", JsonTypeName(**m)));
  }
  return (*m)->get<std::string>();
}

absl::StatusOr<int> GetInt(const json& obj, absl::string_view key, absl::string_view path, int lo,
                           int hi) {
  auto m = Member(obj, key, path);
  if (!m.ok()) return m.status();
  if (!(*m)->is_number_integer()) {
    return FieldError(path, absl::StrCat("must be an integer, found ", JsonTypeName(**m)));
  }
  const int64_t v = (*m)->get<int64_t>();
  if (v < lo || v > hi) {
    return FieldError(path, absl::StrCat("is ", v, ", must be in [", lo, ", ", hi, "]"));
  }
  return static_cast<int>(v);
}

// An array of finite numbers representable as float.
absl::StatusOr<std::vector<float>> GetFloats(const json& obj, absl::string_view key,
                                             absl::string_view path) {
  auto m = Member(obj, key, path);
  if (!m.ok()) return m.status();
  const json& a = **m;
  if (!a.is_array()) {
    return FieldError(path, absl::StrCat("must be an array of numbers, found ", JsonTypeName(a)));
  }
  std::vector<float> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const json& v = a[i];
    if (!v.is_number()) {
      return FieldError(absl::StrCat(path, "[", i, "]"),
                        absl::StrCat("must be a number, found ", JsonTypeName(v)));
    }
    const double d = v.get<double>();
    const float f = static_cast<float>(d);
    if (!std::isfinite(f)) {
      return FieldError(absl::StrCat(path, "[", i, "]"),
                        absl::StrCat("is not finite as a float (", d, "); weights must be finite"));
    }
    out.push_back(f);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> GetStrings(const json& obj, absl::string_view key,
                                                    absl::string_view path) {
  auto m = Member(obj, key, path);
  if (!m.ok()) return m.status();
  const json& a = **m;
  if (!a.is_array()) {
    return FieldError(path, absl::StrCat("must be an array of strings, found ", JsonTypeName(a)));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string()) {
      return FieldError(absl::StrCat(path, "[", i, "]"),
                        absl::StrCat("must be a string, found ", JsonTypeName(a[i])));
    }
    out.push_back(a[i].get<std::string>());
  }
  return out;
}

absl::StatusOr<Activation> ParseActivation(const std::string& s, absl::string_view path) {
  if (s == "none") return Activation::kNone;
  if (s == "relu") return Activation::kRelu;
  if (s == "tanh") return Activation::kTanh;
  if (s == "sigmoid") return Activation::kSigmoid;
  return FieldError(path,
                    absl::StrCat("is \"", s, "\", expected one of none, relu, tanh, sigmoid"));
}

absl::StatusOr<ModelSpec> SpecFromJson(const json& doc) {
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("top level must be a JSON object, found ", JsonTypeName(doc)));
  }
  ModelSpec spec;
  std::string format;
  QSIG_ASSIGN_OR_RETURN(format, GetString(doc, "format", "format"));
  if (format != kFormat) {
    return FieldError("format", absl::StrCat("is \"", format, "\", expected \"", kFormat, "\""));
  }
  int version = 0;
  QSIG_ASSIGN_OR_RETURN(version, GetInt(doc, "version", "version", 0, 1 << 30));
  if (version != kVersion) {
    return FieldError("version", absl::StrCat("is ", version, "; this build reads version ",
                                              kVersion, " (upgrade qsig or re-export the model)"));
  }
  QSIG_ASSIGN_OR_RETURN(spec.name, GetString(doc, "name", "name"));
  std::string arch;
  QSIG_ASSIGN_OR_RETURN(arch, GetString(doc, "arch", "arch"));
  if (arch == "mlp") {
    spec.arch = Arch::kMlp;
  } else if (arch == "lstm") {
    spec.arch = Arch::kLstm;
  } else if (arch == "gru") {
    spec.arch = Arch::kGru;
  } else {
    return FieldError("arch",
                      absl::StrCat("is \"", arch, "\", expected \"mlp\", \"lstm\" or \"gru\""));
  }
  QSIG_ASSIGN_OR_RETURN(spec.input_size, GetInt(doc, "input_size", "input_size", 1, kMaxDim));
  spec.window = 1;
  if (doc.contains("window")) {
    QSIG_ASSIGN_OR_RETURN(spec.window, GetInt(doc, "window", "window", 1, kMaxWindow));
  }
  if (doc.contains("feature_names")) {
    QSIG_ASSIGN_OR_RETURN(spec.feature_names, GetStrings(doc, "feature_names", "feature_names"));
  }
  if (doc.contains("feature_mean") || doc.contains("feature_std")) {
    QSIG_ASSIGN_OR_RETURN(spec.feature_mean, GetFloats(doc, "feature_mean", "feature_mean"));
    QSIG_ASSIGN_OR_RETURN(spec.feature_std, GetFloats(doc, "feature_std", "feature_std"));
  }
  // Recurrent layers: "lstm" and "gru" arrays share one shape (both PyTorch layouts).
  auto parse_rnn = [&doc](const char* key, auto& out) -> absl::Status {
    if (!doc.contains(key)) return absl::OkStatus();
    const json& a = doc[key];
    if (!a.is_array()) {
      return FieldError(key, absl::StrCat("must be an array, found ", JsonTypeName(a)));
    }
    for (size_t l = 0; l < a.size(); ++l) {
      const std::string p = absl::StrCat(key, "[", l, "]");
      if (!a[l].is_object()) {
        return FieldError(p, absl::StrCat("must be an object, found ", JsonTypeName(a[l])));
      }
      typename std::decay_t<decltype(out)>::value_type ly;
      QSIG_ASSIGN_OR_RETURN(ly.input_size,
                            GetInt(a[l], "input_size", p + ".input_size", 1, kMaxDim));
      QSIG_ASSIGN_OR_RETURN(ly.hidden_size,
                            GetInt(a[l], "hidden_size", p + ".hidden_size", 1, kMaxDim));
      QSIG_ASSIGN_OR_RETURN(ly.w_ih, GetFloats(a[l], "w_ih", p + ".w_ih"));
      QSIG_ASSIGN_OR_RETURN(ly.w_hh, GetFloats(a[l], "w_hh", p + ".w_hh"));
      QSIG_ASSIGN_OR_RETURN(ly.b_ih, GetFloats(a[l], "b_ih", p + ".b_ih"));
      QSIG_ASSIGN_OR_RETURN(ly.b_hh, GetFloats(a[l], "b_hh", p + ".b_hh"));
      out.push_back(std::move(ly));
    }
    return absl::OkStatus();
  };
  if (absl::Status st = parse_rnn("lstm", spec.lstm); !st.ok()) return st;
  if (absl::Status st = parse_rnn("gru", spec.gru); !st.ok()) return st;
  const json* layers = nullptr;
  QSIG_ASSIGN_OR_RETURN(layers, Member(doc, "layers", "layers"));
  if (!layers->is_array()) {
    return FieldError("layers", absl::StrCat("must be an array, found ", JsonTypeName(*layers)));
  }
  for (size_t k = 0; k < layers->size(); ++k) {
    const json& o = (*layers)[k];
    const std::string p = absl::StrCat("layers[", k, "]");
    if (!o.is_object()) {
      return FieldError(p, absl::StrCat("must be an object, found ", JsonTypeName(o)));
    }
    LinearLayer ly;
    QSIG_ASSIGN_OR_RETURN(ly.in, GetInt(o, "in", p + ".in", 1, kMaxDim));
    QSIG_ASSIGN_OR_RETURN(ly.out, GetInt(o, "out", p + ".out", 1, kMaxDim));
    std::string act = "none";
    if (o.contains("activation")) {
      QSIG_ASSIGN_OR_RETURN(act, GetString(o, "activation", p + ".activation"));
    }
    QSIG_ASSIGN_OR_RETURN(ly.activation, ParseActivation(act, p + ".activation"));
    QSIG_ASSIGN_OR_RETURN(ly.weight, GetFloats(o, "weight", p + ".weight"));
    QSIG_ASSIGN_OR_RETURN(ly.bias, GetFloats(o, "bias", p + ".bias"));
    spec.layers.push_back(std::move(ly));
  }
  // Optional: one entry per quantizable layer, null or [min, max] (ModelSpec::input_ranges).
  if (doc.contains("input_ranges")) {
    const json& a = doc["input_ranges"];
    if (!a.is_array()) {
      return FieldError("input_ranges", absl::StrCat("must be an array, found ", JsonTypeName(a)));
    }
    for (size_t k = 0; k < a.size(); ++k) {
      const std::string p = absl::StrCat("input_ranges[", k, "]");
      SourceRange r;
      if (!a[k].is_null()) {
        if (!a[k].is_array() || a[k].size() != 2 || !a[k][0].is_number() || !a[k][1].is_number()) {
          return FieldError(p, "must be null or [min, max]");
        }
        r.set = true;
        r.min = a[k][0].get<float>();
        r.max = a[k][1].get<float>();
      }
      spec.input_ranges.push_back(r);
    }
  }
  return spec;
}

// Whether a JSON parse error at byte `pos` is a NaN/Infinity literal (Python's json.dump writes
// them by default), so the message can say what to do about it.
bool LooksLikeNonFiniteLiteral(const std::string& text, size_t pos) {
  if (pos > text.size()) pos = text.size();
  const size_t from = pos > 12 ? pos - 12 : 0;
  const absl::string_view around = absl::string_view(text).substr(from, 24);
  return around.find("NaN") != absl::string_view::npos ||
         around.find("Infinity") != absl::string_view::npos;
}

absl::Status CheckSize(size_t got, size_t expected, absl::string_view field,
                       absl::string_view how) {
  if (got == expected) return absl::OkStatus();
  return FieldError(field,
                    absl::StrCat("has ", got, " values, expected ", expected, " (", how, ")"));
}

absl::Status CheckFinite(const std::vector<float>& v, absl::string_view field) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return FieldError(absl::StrCat(field, "[", i, "]"),
                        absl::StrCat("is not finite (", v[i], "); weights must be finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSpec(const ModelSpec& s) {
  if (s.input_size < 1 || s.input_size > kMaxDim) {
    return FieldError("input_size",
                      absl::StrCat("is ", s.input_size, ", must be in [1, ", kMaxDim, "]"));
  }
  if (s.window < 1 || s.window > kMaxWindow) {
    return FieldError("window",
                      absl::StrCat("is ", s.window, ", must be in [1, ", kMaxWindow, "]"));
  }
  const size_t in = static_cast<size_t>(s.input_size);
  if (!s.feature_names.empty() && s.feature_names.size() != in) {
    return FieldError("feature_names", absl::StrCat("has ", s.feature_names.size(),
                                                    " names, expected ", in, " (input_size)"));
  }
  if (!s.feature_mean.empty() || !s.feature_std.empty()) {
    QSIG_RETURN_IF_ERROR(CheckSize(s.feature_mean.size(), in, "feature_mean", "input_size"));
    QSIG_RETURN_IF_ERROR(CheckSize(s.feature_std.size(), in, "feature_std", "input_size"));
    QSIG_RETURN_IF_ERROR(CheckFinite(s.feature_mean, "feature_mean"));
    QSIG_RETURN_IF_ERROR(CheckFinite(s.feature_std, "feature_std"));
    for (size_t i = 0; i < in; ++i) {
      if (s.feature_std[i] < 0.0f) {
        return FieldError(absl::StrCat("feature_std[", i, "]"),
                          absl::StrCat("is ", s.feature_std[i], ", must be >= 0"));
      }
    }
  }
  int width = s.input_size;
  // Recurrent layers (gates = 4 for LSTM, 3 for GRU).
  auto check_rnn = [&width](const auto& layers, const char* key, size_t gates) -> absl::Status {
    const char* g = gates == 4 ? "4" : "3";
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& ly = layers[l];
      const std::string p = absl::StrCat(key, "[", l, "]");
      if (ly.input_size != width) {
        return FieldError(p + ".input_size",
                          absl::StrCat("is ", ly.input_size, ", expected ", width,
                                       l == 0 ? " (input_size)" : " (previous hidden_size)"));
      }
      if (ly.hidden_size < 1 || ly.hidden_size > kMaxDim) {
        return FieldError(p + ".hidden_size",
                          absl::StrCat("is ", ly.hidden_size, ", must be in [1, ", kMaxDim, "]"));
      }
      const size_t hg = gates * static_cast<size_t>(ly.hidden_size);
      QSIG_RETURN_IF_ERROR(CheckSize(ly.w_ih.size(), hg * static_cast<size_t>(width), p + ".w_ih",
                                     absl::StrCat(g, "*hidden_size*input_size")));
      QSIG_RETURN_IF_ERROR(CheckSize(ly.w_hh.size(), hg * static_cast<size_t>(ly.hidden_size),
                                     p + ".w_hh", absl::StrCat(g, "*hidden_size*hidden_size")));
      QSIG_RETURN_IF_ERROR(
          CheckSize(ly.b_ih.size(), hg, p + ".b_ih", absl::StrCat(g, "*hidden_size")));
      QSIG_RETURN_IF_ERROR(
          CheckSize(ly.b_hh.size(), hg, p + ".b_hh", absl::StrCat(g, "*hidden_size")));
      QSIG_RETURN_IF_ERROR(CheckFinite(ly.w_ih, p + ".w_ih"));
      QSIG_RETURN_IF_ERROR(CheckFinite(ly.w_hh, p + ".w_hh"));
      QSIG_RETURN_IF_ERROR(CheckFinite(ly.b_ih, p + ".b_ih"));
      QSIG_RETURN_IF_ERROR(CheckFinite(ly.b_hh, p + ".b_hh"));
      width = ly.hidden_size;
    }
    return absl::OkStatus();
  };
  if (s.arch == Arch::kLstm) {
    if (s.lstm.empty()) return FieldError("lstm", "is empty; arch \"lstm\" needs >= 1 layer");
    if (!s.gru.empty()) return FieldError("gru", "must be empty for arch \"lstm\"");
    QSIG_RETURN_IF_ERROR(check_rnn(s.lstm, "lstm", 4));
  } else if (s.arch == Arch::kGru) {
    if (s.gru.empty()) return FieldError("gru", "is empty; arch \"gru\" needs >= 1 layer");
    if (!s.lstm.empty()) return FieldError("lstm", "must be empty for arch \"gru\"");
    QSIG_RETURN_IF_ERROR(check_rnn(s.gru, "gru", 3));
  } else if (!s.lstm.empty()) {
    return FieldError("lstm", "must be empty for arch \"mlp\"");
  } else if (!s.gru.empty()) {
    return FieldError("gru", "must be empty for arch \"mlp\"");
  }
  if (s.layers.empty()) return FieldError("layers", "is empty; a model needs >= 1 layer");
  for (size_t k = 0; k < s.layers.size(); ++k) {
    const LinearLayer& ly = s.layers[k];
    const std::string p = absl::StrCat("layers[", k, "]");
    if (ly.in != width) {
      return FieldError(p + ".in",
                        absl::StrCat("is ", ly.in, ", expected ", width,
                                     k > 0                             ? " (previous layer's out)"
                                     : s.lstm.empty() && s.gru.empty() ? " (input_size)"
                                                                       : " (last hidden_size)"));
    }
    if (ly.out < 1 || ly.out > kMaxDim) {
      return FieldError(p + ".out", absl::StrCat("is ", ly.out, ", must be in [1, ", kMaxDim, "]"));
    }
    QSIG_RETURN_IF_ERROR(CheckSize(ly.weight.size(),
                                   static_cast<size_t>(ly.out) * static_cast<size_t>(ly.in),
                                   p + ".weight", "out*in"));
    QSIG_RETURN_IF_ERROR(
        CheckSize(ly.bias.size(), static_cast<size_t>(ly.out), p + ".bias", "out"));
    QSIG_RETURN_IF_ERROR(CheckFinite(ly.weight, p + ".weight"));
    QSIG_RETURN_IF_ERROR(CheckFinite(ly.bias, p + ".bias"));
    width = ly.out;
  }
  if (width != 1) {
    return FieldError(absl::StrCat("layers[", s.layers.size() - 1, "].out"),
                      absl::StrCat("is ", width, ", expected 1 (a model outputs one signal)"));
  }
  if (!s.input_ranges.empty()) {
    const size_t n = s.lstm.size() + s.gru.size() + s.layers.size();
    QSIG_RETURN_IF_ERROR(
        CheckSize(s.input_ranges.size(), n, "input_ranges", "one per quantizable layer"));
    for (size_t k = 0; k < n; ++k) {
      const SourceRange& r = s.input_ranges[k];
      if (r.set && !(std::isfinite(r.min) && std::isfinite(r.max) && r.min < r.max)) {
        return FieldError(
            absl::StrCat("input_ranges[", k, "]"),
            absl::StrCat("is [", r.min, ", ", r.max, "], must be finite with min < max"));
      }
    }
  }
  return absl::OkStatus();
}

const char* ArchName(Arch a) noexcept {
  switch (a) {
    case Arch::kLstm:
      return "lstm";
    case Arch::kGru:
      return "gru";
    case Arch::kMlp:
      break;
  }
  return "mlp";
}

const char* ActivationName(Activation a) noexcept {
  switch (a) {
    case Activation::kRelu:
      return "relu";
    case Activation::kTanh:
      return "tanh";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kNone:
      break;
  }
  return "none";
}

const char* PrecisionName(Precision p) noexcept {
  switch (p) {
    case Precision::kInt8S16:
      return "int8_s16";
    case Precision::kFp32:
      return "fp32";
    case Precision::kInt8:
      break;
  }
  return "int8";
}

absl::StatusOr<ModelSpec> LoadModelJson(const std::string& path) {
  auto prefixed = [&path](const absl::Status& st) {
    return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  };
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat(path, ": cannot open model file: ", std::strerror(errno)));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) {
      return absl::DataLossError(absl::StrCat(path, ": error reading model file"));
    }
    text = std::move(ss).str();
  }
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": file is empty"));
  try {
    json doc;
    try {
      doc = json::parse(text);
    } catch (const json::parse_error& e) {
      std::string hint;
      if (LooksLikeNonFiniteLiteral(text, e.byte)) {
        hint =
            "; NaN/Infinity found: every weight must be finite (re-export the model after "
            "fixing the training run)";
      }
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not valid JSON at byte ", e.byte, ": ", e.what(), hint));
    }
    absl::StatusOr<ModelSpec> spec = SpecFromJson(doc);
    if (!spec.ok()) return prefixed(spec.status());
    if (absl::Status st = ValidateSpec(*spec); !st.ok()) return prefixed(st);
    spec->sha256 = Sha256Hex(text);
    return spec;
  } catch (const std::exception& e) {
    // nlohmann or the allocator; a corrupt file must never crash the server.
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot load model: ", e.what()));
  }
}

}  // namespace qsig::models
