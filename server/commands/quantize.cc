// `qsig quantize`: post-training static quantization to a verified .qsig artifact, with a
// report (JSON and a table) of what INT8 costs against FP32 on held-out rows.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "command.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/feature_table.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/calibration.h"
#include "report.h"
#include "table_flags.h"

namespace qsig::commands {
namespace {

using namespace models;      // NOLINT: the model types read plainly in command code.
using namespace models::io;  // NOLINT

absl::StatusOr<Int8Options> MakeInt8Options(const std::string& method, double percentile,
                                            bool per_channel) {
  Int8Options o;
  QSIG_ASSIGN_OR_RETURN(o.method, quant::ParseCalibrationMethod(method));
  o.percentile = percentile;
  if (per_channel) {
    o.per_feature_input = true;
    o.s16_input = false;  // Per-feature scales apply to the u8 input.
  }
  return o;
}

// The FP32 matrix an Int8Weight was quantized from ("lstm[0].w_ih", "layers[2].weight", ...).
const std::vector<float>* FloatWeights(const ModelSpec& s, const std::string& name) {
  for (size_t l = 0; l < s.lstm.size(); ++l) {
    if (name == absl::StrCat("lstm[", l, "].w_ih")) return &s.lstm[l].w_ih;
    if (name == absl::StrCat("lstm[", l, "].w_hh")) return &s.lstm[l].w_hh;
  }
  for (size_t l = 0; l < s.gru.size(); ++l) {
    if (name == absl::StrCat("gru[", l, "].w_ih")) return &s.gru[l].w_ih;
    if (name == absl::StrCat("gru[", l, "].w_hh")) return &s.gru[l].w_hh;
  }
  for (size_t l = 0; l < s.layers.size(); ++l) {
    if (name == absl::StrCat("layers[", l, "].weight")) return &s.layers[l].weight;
  }
  return nullptr;
}

// Weight SQNR (dB) per layer ("lstm[0]" gathers w_ih and w_hh).
std::map<std::string, double> WeightSqnr(const Artifact& a) {
  std::map<std::string, std::pair<double, double>> acc;  // layer -> (signal, noise)
  for (const Int8Weight& w : a.int8_weights) {
    const std::vector<float>* f = FloatWeights(a.spec, w.tensor);
    if (f == nullptr) continue;
    auto& [sig, noise] = acc[w.tensor.substr(0, w.tensor.find('.'))];
    for (int r = 0; r < w.q.rows; ++r) {
      for (int c = 0; c < w.q.cols; ++c) {
        const double x = (*f)[static_cast<size_t>(r) * w.q.cols + c];
        const double e = x - quant::DequantizeAt(w.q, r, c);
        sig += x * x;
        noise += e * e;
      }
    }
  }
  std::map<std::string, double> out;
  for (const auto& [layer, sn] : acc) {
    out[layer] = sn.second > 0 ? 10.0 * std::log10(sn.first / sn.second) : INFINITY;
  }
  return out;
}

}  // namespace

absl::StatusOr<QuantizeReport> RunQuantize(const QuantizeCommandOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.output_path.empty()) return absl::InvalidArgumentError("-o MODEL.qsig is required");
  if (!(o.holdout_fraction > 0 && o.holdout_fraction < 1)) {
    return absl::InvalidArgumentError("holdout_fraction must be in (0, 1)");
  }
  QSIG_ASSIGN_OR_RETURN(Int8Options int8, MakeInt8Options(o.method, o.percentile, o.per_channel));
  int8.use_source_ranges = o.source_ranges;
  int8.reduce_range = o.reduce_range;
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  TableOptions table_options = o.table;
  table_options.features = lm.spec->feature_names;
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, ReadFeatureTable(o.calib_csv, table_options));
  std::string note;
  auto cols = MapColumns(*lm.spec, t, &note);
  if (!cols.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(o.calib_csv, ": ", cols.status().message()));
  }
  const int window = lm.spec->window;
  const size_t split =
      static_cast<size_t>(static_cast<double>(t.rows()) * (1.0 - o.holdout_fraction));
  const std::vector<size_t> calib_rows_all = FullWindowRows(t, window, 0, split);
  const std::vector<size_t> eval_rows_all = FullWindowRows(t, window, split, t.rows());
  if (calib_rows_all.empty() || eval_rows_all.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(o.calib_csv, ": need complete windows of ",
                                                   window,
                                                   " rows both before and after the "
                                                   "held-out split at row ",
                                                   split, " of ", t.rows(), "; give more rows"));
  }
  const std::vector<size_t> calib_rows =
      Spread(calib_rows_all, std::min(o.max_calib_windows, kMaxStoredWindows));
  const std::vector<size_t> eval_rows = Spread(eval_rows_all, o.max_eval_windows);
  const std::vector<float> calib = Windows(t, *cols, window, calib_rows);
  const std::vector<float> eval = Windows(t, *cols, window, eval_rows);

  QuantizeReport rep;
  if (o.mixed == "auto") {
    if (!(o.budget > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--budget is ", o.budget, "; expected a fraction > 0 (0.01 = 1%)"));
    }
    std::vector<size_t> idx(calib_rows.size());
    std::iota(idx.begin(), idx.end(), 0);
    idx = Spread(idx, 2000);
    std::vector<size_t> search_rows;
    for (size_t i : idx) search_rows.push_back(calib_rows[i]);
    const std::vector<float> search = Windows(t, *cols, window, search_rows);
    QSIG_ASSIGN_OR_RETURN(int8.layers,
                          models::ChooseMixedPlan(lm.spec, calib, search, int8, o.budget,
                                                  &rep.plan_search, &rep.budget_met));
  } else if (o.mixed != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--mixed is \"", o.mixed, "\"; expected auto or off"));
  }
  {
    const std::vector<std::string> names = QuantizableLayers(*lm.spec);
    for (size_t i = 0; i < int8.layers.size(); ++i) {
      rep.plan.emplace_back(names[i], PrecisionName(int8.layers[i]));
    }
  }

  ArtifactSource src;
  src.source_path = o.model_path;
  src.source_format = lm.format;
  src.calibration_source = o.calib_csv;
  src.first_ts_ns = t.exchange_ts_ns[calib_rows.front()];
  src.last_ts_ns = t.exchange_ts_ns[calib_rows.back()];
  std::unique_ptr<Model> int8_model;
  QSIG_ASSIGN_OR_RETURN(Artifact art, MakeArtifact(lm.spec, calib, int8, src, &int8_model));
  art.calibration.windows_seen = calib_rows_all.size();
  QSIG_RETURN_IF_ERROR(WriteArtifact(art, o.output_path));

  std::unique_ptr<Model> fp32 = MakeFp32Model(lm.spec);
  const std::vector<float> y = RunAll(*fp32, eval);
  const std::vector<float> q = RunAll(*int8_model, eval);
  rep.model_name = lm.spec->name;
  rep.model_format = lm.format;
  rep.source_sha256 = lm.spec->sha256;
  rep.artifact_sha256 = art.content_sha256;
  rep.method = quant::CalibrationMethodName(int8.method);
  rep.per_channel_input = int8.per_feature_input;
  if (int8.use_source_ranges) {
    for (const SourceRange& r : lm.spec->input_ranges) rep.source_ranges_used += r.set ? 1 : 0;
  }
  rep.rows = t.rows();
  rep.calib_windows_seen = calib_rows_all.size();
  rep.calib_windows_used = calib_rows.size();
  rep.eval_windows = eval_rows.size();
  rep.calib_first_ts_ns = src.first_ts_ns;
  rep.calib_last_ts_ns = src.last_ts_ns;
  rep.fp32_weight_bytes = fp32->weight_bytes();
  rep.int8_weight_bytes = int8_model->weight_bytes();
  rep.int8_precision = int8_model->precision();
  const models::OutputError err = models::CompareOutputs(std::span<const float>(q), y);
  rep.rmse = err.rmse;
  rep.rmse_over_rms = err.rmse_over_rms;
  rep.max_abs_error = err.max_abs;
  rep.sign_agreement = err.sign_agreement;
  std::vector<double> lab, yf, yq;
  for (size_t i = 0; i < y.size(); ++i) {
    const float l = t.labels[eval_rows[i]];
    if (std::isfinite(l)) {
      lab.push_back(l);
      yf.push_back(y[i]);
      yq.push_back(q[i]);
    }
  }
  rep.labelled_eval_windows = lab.size();
  rep.ic_spearman_fp32 = Spearman(yf, lab);
  rep.ic_spearman_int8 = Spearman(yq, lab);
  rep.ic_pearson_fp32 = Pearson(yf, lab);
  rep.ic_pearson_int8 = Pearson(yq, lab);

  // Per layer: the model's output error with only that layer INT8 (models::AnalyzeSensitivity,
  // which also ranks the layers), and the weight SQNR of its per-channel s8 matrices.
  const std::map<std::string, double> wsqnr = WeightSqnr(art);
  std::string sensitivity_error;
  {
    const size_t per = static_cast<size_t>(window) * cols->size();
    const std::vector<size_t> idx = Spread(
        [&] {
          std::vector<size_t> v(eval_rows.size());
          std::iota(v.begin(), v.end(), 0);
          return v;
        }(),
        o.max_sensitivity_windows);
    std::vector<float> sens_eval;
    sens_eval.reserve(idx.size() * per);
    for (size_t i : idx) {
      sens_eval.insert(sens_eval.end(), eval.begin() + static_cast<std::ptrdiff_t>(i * per),
                       eval.begin() + static_cast<std::ptrdiff_t>((i + 1) * per));
    }
    auto sens = AnalyzeSensitivity(lm.spec, art.calibration.windows, sens_eval, int8);
    if (sens.ok()) {
      for (const LayerSensitivity& ls : *sens) {
        LayerReport lr;
        lr.layer = ls.layer;
        lr.rmse_over_rms = ls.rmse_over_rms;
        lr.sign_agreement = ls.sign_agreement;
        lr.output_sqnr_db = ls.rmse_over_rms > 0 ? -20.0 * std::log10(ls.rmse_over_rms) : INFINITY;
        auto it = wsqnr.find(ls.layer);
        lr.weight_sqnr_db = it != wsqnr.end() ? it->second : NAN;
        rep.layers.push_back(lr);
      }
    } else {
      sensitivity_error = std::string(sens.status().message());
    }
  }

  nlohmann::json j;
  j["model"] = {{"name", rep.model_name},           {"path", o.model_path},
                {"format", rep.model_format},       {"source_sha256", rep.source_sha256},
                {"arch", ArchName(lm.spec->arch)},  {"window", window},
                {"input_size", lm.spec->input_size}};
  j["artifact"] = {{"path", o.output_path},
                   {"sha256", rep.artifact_sha256},
                   {"format_version", art.format_version},
                   {"qsig_build", art.qsig_build},
                   {"int8_precision", rep.int8_precision}};
  j["calibration"] = {{"method", rep.method},
                      {"percentile", int8.percentile},
                      {"per_channel_weights", true},
                      {"per_channel_input", rep.per_channel_input},
                      {"source_ranges_used", rep.source_ranges_used},
                      {"reduce_range", int8.reduce_range},
                      {"s16_input", int8.s16_input},
                      {"fp32_head", int8.fp32_head},
                      {"source", o.calib_csv},
                      {"rows", rep.rows},
                      {"held_out_from_row", split},
                      {"windows_seen", rep.calib_windows_seen},
                      {"windows_used", rep.calib_windows_used},
                      {"first_ts_ns", rep.calib_first_ts_ns},
                      {"last_ts_ns", rep.calib_last_ts_ns}};
  j["sizes"] = {{"fp32_weight_bytes", rep.fp32_weight_bytes},
                {"int8_weight_bytes", rep.int8_weight_bytes},
                {"int8_over_fp32", static_cast<double>(rep.int8_weight_bytes) /
                                       static_cast<double>(rep.fp32_weight_bytes)}};
  j["accuracy"] = {{"eval_windows", rep.eval_windows},
                   {"labelled_eval_windows", rep.labelled_eval_windows},
                   {"rmse_int8_vs_fp32", Num(rep.rmse)},
                   {"rmse_over_rms_fp32", Num(rep.rmse_over_rms)},
                   {"max_abs_error", Num(rep.max_abs_error)},
                   {"sign_agreement", Num(rep.sign_agreement)},
                   {"ic_spearman_fp32", Num(rep.ic_spearman_fp32)},
                   {"ic_spearman_int8", Num(rep.ic_spearman_int8)},
                   {"ic_pearson_fp32", Num(rep.ic_pearson_fp32)},
                   {"ic_pearson_int8", Num(rep.ic_pearson_int8)}};
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerReport& lr : rep.layers) {
    layers.push_back({{"layer", lr.layer},
                      {"output_sqnr_db", Num(lr.output_sqnr_db)},
                      {"rmse_over_rms", Num(lr.rmse_over_rms)},
                      {"sign_agreement", Num(lr.sign_agreement)},
                      {"weight_sqnr_db", Num(lr.weight_sqnr_db)}});
  }
  j["layers"] = layers;
  j["layers_note"] =
      "per layer: the model output with only that layer INT8 vs FP32 (models::AnalyzeSensitivity"
      "), most sensitive first; weight_sqnr_db: per-channel s8 weights vs FP32";
  if (!sensitivity_error.empty()) j["layers_error"] = sensitivity_error;
  if (!rep.plan.empty()) {
    nlohmann::json plan = nlohmann::json::object();
    for (const auto& [layer, prec] : rep.plan) plan[layer] = prec;
    nlohmann::json search = nlohmann::json::array();
    for (const models::PlanStep& st : rep.plan_search) {
      search.push_back({{"change", st.change},
                        {"rmse_over_rms", Num(st.rmse_over_rms)},
                        {"relative_cost", st.relative_cost}});
    }
    j["mixed_precision"] = {{"mode", o.mixed},
                            {"budget_rmse_over_rms", o.budget},
                            {"budget_met", rep.budget_met},
                            {"plan", plan},
                            {"search", search},
                            {"search_note",
                             "error on up to 2000 calibration windows; cost: MACs weighted 1 "
                             "int8, 2 int8_s16, 4 fp32, relative to all-int8"}};
  }
  rep.json = j.dump(2);
  const std::string report_path =
      o.report_json.empty() ? o.output_path + ".report.json" : o.report_json;
  {
    std::ofstream out(report_path);
    out << rep.json << "\n";
    if (!out) return absl::DataLossError(absl::StrCat(report_path, ": write failed"));
  }

  // The readable table.
  log << absl::StrFormat("quantize: %s (%s, %s, window %d) -> %s\n", rep.model_name,
                         rep.model_format, j["model"]["arch"].get<std::string>(), window,
                         o.output_path);
  log << "  window: " << WindowSource(o.model_path, lm.format, o.import, *lm.spec)
      << "; features: " << t.format << ", " << note << "\n";
  log << absl::StrFormat(
      "  calibration: %s%s on %zu of %zu windows (rows 0..%zu, ts %d..%d); held out: rows "
      "%zu..%zu, %zu windows (%zu labelled)\n",
      absl::StrCat(rep.method, int8.reduce_range ? " + 7-bit weights" : ""),
      rep.per_channel_input ? " + per-channel input" : "", rep.calib_windows_used,
      rep.calib_windows_seen, split - 1, rep.calib_first_ts_ns, rep.calib_last_ts_ns, split,
      t.rows() - 1, rep.eval_windows, rep.labelled_eval_windows);
  if (rep.source_ranges_used > 0) {
    log << absl::StrFormat(
        "  %zu layer input(s) quantized on the ranges the model file carries (QDQ scales or "
        "qsig qat; --no-source-ranges recalibrates them)\n",
        rep.source_ranges_used);
  }
  log << absl::StrFormat("  %-34s %14s %14s\n", "", "FP32", "INT8");
  log << absl::StrFormat("  %-34s %14zu %14zu  (%.1f%%, %s)\n", "weight bytes",
                         rep.fp32_weight_bytes, rep.int8_weight_bytes,
                         100.0 * static_cast<double>(rep.int8_weight_bytes) /
                             static_cast<double>(rep.fp32_weight_bytes),
                         rep.int8_precision);
  log << absl::StrFormat("  %-34s %14.4f %14.4f\n", "IC vs label (Spearman rank)",
                         rep.ic_spearman_fp32, rep.ic_spearman_int8);
  log << absl::StrFormat("  %-34s %14.4f %14.4f\n", "IC vs label (Pearson)", rep.ic_pearson_fp32,
                         rep.ic_pearson_int8);
  log << absl::StrFormat(
      "  INT8 vs FP32 (held out): RMSE %.4g (%s of RMS), max |err| %.4g, sign "
      "agreement %s\n",
      rep.rmse, Pct(rep.rmse_over_rms), rep.max_abs_error, Pct(rep.sign_agreement));
  if (!rep.layers.empty()) {
    log << "  per layer, only that layer INT8 (most sensitive first):\n";
    log << absl::StrFormat("    %-12s %16s %12s %12s %16s\n", "layer", "output SQNR dB", "RMSE/RMS",
                           "sign agree", "weight SQNR dB");
    for (const LayerReport& lr : rep.layers) {
      log << absl::StrFormat("    %-12s %16.1f %12s %12s %16.1f\n", lr.layer, lr.output_sqnr_db,
                             Pct(lr.rmse_over_rms), Pct(lr.sign_agreement), lr.weight_sqnr_db);
    }
  } else if (!sensitivity_error.empty()) {
    log << "  per-layer analysis failed: " << sensitivity_error << "\n";
  }
  if (!rep.plan_search.empty()) {
    log << absl::StrFormat(
        "  mixed precision (--mixed auto, budget %s RMSE/RMS on calibration windows):\n",
        Pct(o.budget));
    for (const models::PlanStep& st : rep.plan_search) {
      log << absl::StrFormat("    %-28s RMSE/RMS %8s  cost %.2fx int8\n", st.change,
                             Pct(st.rmse_over_rms), st.relative_cost);
    }
    std::string plan;
    for (const auto& [layer, prec] : rep.plan) absl::StrAppend(&plan, " ", layer, "=", prec);
    log << "    plan:" << plan << (rep.budget_met ? "" : "  (budget NOT met: every upgrade tried)")
        << "\n";
  }
  log << "  artifact sha256 " << rep.artifact_sha256 << "; report " << report_path << "\n";
  return rep;
}

Command AddQuantizeCommand(CLI::App& app) {
  auto qo = std::make_shared<QuantizeCommandOptions>();
  CLI::App* sub = app.add_subcommand(
      "quantize", "Post-training static quantization with a report; writes a .qsig artifact");
  sub->add_option("--model", qo->model_path, "Model file (.json, .onnx, .pt)")->required();
  sub->add_option("--calib", qo->calib_csv, kFeatureTableHelp)->required();
  AddTableFlags(sub, qo->table);
  sub->add_option("-o,--output", qo->output_path, "Artifact to write (.qsig)")->required();
  sub->add_option("--method", qo->method, "Activation-range method")
      ->check(CLI::IsMember({"minmax", "ema", "percentile", "entropy", "mse"}))
      ->capture_default_str();
  sub->add_option("--percentile", qo->percentile)->capture_default_str();
  sub->add_flag("--per-channel", qo->per_channel,
                "Per-feature input scales folded into the first layer");
  sub->add_option("--report", qo->report_json, "Report JSON (default: OUT.report.json)");
  sub->add_flag("--reduce-range", qo->reduce_range,
                "7-bit weights, for serving on CPUs without VNNI (AVX2)");
  sub->add_flag("--no-source-ranges{false}", qo->source_ranges,
                "Recalibrate the layer-input ranges the model file carries (QDQ / qat)");
  sub->add_option("--mixed", qo->mixed, "auto: choose a mixed-precision plan under --budget")
      ->check(CLI::IsMember({"auto", "off"}))
      ->capture_default_str();
  sub->add_option("--budget", qo->budget, "--mixed auto: max INT8 RMSE / FP32 RMS")
      ->capture_default_str();
  sub->add_option("--window", qo->import.window,
                  "Timesteps of an imported recurrent model whose file does not fix it");
  AddFeatureNamesFlag(sub, qo->import);
  return {sub, [qo] {
            auto r = RunQuantize(*qo);
            return r.ok() ? 0 : Fail("qsig", "quantize", r.status());
          }};
}

}  // namespace qsig::commands
