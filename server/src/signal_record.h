// The signal as it travels inside the server: a fixed-size record that workers publish into
// the latest table (seqlock) and the publisher's SPSC queues. Converted to the protobuf
// qsig.v1.Signal only in the gRPC threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace qsig::server {

// Mirrors qsig.v1.Flag.
enum SignalFlags : uint32_t {
  kSignalStale = 1,
  kSignalShadowDiverged = 2,
  kSignalWarmup = 4,
  kSignalInvalid = 8,
  kSignalHalted = 32,         // The instrument's last trading action halted or paused trading.
  kSignalBookSuspect = 64,    // The instrument's book failed a sanity check (feeds).
  kSignalInputClipped = 128,  // Predict: INT8 inputs were outside the quantized range.
  kSignalFallback = 256,      // INT8 diverged: the FP32 model serves (shadow.fallback_*).
};

struct SignalRecord {
  uint16_t locate = 0;
  uint16_t model = 0;  // Index into the configured models.
  uint32_t flags = 0;
  uint64_t sequence = 0;  // Per (instrument, model), from 1.
  double value = 0;
  double mid_price = 0;
  int64_t exchange_ts_ns = 0;
  int64_t publish_wall_ns = 0;
  int64_t tick_to_signal_ns = 0;
  uint64_t model_version = 0;
  uint64_t feed_sequence = 0;
};
static_assert(std::is_trivially_copyable_v<SignalRecord>);
static_assert(sizeof(SignalRecord) % sizeof(uint64_t) == 0);

// One slot of the latest-signal table: a seqlock with a single writer (the worker that owns the
// instrument) and any number of readers (GetLatest). The payload is stored as relaxed atomic
// words so concurrent reads are not data races; a reader retries if the version moved.
class LatestSlot {
 public:
  void Store(const SignalRecord& r) noexcept {
    uint64_t words[kWords];
    std::memcpy(words, &r, sizeof(r));
    const uint64_t v = version_.load(std::memory_order_relaxed);
    version_.store(v + 1, std::memory_order_relaxed);  // Odd: write in progress.
    std::atomic_thread_fence(std::memory_order_release);
    for (int i = 0; i < kWords; ++i) words_[i].store(words[i], std::memory_order_relaxed);
    version_.store(v + 2, std::memory_order_release);
  }

  // Returns false if nothing was ever stored.
  bool Load(SignalRecord* out) const noexcept {
    uint64_t words[kWords];
    for (;;) {
      const uint64_t v1 = version_.load(std::memory_order_acquire);
      if (v1 == 0) return false;
      if (v1 & 1) continue;
      for (int i = 0; i < kWords; ++i) words[i] = words_[i].load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (version_.load(std::memory_order_relaxed) == v1) break;
    }
    std::memcpy(out, words, sizeof(*out));
    return true;
  }

 private:
  static constexpr int kWords = sizeof(SignalRecord) / sizeof(uint64_t);
  std::atomic<uint64_t> version_{0};
  std::atomic<uint64_t> words_[kWords] = {};
};

}  // namespace qsig::server
