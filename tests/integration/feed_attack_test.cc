// `qsig serve` with an external UDP feed that this test publishes over loopback: the exchange
// simulator's packets, paced, plus hand-made forgeries sent to the same feed port. One forged
// session packet and one forged heartbeat jump do not stop the signals; a price-0 add marks
// that instrument's signals FLAG_BOOK_SUSPECT until the order is deleted.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "process.h"
#include "qsig/feeds/simulator.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::testing {
namespace {

std::map<std::string, double> Scrape(int port) { return ParseMetrics(HttpGet(port, "/metrics")); }

void PutBe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

// A MoldUDP64 packet: header, then each message with its u16 length.
std::vector<uint8_t> Mold(const char* session, uint64_t seq, uint16_t count,
                          const std::vector<std::vector<uint8_t>>& msgs = {}) {
  std::vector<uint8_t> p(20);
  std::memcpy(p.data(), session, 10);
  PutBe(p.data() + 10, seq, 8);
  PutBe(p.data() + 18, count, 2);
  for (const auto& m : msgs) {
    p.push_back(static_cast<uint8_t>(m.size() >> 8));
    p.push_back(static_cast<uint8_t>(m.size()));
    p.insert(p.end(), m.begin(), m.end());
  }
  return p;
}

// ITCH 5.0 Add Order (A, 36 bytes) and Order Delete (D, 19 bytes).
std::vector<uint8_t> AddOrder(uint16_t locate, uint64_t ref, char side, uint32_t shares,
                              uint32_t price) {
  std::vector<uint8_t> m(36, 0);
  m[0] = 'A';
  PutBe(&m[1], locate, 2);
  PutBe(&m[5], 1000, 6);
  PutBe(&m[11], ref, 8);
  m[19] = static_cast<uint8_t>(side);
  PutBe(&m[20], shares, 4);
  std::memcpy(&m[24], "AAPL    ", 8);
  PutBe(&m[32], price, 4);
  return m;
}
std::vector<uint8_t> DeleteOrder(uint16_t locate, uint64_t ref) {
  std::vector<uint8_t> m(19, 0);
  m[0] = 'D';
  PutBe(&m[1], locate, 2);
  PutBe(&m[5], 2000, 6);
  PutBe(&m[11], ref, 8);
  return m;
}

// The genuine exchange: simulator packets sent to the server's feed port at a steady pace. The
// test may slip its own messages into the stream (`Inject`): later packets are renumbered so
// the sequence stays gap-free.
class Exchange {
 public:
  explicit Exchange(int port) : port_(port), sim_(Options()) {}
  static feeds::SimulatorOptions Options() {
    feeds::SimulatorOptions o;
    o.instruments = {"AAPL", "MSFT", "NVDA", "AMZN"};
    return o;
  }
  void Send(int packets) {
    std::vector<uint8_t> buf(65536);
    for (int i = 0; i < packets; ++i) {
      const size_t n = sim_.NextPacket(buf);
      std::vector<uint8_t> p(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
      uint64_t seq = 0;
      for (int b = 0; b < 8; ++b) seq = seq << 8 | p[10 + b];
      PutBe(p.data() + 10, seq + offset_, 8);
      SendUdp(port_, p);
      // ~4000 packets/s: far below what loopback and the server absorb.
      if (i % 4 == 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  uint64_t next_sequence() const { return sim_.next_sequence() + offset_; }
  // Sends one message in its own packet, in sequence; returns its sequence number.
  uint64_t Inject(const std::vector<uint8_t>& msg) {
    const uint64_t seq = next_sequence();
    SendUdp(port_, Mold("QSIGSIM001", seq, 1, {msg}));
    ++offset_;
    return seq;
  }

 private:
  int port_;
  feeds::Simulator sim_;
  uint64_t offset_ = 0;
};

struct Seen {
  std::mutex mu;
  struct Rec {
    std::string instrument;
    uint64_t feed_sequence;
    uint32_t flags;
  };
  std::vector<Rec> recs;
  size_t size() {
    std::lock_guard<std::mutex> l(mu);
    return recs.size();
  }
};

TEST(FeedAttack, ForgedDatagramsDoNotStopSignalsAndAPriceZeroAddMarksItsInstrument) {
  const int grpc_port = FreePort();
  const int metrics_port = FreePort();
  const int feed_port = FreePort(SOCK_DGRAM);
  const std::string log = ::testing::TempDir() + "qsig_feed_attack.log";
  Child server(
      {QSIG_BINARY, "serve", "--config", QSIG_SOURCE_DIR "/config/demo.yaml", "--set",
       "feed.source=udp", "--set", "feed.listen=127.0.0.1:" + std::to_string(feed_port), "--set",
       "grpc.listen=127.0.0.1:" + std::to_string(grpc_port), "--set", "admin.listen=127.0.0.1:0",
       "--set", "metrics.listen=127.0.0.1:" + std::to_string(metrics_port), "--set",
       "calibration.warmup_samples=500", "--set", "console.status_interval_s=0"},
      log);
  ASSERT_TRUE(server.started());
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port),
                                     grpc::InsecureChannelCredentials());
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)))
      << server.Log();
  auto stub = v1::SignalService::NewStub(channel);

  Seen seen;
  grpc::ClientContext sub_ctx;
  std::thread reader([&] {
    v1::SubscribeRequest req;
    req.add_models("mlp");
    auto stream = stub->Subscribe(&sub_ctx, req);
    v1::Signal s;
    while (stream->Read(&s)) {
      std::lock_guard<std::mutex> l(seen.mu);
      seen.recs.push_back({s.instrument(), s.feed_sequence(), s.flags()});
    }
    stream->Finish();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // The subscription is live.

  Exchange exchange(feed_port);
  // Waits until the signal count stops moving (everything sent was processed).
  auto settle = [&] {
    size_t last = SIZE_MAX;
    for (int i = 0; i < 100 && seen.size() != last; ++i) {
      last = seen.size();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return seen.size();
  };

  exchange.Send(2000);
  const size_t warm = settle();
  ASSERT_GT(warm, 1000u) << server.Log();
  exchange.Send(2000);
  const size_t clean_batch = settle() - warm;

  // One forged session packet (a new printable name at sequence 1, with an order) and one
  // forged heartbeat of the live session jumping the sequence by +1,000,000.
  SendUdp(feed_port, Mold("EVILSESS01", 1, 1, {AddOrder(1, 1ull << 40, 'S', 100, 1)}));
  SendUdp(feed_port, Mold("QSIGSIM001", exchange.next_sequence() + 1'000'000, 0));
  const size_t before_attack = settle();
  exchange.Send(2000);
  const size_t attacked_batch = settle() - before_attack;
  // The same stream rate, and nearly the same signal count, as the batch before the attack
  // (the simulator's flow is stationary): within 10%.
  EXPECT_GT(attacked_batch, clean_batch * 9 / 10) << server.Log();
  EXPECT_LT(attacked_batch, clean_batch * 11 / 10);

  std::this_thread::sleep_for(std::chrono::milliseconds(2200));  // Beyond window_us (2 s).
  exchange.Send(200);
  settle();
  auto m = Scrape(metrics_port);
  EXPECT_EQ(m["qsig_feed_uncorroborated_total{kind=\"session\"}"], 1) << server.Log();
  EXPECT_EQ(m["qsig_feed_uncorroborated_total{kind=\"sequence_jump\"}"], 1);
  EXPECT_EQ(m["qsig_feed_session_resets_total"], 0);
  EXPECT_EQ(m["qsig_feed_gaps_total"], 0);
  EXPECT_EQ(m["qsig_feed_unknown_order_total"], 0) << "every genuine message was applied";

  // A price-0 ask on AAPL (locate 1) marks AAPL's signals until it is deleted.
  const uint64_t ref = 1ull << 41;
  const uint64_t add_seq = exchange.Inject(AddOrder(1, ref, 'S', 100, 0));
  exchange.Send(400);
  const uint64_t delete_seq = exchange.Inject(DeleteOrder(1, ref));
  exchange.Send(400);
  settle();
  sub_ctx.TryCancel();
  reader.join();

  m = Scrape(metrics_port);
  EXPECT_EQ(m["qsig_feed_book_suspect_total{reason=\"bad_price\"}"], 1);
  EXPECT_EQ(m["qsig_feed_suspect_books"], 0);
  uint64_t marked = 0, aapl_inside = 0, aapl_after = 0, aapl_after_marked = 0, others_marked = 0;
  for (const auto& r : seen.recs) {
    const bool suspect = (r.flags & v1::FLAG_BOOK_SUSPECT) != 0;
    if (r.instrument != "AAPL") {
      others_marked += suspect;
      continue;
    }
    if (r.feed_sequence >= add_seq && r.feed_sequence < delete_seq) {
      ++aapl_inside;
      marked += suspect;
    } else if (r.feed_sequence > delete_seq) {
      ++aapl_after;
      aapl_after_marked += suspect;
    } else {
      EXPECT_FALSE(suspect) << r.feed_sequence;
    }
  }
  EXPECT_GT(aapl_inside, 10u);
  EXPECT_EQ(marked, aapl_inside) << "every AAPL signal while the order rested is marked";
  EXPECT_GT(aapl_after, 10u);
  EXPECT_EQ(aapl_after_marked, 0u) << "clear once the book is consistent again";
  EXPECT_EQ(others_marked, 0u);
  EXPECT_EQ(server.Terminate(), 0) << server.Log();
}

}  // namespace
}  // namespace qsig::testing
