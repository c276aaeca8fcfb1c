// Gap recovery in-process: reordering, loss, duplicates and retransmissions against a clean run.
#include <map>
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
#include "internal/endian.h"
#include "internal/rng.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {
namespace {

using testing::Bytes;
using testing::CollectingSink;
using testing::Encoder;
using testing::Msg;
using testing::Packet;
using testing::Px;
namespace mold = internal::mold;

FeedProcessorOptions Options() {
  FeedProcessorOptions o;
  o.max_instruments = 16;
  o.max_orders = 1 << 16;
  o.max_levels = 256;
  return o;
}

Bytes Add(uint64_t ref, char side, uint32_t shares, double px, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) {
    return Encoder::AddOrder(p, locate, 1000, ref, side, shares, "AAPL", Px(px));
  });
}

// Every level of every book, and the live order count, are equal.
void ExpectSameBooks(const FeedProcessor& a, const FeedProcessor& b, int instruments) {
  EXPECT_EQ(a.live_orders(), b.live_orders());
  std::vector<PriceLevel> la(1024), lb(1024);
  for (uint16_t locate = 1; locate <= instruments; ++locate) {
    for (bool bid : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "locate " << locate << (bid ? " bid" : " ask"));
      const int na = a.BookLevels(locate, bid, la);
      const int nb = b.BookLevels(locate, bid, lb);
      ASSERT_EQ(na, nb);
      for (int i = 0; i < na; ++i) EXPECT_EQ(la[i], lb[i]) << "level " << i;
    }
  }
}

void ExpectSameVector(const FeatureVector& got, const FeatureVector& want) {
  EXPECT_EQ(got.locate, want.locate);
  EXPECT_EQ(got.msg_seq, want.msg_seq);
  EXPECT_EQ(got.exchange_ts_ns, want.exchange_ts_ns);
  EXPECT_EQ(got.mid_price, want.mid_price);
  EXPECT_EQ(got.flags, want.flags);
  ASSERT_EQ(got.n_features, want.n_features);
  for (int i = 0; i < got.n_features; ++i) EXPECT_EQ(got.values[i], want.values[i]) << i;
}

TEST(FeedRecoveryTest, ReorderedPacketFillsTheGapAndBooksAreExact) {
  FeedProcessor feed(Options());
  FeedProcessor clean(Options());
  CollectingSink sink, clean_sink;
  const std::string_view s = testing::kSession;
  const Bytes p1 = Packet(s, 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)});
  const Bytes p3 = Packet(s, 4,
                          {Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 9, 1, 40, 7); }),
                           Add(4, 'S', 50, 10.05)});
  const Bytes p2 = Packet(s, 3, {Add(3, 'B', 300, 10.02)});
  for (const Bytes* p : {&p1, &p2, &p3}) clean.OnDatagram(*p, 0, clean_sink);

  feed.OnDatagram(p1, 0, sink);
  feed.OnDatagram(p3, 0, sink);  // Seq 3 missing: optimistic, stale.
  EXPECT_TRUE(feed.gap_open());
  EXPECT_TRUE(feed.stale(1));
  EXPECT_EQ(feed.next_sequence(), 3u);
  ASSERT_EQ(sink.vectors.size(), 3u);
  EXPECT_NE(sink.vectors[1].flags & kFeatureFlagStale, 0u);
  EXPECT_NE(sink.vectors[2].flags & kFeatureFlagStale, 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 1u);
  EXPECT_EQ(feed.stats().held_messages.load(), 2u);

  feed.OnDatagram(p2, 0, sink);  // Late: fills the hole, books replayed in order.
  EXPECT_FALSE(feed.gap_open());
  EXPECT_FALSE(feed.stale(1));
  EXPECT_EQ(feed.next_sequence(), 6u);
  EXPECT_EQ(feed.stats().gaps_recovered.load(), 1u);
  EXPECT_EQ(feed.stats().recovered_messages.load(), 1u);
  EXPECT_EQ(feed.stats().gaps_lost.load(), 0u);
  EXPECT_EQ(feed.stats().held_messages.load(), 0u);
  ExpectSameBooks(feed, clean, 2);

  // The next in-order update is exact and clean again.
  const Bytes p4 = Packet(s, 6, {Add(5, 'B', 10, 10.03)});
  feed.OnDatagram(p4, 0, sink);
  clean.OnDatagram(p4, 0, clean_sink);
  ExpectSameVector(sink.vectors.back(), clean_sink.vectors.back());
}

TEST(FeedRecoveryTest, RetransmitRequestsFollowDelayIntervalAndLimit) {
  FeedProcessorOptions o = Options();
  o.recovery.rerequest_delay_us = 100;
  o.recovery.rerequest_interval_us = 1000;
  o.recovery.max_rerequests = 2;
  o.recovery.max_request_messages = 3;
  FeedProcessor feed(o);
  CollectingSink sink;
  RetransmitRequest r;
  EXPECT_FALSE(feed.NextRetransmitRequest(0, &r));
  feed.OnDatagram(Packet(testing::kSession, 1, {Add(1, 'B', 100, 10.0)}), 1'000'000, sink);
  feed.OnDatagram(Packet(testing::kSession, 9, {Add(2, 'S', 100, 10.1)}), 1'000'000, sink);
  EXPECT_FALSE(feed.NextRetransmitRequest(1'050'000, &r)) << "before the delay";
  ASSERT_TRUE(feed.NextRetransmitRequest(1'100'000, &r));
  EXPECT_EQ(std::string_view(r.session, 10), testing::kSession);
  EXPECT_EQ(r.sequence, 2u);
  EXPECT_EQ(r.count, 3u) << "capped at max_request_messages";
  EXPECT_FALSE(feed.NextRetransmitRequest(1'500'000, &r)) << "within the interval";
  ASSERT_TRUE(feed.NextRetransmitRequest(2'100'000, &r));
  EXPECT_FALSE(feed.NextRetransmitRequest(9'000'000, &r)) << "max_rerequests reached";

  uint8_t wire[kRetransmitRequestSize];
  EncodeRetransmitRequest(r, wire);
  RetransmitRequest back;
  ASSERT_TRUE(DecodeRetransmitRequest(wire, &back));
  EXPECT_EQ(back.sequence, 2u);
  EXPECT_EQ(back.count, 3u);
  EXPECT_FALSE(DecodeRetransmitRequest(std::span<const uint8_t>(wire, 19), &back));
}

TEST(FeedRecoveryTest, TimedOutGapIsLostAndBooksStayStaleUntilNewSession) {
  FeedProcessorOptions o = Options();
  o.recovery.gap_timeout_us = 1000;
  o.corroboration.confirm_packets = 1;  // The new session is trusted on its first packet here.
  FeedProcessor feed(o);
  CollectingSink sink;
  const std::string_view s = testing::kSession;
  feed.OnDatagram(Packet(s, 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0, sink);
  feed.OnDatagram(Packet(s, 5, {Add(3, 'B', 100, 10.05)}), 0, sink);
  feed.Tick(999'999, sink);
  EXPECT_TRUE(feed.gap_open());
  feed.Tick(1'000'000, sink);
  EXPECT_FALSE(feed.gap_open());
  EXPECT_EQ(feed.stats().gaps_lost.load(), 1u);
  EXPECT_EQ(feed.stats().lost_messages.load(), 2u);
  EXPECT_EQ(feed.next_sequence(), 6u);
  EXPECT_TRUE(feed.stale(1));
  EXPECT_TRUE(feed.stale(2)) << "every book: the lost messages may have touched any";
  // A late copy of a lost message is a duplicate now; the book keeps what it had.
  feed.OnDatagram(Packet(s, 3, {Add(9, 'S', 100, 10.2)}), 0, sink);
  EXPECT_EQ(feed.stats().duplicates.load(), 1u);
  feed.OnDatagram(Packet(s, 6, {Add(4, 'B', 100, 10.06)}), 0, sink);
  EXPECT_NE(sink.vectors.back().flags & kFeatureFlagStale, 0u);
  feed.OnDatagram(Packet("TESTSESS02", 1, {Add(1, 'B', 100, 10.0), Add(2, 'S', 100, 10.1)}), 0,
                  sink);
  EXPECT_EQ(sink.vectors.back().flags & kFeatureFlagStale, 0u);
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
}

TEST(FeedRecoveryTest, WindowFullGivesTheOldestGapUp) {
  FeedProcessorOptions o = Options();
  o.recovery.max_held_messages = 4;
  FeedProcessor feed(o);
  CollectingSink sink;
  const std::string_view s = testing::kSession;
  feed.OnDatagram(Packet(s, 1, {Add(1, 'B', 100, 10.0)}), 0, sink);
  feed.OnDatagram(Packet(s, 3, {Add(2, 'S', 100, 10.1)}), 0, sink);  // Hole [2, 3).
  EXPECT_TRUE(feed.gap_open());
  feed.OnDatagram(Packet(s, 4, {Add(3, 'B', 100, 10.0), Add(4, 'B', 100, 10.0)}), 0, sink);
  EXPECT_TRUE(feed.gap_open());
  feed.OnDatagram(Packet(s, 6, {Add(5, 'B', 100, 10.0)}), 0, sink);  // 6 - 2 >= 4: give up.
  EXPECT_FALSE(feed.gap_open());
  EXPECT_EQ(feed.stats().gaps_lost.load(), 1u);
  EXPECT_EQ(feed.next_sequence(), 7u);
  EXPECT_EQ(feed.BookDepth(1, true), 1);
  EXPECT_TRUE(feed.stale(1));
}

TEST(FeedRecoveryTest, HeartbeatRevealsATailGapThatARetransmissionFills) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  const std::string_view s = testing::kSession;
  feed.OnDatagram(Packet(s, 1, {Add(1, 'B', 100, 10.0)}), 0, sink);
  feed.OnDatagram(Packet(s, 4, {}), 0, sink);  // Heartbeat: next is 4, so 2..3 are missing.
  EXPECT_TRUE(feed.gap_open());
  EXPECT_EQ(feed.stats().heartbeats.load(), 1u);
  feed.OnDatagram(Packet(s, 2, {Add(2, 'S', 100, 10.1), Add(3, 'S', 100, 10.2)}), 0, sink);
  EXPECT_FALSE(feed.gap_open());
  EXPECT_EQ(feed.next_sequence(), 4u);
  EXPECT_FALSE(feed.stale(1));
}

// A simulator stream delivered with loss, reordering and duplicates; missing messages come
// back through the processor's own re-requests after a delay. Non-stale vectors equal the
// clean run's, and the books equal the clean books whenever no gap is open.
TEST(FeedRecoveryTest, LossyStreamWithRetransmissionsMatchesTheCleanStream) {
  SimulatorOptions so;
  so.instruments = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META"};
  so.seed = 7;
  Simulator sim(so);
  std::vector<Bytes> packets;
  std::vector<Bytes> messages(1);  // messages[seq]
  std::vector<uint8_t> buf(2048);
  while (sim.next_sequence() <= 150'000) {
    const size_t n = sim.NextPacket(buf);
    packets.emplace_back(buf.begin(), buf.begin() + static_cast<long>(n));
    const uint16_t count = internal::LoadBe16(buf.data() + mold::kCountOffset);
    size_t off = mold::kHeaderSize;
    for (uint16_t i = 0; i < count; ++i) {
      const size_t len = internal::LoadBe16(buf.data() + off);
      messages.emplace_back(buf.begin() + static_cast<long>(off + 2),
                            buf.begin() + static_cast<long>(off + 2 + len));
      off += 2 + len;
    }
  }
  const std::string session(so.session);

  FeedProcessor clean(Options());
  CollectingSink clean_sink;
  for (const Bytes& p : packets) clean.OnDatagram(p, 0, clean_sink);
  std::map<uint64_t, FeatureVector> clean_by_seq;
  for (const FeatureVector& fv : clean_sink.vectors) clean_by_seq[fv.msg_seq] = fv;

  FeedProcessorOptions o = Options();
  o.recovery.rerequest_delay_us = 50;
  o.recovery.rerequest_interval_us = 200;
  o.recovery.max_request_messages = 16;
  FeedProcessor feed(o);
  CollectingSink sink;
  internal::Rng rng(99);
  int64_t now = 0;
  struct Pending {
    int64_t due;
    Bytes packet;
  };
  std::vector<Pending> in_flight;  // Retransmissions on their way back.
  size_t checks = 0;
  auto deliver = [&](const Bytes& p) {
    feed.OnDatagram(p, now, sink);
    if (!feed.gap_open() && (++checks % 500) == 0) {
      // Clean books at the same point: replay the clean stream up to the same sequence.
      FeedProcessor ref(Options());
      CollectingSink ref_sink;
      for (const Bytes& q : packets) {
        if (internal::LoadBe64(q.data() + mold::kSequenceOffset) >= feed.next_sequence()) break;
        ref.OnDatagram(q, 0, ref_sink);
      }
      ASSERT_EQ(ref.next_sequence(), feed.next_sequence());
      ExpectSameBooks(feed, ref, 6);
    }
  };
  Bytes held;
  for (const Bytes& p : packets) {
    now += 10'000;                      // 10 us per packet.
    if (rng.Bernoulli(0.02)) continue;  // Lost.
    if (held.empty() && rng.Bernoulli(0.02)) {
      held = p;  // Reordered behind the next one.
      continue;
    }
    deliver(p);
    if (rng.Bernoulli(0.02)) deliver(p);
    if (!held.empty()) {
      deliver(held);
      held.clear();
    }
    RetransmitRequest r;
    while (feed.NextRetransmitRequest(now, &r)) {
      std::vector<Bytes> msgs;
      for (uint64_t s = r.sequence; s < r.sequence + r.count && s < messages.size(); ++s) {
        msgs.push_back(messages[s]);
      }
      if (rng.Bernoulli(0.1)) continue;  // The retransmission is lost too; ask again later.
      in_flight.push_back(Pending{now + 30'000, Packet(session, r.sequence, msgs)});
    }
    for (size_t i = 0; i < in_flight.size();) {
      if (in_flight[i].due <= now) {
        const Bytes q = in_flight[i].packet;
        in_flight.erase(in_flight.begin() + static_cast<long>(i));
        deliver(q);
      } else {
        ++i;
      }
    }
  }
  if (!held.empty()) deliver(held);
  for (const Pending& q : in_flight) deliver(q.packet);
  // Tail: keep asking until every gap is filled.
  for (int round = 0; round < 100 && feed.gap_open(); ++round) {
    now += 1'000'000;
    RetransmitRequest r;
    while (feed.NextRetransmitRequest(now, &r)) {
      std::vector<Bytes> msgs;
      for (uint64_t s = r.sequence; s < r.sequence + r.count && s < messages.size(); ++s) {
        msgs.push_back(messages[s]);
      }
      deliver(Packet(session, r.sequence, msgs));
    }
  }
  ASSERT_FALSE(feed.gap_open());
  EXPECT_EQ(feed.next_sequence(), clean.next_sequence());
  EXPECT_GT(checks, 100u);
  ExpectSameBooks(feed, clean, 6);

  const FeedStats& st = feed.stats();
  EXPECT_GT(st.gaps.load(), 100u);
  EXPECT_EQ(st.gaps_lost.load(), 0u);
  EXPECT_EQ(st.gaps_recovered.load(), st.gaps.load());
  EXPECT_GT(st.reconciliations.load(), 100u);
  EXPECT_EQ(st.malformed_messages.load(), 0u);

  size_t stale = 0, exact = 0;
  for (const FeatureVector& fv : sink.vectors) {
    if (fv.flags & kFeatureFlagStale) {
      ++stale;
      continue;
    }
    auto it = clean_by_seq.find(fv.msg_seq);
    ASSERT_NE(it, clean_by_seq.end()) << fv.msg_seq;
    SCOPED_TRACE(fv.msg_seq);
    ExpectSameVector(fv, it->second);
    ++exact;
  }
  EXPECT_GT(stale, 100u);
  EXPECT_GT(exact, clean_sink.vectors.size() / 2);
}

}  // namespace
}  // namespace qsig::feeds
