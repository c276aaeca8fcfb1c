// Evaluation helpers (internal/eval.h).
#include "internal/eval.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>

namespace qsig::models::io::internal {

std::vector<size_t> Spread(const std::vector<size_t>& v, size_t keep) {
  if (v.size() <= keep) return v;
  std::vector<size_t> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.push_back(v[i * v.size() / keep]);
  return out;
}

std::vector<size_t> FullWindowRows(const FeatureTable& t, int window, size_t begin, size_t end) {
  // Rows seen so far per locate = 1 + that of the previous row of the same locate.
  std::vector<int> depth(t.rows());
  std::vector<size_t> rows;
  for (size_t r = 0; r < t.rows() && r < end; ++r) {
    depth[r] = t.prev[r] < 0 ? 1 : std::min(depth[static_cast<size_t>(t.prev[r])] + 1, window);
    if (r >= begin && depth[r] >= window) rows.push_back(r);
  }
  return rows;
}

std::vector<float> Windows(const FeatureTable& t, const std::vector<int>& cols, int window,
                           const std::vector<size_t>& rows) {
  const size_t per = static_cast<size_t>(window) * cols.size();
  std::vector<float> out(rows.size() * per);
  for (size_t i = 0; i < rows.size(); ++i) {
    internal::WindowAt(t, cols, window, rows[i], out.data() + i * per);
  }
  return out;
}

std::vector<float> RunAll(const Model& m, const std::vector<float>& windows) {
  const size_t per = static_cast<size_t>(m.window()) * m.input_size();
  std::vector<float> ws(m.workspace_floats());
  std::vector<float> out(windows.size() / per);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = m.Run(std::span<const float>(windows.data() + i * per, per), ws.data());
  }
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

}  // namespace qsig::models::io::internal
