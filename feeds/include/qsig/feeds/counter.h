// The single-writer counter idiom (used by feeds and server: feed, pipeline and bus statistics):
// one thread writes a statistic, any reads.
//
// Bump() is a relaxed load + store rather than fetch_add: with a single writer no update can be
// lost, and it avoids the locked read-modify-write on the hot path. Readers load() with any
// order and see a value the writer stored (monotonic, possibly a little stale).
// Thread-safety: exactly one thread may Bump a given counter; any thread may read it.
#pragma once

#include <atomic>
#include <cstdint>

namespace qsig::feeds {

// Adds `n` to a counter only the calling thread writes.
inline void Bump(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace qsig::feeds
