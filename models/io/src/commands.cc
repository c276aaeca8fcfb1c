// RunPredict, RunQuantize and RunReplay (commands.h).
#include "qsig/models/io/commands.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "internal/eval.h"
#include "internal/feature_csv.h"
#include "internal/status.h"
#include "nlohmann/json.hpp"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/quant/calibration.h"

namespace qsig::models::io {
namespace {

using internal::FeatureTable;
using internal::FullWindowRows;
using internal::Pearson;
using internal::RunAll;
using internal::Spearman;
using internal::Spread;
using internal::Windows;

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

// Multiply-adds per window of each QuantizableLayers entry.
std::vector<double> LayerMacs(const ModelSpec& s) {
  std::vector<double> macs;
  const double w = s.window;
  for (const LstmLayer& l : s.lstm) {
    macs.push_back(w * 4.0 * l.hidden_size * (l.input_size + l.hidden_size));
  }
  for (const GruLayer& l : s.gru) {
    macs.push_back(w * 3.0 * l.hidden_size * (l.input_size + l.hidden_size));
  }
  for (const LinearLayer& l : s.layers) macs.push_back(static_cast<double>(l.in) * l.out);
  return macs;
}

double PlanCost(const std::vector<Precision>& plan, const std::vector<double>& macs) {
  double c = 0, base = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    c += macs[i] * (plan[i] == Precision::kInt8 ? 1.0 : plan[i] == Precision::kInt8S16 ? 2.0 : 4.0);
    base += macs[i];
  }
  return base > 0 ? c / base : 1.0;
}

// --mixed auto: the plan search described in commands.h. `search` are windows the error is
// measured on (calibration data: the held-out rows stay for the report).
absl::StatusOr<std::vector<Precision>> ChooseMixedPlan(std::shared_ptr<const ModelSpec> spec,
                                                       const std::vector<float>& calib,
                                                       const std::vector<float>& search,
                                                       Int8Options int8, double budget,
                                                       std::vector<PlanStep>* steps, bool* met) {
  const std::vector<std::string> names = QuantizableLayers(*spec);
  const std::vector<double> macs = LayerMacs(*spec);
  const std::vector<float> ref = RunAll(*MakeFp32Model(spec), search);
  auto error_of = [&](const std::vector<Precision>& plan) -> absl::StatusOr<double> {
    Int8Options o = int8;
    o.layers = plan;
    QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, CalibrateInt8Model(spec, calib, o));
    const double e = internal::CompareOutputs(RunAll(*m, search), ref).rmse_over_rms;
    return std::isfinite(e) ? e : 0.0;  // An all-zero FP32 output: nothing to lose.
  };
  // Start: every layer INT8 except, as in the default plan, a small FP32 head.
  std::vector<Precision> plan(names.size(), Precision::kInt8);
  if (int8.fp32_head && spec->layers.back().out <= 16) plan.back() = Precision::kFp32;
  QSIG_ASSIGN_OR_RETURN(double err, error_of(plan));
  steps->push_back({"start", err, PlanCost(plan, macs)});
  QSIG_ASSIGN_OR_RETURN(std::vector<LayerSensitivity> order,
                        AnalyzeSensitivity(spec, calib, search, int8));
  for (Precision next : {Precision::kInt8S16, Precision::kFp32}) {
    for (const LayerSensitivity& ls : order) {
      if (err <= budget) break;
      const size_t i =
          static_cast<size_t>(std::find(names.begin(), names.end(), ls.layer) - names.begin());
      if (i >= plan.size() || plan[i] == Precision::kFp32 || plan[i] == next) continue;
      std::vector<Precision> trial = plan;
      trial[i] = next;
      QSIG_ASSIGN_OR_RETURN(double e, error_of(trial));
      steps->push_back(
          {absl::StrCat(ls.layer, " -> ", PrecisionName(next)), e, PlanCost(trial, macs)});
      if (e < err) {  // Keep an upgrade only if it helps.
        plan = std::move(trial);
        err = e;
      }
    }
  }
  *met = err <= budget;
  return plan;
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

std::string Pct(double x) { return absl::StrFormat("%.2f%%", 100.0 * x); }

nlohmann::json Num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }

double Sign(double x) { return static_cast<double>((x > 0) - (x < 0)); }

// (mean, population std) of v; NaN for fewer than 2 values.
std::pair<double, double> MeanStd(const std::vector<double>& v) {
  if (v.size() < 2) return {NAN, NAN};
  const double n = static_cast<double>(v.size());
  const double m = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / n)};
}

double SharpeOf(const std::vector<double>& pnl) {
  const auto [m, sd] = MeanStd(pnl);
  return sd > 0 ? m / sd : NAN;
}

// Trading metrics of `out` against `label` (same length); `locate` groups rows by instrument
// in file order.
ReplayMetrics Trading(const std::vector<double>& out, const std::vector<double>& label,
                      const std::vector<uint32_t>& locate, int horizon) {
  ReplayMetrics m;
  m.ic_spearman = Spearman(out, label);
  m.ic_pearson = Pearson(out, label);
  size_t hits = 0;
  std::vector<double> pnl(out.size());
  std::map<uint32_t, std::vector<double>> by_locate;
  std::vector<double> non_overlapping;
  std::map<uint32_t, size_t> seen;
  for (size_t i = 0; i < out.size(); ++i) {
    const double so = Sign(out[i]), sl = Sign(label[i]);
    if (so != 0 && sl != 0) {
      ++m.hit_rows;
      hits += so == sl;
    }
    pnl[i] = so * label[i];
    by_locate[locate[i]].push_back(pnl[i]);
    if (horizon > 0 && seen[locate[i]]++ % static_cast<size_t>(horizon) == 0) {
      non_overlapping.push_back(pnl[i]);
    }
  }
  m.hit_rate = m.hit_rows > 0 ? static_cast<double>(hits) / static_cast<double>(m.hit_rows) : NAN;
  std::tie(m.mean_pnl, m.pnl_std) = MeanStd(pnl);
  m.sharpe = m.pnl_std > 0 ? m.mean_pnl / m.pnl_std : NAN;
  double sum = 0;
  for (const auto& [loc, v] : by_locate) {
    const double s = SharpeOf(v);
    if (std::isfinite(s)) {
      sum += s;
      ++m.instruments;
    }
  }
  m.sharpe_per_instrument = m.instruments > 0 ? sum / static_cast<double>(m.instruments) : NAN;
  if (horizon > 0) {
    m.non_overlapping_rows = non_overlapping.size();
    m.sharpe_non_overlapping = SharpeOf(non_overlapping);
  }
  return m;
}

nlohmann::json MetricsJson(const ReplayMetrics& m) {
  nlohmann::json j = {{"ic_spearman", Num(m.ic_spearman)},
                      {"ic_pearson", Num(m.ic_pearson)},
                      {"hit_rate", Num(m.hit_rate)},
                      {"hit_rows", m.hit_rows},
                      {"mean_pnl_bps", Num(m.mean_pnl)},
                      {"pnl_std_bps", Num(m.pnl_std)},
                      {"sharpe_per_row", Num(m.sharpe)},
                      {"sharpe_per_instrument_mean", Num(m.sharpe_per_instrument)},
                      {"instruments", m.instruments}};
  if (m.non_overlapping_rows > 0) {
    j["sharpe_non_overlapping"] = Num(m.sharpe_non_overlapping);
    j["non_overlapping_rows"] = m.non_overlapping_rows;
  }
  return j;
}

}  // namespace

absl::StatusOr<PredictSummary> RunPredict(const PredictCommandOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.precision != "fp32" && o.precision != "int8") {
    return absl::InvalidArgumentError(
        absl::StrCat("--precision is '", o.precision, "'; expected fp32 or int8"));
  }
  if (o.output_csv.empty()) return absl::InvalidArgumentError("-o OUT.csv is required");
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, internal::ReadFeatureCsv(o.input_csv));
  PredictSummary s;
  s.format = lm.format;
  s.rows = t.rows();
  auto cols = internal::MapColumns(*lm.spec, t, &s.column_note);
  if (!cols.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(o.input_csv, ": ", cols.status().message()));
  }
  const int window = lm.spec->window;
  std::unique_ptr<Model> model;
  if (o.precision == "fp32") {
    model = MakeFp32Model(lm.spec);
  } else if (lm.artifact.has_value()) {
    QSIG_ASSIGN_OR_RETURN(model, BuildInt8Model(*lm.artifact));
  } else {
    const std::vector<size_t> rows = FullWindowRows(t, window, 0, std::min(o.calib_rows, t.rows()));
    if (rows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          o.input_csv, ": no complete window of ", window, " rows in the first ", o.calib_rows,
          " rows to calibrate INT8 on; raise --calib-rows or use a .qsig artifact"));
    }
    QSIG_ASSIGN_OR_RETURN(model,
                          CalibrateInt8Model(lm.spec, Windows(t, *cols, window, rows), o.int8));
  }
  s.precision = model->precision();
  std::FILE* out = std::fopen(o.output_csv.c_str(), "w");
  if (out == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(o.output_csv, ": cannot open for writing"));
  }
  std::fputs("locate,msg_seq,exchange_ts_ns,output\n", out);
  const size_t per = static_cast<size_t>(window) * cols->size();
  std::vector<float> x(per), ws(model->workspace_floats());
  for (size_t r = 0; r < t.rows(); ++r) {
    std::fprintf(out, "%" PRIu32 ",%" PRIu64 ",%" PRId64 ",", t.locate[r], t.msg_seq[r],
                 t.exchange_ts_ns[r]);
    if (internal::WindowAt(t, *cols, window, r, x.data())) {
      std::fprintf(out, "%.9g", model->Run(x, ws.data()));
      ++s.outputs;
    }
    std::fputc('\n', out);
  }
  const bool write_ok = std::ferror(out) == 0;
  if (std::fclose(out) != 0 || !write_ok) {
    return absl::DataLossError(absl::StrCat(o.output_csv, ": write failed"));
  }
  log << "predict: " << lm.spec->name << " (" << s.format << ", " << s.precision << ", window "
      << window << ") over " << s.rows << " rows of " << o.input_csv << ": " << s.outputs
      << " outputs, " << s.rows - s.outputs << " rows without a full window -> " << o.output_csv
      << "\n"
      << "  " << s.column_note << "\n";
  return s;
}

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
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, internal::ReadFeatureCsv(o.calib_csv));
  std::string note;
  auto cols = internal::MapColumns(*lm.spec, t, &note);
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
    QSIG_ASSIGN_OR_RETURN(int8.layers, ChooseMixedPlan(lm.spec, calib, search, int8, o.budget,
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
  const internal::OutputError err = internal::CompareOutputs(q, y);
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
    for (const PlanStep& st : rep.plan_search) {
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
    for (const PlanStep& st : rep.plan_search) {
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

absl::StatusOr<ReplayReport> RunReplay(const ReplayCommandOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.horizon_label < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--horizon-label is ", o.horizon_label, "; expected >= 0"));
  }
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, internal::ReadFeatureCsv(o.input_csv));
  std::string note;
  auto cols = internal::MapColumns(*lm.spec, t, &note);
  if (!cols.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(o.input_csv, ": ", cols.status().message()));
  }
  const int window = lm.spec->window;
  ReplayReport rep;
  rep.model_name = lm.spec->name;
  rep.model_format = lm.format;
  rep.rows = t.rows();
  std::unique_ptr<Model> fp32 = MakeFp32Model(lm.spec);
  std::unique_ptr<Model> int8;
  if (lm.artifact.has_value()) {
    QSIG_ASSIGN_OR_RETURN(int8, BuildInt8Model(*lm.artifact));
    rep.int8_source = "artifact";
  } else {
    const size_t end = std::min(o.calib_rows, t.rows());
    const std::vector<size_t> rows = FullWindowRows(t, window, 0, end);
    if (rows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          o.input_csv, ": no complete window of ", window, " rows in the first ", o.calib_rows,
          " rows to calibrate INT8 on; raise --calib-rows or use a .qsig artifact"));
    }
    QSIG_ASSIGN_OR_RETURN(int8,
                          CalibrateInt8Model(lm.spec, Windows(t, *cols, window, rows), o.int8));
    rep.first_scored_row = end;
    rep.int8_source = absl::StrCat("calibrated (", quant::CalibrationMethodName(o.int8.method),
                                   ") on rows 0..", end - 1, " of ", o.input_csv);
  }
  rep.int8_precision = int8->precision();
  const std::vector<size_t> rows = FullWindowRows(t, window, rep.first_scored_row, t.rows());
  if (rows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.input_csv, ": no row with a complete window of ", window, " rows after row ",
                     rep.first_scored_row,
                     " (rows before it calibrate INT8); lower --calib-rows, give more "
                     "rows or use a .qsig artifact"));
  }
  rep.output_rows = rows.size();
  const size_t per = static_cast<size_t>(window) * cols->size();
  std::vector<float> x(per), ws(std::max(fp32->workspace_floats(), int8->workspace_floats()));
  std::vector<double> y_all, q_all;  // Every scored row, for the output-error figures.
  y_all.reserve(rows.size());
  q_all.reserve(rows.size());
  std::vector<double> yf, yq, lab;
  std::vector<uint32_t> loc;
  for (size_t r : rows) {
    internal::WindowAt(t, *cols, window, r, x.data());
    const double y = fp32->Run(x, ws.data());
    const double q = int8->Run(x, ws.data());
    y_all.push_back(y);
    q_all.push_back(q);
    if (std::isfinite(t.labels[r])) {
      yf.push_back(y);
      yq.push_back(q);
      lab.push_back(t.labels[r]);
      loc.push_back(t.locate[r]);
    }
  }
  const internal::OutputError err = internal::CompareOutputs(q_all, y_all);
  rep.rmse = err.rmse;
  rep.rmse_over_rms = err.rmse_over_rms;
  rep.max_abs_error = err.max_abs;
  rep.sign_agreement = err.sign_agreement;
  rep.labelled_rows = lab.size();
  rep.fp32 = Trading(yf, lab, loc, o.horizon_label);
  rep.int8 = Trading(yq, lab, loc, o.horizon_label);

  nlohmann::json j;
  j["model"] = {{"name", rep.model_name},
                {"path", o.model_path},
                {"format", rep.model_format},
                {"window", window},
                {"input_size", lm.spec->input_size}};
  j["input"] = {{"path", o.input_csv},
                {"rows", rep.rows},
                {"first_scored_row", rep.first_scored_row},
                {"output_rows", rep.output_rows},
                {"labelled_rows", rep.labelled_rows},
                {"columns", note}};
  j["int8"] = {{"source", rep.int8_source}, {"precision", rep.int8_precision}};
  j["int8_vs_fp32"] = {{"rmse", Num(rep.rmse)},
                       {"rmse_over_rms", Num(rep.rmse_over_rms)},
                       {"max_abs_error", Num(rep.max_abs_error)},
                       {"sign_agreement", Num(rep.sign_agreement)}};
  j["fp32"] = MetricsJson(rep.fp32);
  j["int8_metrics"] = MetricsJson(rep.int8);
  j["horizon_label"] = o.horizon_label;
  j["definitions"] =
      "pnl per row = sign(output) * label (bps); sharpe = mean / population std of per-row pnl, "
      "not annualized; hit_rate over rows with non-zero output and label; "
      "sharpe_non_overlapping: every horizon_label-th scored row of each instrument";
  rep.json = j.dump(2);
  if (!o.report_json.empty()) {
    std::ofstream out(o.report_json);
    out << rep.json << "\n";
    if (!out) return absl::DataLossError(absl::StrCat(o.report_json, ": write failed"));
  }

  log << absl::StrFormat("replay: %s (%s, window %d) over %s\n", rep.model_name, rep.model_format,
                         window, o.input_csv);
  log << absl::StrFormat("  INT8 (%s): %s\n", rep.int8_precision, rep.int8_source);
  log << absl::StrFormat("  scored rows %zu..%zu: %zu with a full window, %zu labelled\n",
                         rep.first_scored_row, rep.rows - 1, rep.output_rows, rep.labelled_rows);
  log << absl::StrFormat(
      "  INT8 vs FP32: RMSE %.4g (%s of RMS), max |err| %.4g, sign agreement %s\n", rep.rmse,
      Pct(rep.rmse_over_rms), rep.max_abs_error, Pct(rep.sign_agreement));
  log << absl::StrFormat("  %-38s %12s %12s\n", "", "FP32", "INT8");
  auto row = [&log](const char* name, double a, double b) {
    log << absl::StrFormat("  %-38s %12.4f %12.4f\n", name, a, b);
  };
  row("IC vs label (Spearman rank)", rep.fp32.ic_spearman, rep.int8.ic_spearman);
  row("IC vs label (Pearson)", rep.fp32.ic_pearson, rep.int8.ic_pearson);
  log << absl::StrFormat("  %-38s %12s %12s\n", "hit rate (sign(output) == sign(label))",
                         Pct(rep.fp32.hit_rate), Pct(rep.int8.hit_rate));
  row("sign strategy: mean pnl per row (bps)", rep.fp32.mean_pnl, rep.int8.mean_pnl);
  row("sign strategy: pnl std per row (bps)", rep.fp32.pnl_std, rep.int8.pnl_std);
  row("sign strategy: Sharpe per row", rep.fp32.sharpe, rep.int8.sharpe);
  row("  per instrument, averaged", rep.fp32.sharpe_per_instrument, rep.int8.sharpe_per_instrument);
  if (o.horizon_label > 0) {
    row(absl::StrFormat("  non-overlapping (every %d-th row)", o.horizon_label).c_str(),
        rep.fp32.sharpe_non_overlapping, rep.int8.sharpe_non_overlapping);
  }
  if (!o.report_json.empty()) log << "  report " << o.report_json << "\n";
  return rep;
}

absl::StatusOr<InspectReport> RunInspect(const InspectOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  const ModelSpec& s = *lm.spec;
  InspectReport rep;
  rep.format = lm.format;
  rep.artifact = lm.artifact.has_value();
  const std::vector<std::string> names = QuantizableLayers(s);
  nlohmann::json j;
  const char* arch = ArchName(s.arch);
  std::vector<std::string> shape;
  for (const LstmLayer& l : s.lstm) shape.push_back(absl::StrCat("LSTM(", l.hidden_size, ")"));
  for (const GruLayer& l : s.gru) shape.push_back(absl::StrCat("GRU(", l.hidden_size, ")"));
  for (const LinearLayer& l : s.layers) {
    shape.push_back(absl::StrCat(
        "Linear(", l.in, "->", l.out,
        l.activation == Activation::kNone ? "" : absl::StrCat(", ", ActivationName(l.activation)),
        ")"));
  }
  bool normalized = false;
  for (float m : s.feature_mean) normalized = normalized || m != 0.0f;
  for (float v : s.feature_std) normalized = normalized || (v != 0.0f && v != 1.0f);
  nlohmann::json ranges = nlohmann::json::object();
  for (size_t i = 0; i < s.input_ranges.size() && i < names.size(); ++i) {
    if (s.input_ranges[i].set) ranges[names[i]] = {s.input_ranges[i].min, s.input_ranges[i].max};
  }
  j["model"] = {{"path", o.model_path},
                {"format", lm.format},
                {"name", s.name},
                {"arch", arch},
                {"layers", shape},
                {"input_size", s.input_size},
                {"window", s.window},
                {"feature_names", s.feature_names},
                {"normalized", normalized},
                {"input_ranges", ranges},
                {"source_sha256", s.sha256},
                {"fp32_weight_bytes", MakeFp32Model(lm.spec)->weight_bytes()}};
  if (lm.artifact) {
    const Artifact& a = *lm.artifact;
    const Int8Options& io = a.calibration.options;
    nlohmann::json plan = nlohmann::json::object();
    for (size_t i = 0; i < io.layers.size() && i < names.size(); ++i) {
      plan[names[i]] = PrecisionName(io.layers[i]);
    }
    nlohmann::json act = nlohmann::json::array();
    for (const ActivationRange& r : a.activation_ranges) {
      act.push_back({{"tensor", r.tensor},
                     {"min", r.min},
                     {"max", r.max},
                     {"scale", r.params.scale},
                     {"zero_point", r.params.zero_point}});
    }
    const size_t per = static_cast<size_t>(s.window) * s.input_size;
    j["artifact"] = {{"format_version", a.format_version}, {"content_sha256", a.content_sha256},
                     {"qsig_build", a.qsig_build},         {"created_unix_s", a.created_unix_s},
                     {"source_path", a.source_path},       {"source_format", a.source_format}};
    j["calibration"] = {{"method", quant::CalibrationMethodName(io.method)},
                        {"percentile", io.percentile},
                        {"s16_input", io.s16_input},
                        {"fp32_head", io.fp32_head},
                        {"per_feature_input", io.per_feature_input},
                        {"use_source_ranges", io.use_source_ranges},
                        {"reduce_range", io.reduce_range},
                        {"max_rmse", io.max_rmse},
                        {"cell_state", io.cell_state == CellState::kS16 ? "s16" : "fp32"},
                        {"plan", plan.empty() ? nlohmann::json("default") : plan},
                        {"windows_stored", per ? a.calibration.windows.size() / per : 0},
                        {"windows_seen", a.calibration.windows_seen},
                        {"first_ts_ns", a.calibration.first_ts_ns},
                        {"last_ts_ns", a.calibration.last_ts_ns},
                        {"source", a.calibration.source},
                        {"reference_outputs", a.calibration.reference_outputs.size()},
                        {"kernel_isa", a.calibration.kernel_isa}};
    j["activation_ranges"] = act;
    auto built = BuildInt8Model(a);
    rep.verified = built.ok();
    rep.verify_message =
        built.ok()
            ? absl::StrCat("rebuilds the validated INT8 runtime (", (*built)->precision(), ", ",
                           (*built)->weight_bytes(), " weight bytes, kernels ", KernelIsa(), ")")
            : std::string(built.status().message());
    j["verification"] = {{"verified", rep.verified}, {"message", rep.verify_message}};
  }
  rep.json = j.dump(2);
  if (o.json) {
    log << rep.json << "\n";
    return rep;
  }
  log << absl::StrFormat("%s: %s model '%s' (%s)\n", o.model_path, lm.format, s.name, arch);
  log << "  layers      " << absl::StrJoin(shape, " -> ") << "\n";
  log << absl::StrFormat("  input       %d features x window %d%s\n", s.input_size, s.window,
                         normalized ? ", normalized" : "");
  log << "  features    " << absl::StrJoin(s.feature_names, ",") << "\n";
  log << "  source hash " << s.sha256 << "\n";
  if (!ranges.empty()) log << "  input ranges carried by the file: " << ranges.dump() << "\n";
  if (lm.artifact) {
    const Artifact& a = *lm.artifact;
    const auto& c = j["calibration"];
    log << absl::StrFormat("  artifact    format v%u, sha256 %s, built by qsig %s\n",
                           a.format_version, a.content_sha256, a.qsig_build);
    log << absl::StrFormat("  from        %s (%s)\n", a.source_path, a.source_format);
    log << absl::StrFormat(
        "  calibration %s on %zu stored of %llu windows from %s, ts %lld..%lld, reference on %s\n",
        c["method"].get<std::string>(), c["windows_stored"].get<size_t>(),
        static_cast<unsigned long long>(a.calibration.windows_seen),
        a.calibration.source.empty() ? "?" : a.calibration.source,
        static_cast<long long>(a.calibration.first_ts_ns),
        static_cast<long long>(a.calibration.last_ts_ns), a.calibration.kernel_isa);
    log << "  plan        " << c["plan"].dump() << "\n";
    log << "  " << (rep.verified ? "verified    " : "NOT VERIFIED ") << rep.verify_message << "\n";
  }
  return rep;
}

}  // namespace qsig::models::io
