// Simulator: determinism for a seed, and a stream the FeedProcessor accepts without complaint.
#include "qsig/feeds/simulator.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
#include "internal/endian.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {
namespace {

using internal::LoadBe16;
using internal::LoadBe64;
namespace mold = internal::mold;

std::vector<std::vector<uint8_t>> Packets(const SimulatorOptions& o, int n) {
  Simulator sim(o);
  std::vector<std::vector<uint8_t>> out;
  std::vector<uint8_t> buf(2048);
  for (int i = 0; i < n; ++i) {
    const size_t len = sim.NextPacket(buf);
    out.emplace_back(buf.begin(), buf.begin() + static_cast<long>(len));
  }
  return out;
}

TEST(FeedSimulatorTest, SameSeedSameBytes) {
  SimulatorOptions o;
  o.seed = 1234;
  EXPECT_EQ(Packets(o, 3000), Packets(o, 3000));
  SimulatorOptions other = o;
  other.seed = 1235;
  EXPECT_NE(Packets(o, 3000), Packets(other, 3000));
}

TEST(FeedSimulatorTest, PacketsAreWellFramedAndSequenced) {
  SimulatorOptions o;
  o.max_messages_per_packet = 5;
  o.session = "ABC";
  Simulator sim(o);
  std::vector<uint8_t> buf(1500);
  uint64_t expected_seq = 1;
  std::vector<char> first_types;
  for (int i = 0; i < 2000; ++i) {
    const size_t n = sim.NextPacket(buf);
    ASSERT_GE(n, mold::kHeaderSize);
    EXPECT_EQ(std::string(buf.begin(), buf.begin() + 10), "ABC       ");
    EXPECT_EQ(LoadBe64(buf.data() + mold::kSequenceOffset), expected_seq);
    const uint16_t count = LoadBe16(buf.data() + mold::kCountOffset);
    ASSERT_GE(count, 1);
    ASSERT_LE(count, 5);
    size_t off = mold::kHeaderSize;
    for (int m = 0; m < count; ++m) {
      const size_t len = LoadBe16(buf.data() + off);
      ASSERT_LE(off + 2 + len, n);
      EXPECT_EQ(internal::itch::kMessageLength[buf[off + 2]], len);
      if (first_types.size() < 5) first_types.push_back(static_cast<char>(buf[off + 2]));
      off += 2 + len;
    }
    EXPECT_EQ(off, n);
    expected_seq += count;
    EXPECT_EQ(sim.next_sequence(), expected_seq);
  }
  // Start of messages, then the stock directory for every instrument.
  EXPECT_EQ(first_types, (std::vector<char>{'S', 'R', 'R', 'R', 'R'}));
  // A buffer too small for a header yields nothing.
  std::vector<uint8_t> tiny(10);
  EXPECT_EQ(sim.NextPacket(tiny), 0u);
}

// Counts message types and checks features across a long run.
class TypeCountingSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector& fv) noexcept override {
    per_locate[fv.locate] += 1;
    min_spread = std::min(min_spread, static_cast<double>(fv.values[internal::kSpreadBps]));
    min_mid = std::min(min_mid, fv.mid_price);
    max_mid = std::max(max_mid, fv.mid_price);
    flags |= fv.flags;
  }
  std::map<uint16_t, uint64_t> per_locate;
  double min_spread = 1e9, min_mid = 1e9, max_mid = 0;
  uint32_t flags = 0;
};

// Realized mid-price return std (one instrument) before and after `switch_s` of message clock.
std::pair<double, double> ReturnStdAround(const SimulatorOptions& o, double switch_s,
                                          size_t* applied) {
  struct Mids : FeatureSink {
    void OnFeatures(const FeatureVector& fv) noexcept override {
      if (fv.mid_price > 0) seen.emplace_back(fv.exchange_ts_ns, fv.mid_price);
    }
    std::vector<std::pair<int64_t, double>> seen;
  } sink;
  Simulator sim(o);
  FeedProcessorOptions fo;
  fo.max_instruments = 4;
  fo.max_orders = 1 << 16;
  FeedProcessor feed(fo);
  std::vector<uint8_t> buf(2048);
  while (sim.clock_s() < 2 * switch_s) {
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), sim.NextPacket(buf)), 0, sink);
  }
  *applied = sim.regimes_applied();
  const auto switch_ns = static_cast<int64_t>(34'200e9 + switch_s * 1e9);
  double sum[2] = {0, 0}, sq[2] = {0, 0};
  double n[2] = {0, 0};
  for (size_t i = 1; i < sink.seen.size(); ++i) {
    if (sink.seen[i - 1].first < switch_ns && sink.seen[i].first >= switch_ns) continue;
    const int k = sink.seen[i].first >= switch_ns ? 1 : 0;
    const double r = std::log(sink.seen[i].second / sink.seen[i - 1].second);
    sum[k] += r;
    sq[k] += r * r;
    n[k] += 1;
  }
  auto sd = [&](int k) { return std::sqrt(sq[k] / n[k] - (sum[k] / n[k]) * (sum[k] / n[k])); };
  EXPECT_GT(n[0], 10'000);
  EXPECT_GT(n[1], 10'000);
  return {sd(0), sd(1)};
}

TEST(FeedSimulatorTest, VolatilityRegimeSwitchRaisesRealizedVolatility) {
  SimulatorOptions o;
  o.instruments = {"AAPL"};
  o.seed = 2024;
  size_t applied = 0;
  // Control: the same seed without a switch keeps its volatility.
  const auto [calm_before, calm_after] = ReturnStdAround(o, 0.6, &applied);
  EXPECT_EQ(applied, 0u);
  EXPECT_LT(calm_after, 1.4 * calm_before);
  EXPECT_GT(calm_after, calm_before / 1.4);
  o.regimes = {{.at_s = 0.6, .volatility = 3.0}};
  const auto [before, after] = ReturnStdAround(o, 0.6, &applied);
  EXPECT_EQ(applied, 1u);
  EXPECT_DOUBLE_EQ(before, calm_before);  // Same stream until the switch.
  EXPECT_GT(after, 2.0 * before) << "before " << before << " after " << after;
  std::printf("realized mid return std: %.3g -> %.3g after volatility x3 (control %.3g -> %.3g)\n",
              before, after, calm_before, calm_after);
}

// Every regime factor keeps the stream valid: the feed decodes it without complaint and the
// book never crosses.
TEST(FeedSimulatorTest, RegimeSwitchesKeepTheStreamValid) {
  SimulatorOptions o;
  o.seed = 5;
  o.regimes = {
      {.at_s = 0.2, .volatility = 5, .spread = 4, .order_size = 3, .trade_intensity = 4},
      {.at_s = 0.4, .volatility = 0.2, .spread = 0.3, .order_size = 0.1, .trade_intensity = 0.1},
      {.at_s = 0.6}};
  Simulator sim(o);
  FeedProcessorOptions fo;
  fo.max_instruments = 8;
  fo.max_orders = 1 << 16;
  FeedProcessor feed(fo);
  TypeCountingSink sink;
  std::vector<uint8_t> buf(2048);
  while (sim.clock_s() < 0.8) {
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), sim.NextPacket(buf)), 0, sink);
  }
  EXPECT_EQ(sim.regimes_applied(), 3u);
  const FeedStats& st = feed.stats();
  EXPECT_EQ(st.malformed_messages.load(), 0u);
  EXPECT_EQ(st.unknown_order.load(), 0u);
  EXPECT_EQ(st.gaps.load(), 0u);
  EXPECT_EQ(sink.flags, 0u);
  EXPECT_GT(sink.min_spread, 0.0);
}

TEST(FeedSimulatorTest, UnitFactorsKeepTheDefaultStream) {
  SimulatorOptions o;
  o.seed = 77;
  SimulatorOptions same = o;
  same.regimes = {{.at_s = 0.01}, {.at_s = 0.02, .volatility = 1, .spread = 1}};
  EXPECT_EQ(Packets(o, 3000), Packets(same, 3000));
  SimulatorOptions wide = o;
  wide.spread = 3;
  wide.order_size = 2;
  wide.trade_intensity = 2;
  EXPECT_NE(Packets(o, 3000), Packets(wide, 3000));
}

TEST(FeedSimulatorTest, TwoHundredThousandMessagesDecodeCleanly) {
  SimulatorOptions o;
  o.instruments = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA"};
  o.seed = 99;
  Simulator sim(o);
  FeedProcessorOptions fo;
  fo.max_instruments = 8;
  fo.max_orders = 1 << 16;
  FeedProcessor feed(fo);
  TypeCountingSink sink;
  std::map<char, uint64_t> types;
  std::vector<uint8_t> buf(2048);
  while (sim.next_sequence() <= 200'000) {
    const size_t n = sim.NextPacket(buf);
    for (size_t off = mold::kHeaderSize; off < n;) {
      const size_t len = LoadBe16(buf.data() + off);
      types[static_cast<char>(buf[off + 2])] += 1;
      off += 2 + len;
    }
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), n), 0, sink);
  }
  const FeedStats& st = feed.stats();
  EXPECT_GE(st.messages.load(), 200'000u);
  EXPECT_EQ(st.malformed_packets.load(), 0u);
  EXPECT_EQ(st.malformed_messages.load(), 0u);
  EXPECT_EQ(st.unknown_order.load(), 0u);
  EXPECT_EQ(st.unknown_instrument.load(), 0u);
  EXPECT_EQ(st.book_full.load(), 0u);
  EXPECT_EQ(st.gaps.load(), 0u);
  EXPECT_EQ(st.duplicates.load(), 0u);
  EXPECT_EQ(sink.flags, 0u);
  for (uint16_t locate = 1; locate <= 5; ++locate) {
    SCOPED_TRACE(locate);
    EXPECT_EQ(feed.symbol(locate), o.instruments[locate - 1]);
    EXPECT_GT(sink.per_locate[locate], 10'000u);
    EXPECT_GT(feed.instrument_messages(locate), 20'000u);
  }
  EXPECT_GT(sink.min_spread, 0.0) << "the simulator must never cross its book";
  EXPECT_GT(sink.min_mid, 1.0);
  EXPECT_LT(sink.max_mid, 2000.0);
  // Every kind of flow shows up; the directory repeats every 10'000 messages.
  for (char t : std::string("AFEXDUPC")) EXPECT_GT(types[t], 0u) << t;
  EXPECT_GE(types['R'], 5u * 20);
  EXPECT_EQ(types['S'], 1u);
}

// Run-to-completion shards: each processor reads the whole stream and keeps only the books of
// locate % shards == shard. Every instrument's vectors come from exactly one shard and equal
// the unsharded processor's, value for value.
TEST(FeedShardTest, ShardsOwnDisjointInstrumentsAndReproduceTheUnshardedVectors) {
  struct Recording : FeatureSink {
    void OnFeatures(const FeatureVector& fv) noexcept override { seen.push_back(fv); }
    std::vector<FeatureVector> seen;
  };
  SimulatorOptions o;
  o.instruments = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA"};
  o.seed = 7;
  FeedProcessorOptions fo;
  fo.max_instruments = 8;
  fo.max_orders = 1 << 16;
  FeedProcessor whole(fo);
  Recording whole_sink;
  constexpr int kShards = 3;
  std::vector<std::unique_ptr<FeedProcessor>> shards;
  std::vector<Recording> shard_sinks(kShards);
  for (int i = 0; i < kShards; ++i) {
    FeedProcessorOptions so = fo;
    so.shard_count = kShards;
    so.shard_index = i;
    shards.push_back(std::make_unique<FeedProcessor>(so));
  }
  Simulator sim(o);
  std::vector<uint8_t> buf(2048);
  while (sim.next_sequence() <= 30'000) {
    const std::span<const uint8_t> p(buf.data(), sim.NextPacket(buf));
    whole.OnDatagram(p, 0, whole_sink);
    for (int i = 0; i < kShards; ++i) shards[i]->OnDatagram(p, 0, shard_sinks[i]);
  }
  std::map<uint16_t, std::vector<FeatureVector>> by_locate;
  for (const FeatureVector& fv : whole_sink.seen) by_locate[fv.locate].push_back(fv);
  ASSERT_EQ(by_locate.size(), 5u);
  uint64_t total = 0;
  for (int i = 0; i < kShards; ++i) {
    SCOPED_TRACE(i);
    std::map<uint16_t, size_t> next;
    for (const FeatureVector& fv : shard_sinks[i].seen) {
      ASSERT_EQ(fv.locate % kShards, i) << "shard emitted an instrument it does not own";
      const auto& want = by_locate[fv.locate];
      const size_t k = next[fv.locate]++;
      ASSERT_LT(k, want.size());
      EXPECT_EQ(fv.msg_seq, want[k].msg_seq);
      for (int f = 0; f < fv.n_features; ++f) EXPECT_EQ(fv.values[f], want[k].values[f]);
    }
    for (const auto& [locate, n] : next) EXPECT_EQ(n, by_locate[locate].size()) << locate;
    total += shard_sinks[i].seen.size();
    const FeedStats& st = shards[i]->stats();
    EXPECT_EQ(st.packets.load(), whole.stats().packets.load());  // The whole stream.
    EXPECT_EQ(st.gaps.load(), 0u);
    EXPECT_EQ(st.unknown_order.load(), 0u);
    EXPECT_EQ(shards[i]->symbol(1), "AAPL");  // Directory messages reach every shard.
    for (uint16_t locate = 1; locate <= 5; ++locate) {
      EXPECT_EQ(shards[i]->instrument_messages(locate) > 0, locate % kShards == i) << locate;
      if (locate % kShards != i) {
        EXPECT_EQ(shards[i]->BookDepth(locate, true), 0) << locate;
      }
    }
  }
  EXPECT_EQ(total, whole_sink.seen.size());  // Exactly once across shards.
}

}  // namespace
}  // namespace qsig::feeds
