// Default features on hand-built books: exact values, returns history, non-finite handling.
#include <cmath>
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {
namespace {

using testing::Bytes;
using testing::Encoder;
using testing::Feeder;
using testing::Msg;
using testing::Px;

FeedProcessorOptions Options() {
  FeedProcessorOptions o;
  o.max_instruments = 4;
  o.max_orders = 1024;
  o.max_levels = 256;
  return o;
}

Bytes Add(uint64_t ref, char side, uint32_t shares, double px) {
  return Msg(
      [&](uint8_t* p) { return Encoder::AddOrder(p, 1, 1, ref, side, shares, "TEST", Px(px)); });
}

TEST(FeedFeaturesTest, NamesMatchTheVectorLayout) {
  const std::vector<std::string> expected = {
      "ret_1",        "ret_10",       "ret_50",     "spread_bps",
      "imbalance_l1", "imbalance_l5", "trade_flow", "microprice_dev_bps"};
  EXPECT_EQ(DefaultFeatureNames(), expected);
  EXPECT_EQ(static_cast<int>(expected.size()), internal::kNumDefaultFeatures);
}

TEST(FeedFeaturesTest, HandBuiltBookGivesExactValues) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  // Bids: 100.00x300 99.99x200 99.98x100 99.97x100 99.96x100, and a 6th level outside L5.
  // Asks: 100.02x100 100.03x400 100.04x100 100.05x100 100.06x200, and a 6th level.
  uint64_t ref = 1;
  f.Send({Add(ref++, 'B', 1000, 99.95), Add(ref++, 'S', 5000, 100.07)});
  const double bid_px[] = {100.00, 99.99, 99.98, 99.97, 99.96};
  const double ask_px[] = {100.02, 100.03, 100.04, 100.05, 100.06};
  const uint32_t bid_sz[] = {300, 200, 100, 100, 100};
  const uint32_t ask_sz[] = {100, 400, 100, 100, 200};
  for (int i = 4; i >= 0; --i) {
    f.Send(Add(ref++, 'B', bid_sz[i] - 50, bid_px[i]));
    f.Send(Add(ref++, 'B', 50, bid_px[i]));  // Two orders aggregate into one level.
    f.Send(Add(ref++, 'S', ask_sz[i], ask_px[i]));
  }
  const FeatureVector& fv = f.sink.vectors.back();
  const double bid = 100.00, ask = 100.02, mid = (bid + ask) / 2;
  EXPECT_DOUBLE_EQ(fv.mid_price, mid);
  EXPECT_FLOAT_EQ(fv.values[internal::kSpreadBps], static_cast<float>((ask - bid) / mid * 1e4));
  EXPECT_FLOAT_EQ(fv.values[internal::kImbalanceL1], 0.5f);  // (300-100)/400
  EXPECT_FLOAT_EQ(fv.values[internal::kImbalanceL5], static_cast<float>((800.0 - 900.0) / 1700.0));
  const double micro = (bid * 100 + ask * 300) / 400;  // 100.015
  EXPECT_NEAR(fv.values[internal::kMicropriceDevBps], (micro - mid) / mid * 1e4, 1e-5);
  EXPECT_NEAR(fv.values[internal::kMicropriceDevBps], 0.49995, 1e-4);
  EXPECT_EQ(fv.values[internal::kTradeFlow], 0.0f);
  EXPECT_EQ(fv.flags, 0u);
  for (int i = fv.n_features; i < kMaxFeatures; ++i) EXPECT_EQ(fv.values[i], 0.0f);
}

TEST(FeedFeaturesTest, ReturnsLookBackOverThisInstrumentsUpdates) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  f.Send({Add(1, 'B', 100, 49.00), Add(2, 'S', 100, 60.00)});
  // Step the ask down one cent at a time: every update moves the mid.
  for (int i = 0; i < 120; ++i) f.Send(Add(3 + i, 'S', 100, 59.99 - 0.01 * i));
  const auto& v = f.sink.vectors;
  ASSERT_EQ(v.size(), 121u);
  for (size_t j = 0; j < v.size(); ++j) {
    SCOPED_TRACE(j);
    for (auto [k, idx] : {std::pair{1u, internal::kRet1}, std::pair{10u, internal::kRet10},
                          std::pair{50u, internal::kRet50}}) {
      const double expected = j >= k ? std::log(v[j].mid_price / v[j - k].mid_price) * 1e4 : 0.0;
      EXPECT_NEAR(v[j].values[idx], expected, 1e-3 + 1e-5 * std::fabs(expected));
    }
  }
  EXPECT_LT(v.back().values[internal::kRet50], -10.0f);
}

TEST(FeedFeaturesTest, ExecutionsSignTradeFlowByAggressor) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  f.Send({Add(1, 'B', 1000, 10.00), Add(2, 'S', 1000, 10.01)});
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 1, 2, 100, 1); }));
  EXPECT_FLOAT_EQ(f.sink.vectors.back().values[internal::kTradeFlow], 1.0f);  // Lifted offer.
  for (int i = 0; i < 200; ++i) {
    f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 1, 1, 1, 2); }));
  }
  // Many small sells: the EWMA ratio tends to -1.
  EXPECT_LT(f.sink.vectors.back().values[internal::kTradeFlow], -0.9f);
  // Non-printable executions change the book but not the flow.
  const float before = f.sink.vectors.back().values[internal::kTradeFlow];
  f.Send(Msg(
      [](uint8_t* p) { return Encoder::ExecutedWithPrice(p, 1, 1, 2, 500, 3, 'N', Px(10.01)); }));
  EXPECT_EQ(f.sink.vectors.back().values[internal::kTradeFlow], before);
}

TEST(FeedFeaturesTest, NonFiniteValuesAreZeroedAndFlagged) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  // A zero-priced locked book: mid 0, so spread and microprice deviation divide by zero.
  f.Send({Add(1, 'B', 100, 0.0), Add(2, 'S', 100, 0.0)});
  ASSERT_EQ(f.sink.vectors.size(), 1u);
  const FeatureVector& fv = f.sink.vectors[0];
  EXPECT_NE(fv.flags & kFeatureFlagNonFinite, 0u);
  for (int i = 0; i < fv.n_features; ++i) EXPECT_TRUE(std::isfinite(fv.values[i])) << i;
  EXPECT_EQ(fv.values[internal::kSpreadBps], 0.0f);
}

}  // namespace
}  // namespace qsig::feeds
