// The unit of work on the tick path: one feature vector per book update.
//
// Produced by the feed handler (feeds/), carried through lock-free SPSC queues to the workers
// (server/), consumed by the models. Fixed size and trivially copyable, so a queue slot is a
// plain copy and nothing on the tick path allocates.
#pragma once

#include <cstdint>
#include <type_traits>

namespace qsig::feeds {

// Upper bound on the number of features a vector can carry. Feature sets are smaller.
inline constexpr int kMaxFeatures = 16;

// FeatureVector::flags bits.
enum FeatureFlags : uint32_t {
  kFeatureFlagNone = 0,
  // The instrument's book may be wrong (a sequence gap is open or was never recovered).
  kFeatureFlagStale = 1u << 0,
  // At least one feature was not finite (NaN/Inf) and was replaced by 0.
  kFeatureFlagNonFinite = 1u << 1,
  // The instrument is not trading (halted, paused or quotation only, from a Trading Action).
  kFeatureFlagHalted = 1u << 2,
  // The instrument's book fails a sanity check: crossed (best bid >= best ask), a resting order
  // priced 0 or beyond the configured bound, or an order dropped because a table was full.
  // Clears once the book is consistent again.
  kFeatureFlagBookSuspect = 1u << 3,
};

struct alignas(64) FeatureVector {
  uint16_t locate = 0;         // ITCH stock locate code of the instrument.
  uint16_t n_features = 0;     // Number of valid entries in values.
  uint32_t flags = 0;          // FeatureFlags.
  uint64_t msg_seq = 0;        // MoldUDP64 sequence number of the message that caused the update.
  int64_t exchange_ts_ns = 0;  // ITCH timestamp: nanoseconds since midnight.
  // Stage timestamps on the monotonic clock (qsig::feeds::MonotonicNanos()). recv_ns is the
  // kernel's receive stamp where the socket has one (converted from CLOCK_REALTIME once, at
  // receive), so time spent queued in the socket is inside every latency measured from it.
  int64_t recv_ns = 0;      // Datagram received.
  int64_t decoded_ns = 0;   // Message decoded and book updated.
  int64_t features_ns = 0;  // Feature vector computed.
  double mid_price = 0.0;   // Mid price after the update (dollars), for labels and display.
  // The same receive instant on CLOCK_REALTIME (0 = unknown): a later wall time is
  // recv_wall_ns + (monotonic now - recv_ns), with no second clock read.
  int64_t recv_wall_ns = 0;
  float values[kMaxFeatures] = {};
};
static_assert(std::is_trivially_copyable_v<FeatureVector>);

}  // namespace qsig::feeds
