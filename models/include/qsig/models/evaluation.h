// How a model's outputs are judged, defined once: against a reference model's outputs (INT8 vs
// FP32: RMSE, max error, sign agreement) and against labels (information coefficient, hit rate,
// the Sharpe ratio of a sign strategy). Used by the server's calibration validation gate, the
// quantize report, `qsig backtest`, the mixed-precision plan search and QAT's report.
// Thread-safety: pure functions, reentrant.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "qsig/models/model.h"

namespace qsig::models {

// Sign agreement, the one definition: two outputs agree when both are positive or both are not
// (a zero output counts as "not positive": a sign strategy takes no long position on it).
inline bool SignsAgree(double got, double ref) noexcept { return (got > 0) == (ref > 0); }

// Outputs `got` (e.g. INT8) against reference outputs `ref` (FP32) of the same length.
struct OutputError {
  double rmse = 0;
  double rms = 0;              // RMS of ref.
  double rmse_over_rms = NAN;  // RMSE / RMS of ref; NaN when ref is all 0.
  double max_abs = 0;
  double sign_agreement = NAN;  // Fraction of pairs that SignsAgree; NaN when empty.
};
OutputError CompareOutputs(std::span<const double> got, std::span<const double> ref);
OutputError CompareOutputs(std::span<const float> got, std::span<const float> ref);

// m.Run() over each window of `windows` (contiguous, window() x input_size() floats each).
std::vector<float> RunAll(const Model& m, std::span<const float> windows);

// Pearson correlation; NaN for fewer than 2 values or zero variance.
double Pearson(const std::vector<double>& a, const std::vector<double>& b);
// Ranks 1..n; ties get their average rank.
std::vector<double> Ranks(const std::vector<double>& v);
// Spearman rank correlation: Pearson of the ranks.
double Spearman(const std::vector<double>& a, const std::vector<double>& b);

// Trading metrics of a model's outputs against labels (forward returns in bps). NaN where
// undefined (e.g. fewer than two rows, or zero variance).
struct TradingMetrics {
  double ic_spearman = 0;  // Rank correlation of output and label.
  double ic_pearson = 0;
  // Fraction of rows with sign(output) == sign(label), over rows where both are non-zero.
  double hit_rate = 0;
  size_t hit_rows = 0;  // Rows the hit rate is over.
  // pnl_i = sign(output_i) * label_i (sign(0) = 0), in label units (bps).
  double mean_pnl = 0;
  double pnl_std = 0;  // Population standard deviation (divides by n).
  double sharpe = 0;   // mean_pnl / pnl_std, per row, not annualized.
  // Mean over instruments (locates with >= 2 rows and pnl_std > 0) of each one's Sharpe.
  double sharpe_per_instrument = 0;
  size_t instruments = 0;
  // horizon > 0: the Sharpe over every horizon-th row of each instrument (labels that are
  // forward returns over `horizon` updates overlap otherwise).
  double sharpe_non_overlapping = NAN;
  size_t non_overlapping_rows = 0;
};

// `output`, `label` and `locate` have one entry per row, in time order; `locate` groups the rows
// by instrument.
TradingMetrics ComputeTradingMetrics(const std::vector<double>& output,
                                     const std::vector<double>& label,
                                     const std::vector<uint32_t>& locate, int horizon);

}  // namespace qsig::models
