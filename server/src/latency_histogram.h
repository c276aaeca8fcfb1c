// Lock-free latency histogram for the tick path.
//
// prometheus-cpp's Histogram::Observe takes a mutex, so the tick path records here instead:
// each histogram has one writer (the thread that owns the stage), which records with a relaxed
// load and store per word (no read-modify-write, no lock, no allocation). The exporter reads the
// buckets at scrape time and converts them to a Prometheus histogram. Bucket bounds are in
// microseconds, chosen fine enough that quantiles interpolated inside a bucket (as
// histogram_quantile does) are useful for a microsecond-scale pipeline.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace qsig::server {

class LatencyHistogram {
 public:
  // Upper bounds in microseconds; an implicit +Inf bucket follows.
  static constexpr std::array<double, 30> kBoundsUs = {
      0.5, 1,  1.5, 2,  3,   4,   5,   6,   8,   10,   12,   15,   20,    25,    30,
      40,  50, 60,  80, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000, 50000, 100000};
  static constexpr int kBuckets = static_cast<int>(kBoundsUs.size()) + 1;

  // Thread-safety: one thread records; any number of threads may Take() concurrently (a
  // snapshot may see a bucket before the matching sum, never a torn word). A histogram that
  // several threads must write needs one per writer, summed at scrape time.
  void Record(int64_t nanos) noexcept {
    if (nanos < 0) nanos = 0;
    std::atomic<uint64_t>& b = buckets_[BucketFor(nanos)];
    b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + static_cast<uint64_t>(nanos),
                  std::memory_order_relaxed);
  }

  struct Snapshot {
    std::array<uint64_t, kBuckets> buckets{};  // Per bucket, not cumulative.
    uint64_t count = 0;
    double sum_us = 0;
    void Add(const Snapshot& o);
    Snapshot Minus(const Snapshot& earlier) const;
    // Quantile in microseconds, interpolated linearly inside the bucket (0 if empty).
    double QuantileUs(double q) const;
  };
  Snapshot Take() const noexcept;

  static int BucketFor(int64_t nanos) noexcept {
    // Linear scan over 30 bounds beats a binary search at this size and is branch-predictable
    // for the common (small) values.
    const double us = static_cast<double>(nanos) * 1e-3;
    int i = 0;
    while (i < kBuckets - 1 && us > kBoundsUs[i]) ++i;
    return i;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace qsig::server
