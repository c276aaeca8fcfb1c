// ChooseMixedPlan (model.h): the mixed-precision plan search, beside AnalyzeSensitivity.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/model.h"
#include "qsig/models/status_macros.h"

namespace qsig::models {
namespace {

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

}  // namespace

absl::StatusOr<std::vector<Precision>> ChooseMixedPlan(std::shared_ptr<const ModelSpec> spec,
                                                       std::span<const float> calib,
                                                       std::span<const float> search,
                                                       const Int8Options& int8, double budget,
                                                       std::vector<PlanStep>* steps, bool* met) {
  const std::vector<std::string> names = QuantizableLayers(*spec);
  const std::vector<double> macs = LayerMacs(*spec);
  const std::vector<float> ref = RunAll(*MakeFp32Model(spec), search);
  auto error_of = [&](const std::vector<Precision>& plan) -> absl::StatusOr<double> {
    Int8Options o = int8;
    o.layers = plan;
    QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, CalibrateInt8Model(spec, calib, o));
    const std::vector<float> got = RunAll(*m, search);
    const double e = CompareOutputs(std::span<const float>(got), ref).rmse_over_rms;
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

}  // namespace qsig::models
