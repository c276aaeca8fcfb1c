// Feature library: specs, names, parser, the default set against the original implementation,
// values of the other kinds on hand-built books; ITCH trading-state and trade messages.
#include <cmath>
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
#include "internal/features.h"
#include "internal/rng.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {
namespace {

using testing::Bytes;
using testing::Encoder;
using testing::Feeder;
using testing::Msg;
using testing::Px;

TEST(FeedFeatureLibraryTest, DefaultSpecsNameTheDefaultSet) {
  auto names = FeatureNames(DefaultFeatureSpecs());
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, DefaultFeatureNames());
  EXPECT_EQ(*FeatureNames({}), DefaultFeatureNames()) << "empty = default";
  FeedProcessor feed(FeedProcessorOptions{});
  EXPECT_EQ(feed.feature_names(), DefaultFeatureNames());
  EXPECT_EQ(feed.n_features(), 8);
}

TEST(FeedFeatureLibraryTest, ParserAcceptsCallAndFlowMapFormsAndRoundTrips) {
  auto specs = ParseFeatureSpecs(
      "ret(horizon=10), micro_ret(horizon=5) as mr5,\n"
      "{name: book_pressure, levels: 3, decay: 0.25}\n"
      "- spread_bps, realized_vol(horizon=20), time_since_trade_ms(cap_ms=500),"
      " arrival_rate(halflife_ms=50), log_depth(levels=2), trade_flow(alpha=0.1)");
  ASSERT_TRUE(specs.ok()) << specs.status();
  auto names = FeatureNames(*specs);
  ASSERT_TRUE(names.ok());
  const std::vector<std::string> want = {"ret_10",
                                         "mr5",
                                         "book_pressure_l3_d0.25",
                                         "spread_bps",
                                         "realized_vol_20",
                                         "time_since_trade_ms",
                                         "arrival_rate_50ms",
                                         "log_depth_l2",
                                         "trade_flow_a0.1"};
  EXPECT_EQ(*names, want);
  auto again = ParseFeatureSpecs(FormatFeatureSpecs(*specs));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *specs);
}

TEST(FeedFeatureLibraryTest, ErrorsNameTheEntryAndTheRange) {
  auto bad = ParseFeatureSpecs("ret(horizon=1), imbalance(levels=0)");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("features[1] (imbalance): levels='0'"), std::string::npos)
      << bad.status();
  auto unknown = FeatureNames({{"nope"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("known: ret"), std::string::npos);
  auto param = FeatureNames({{"ret", {{"horizn", "3"}}}});
  ASSERT_FALSE(param.ok());
  EXPECT_NE(param.status().message().find("unknown parameter 'horizn'"), std::string::npos);
  auto dup = FeatureNames({{"spread_bps"}, {"spread_bps"}});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("used twice"), std::string::npos);
  std::vector<FeatureSpec> many(17, FeatureSpec{"spread_bps"});
  EXPECT_FALSE(FeatureNames(many).ok());
  EXPECT_FALSE(ParseFeatureSpecs("ret(horizon=1").ok());
}

// The compiled default set is bit-identical to the original hand-written default features
// (the demo models were trained on those), over random books and trades.
TEST(FeedFeatureLibraryTest, DefaultSetIsBitIdenticalToTheOriginal) {
  internal::OrderBooks books(1, 4096, 256);
  internal::FeatureEngine engine({});
  internal::EngineState es;
  engine.Reset(es);
  internal::FeatureState legacy;
  internal::Rng rng(5);
  std::vector<uint64_t> live;
  uint64_t ref = 1;
  int compared = 0;
  for (int step = 0; step < 20000; ++step) {
    const double u = rng.Uniform();
    if (u < 0.5 || live.size() < 4) {
      const bool bid = rng.Bernoulli(0.5);
      const uint32_t px = bid ? 1'000'000 - 100 * static_cast<uint32_t>(1 + rng.Below(20))
                              : 1'000'000 + 100 * static_cast<uint32_t>(rng.Below(20));
      if (books.Add(1, ref, bid ? 'B' : 'S', 100 * static_cast<uint32_t>(1 + rng.Below(9)), px) ==
          internal::BookResult::kOk) {
        live.push_back(ref);
      }
      ++ref;
    } else {
      const size_t i = rng.Below(live.size());
      internal::Side side;
      uint32_t price;
      const uint32_t shares = 100 * static_cast<uint32_t>(1 + rng.Below(5));
      if (books.Reduce(1, live[i], shares, &side, &price) == internal::BookResult::kOk &&
          rng.Bernoulli(0.5)) {
        legacy.OnTrade(shares, side == internal::Side::kAsk);
        engine.OnTrade(es, shares, side == internal::Side::kAsk, step);
      }
      if (books.FindOrder(1, live[i]) == nullptr) {
        live[i] = live.back();
        live.pop_back();
      }
    }
    if (books.bids(1).empty() || books.asks(1).empty()) continue;
    float a[kMaxFeatures], b[kMaxFeatures];
    double mid_a, mid_b;
    const bool nf_a = engine.Compute(es, books.bids(1), books.asks(1), step, a, &mid_a);
    const bool nf_b = internal::ComputeFeatures(books.bids(1), books.asks(1), legacy, b, &mid_b);
    ASSERT_EQ(nf_a, nf_b);
    ASSERT_EQ(mid_a, mid_b);
    for (int k = 0; k < 8; ++k) ASSERT_EQ(a[k], b[k]) << "feature " << k << " step " << step;
    ++compared;
  }
  EXPECT_GT(compared, 10000);
}

FeedProcessorOptions LibraryOptions() {
  FeedProcessorOptions o;
  o.max_instruments = 4;
  o.max_orders = 1024;
  o.features = *ParseFeatureSpecs(
      "book_pressure(levels=2, decay=0.5), log_depth(levels=2), time_since_trade_ms(cap_ms=1000),"
      " arrival_rate(halflife_ms=1), micro_ret(horizon=1), realized_vol(horizon=2)");
  return o;
}

Bytes AddAt(uint64_t ts, uint64_t ref, char side, uint32_t shares, double px) {
  return Msg(
      [&](uint8_t* p) { return Encoder::AddOrder(p, 1, ts, ref, side, shares, "TEST", Px(px)); });
}

TEST(FeedFeatureLibraryTest, OtherKindsOnAHandBuiltBook) {
  FeedProcessor feed(LibraryOptions());
  ASSERT_EQ(feed.n_features(), 6);
  Feeder f(feed);
  auto& v = f.sink.vectors;
  f.Send(AddAt(1'000'000, 1, 'B', 100, 10.00));
  f.Send(AddAt(1'000'000, 2, 'B', 300, 9.99));
  f.Send(AddAt(1'000'000, 3, 'S', 200, 10.02));
  ASSERT_EQ(v.size(), 1u);
  f.Send(AddAt(1'000'000, 4, 'S', 100, 10.03));
  ASSERT_EQ(v.size(), 2u);
  const FeatureVector& fv = v.back();
  EXPECT_EQ(fv.n_features, 6);
  // book_pressure: weights 1, 0.5: bids 100 + 150, asks 200 + 50.
  EXPECT_FLOAT_EQ(fv.values[0], static_cast<float>((250.0 - 250.0) / 500.0));
  EXPECT_FLOAT_EQ(fv.values[1], static_cast<float>(std::log(1.0 + 400 + 300)));
  EXPECT_FLOAT_EQ(fv.values[2], 1000.0f) << "no trade yet: the cap";
  // Four adds at the same instant, half-life 1 ms: 4 * ln2 / 0.001 s.
  EXPECT_NEAR(fv.values[3], 4 * 0.6931471805599453 / 0.001, 1e-2);
  EXPECT_EQ(fv.values[4], 0.0f) << "touch unchanged: micro-price unchanged";
  EXPECT_EQ(fv.values[5], 0.0f) << "realized vol needs 2 returns";

  // An execution 3 ms later: time since trade restarts; the micro-price moves.
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 4'000'000, 3, 150, 1); }));
  EXPECT_FLOAT_EQ(v.back().values[2], 0.0f);
  EXPECT_NE(v.back().values[4], 0.0f);
  f.Send(Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 4'500'000, 1); }));
  EXPECT_FLOAT_EQ(v.back().values[2], 0.5f);
  EXPECT_GT(v.back().values[5], 0.0f);
}

TEST(FeedItchTest, TradingActionCrossAndBrokenTradesAndSystemEvents) {
  FeedProcessor feed(LibraryOptions());
  Feeder f(feed);
  auto& v = f.sink.vectors;
  f.Send(Msg([](uint8_t* p) { return Encoder::SystemEvent(p, 1, 'Q'); }));
  EXPECT_EQ(feed.market_state(), 'Q');
  f.Send(AddAt(1'000'000, 1, 'B', 100, 10.00));
  f.Send(AddAt(1'000'000, 2, 'S', 100, 10.01));
  EXPECT_EQ(v.back().flags & kFeatureFlagHalted, 0u);
  f.Send(Msg([](uint8_t* p) { return Encoder::TradingAction(p, 1, 2'000'000, "TEST", 'H'); }));
  EXPECT_EQ(feed.trading_state(1), 'H');
  f.Send(AddAt(2'000'000, 3, 'B', 100, 10.00));
  EXPECT_NE(v.back().flags & kFeatureFlagHalted, 0u);
  f.Send(Msg([](uint8_t* p) {
    return Encoder::CrossTrade(p, 1, 3'000'000, 5000, "TEST", Px(10.0), 9, 'O');
  }));
  f.Send(Msg([](uint8_t* p) { return Encoder::TradingAction(p, 1, 3'000'000, "TEST", 'T'); }));
  f.Send(AddAt(3'200'000, 4, 'B', 100, 10.00));
  EXPECT_EQ(v.back().flags & kFeatureFlagHalted, 0u);
  EXPECT_FLOAT_EQ(v.back().values[2], 0.2f) << "the cross counts as the last trade";
  f.Send(Msg([](uint8_t* p) { return Encoder::BrokenTrade(p, 1, 3'300'000, 9); }));
  f.Send(Msg([](uint8_t* p) { return Encoder::Generic(p, 'Y', 1, 1); }));
  const FeedStats& st = feed.stats();
  EXPECT_EQ(st.system_events.load(), 1u);
  EXPECT_EQ(st.trading_actions.load(), 2u);
  EXPECT_EQ(st.cross_trades.load(), 1u);
  EXPECT_EQ(st.broken_trades.load(), 1u);
  EXPECT_EQ(st.skipped_messages.load(), 1u);
  EXPECT_EQ(st.malformed_messages.load(), 0u);
}

}  // namespace
}  // namespace qsig::feeds
