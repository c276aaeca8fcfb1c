// The one clock that stamps every stage of the tick path.
#pragma once

#include <time.h>

#include <cstdint>

namespace qsig::feeds {

// CLOCK_MONOTONIC in nanoseconds: vDSO, no syscall, no allocation. Stage latencies are
// differences of these values, taken on any thread.
inline int64_t MonotonicNanos() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// CLOCK_REALTIME in nanoseconds since the Unix epoch, for timestamps clients see.
inline int64_t WallNanos() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace qsig::feeds
