// Corroborated session changes and sequence jumps: one forged datagram cannot wipe the books or
// move the expected sequence; a genuine change confirmed by more packets, the other line or the
// retransmission server is followed.
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
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

constexpr int64_t kMs = 1'000'000;  // recv_ns per millisecond.

FeedProcessorOptions Options() {
  FeedProcessorOptions o;
  o.max_instruments = 16;
  o.max_orders = 1 << 12;
  o.max_levels = 64;
  o.corroboration.confirm_packets = 3;
  o.corroboration.window_us = 10'000;  // 10 ms.
  o.corroboration.max_sequence_jump = 1000;
  return o;
}

Bytes Add(uint64_t ref, char side, uint32_t shares, double px, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) {
    return Encoder::AddOrder(p, locate, 1000, ref, side, shares, "AAPL", Px(px));
  });
}
Bytes Delete(uint64_t ref, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) { return Encoder::Delete(p, locate, 2000, ref); });
}

// A genuine stream: each packet adds a bid and an ask on locate (1 + i % 3) and deletes an
// older pair, so books keep changing and every message matters.
std::vector<Bytes> GenuineStream(std::string_view session, int packets, uint64_t first_seq = 1,
                                 uint64_t first_ref = 10) {
  std::vector<Bytes> out;
  uint64_t seq = first_seq;
  for (int i = 0; i < packets; ++i) {
    const uint16_t locate = static_cast<uint16_t>(1 + i % 3);
    const uint64_t ref = first_ref + 2 * static_cast<uint64_t>(i);
    std::vector<Bytes> msgs = {Add(ref, 'B', 100 + i, 10.0 + 0.01 * (i % 5), locate),
                               Add(ref + 1, 'S', 100 + i, 10.1 + 0.01 * (i % 5), locate)};
    if (i >= 3) msgs.push_back(Delete(ref - 6, locate));
    out.push_back(Packet(session, seq, msgs));
    seq += msgs.size();
  }
  return out;
}

void ExpectSameBooks(const FeedProcessor& a, const FeedProcessor& b) {
  EXPECT_EQ(a.live_orders(), b.live_orders());
  std::vector<PriceLevel> la(256), lb(256);
  for (uint16_t locate = 1; locate <= 16; ++locate) {
    for (bool bid : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "locate " << locate << (bid ? " bid" : " ask"));
      const int na = a.BookLevels(locate, bid, la);
      const int nb = b.BookLevels(locate, bid, lb);
      ASSERT_EQ(na, nb);
      for (int i = 0; i < na; ++i) EXPECT_EQ(la[i], lb[i]) << "level " << i;
    }
  }
}

// Vectors equal in order, sequence and values (flags too).
void ExpectSameVectors(const std::vector<FeatureVector>& got,
                       const std::vector<FeatureVector>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].locate, want[i].locate);
    EXPECT_EQ(got[i].msg_seq, want[i].msg_seq);
    EXPECT_EQ(got[i].flags, want[i].flags);
    EXPECT_EQ(got[i].mid_price, want[i].mid_price);
  }
}

TEST(CorroborationTest, ForgedSessionPacketDoesNotStopGenuineProcessing) {
  const std::vector<Bytes> genuine = GenuineStream(testing::kSession, 40);
  FeedProcessor clean(Options());
  CollectingSink clean_sink;
  for (const Bytes& p : genuine) clean.OnDatagram(p, 0, clean_sink);

  FeedProcessor feed(Options());
  CollectingSink sink;
  // A new printable session name at sequence 1, with an add that would reset and refill books.
  const Bytes forged = Packet("EVILSESS01", 1, {Add(1, 'S', 100, 0.01)});
  for (size_t i = 0; i < genuine.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) * kMs;  // One packet per millisecond.
    if (i == 5) feed.OnDatagram(forged, t, sink, FeedLine::kA);
    feed.OnDatagram(genuine[i], t, sink, FeedLine::kA);
    if (i == 5) {
      EXPECT_TRUE(feed.corroboration_pending());
    }
  }
  // Every genuine message was applied exactly as without the forgery.
  ExpectSameBooks(feed, clean);
  ExpectSameVectors(sink.vectors, clean_sink.vectors);
  EXPECT_EQ(feed.stats().messages.load(), clean.stats().messages.load());
  EXPECT_EQ(feed.stats().session_resets.load(), 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
  EXPECT_EQ(feed.stats().duplicates.load(), 0u);
  // The forged candidate went quiet for the window (10 ms) and was dropped, counted.
  EXPECT_FALSE(feed.corroboration_pending());
  EXPECT_EQ(feed.stats().uncorroborated_session.load(), 1u);
  EXPECT_EQ(feed.stats().corroborated_sessions.load(), 0u);
  EXPECT_EQ(feed.stats().pending_candidates.load(), 0u);
}

TEST(CorroborationTest, ForgedHeartbeatJumpDoesNotStopGenuineProcessing) {
  const std::vector<Bytes> genuine = GenuineStream(testing::kSession, 40);
  FeedProcessor clean(Options());
  CollectingSink clean_sink;
  for (const Bytes& p : genuine) clean.OnDatagram(p, 0, clean_sink);

  FeedProcessor feed(Options());
  CollectingSink sink;
  for (size_t i = 0; i < genuine.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) * kMs;
    if (i == 5) {
      // A heartbeat announcing sequence +1,000,000, and a data packet jumping as far.
      const uint64_t next = feed.next_sequence();
      feed.OnDatagram(Packet(testing::kSession, next + 1'000'000, {}), t, sink, FeedLine::kA);
      EXPECT_EQ(feed.next_sequence(), next) << "the expected sequence did not move";
      EXPECT_FALSE(feed.gap_open());
      feed.OnDatagram(Packet(testing::kSession, next + 5'000'000, {Add(999, 'B', 1, 10.5)}), t,
                      sink, FeedLine::kA);
      EXPECT_EQ(feed.next_sequence(), next);
    }
    feed.OnDatagram(genuine[i], t, sink, FeedLine::kA);
  }
  ExpectSameBooks(feed, clean);
  ExpectSameVectors(sink.vectors, clean_sink.vectors);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
  EXPECT_EQ(feed.stats().gaps_lost.load(), 0u);
  EXPECT_EQ(feed.stats().duplicates.load(), 0u);
  EXPECT_FALSE(feed.stale(1));
  EXPECT_EQ(feed.stats().uncorroborated_jump.load(), 2u);
  EXPECT_EQ(feed.stats().corroborated_jumps.load(), 0u);
}

TEST(CorroborationTest, GenuineSessionChangeIsFollowedAfterConfirmPackets) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 10)) feed.OnDatagram(p, 0, sink);
  feed.OnDatagram(Packet(testing::kSession, feed.next_sequence(), {}, 0xFFFF), 0, sink);
  const size_t old_orders = feed.live_orders();
  ASSERT_GT(old_orders, 0u);

  const std::vector<Bytes> next = GenuineStream("TESTSESS02", 6);
  FeedProcessor clean(Options());
  CollectingSink clean_sink;
  for (const Bytes& p : next) clean.OnDatagram(p, 0, clean_sink);

  const size_t before = sink.vectors.size();
  feed.OnDatagram(next[0], 1 * kMs, sink);
  feed.OnDatagram(next[0], 1 * kMs, sink);  // A repeated copy confirms nothing.
  feed.OnDatagram(next[1], 2 * kMs, sink);
  EXPECT_EQ(feed.stats().session_resets.load(), 0u) << "two packets are not enough";
  EXPECT_EQ(feed.live_orders(), old_orders);
  EXPECT_EQ(sink.vectors.size(), before);
  feed.OnDatagram(next[2], 3 * kMs, sink);  // Third: corroborated.
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
  EXPECT_EQ(feed.stats().corroborated_sessions.load(), 1u);
  EXPECT_FALSE(feed.corroboration_pending());
  for (size_t i = 3; i < next.size(); ++i) feed.OnDatagram(next[i], 4 * kMs, sink);

  // The held packets were applied in order: the new session's books are exact.
  ExpectSameBooks(feed, clean);
  ExpectSameVectors(std::vector<FeatureVector>(sink.vectors.begin() + before, sink.vectors.end()),
                    clean_sink.vectors);
  EXPECT_EQ(feed.stats().uncorroborated_session.load(), 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
}

TEST(CorroborationTest, SessionChangeSeenOnTheOtherLineIsFollowedAtOnce) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 5)) {
    feed.OnDatagram(p, 0, sink, FeedLine::kA);
    feed.OnDatagram(p, 0, sink, FeedLine::kB);
  }
  const Bytes p1 = GenuineStream("TESTSESS02", 1)[0];
  feed.OnDatagram(p1, kMs, sink, FeedLine::kA);
  feed.OnDatagram(p1, kMs, sink, FeedLine::kA);  // Same line again: no corroboration.
  EXPECT_EQ(feed.stats().session_resets.load(), 0u);
  feed.OnDatagram(p1, kMs, sink, FeedLine::kB);
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
  EXPECT_EQ(feed.stats().corroborated_sessions.load(), 1u);
  EXPECT_EQ(feed.live_orders(), 2u) << "the new session's first packet was applied";
  EXPECT_EQ(feed.next_sequence(), 3u);
}

TEST(CorroborationTest, RetransmissionServerCorroboratesASessionChangeAndAJump) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 5)) feed.OnDatagram(p, 0, sink);

  // A large genuine jump on line A: the processor asks for a message the jump implies exists.
  const uint64_t jump_to = feed.next_sequence() + 100'000;
  feed.OnDatagram(Packet(testing::kSession, jump_to, {Add(500, 'B', 10, 9.0)}), kMs, sink,
                  FeedLine::kA);
  RetransmitRequest r;
  ASSERT_TRUE(feed.NextRetransmitRequest(kMs, &r));
  EXPECT_EQ(std::string_view(r.session, 10), testing::kSession);
  EXPECT_EQ(r.sequence, jump_to);
  EXPECT_EQ(r.count, 1u);
  EXPECT_FALSE(feed.NextRetransmitRequest(kMs, &r)) << "one request per candidate";
  feed.OnDatagram(Packet(testing::kSession, jump_to, {Add(500, 'B', 10, 9.0)}), kMs, sink,
                  FeedLine::kRetransmit);
  EXPECT_EQ(feed.stats().corroborated_jumps.load(), 1u);
  EXPECT_EQ(feed.next_sequence(), jump_to + 1);
  EXPECT_EQ(feed.stats().gaps_lost.load(), 1u) << "100000 messages: beyond the recovery window";

  // A new session: the request names it and message 1.
  const Bytes p1 = GenuineStream("TESTSESS02", 1)[0];
  feed.OnDatagram(p1, 2 * kMs, sink, FeedLine::kA);
  ASSERT_TRUE(feed.NextRetransmitRequest(2 * kMs, &r));
  EXPECT_EQ(std::string_view(r.session, 10), "TESTSESS02");
  EXPECT_EQ(r.sequence, 1u);
  feed.OnDatagram(p1, 2 * kMs, sink, FeedLine::kRetransmit);
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
  EXPECT_EQ(feed.next_sequence(), 3u);
  EXPECT_FALSE(feed.stale(1)) << "a new session starts clean";
}

TEST(CorroborationTest, GenuineJumpConfirmedByTheContinuingStream) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 5)) feed.OnDatagram(p, 0, sink);
  const uint64_t jump_to = feed.next_sequence() + 200'000;
  const std::vector<Bytes> after = GenuineStream(testing::kSession, 4, jump_to, 1000);
  const size_t before = sink.vectors.size();
  feed.OnDatagram(after[0], kMs, sink);
  feed.OnDatagram(after[1], 2 * kMs, sink);
  EXPECT_LT(feed.next_sequence(), jump_to);
  EXPECT_EQ(sink.vectors.size(), before);
  feed.OnDatagram(after[2], 3 * kMs, sink);
  EXPECT_EQ(feed.stats().corroborated_jumps.load(), 1u);
  feed.OnDatagram(after[3], 4 * kMs, sink);
  EXPECT_EQ(feed.next_sequence(), jump_to + 9) << "every packet applied (2 + 2 + 2 + 3 messages)";
  EXPECT_EQ(feed.stats().invalid_order.load(), 0u);
  EXPECT_GT(sink.vectors.size(), before);
  // The messages skipped over are lost: books are stale, as after any lost gap.
  EXPECT_EQ(feed.stats().gaps_lost.load(), 1u);
  EXPECT_TRUE(feed.stale(1));
  EXPECT_EQ(feed.stats().uncorroborated_jump.load(), 0u);
}

TEST(CorroborationTest, CandidateMustKeepArrivingWithinTheWindow) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 3)) feed.OnDatagram(p, 0, sink);
  const std::vector<Bytes> next = GenuineStream("TESTSESS02", 3);
  feed.OnDatagram(next[0], 0, sink);
  feed.OnDatagram(next[1], 9 * kMs, sink);  // Within 10 ms of the previous.
  EXPECT_TRUE(feed.corroboration_pending());
  feed.OnDatagram(next[2], 25 * kMs, sink);  // 16 ms of silence: the candidate was dropped.
  EXPECT_EQ(feed.stats().uncorroborated_session.load(), 2u);
  EXPECT_EQ(feed.stats().foreign_session.load(), 1u) << "sequence 3 cannot start a session";
  EXPECT_EQ(feed.stats().session_resets.load(), 0u);
}

TEST(CorroborationTest, ForgeriesFillingEverySlotDoNotEvictAnAdvancingChange) {
  FeedProcessor feed(Options());
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 3)) feed.OnDatagram(p, 0, sink);
  const std::vector<Bytes> next = GenuineStream("TESTSESS02", 3);
  feed.OnDatagram(next[0], 1 * kMs, sink);
  feed.OnDatagram(next[1], 1 * kMs, sink);
  // More one-packet forgeries than there are slots: they evict each other, not the candidate
  // that already has two packets.
  for (char c = 'A'; c <= 'F'; ++c) {
    const std::string name = std::string("FORGED000") + c;
    feed.OnDatagram(Packet(name, 1, {Add(1, 'B', 1, 1.0)}), 2 * kMs, sink);
  }
  feed.OnDatagram(next[2], 3 * kMs, sink);
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
  EXPECT_EQ(feed.live_orders(), 6u);
  EXPECT_EQ(feed.stats().uncorroborated_session.load(), 6u) << "every forgery was counted";
  EXPECT_FALSE(feed.corroboration_pending());
}

TEST(CorroborationTest, ConfirmPacketsOneTrustsASinglePacket) {
  FeedProcessorOptions o = Options();
  o.corroboration.confirm_packets = 1;
  FeedProcessor feed(o);
  CollectingSink sink;
  for (const Bytes& p : GenuineStream(testing::kSession, 3)) feed.OnDatagram(p, 0, sink);
  feed.OnDatagram(GenuineStream("TESTSESS02", 1)[0], 0, sink);
  EXPECT_EQ(feed.stats().session_resets.load(), 1u);
  feed.OnDatagram(Packet("TESTSESS02", 1'000'000, {}), 0, sink);
  EXPECT_EQ(feed.next_sequence(), 1'000'000u);
}

// The simulator's own session restarts (End of Session, then a new name from sequence 1) are
// followed: after each, the books equal a fresh processor fed only the new session.
TEST(CorroborationTest, SimulatorSessionRestartsAreFollowed) {
  SimulatorOptions so;
  so.instruments = {"AAPL", "MSFT", "NVDA"};
  Simulator sim(so);
  FeedProcessorOptions o = Options();
  o.max_orders = 1 << 16;
  FeedProcessor feed(o);
  CollectingSink sink;
  std::vector<uint8_t> buf(65536);
  int64_t t = 0;
  for (int restart = 0; restart < 3; ++restart) {
    for (int i = 0; i < 500; ++i) {
      const size_t n = sim.NextPacket(buf);
      feed.OnDatagram(std::span<const uint8_t>(buf.data(), n), t += 10'000, sink, FeedLine::kA);
    }
    sim.RestartSession();
    // The restarted session, also fed to a fresh processor that never saw the old one.
    FeedProcessor fresh(o);
    CollectingSink fresh_sink;
    const size_t eos = sim.NextPacket(buf);
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), eos), t += 10'000, sink, FeedLine::kA);
    for (int i = 0; i < 200; ++i) {
      const size_t n = sim.NextPacket(buf);
      const std::span<const uint8_t> d(buf.data(), n);
      feed.OnDatagram(d, t += 10'000, sink, FeedLine::kA);
      fresh.OnDatagram(d, 0, fresh_sink);
    }
    SCOPED_TRACE(restart);
    EXPECT_EQ(feed.stats().session_resets.load(), static_cast<uint64_t>(restart + 1));
    ExpectSameBooks(feed, fresh);
    EXPECT_EQ(feed.next_sequence(), fresh.next_sequence());
  }
  EXPECT_EQ(feed.stats().uncorroborated_session.load(), 0u);
  EXPECT_EQ(feed.stats().gaps.load(), 0u);
}

}  // namespace
}  // namespace qsig::feeds
