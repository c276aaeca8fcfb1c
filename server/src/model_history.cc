#include "model_history.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qsig::server {
namespace {

using nlohmann::json;

constexpr int kFormat = 1;

// JSON has no infinity or NaN: an unknown (non-finite) measurement is stored as -1.
double Finite(double v) { return std::isfinite(v) ? v : -1.0; }

json RecipeToJson(const RuntimeRecipe& r) {
  json j;
  j["reduce_range"] = r.reduce_range;
  j["precision"] = r.precision;
  json layers = json::array();
  for (models::Precision p : r.description.layers) layers.push_back(static_cast<int>(p));
  j["layers"] = layers;
  json inputs = json::array();
  for (const models::QuantizedInput& q : r.description.inputs) {
    inputs.push_back({{"tensor", q.tensor},
                      {"int8", q.int8},
                      {"s16", q.s16},
                      {"scale", q.scale},
                      {"zero_point", q.zero_point}});
  }
  j["inputs"] = inputs;
  j["cell_step"] = r.description.cell_step;
  return j;
}

RuntimeRecipe RecipeFromJson(const json& j) {
  RuntimeRecipe r;
  r.reduce_range = j.at("reduce_range").get<bool>();
  r.precision = j.at("precision").get<std::string>();
  for (const json& p : j.at("layers")) {
    const int v = p.get<int>();
    if (v < 0 || v > static_cast<int>(models::Precision::kFp32)) {
      throw std::invalid_argument(absl::StrCat("layers: unknown precision ", v));
    }
    r.description.layers.push_back(static_cast<models::Precision>(v));
  }
  for (const json& q : j.at("inputs")) {
    models::QuantizedInput in;
    in.tensor = q.at("tensor").get<std::string>();
    in.int8 = q.at("int8").get<bool>();
    in.s16 = q.at("s16").get<bool>();
    in.scale = q.at("scale").get<std::vector<float>>();
    in.zero_point = q.at("zero_point").get<std::vector<int32_t>>();
    r.description.inputs.push_back(std::move(in));
  }
  r.description.cell_step = j.at("cell_step").get<std::vector<float>>();
  return r;
}

json EntryToJson(const HistoryEntry& e) {
  json j = {{"version", e.version},
            {"reason", e.reason},
            {"installed_unix_ns", e.installed_unix_ns},
            {"precision", e.precision},
            {"source_sha256", e.source_sha256},
            {"artifact_sha256", e.artifact_sha256},
            {"calibration_method", e.calibration_method},
            {"samples", e.samples},
            {"samples_first_unix_ns", e.samples_first_unix_ns},
            {"samples_last_unix_ns", e.samples_last_unix_ns},
            {"relative_rmse_vs_fp32", Finite(e.relative_rmse_vs_fp32)},
            {"relative_rmse_vs_incumbent", Finite(e.relative_rmse_vs_incumbent)},
            {"isa", e.isa},
            {"rollback_of", e.rollback_of},
            {"fallback", e.fallback},
            {"artifact_file", e.artifact_file}};
  if (e.has_recipe) j["recipe"] = RecipeToJson(e.recipe);
  return j;
}

HistoryEntry EntryFromJson(const json& j) {
  HistoryEntry e;
  e.version = j.at("version").get<uint64_t>();
  e.reason = j.at("reason").get<std::string>();
  e.installed_unix_ns = j.at("installed_unix_ns").get<int64_t>();
  e.precision = j.at("precision").get<std::string>();
  e.source_sha256 = j.at("source_sha256").get<std::string>();
  e.artifact_sha256 = j.at("artifact_sha256").get<std::string>();
  e.calibration_method = j.at("calibration_method").get<std::string>();
  e.samples = j.at("samples").get<uint64_t>();
  e.samples_first_unix_ns = j.at("samples_first_unix_ns").get<int64_t>();
  e.samples_last_unix_ns = j.at("samples_last_unix_ns").get<int64_t>();
  e.relative_rmse_vs_fp32 = j.at("relative_rmse_vs_fp32").get<double>();
  e.relative_rmse_vs_incumbent = j.at("relative_rmse_vs_incumbent").get<double>();
  e.isa = j.at("isa").get<std::string>();
  e.rollback_of = j.at("rollback_of").get<uint64_t>();
  e.fallback = j.at("fallback").get<bool>();
  e.artifact_file = j.at("artifact_file").get<std::string>();
  if (j.contains("recipe")) {
    e.has_recipe = true;
    e.recipe = RecipeFromJson(j.at("recipe"));
  }
  // A file name only: never a path out of the model's folder.
  if (e.artifact_file.find('/') != std::string::npos || e.artifact_file.starts_with(".")) {
    throw std::invalid_argument(
        absl::StrCat("artifact_file '", e.artifact_file, "' is not a plain file name"));
  }
  return e;
}

// A distribution reference: its thresholds and each sorted column as base64 of little-endian
// float32 (a 4096-row column is 22 KB instead of ~45 KB of decimal text).
json DistributionToJson(const StoredDistribution& d) {
  json cols = json::array();
  for (const auto& c : d.sorted) {
    cols.push_back(absl::Base64Escape(
        absl::string_view(reinterpret_cast<const char*>(c.data()), c.size() * sizeof(float))));
  }
  return {{"live_rows", d.live_rows},
          {"block", d.block},
          {"resamples", d.resamples},
          {"psi", d.thresholds.psi},
          {"psi_clear", d.thresholds.psi_clear},
          {"w1", d.thresholds.w1},
          {"w1_clear", d.thresholds.w1_clear},
          {"sorted_f32_base64", cols}};
}

StoredDistribution DistributionFromJson(const json& j) {
  StoredDistribution d;
  d.live_rows = j.at("live_rows").get<int>();
  d.block = j.at("block").get<int>();
  d.resamples = j.at("resamples").get<int>();
  d.thresholds.psi = j.at("psi").get<double>();
  d.thresholds.psi_clear = j.at("psi_clear").get<double>();
  d.thresholds.w1 = j.at("w1").get<double>();
  d.thresholds.w1_clear = j.at("w1_clear").get<double>();
  for (const json& c : j.at("sorted_f32_base64")) {
    std::string bytes;
    if (!absl::Base64Unescape(c.get<std::string>(), &bytes) || bytes.size() % sizeof(float)) {
      throw std::runtime_error("distribution column is not base64 float32");
    }
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), bytes.size());
    d.sorted.push_back(std::move(v));
  }
  return d;
}

}  // namespace

const HistoryEntry* ModelState::Find(uint64_t version) const {
  for (const HistoryEntry& e : history) {
    if (e.version == version) return &e;
  }
  return nullptr;
}

std::string SerializeModelState(const ModelState& s) {
  json j = {{"format", kFormat},
            {"model", s.model},
            {"next_version", s.next_version},
            {"current_version", s.current_version},
            {"fallback", s.fallback},
            {"config_sha256", s.config_sha256}};
  json history = json::array();
  for (const HistoryEntry& e : s.history) history.push_back(EntryToJson(e));
  j["history"] = history;
  if (s.has_baseline) {
    j["baseline"] = {{"mean", s.baseline.mean},
                     {"std", s.baseline.std},
                     {"lo", s.baseline.lo},
                     {"hi", s.baseline.hi}};
    if (s.baseline.features.live_rows > 0) {
      j["baseline"]["distribution"] = DistributionToJson(s.baseline.features);
    }
    if (s.baseline.output.live_rows > 0) {
      j["baseline"]["output_distribution"] = DistributionToJson(s.baseline.output);
    }
  }
  return j.dump(1);
}

absl::StatusOr<ModelState> ParseModelState(std::string_view text, const std::string& origin) {
  try {
    const json j = json::parse(text);
    if (j.at("format").get<int>() != kFormat) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": state format ", j.at("format").dump(), " is not ", kFormat,
                       " (written by another qsig version); move the file away to start fresh"));
    }
    ModelState s;
    s.model = j.at("model").get<std::string>();
    s.next_version = j.at("next_version").get<uint64_t>();
    s.current_version = j.at("current_version").get<uint64_t>();
    s.fallback = j.at("fallback").get<bool>();
    s.config_sha256 = j.at("config_sha256").get<std::string>();
    for (const json& e : j.at("history")) s.history.push_back(EntryFromJson(e));
    if (j.contains("baseline")) {
      const json& b = j.at("baseline");
      s.has_baseline = true;
      s.baseline.mean = b.at("mean").get<std::vector<double>>();
      s.baseline.std = b.at("std").get<std::vector<double>>();
      s.baseline.lo = b.at("lo").get<std::vector<float>>();
      s.baseline.hi = b.at("hi").get<std::vector<float>>();
      if (b.contains("distribution")) s.baseline.features = DistributionFromJson(b["distribution"]);
      if (b.contains("output_distribution")) {
        s.baseline.output = DistributionFromJson(b["output_distribution"]);
      }
      if (s.baseline.mean.size() != s.baseline.std.size() ||
          s.baseline.lo.size() != s.baseline.hi.size()) {
        return absl::InvalidArgumentError(absl::StrCat(origin, ": baseline sizes differ"));
      }
    }
    if (s.current_version >= s.next_version) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": current_version ", s.current_version, " >= next_version ", s.next_version));
    }
    return s;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not a qsig state file: ", e.what()));
  }
}

}  // namespace qsig::server
