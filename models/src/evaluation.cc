// The evaluation unit (qsig/models/evaluation.h).
#include "qsig/models/evaluation.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>
#include <utility>

namespace qsig::models {
namespace {

template <class T>
OutputError Compare(std::span<const T> got, std::span<const T> ref) {
  OutputError e;
  double se = 0, ss = 0;
  size_t agree = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    const double d = g - r;
    se += d * d;
    ss += r * r;
    e.max_abs = std::max(e.max_abs, std::fabs(d));
    agree += SignsAgree(g, r);
  }
  if (got.empty()) return e;
  const double n = static_cast<double>(got.size());
  e.rmse = std::sqrt(se / n);
  e.rms = std::sqrt(ss / n);
  e.rmse_over_rms = ss > 0 ? std::sqrt(se / ss) : NAN;
  e.sign_agreement = static_cast<double>(agree) / n;
  return e;
}

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

}  // namespace

OutputError CompareOutputs(std::span<const double> got, std::span<const double> ref) {
  return Compare(got, ref);
}
OutputError CompareOutputs(std::span<const float> got, std::span<const float> ref) {
  return Compare(got, ref);
}

std::vector<float> RunAll(const Model& m, std::span<const float> windows) {
  const size_t per = static_cast<size_t>(m.window()) * m.input_size();
  std::vector<float> ws(m.workspace_floats());
  std::vector<float> out(windows.size() / per);
  for (size_t i = 0; i < out.size(); ++i) out[i] = m.Run(windows.subspan(i * per, per), ws.data());
  return out;
}

double Pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  if (n < 2) return NAN;
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / static_cast<double>(n);
  const double mb = std::accumulate(b.begin(), b.end(), 0.0) / static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&v](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

double Spearman(const std::vector<double>& a, const std::vector<double>& b) {
  return Pearson(Ranks(a), Ranks(b));
}

TradingMetrics ComputeTradingMetrics(const std::vector<double>& out,
                                     const std::vector<double>& label,
                                     const std::vector<uint32_t>& locate, int horizon) {
  TradingMetrics m;
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

}  // namespace qsig::models
