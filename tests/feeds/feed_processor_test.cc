// FeedProcessor: ITCH round trips, malformed input, MoldUDP64 gaps, duplicates and sessions.
#include "qsig/feeds/feed_processor.h"

#include <cmath>
#include <random>

#include "feed_test_util.h"
#include "gtest/gtest.h"

namespace qsig::feeds {
namespace {

using testing::Bytes;
using testing::CollectingSink;
using testing::Encoder;
using testing::Feeder;
using testing::Msg;
using testing::Packet;
using testing::Px;

FeedProcessorOptions SmallOptions() {
  FeedProcessorOptions o;
  o.max_instruments = 16;
  o.max_orders = 4096;
  o.max_levels = 64;
  return o;
}

// Checks the top of book a vector implies: mid, spread, L1 imbalance and microprice.
void ExpectTop(const FeatureVector& fv, double bid, double bid_sz, double ask, double ask_sz) {
  const double mid = 0.5 * (bid + ask);
  EXPECT_DOUBLE_EQ(fv.mid_price, mid);
  EXPECT_FLOAT_EQ(fv.values[internal::kSpreadBps], static_cast<float>((ask - bid) / mid * 1e4));
  EXPECT_FLOAT_EQ(fv.values[internal::kImbalanceL1],
                  static_cast<float>((bid_sz - ask_sz) / (bid_sz + ask_sz)));
  const double micro = (bid * ask_sz + ask * bid_sz) / (bid_sz + ask_sz);
  EXPECT_NEAR(fv.values[internal::kMicropriceDevBps], (micro - mid) / mid * 1e4, 1e-4);
}

Bytes Add(uint64_t ref, char side, uint32_t shares, double px, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) {
    return Encoder::AddOrder(p, locate, 1000, ref, side, shares, "AAPL", Px(px));
  });
}

TEST(FeedItchTest, RoundTripEveryHandledMessageType) {
  FeedProcessor feed(SmallOptions());
  Feeder f(feed);
  auto& v = f.sink.vectors;

  f.Send(Msg([](uint8_t* p) { return Encoder::SystemEvent(p, 100, 'O'); }));
  f.Send(Msg([](uint8_t* p) { return Encoder::StockDirectory(p, 1, 200, "AAPL"); }));
  EXPECT_EQ(feed.symbol(1), "AAPL");
  EXPECT_EQ(feed.symbol(2), "");

  f.Send(Add(1, 'B', 100, 150.00));
  EXPECT_TRUE(v.empty()) << "one-sided book must not produce features";
  f.Send(Msg([](uint8_t* p) {
    return Encoder::AddOrderMpid(p, 1, 3000, 2, 'S', 200, "AAPL", Px(150.10), "GSCO");
  }));
  ASSERT_EQ(v.size(), 1u);
  ExpectTop(v.back(), 150.00, 100, 150.10, 200);
  EXPECT_EQ(v.back().locate, 1);
  EXPECT_EQ(v.back().msg_seq, 4u);
  EXPECT_EQ(v.back().exchange_ts_ns, 3000);
  EXPECT_EQ(v.back().recv_ns, 1234);
  EXPECT_EQ(v.back().n_features, 8);
  EXPECT_EQ(v.back().flags, 0u);
  EXPECT_GE(v.back().features_ns, v.back().decoded_ns);
  EXPECT_EQ(v.back().values[internal::kTradeFlow], 0.0f);

  f.Send(Add(3, 'B', 300, 150.05));
  ExpectTop(v.back(), 150.05, 300, 150.10, 200);

  // Execution against a resting buy: the aggressor sold.
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 4000, 3, 100, 77); }));
  ExpectTop(v.back(), 150.05, 200, 150.10, 200);
  EXPECT_FLOAT_EQ(v.back().values[internal::kTradeFlow], -1.0f);

  // Execution with price against the resting sell: aggressor bought.
  f.Send(Msg([](uint8_t* p) {
    return Encoder::ExecutedWithPrice(p, 1, 5000, 2, 50, 78, 'Y', Px(150.10));
  }));
  ExpectTop(v.back(), 150.05, 200, 150.10, 150);
  double s = 0.05 * -100.0, t = 0.05 * 100.0;
  s += 0.05 * (50.0 - s);
  t += 0.05 * (50.0 - t);
  EXPECT_FLOAT_EQ(v.back().values[internal::kTradeFlow], static_cast<float>(s / t));

  f.Send(Msg([](uint8_t* p) { return Encoder::Cancel(p, 1, 6000, 3, 50); }));
  ExpectTop(v.back(), 150.05, 150, 150.10, 150);

  f.Send(Msg([](uint8_t* p) { return Encoder::Replace(p, 1, 7000, 3, 4, 500, Px(150.02)); }));
  ExpectTop(v.back(), 150.02, 500, 150.10, 150);

  f.Send(Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 8000, 4); }));
  ExpectTop(v.back(), 150.00, 100, 150.10, 150);

  // A non-displayed trade moves trade flow but emits nothing.
  const size_t before = v.size();
  f.Send(Msg(
      [](uint8_t* p) { return Encoder::Trade(p, 1, 9000, 0, 'S', 1000, "AAPL", Px(150.10), 79); }));
  EXPECT_EQ(v.size(), before);
  f.Send(Add(5, 'S', 100, 150.20));
  s += 0.05 * (1000.0 - s);
  t += 0.05 * (1000.0 - t);
  EXPECT_FLOAT_EQ(v.back().values[internal::kTradeFlow], static_cast<float>(s / t));

  // Removing the last bid empties a side: no vector.
  const size_t before_delete = v.size();
  f.Send(Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 9500, 1); }));
  EXPECT_EQ(v.size(), before_delete);

  const FeedStats& st = feed.stats();
  EXPECT_EQ(st.messages.load(), 13u);
  EXPECT_EQ(st.packets.load(), 13u);
  EXPECT_EQ(st.malformed_messages.load(), 0u);
  EXPECT_EQ(st.malformed_packets.load(), 0u);
  EXPECT_EQ(st.unknown_order.load(), 0u);
  EXPECT_EQ(st.unknown_instrument.load(), 0u);
  EXPECT_EQ(st.gaps.load(), 0u);
  EXPECT_EQ(st.feature_vectors.load(), v.size());
  EXPECT_EQ(feed.instrument_messages(1), 12u);  // Everything but the system event.
  EXPECT_EQ(feed.n_features(), 8);
  EXPECT_EQ(feed.max_instruments(), 16);
}

TEST(FeedItchTest, OtherKnownTypesAreSkippedSafely) {
  FeedProcessor feed(SmallOptions());
  Feeder f(feed);
  const std::string_view types = "SHYLVWKJhQBINO";
  for (char t : types) {
    SCOPED_TRACE(t);
    f.Send(Msg([&](uint8_t* p) { return Encoder::Generic(p, t, 1, 10); }));
  }
  EXPECT_EQ(feed.stats().messages.load(), types.size());
  EXPECT_EQ(feed.stats().malformed_messages.load(), 0u);
  EXPECT_EQ(feed.stats().feature_vectors.load(), 0u);
  EXPECT_TRUE(f.sink.vectors.empty());
}

TEST(FeedItchTest, UnknownRefsAndLocatesAreCounted) {
  FeedProcessor feed(SmallOptions());
  Feeder f(feed);
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 1, 99, 10, 1); }));
  f.Send(Msg([](uint8_t* p) { return Encoder::Cancel(p, 1, 1, 99, 10); }));
  f.Send(Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 1, 99); }));
  f.Send(Msg([](uint8_t* p) { return Encoder::Replace(p, 1, 1, 99, 100, 10, 10); }));
  EXPECT_EQ(feed.stats().unknown_order.load(), 4u);
  f.Send(Add(1, 'B', 100, 10.0, /*locate=*/0));
  f.Send(Add(2, 'B', 100, 10.0, /*locate=*/17));
  f.Send(Msg([](uint8_t* p) { return Encoder::StockDirectory(p, 500, 1, "MSFT"); }));
  EXPECT_EQ(feed.stats().unknown_instrument.load(), 3u);
  // Same ref on a different instrument is a different order.
  f.Send(Add(7, 'B', 100, 10.0, 1));
  f.Send(Add(7, 'S', 100, 11.0, 2));
  EXPECT_EQ(feed.stats().malformed_messages.load(), 0u);
  // Bad side and a live duplicate ref are malformed.
  f.Send(Add(8, 'Q', 100, 10.0, 1));
  f.Send(Add(7, 'B', 100, 10.0, 1));
  EXPECT_EQ(feed.stats().malformed_messages.load(), 2u);
}

TEST(FeedItchTest, OrderTableFullIsCounted) {
  FeedProcessorOptions o = SmallOptions();
  o.max_orders = 10;
  FeedProcessor feed(o);
  Feeder f(feed);
  for (uint64_t ref = 1; ref <= 12; ++ref) f.Send(Add(ref, 'B', 100, 10.0 + 0.01 * ref));
  EXPECT_EQ(feed.stats().book_full.load(), 2u);
  f.Send(Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 1, 3); }));
  f.Send(Add(13, 'B', 100, 9.0));
  EXPECT_EQ(feed.stats().book_full.load(), 2u);
  EXPECT_EQ(feed.stats().unknown_order.load(), 0u);
}

TEST(FeedMalformedTest, ShortHeadersAndGarbageAreCountedWithoutCrashing) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  for (size_t n = 0; n < 20; ++n) {
    const Bytes b(n, 'x');
    feed.OnDatagram(b, 0, sink);
  }
  EXPECT_EQ(feed.stats().malformed_packets.load(), 20u);

  std::mt19937_64 rng(7);
  uint64_t next_seq = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng() % 300);
    for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
    // Half the time keep a plausible header so the block walker is exercised.
    // Sequence numbers move forward (as on a live line) so the blocks are decoded, and the
    // first block has a small length so that it holds a (garbage) message.
    if (i % 2 == 0 && b.size() >= 22) {
      next_seq += 1 + rng() % 20;
      internal::mold::WriteHeader(b.data(), testing::kSession, next_seq,
                                  static_cast<uint16_t>(rng() % 12));
      b[20] = 0;
      b[21] = static_cast<uint8_t>(rng() % 60);
    }
    feed.OnDatagram(b, 0, sink);
  }
  EXPECT_EQ(feed.stats().packets.load(), 20020u);
  EXPECT_GT(feed.stats().malformed_packets.load(), 20u);
  EXPECT_GT(feed.stats().malformed_messages.load(), 0u);
}

TEST(FeedMalformedTest, CountBeyondBlocksKeepsCompleteMessages) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  const Bytes p = Packet(testing::kSession, 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)},
                         /*count=*/5);
  feed.OnDatagram(p, 0, sink);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 1u);
  EXPECT_EQ(feed.stats().messages.load(), 2u);
  EXPECT_EQ(sink.vectors.size(), 1u);
}

TEST(FeedMalformedTest, OverrunningBlockStopsThePacket) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  Bytes p = Packet(testing::kSession, 1,
                   {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1), Add(3, 'S', 100, 10.2)});
  p.erase(p.end() - 10, p.end());  // Third block's length now runs past the end.
  feed.OnDatagram(p, 0, sink);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 1u);
  EXPECT_EQ(feed.stats().messages.load(), 2u);
  EXPECT_EQ(sink.vectors.size(), 1u);

  // Only one byte of the next block's length field.
  Bytes q = Packet(testing::kSession, 3, {Add(4, 'B', 100, 10.0)}, 2);
  q.push_back(0);
  feed.OnDatagram(q, 0, sink);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 2u);
  EXPECT_EQ(feed.stats().messages.load(), 3u);
}

TEST(FeedMalformedTest, WrongLengthsUnknownTypesAndEmptyBlocksAreSkipped) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  Bytes truncated = Add(10, 'B', 100, 9.0);
  truncated.pop_back();
  Bytes padded = Add(11, 'B', 100, 9.0);
  padded.push_back(0);
  Bytes unknown = Add(12, 'B', 100, 9.0);
  unknown[0] = 'Z';
  const Bytes p =
      Packet(testing::kSession, 1,
             {Add(1, 'B', 100, 10.0), truncated, padded, unknown, Bytes{}, Add(2, 'S', 100, 10.1)});
  feed.OnDatagram(p, 0, sink);
  EXPECT_EQ(feed.stats().malformed_messages.load(), 4u);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 0u);
  EXPECT_EQ(feed.stats().messages.load(), 2u);
  ASSERT_EQ(sink.vectors.size(), 1u);
  EXPECT_EQ(sink.vectors[0].msg_seq, 6u);
  ExpectTop(sink.vectors[0], 10.0, 100, 10.1, 100);
}

TEST(FeedMoldTest, GapsAreCountedAndMarkBooksStale) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  const std::string_view s = testing::kSession;
  feed.OnDatagram(Packet(s, 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0, sink);
  ASSERT_EQ(sink.vectors.size(), 1u);
  EXPECT_EQ(sink.vectors[0].flags & kFeatureFlagStale, 0u);

  feed.OnDatagram(Packet(s, 6, {Add(3, 'B', 100, 10.0)}), 0, sink);  // 3..5 missing.
  EXPECT_EQ(feed.stats().gaps.load(), 1u);
  EXPECT_EQ(feed.stats().gap_messages.load(), 3u);
  ASSERT_EQ(sink.vectors.size(), 2u);
  EXPECT_NE(sink.vectors[1].flags & kFeatureFlagStale, 0u);

  // Sticky: later in-sequence updates are still stale, on other instruments too.
  feed.OnDatagram(Packet(s, 7, {Add(4, 'B', 100, 20.0, 2), Add(5, 'S', 100, 20.1, 2)}), 0, sink);
  EXPECT_EQ(feed.stats().gaps.load(), 1u);
  ASSERT_EQ(sink.vectors.size(), 3u);
  EXPECT_NE(sink.vectors[2].flags & kFeatureFlagStale, 0u);

  // A heartbeat announcing a later sequence reveals a tail gap.
  feed.OnDatagram(Packet(s, 12, {}), 0, sink);
  EXPECT_EQ(feed.stats().gaps.load(), 2u);
  EXPECT_EQ(feed.stats().gap_messages.load(), 6u);
}

TEST(FeedMoldTest, FirstPacketAfterSequenceOneIsAGap) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  feed.OnDatagram(Packet(testing::kSession, 100, {Add(1, 'B', 100, 10.0)}), 0, sink);
  EXPECT_EQ(feed.stats().gaps.load(), 1u);
  EXPECT_EQ(feed.stats().gap_messages.load(), 99u);
}

TEST(FeedMoldTest, DuplicatesAreSkippedAndCounted) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  const std::string_view s = testing::kSession;
  const Bytes first = Packet(s, 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)});
  feed.OnDatagram(first, 0, sink);
  feed.OnDatagram(first, 0, sink);  // Exact replay.
  EXPECT_EQ(feed.stats().duplicates.load(), 2u);
  EXPECT_EQ(feed.stats().malformed_messages.load(), 0u) << "replayed adds must not be applied";
  EXPECT_EQ(sink.vectors.size(), 1u);

  // Overlapping: seq 2 was seen, seq 3 is new.
  feed.OnDatagram(Packet(s, 2, {Add(2, 'S', 100, 10.1), Add(3, 'B', 300, 10.05)}), 0, sink);
  EXPECT_EQ(feed.stats().duplicates.load(), 3u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
  ASSERT_EQ(sink.vectors.size(), 2u);
  EXPECT_EQ(sink.vectors[1].msg_seq, 3u);
  ExpectTop(sink.vectors[1], 10.05, 300, 10.1, 100);
  EXPECT_EQ(feed.stats().messages.load(), 3u);
}

TEST(FeedMoldTest, NewSessionResetsBooksSequenceAndStaleness) {
  // The reset itself, on the first packet of the new session (corroboration_test.cc covers
  // the default, where it waits for more packets).
  FeedProcessorOptions o = SmallOptions();
  o.corroboration.confirm_packets = 1;
  FeedProcessor feed(o);
  CollectingSink sink;
  feed.OnDatagram(Packet("SESSION001", 5, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0,
                  sink);
  EXPECT_EQ(feed.stats().gaps.load(), 1u);
  ASSERT_EQ(sink.vectors.size(), 1u);
  EXPECT_NE(sink.vectors[0].flags & kFeatureFlagStale, 0u);

  feed.OnDatagram(
      Packet("SESSION002", 1, {Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 1, 1); })}), 0,
      sink);
  EXPECT_EQ(feed.stats().unknown_order.load(), 1u) << "books were not reset";
  EXPECT_EQ(feed.stats().gaps.load(), 1u) << "sequence was not reset";
  feed.OnDatagram(Packet("SESSION002", 2, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0,
                  sink);
  ASSERT_EQ(sink.vectors.size(), 2u);
  EXPECT_EQ(sink.vectors[1].flags & kFeatureFlagStale, 0u);
}

TEST(FeedMoldTest, ForeignSessionMidStreamIsRejectedWithoutTouchingBooks) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  feed.OnDatagram(Packet("SESSION001", 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0,
                  sink);
  ASSERT_EQ(sink.vectors.size(), 1u);
  // Another session that does not start at sequence 1, and a non-printable session name.
  feed.OnDatagram(Packet("OTHERSESS1", 77, {Add(3, 'B', 100, 10.0)}), 0, sink);
  Bytes junk = Packet("SESSION001", 1, {Add(4, 'B', 100, 10.0)});
  junk[0] = 0x01;
  feed.OnDatagram(junk, 0, sink);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 2u);
  // The books and the sequence of the live session are intact.
  feed.OnDatagram(
      Packet("SESSION001", 3, {Msg([](uint8_t* p) { return Encoder::Delete(p, 1, 2, 1); })}), 0,
      sink);
  EXPECT_EQ(feed.stats().unknown_order.load(), 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
}

TEST(FeedMoldTest, EndOfSessionCarriesNoMessages) {
  FeedProcessor feed(SmallOptions());
  CollectingSink sink;
  feed.OnDatagram(Packet(testing::kSession, 1, {}, 0xFFFF), 0, sink);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 0u);
  EXPECT_EQ(feed.stats().messages.load(), 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
}

}  // namespace
}  // namespace qsig::feeds
