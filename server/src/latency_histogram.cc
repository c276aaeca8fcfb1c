#include "latency_histogram.h"

#include <algorithm>

namespace qsig::server {

void LatencyHistogram::Snapshot::Add(const Snapshot& o) {
  for (int i = 0; i < kBuckets; ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum_us += o.sum_us;
}

LatencyHistogram::Snapshot LatencyHistogram::Snapshot::Minus(const Snapshot& earlier) const {
  Snapshot d;
  for (int i = 0; i < kBuckets; ++i) d.buckets[i] = buckets[i] - earlier.buckets[i];
  d.count = count - earlier.count;
  d.sum_us = sum_us - earlier.sum_us;
  return d;
}

double LatencyHistogram::Snapshot::QuantileUs(double q) const {
  if (count == 0) return 0;
  const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(count);
  double cumulative = 0;
  for (int i = 0; i < kBuckets; ++i) {
    const double next = cumulative + static_cast<double>(buckets[i]);
    if (next >= rank && buckets[i] > 0) {
      if (i == kBuckets - 1) return kBoundsUs.back();  // +Inf bucket: report the last bound.
      const double lo = i == 0 ? 0.0 : kBoundsUs[i - 1];
      const double hi = kBoundsUs[i];
      return lo + (hi - lo) * (rank - cumulative) / static_cast<double>(buckets[i]);
    }
    cumulative = next;
  }
  return kBoundsUs.back();
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const noexcept {
  Snapshot s;
  for (int i = 0; i < kBuckets; ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum_us = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-3;
  return s;
}

}  // namespace qsig::server
