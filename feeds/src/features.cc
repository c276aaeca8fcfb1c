#include "internal/features.h"

#include <cmath>
#include <string>
#include <vector>

#include "internal/itch.h"
#include "qsig/feeds/feed.h"

namespace qsig::feeds {

const std::vector<std::string>& DefaultFeatureNames() {
  static const std::vector<std::string> kNames = {
      "ret_1",        "ret_10",       "ret_50",     "spread_bps",
      "imbalance_l1", "imbalance_l5", "trade_flow", "microprice_dev_bps",
  };
  return kNames;
}

namespace internal {

bool ComputeFeatures(const BookSide& bids, const BookSide& asks, FeatureState& state, float* out,
                     double* mid_out) noexcept {
  const double bid = bids.price(0) / itch::kPriceScale;
  const double ask = asks.price(0) / itch::kPriceScale;
  const double bid_sz1 = static_cast<double>(bids.shares(0));
  const double ask_sz1 = static_cast<double>(asks.shares(0));
  const double mid = 0.5 * (bid + ask);
  *mid_out = mid;

  // Returns are differences of log mids kept in a ring: one log per update, not three.
  constexpr uint32_t kMask = FeatureState::kHistory - 1;
  const double log_mid = std::log(mid);
  const uint64_t n = state.updates;  // Mids before this one.
  state.log_mid[n & kMask] = log_mid;
  state.updates = n + 1;
  auto ret = [&](uint64_t k) {
    return n >= k ? (log_mid - state.log_mid[(n - k) & kMask]) * 1e4 : 0.0;
  };

  double bid_sz5 = 0.0;
  double ask_sz5 = 0.0;
  const int bid_levels = bids.depth() < kImbalanceLevels ? bids.depth() : kImbalanceLevels;
  const int ask_levels = asks.depth() < kImbalanceLevels ? asks.depth() : kImbalanceLevels;
  for (int i = 0; i < bid_levels; ++i) bid_sz5 += static_cast<double>(bids.shares(i));
  for (int i = 0; i < ask_levels; ++i) ask_sz5 += static_cast<double>(asks.shares(i));

  const double microprice = (bid * ask_sz1 + ask * bid_sz1) / (bid_sz1 + ask_sz1);

  double v[kNumDefaultFeatures];
  v[kRet1] = ret(1);
  v[kRet10] = ret(10);
  v[kRet50] = ret(50);
  v[kSpreadBps] = (ask - bid) / mid * 1e4;
  v[kImbalanceL1] = (bid_sz1 - ask_sz1) / (bid_sz1 + ask_sz1);
  v[kImbalanceL5] = (bid_sz5 - ask_sz5) / (bid_sz5 + ask_sz5);
  // No trade yet: no flow, rather than 0/0.
  v[kTradeFlow] = state.flow_total > 0.0 ? state.flow_signed / state.flow_total : 0.0;
  v[kMicropriceDevBps] = (microprice - mid) / mid * 1e4;

  bool non_finite = false;
  for (int i = 0; i < kNumDefaultFeatures; ++i) {
    const bool ok = std::isfinite(v[i]);
    non_finite |= !ok;
    out[i] = ok ? static_cast<float>(v[i]) : 0.0f;
  }
  return non_finite;
}

}  // namespace internal
}  // namespace qsig::feeds
