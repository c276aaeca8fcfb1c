// The default feature set, computed from one instrument's book after each update.
//
// Definitions live in feeds/README.md. Per-instrument state is a fixed ring of log mids and two
// EWMAs; nothing allocates. Not thread-safe: owned by the feed thread.
#pragma once

#include <cstdint>

#include "internal/order_book.h"

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

}  // namespace qsig::feeds::internal
