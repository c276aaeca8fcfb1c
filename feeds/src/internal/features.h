// The default feature set, computed from one instrument's book after each update.
//
// Definitions live in feeds/README.md. Per-instrument state is a fixed ring of log mids and two
// EWMAs; nothing allocates. Not thread-safe: owned by the feed thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "internal/order_book.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/feeds/features.h"

namespace qsig::feeds::internal {

enum FeatureIndex : int {
  kRet1 = 0,
  kRet10,
  kRet50,
  kSpreadBps,
  kImbalanceL1,
  kImbalanceL5,
  kTradeFlow,
  kMicropriceDevBps,
  kNumDefaultFeatures,
};

inline constexpr double kTradeFlowAlpha = 0.05;
inline constexpr int kImbalanceLevels = 5;

struct FeatureState {
  // Power of two > 50 so the longest return (50 updates back) is always in the ring.
  static constexpr uint32_t kHistory = 64;
  double log_mid[kHistory] = {};
  uint64_t updates = 0;      // Mids pushed (book updates with both sides present).
  double flow_signed = 0.0;  // EWMA of signed executed volume (+ = buy aggressor).
  double flow_total = 0.0;   // EWMA of executed volume.

  // One execution or trade; `aggressor_buy` is true when a resting sell order was hit.
  void OnTrade(uint32_t shares, bool aggressor_buy) noexcept {
    const double v = shares;
    flow_signed += kTradeFlowAlpha * ((aggressor_buy ? v : -v) - flow_signed);
    flow_total += kTradeFlowAlpha * (v - flow_total);
  }
};

// Writes kNumDefaultFeatures values to `out` and the mid (dollars) to *mid. Requires both sides
// non-empty. Returns true if any value was non-finite (it is replaced by 0).
bool ComputeFeatures(const BookSide& bids, const BookSide& asks, FeatureState& state, float* out,
                     double* mid) noexcept;

// ---- The feature library (FeatureSpec -> compiled set) ----

enum class FeatureKind : uint8_t {
  kInvalid,  // Constant 0 (an entry that failed validation).
  kRet,
  kMicroRet,
  kSpreadBps,
  kImbalance,
  kBookPressure,
  kTradeFlow,
  kMicropriceDevBps,
  kRealizedVol,
  kTimeSinceTradeMs,
  kArrivalRate,
  kLogDepth,
};

struct CompiledFeature {
  FeatureKind kind = FeatureKind::kInvalid;
  int n = 0;       // Horizon (updates) or levels.
  double x = 0.0;  // alpha, decay, cap (ms) or half-life (ns).
  int slot = -1;   // Per-instrument state slot (trade_flow, arrival_rate).
};

// Per-instrument state for any feature set: plain data, so saving and restoring it around an
// optimistic gap (feed_processor.cc) is a copy.
struct EngineState {
  static constexpr uint32_t kHistory = 256;  // Longest horizon + 1, power of two.
  double log_mid[kHistory];
  double log_micro[kHistory];
  uint64_t updates = 0;
  int64_t last_trade_ns = -1;   // Exchange time of the last trade (-1: none yet).
  double slot_a[kMaxFeatures];  // trade_flow: signed EWMA; arrival_rate: rate (1/s).
  double slot_b[kMaxFeatures];  // trade_flow: total EWMA;  arrival_rate: time of last add.
};

class FeatureEngine {
 public:
  // Invalid entries become kInvalid (constant 0); FeatureNames() reports why.
  explicit FeatureEngine(const std::vector<FeatureSpec>& specs);

  int size() const noexcept { return static_cast<int>(features_.size()); }
  const std::vector<std::string>& names() const noexcept { return names_; }
  void Reset(EngineState& s) const noexcept;

  void OnTrade(EngineState& s, uint32_t shares, bool aggressor_buy, int64_t ts) const noexcept;
  void OnTradeNoFlow(EngineState& s, int64_t ts) const noexcept { s.last_trade_ns = ts; }
  void OnAdd(EngineState& s, int64_t ts) const noexcept;
  // Requires both sides non-empty. Writes size() values (non-finite -> 0) and the mid; returns
  // true if a value was not finite.
  bool Compute(EngineState& s, const BookSide& bids, const BookSide& asks, int64_t ts, float* out,
               double* mid) const noexcept;

 private:
  std::vector<CompiledFeature> features_;
  std::vector<std::string> names_;
  bool need_micro_ = false;
  bool has_flow_ = false;
  bool has_arrival_ = false;
};

}  // namespace qsig::feeds::internal
