// FeedHandler over real loopback sockets: A/B lines with injected faults, MoldUDP64 re-requests
// answered by the SimPublisher's retransmission server, and pcap / ITCH recordings replayed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_handler.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/feeds/simulator.h"
#include "qsig/feeds/udp_receiver.h"

namespace qsig::feeds {
namespace {

class CollectingSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector& fv) noexcept override { vectors.push_back(fv); }
  std::vector<FeatureVector> vectors;
};

SimulatorOptions Sim() {
  SimulatorOptions o;
  o.instruments = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META", "GOOG", "AMD"};
  o.seed = 2024;
  return o;
}

FeedProcessorOptions Processor() {
  FeedProcessorOptions o;
  o.max_instruments = 16;
  o.max_orders = 1 << 18;
  return o;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/qsig_" + std::to_string(::getpid()) + "_" + name;
}

// The clean stream in-process, up to (excluding) sequence `end`.
struct CleanRun {
  CleanRun(const SimulatorOptions& so, uint64_t end) : feed(Processor()) {
    Simulator sim(so);
    std::vector<uint8_t> buf(65536);
    while (sim.next_sequence() < end) {
      const size_t n = sim.NextPacket(buf);
      feed.OnDatagram(std::span<const uint8_t>(buf.data(), n), 0, sink);
    }
    for (const FeatureVector& fv : sink.vectors) by_seq[fv.msg_seq] = fv;
  }
  FeedProcessor feed;
  CollectingSink sink;
  std::map<uint64_t, FeatureVector> by_seq;
};

void ExpectSameBooks(const FeedProcessor& a, const FeedProcessor& b, int instruments) {
  EXPECT_EQ(a.live_orders(), b.live_orders());
  std::vector<PriceLevel> la(512), lb(512);
  for (uint16_t locate = 1; locate <= instruments; ++locate) {
    for (bool bid : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "locate " << locate << (bid ? " bid" : " ask"));
      const int na = a.BookLevels(locate, bid, la);
      ASSERT_EQ(na, b.BookLevels(locate, bid, lb));
      for (int i = 0; i < na; ++i) EXPECT_EQ(la[i], lb[i]) << "level " << i;
    }
  }
}

bool SameVector(const FeatureVector& a, const FeatureVector& b) {
  if (a.locate != b.locate || a.msg_seq != b.msg_seq || a.exchange_ts_ns != b.exchange_ts_ns ||
      a.mid_price != b.mid_price || a.flags != b.flags || a.n_features != b.n_features) {
    return false;
  }
  for (int i = 0; i < a.n_features; ++i) {
    if (a.values[i] != b.values[i]) return false;
  }
  return true;
}

// Polls until the publisher is done, every gap is closed, and the lines have been quiet.
void RunUntilSettled(FeedHandler& h, SimPublisher& pub, FeatureSink& sink) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto quiet_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < give_up) {
    const int n = h.Poll(20, sink);
    ASSERT_GE(n, 0) << "socket error";
    const auto now = std::chrono::steady_clock::now();
    if (n > 0 || h.processor().gap_open() || !pub.finished()) {
      quiet_since = now;
    } else if (now - quiet_since > std::chrono::milliseconds(300)) {
      return;
    }
  }
  ADD_FAILURE() << "did not settle; next sequence " << h.processor().next_sequence();
}

struct Scenario {
  bool line_b;
  LineFaults faults;
  uint64_t messages;
};

void RunLossyScenario(const Scenario& sc) {
  FeedHandlerOptions ho;
  ho.line_a.listen = "127.0.0.1:0";
  if (sc.line_b) {
    ho.line_b = UdpReceiverOptions{};
    ho.line_b->listen = "127.0.0.1:0";
  }
  ho.processor = Processor();
  // Loopback under the full suite's load (-j2 on 2 vCPUs): be patient. The run that needed it
  // waited out a 5 s timeout with a gap still open; recovery, not its speed, is under test.
  ho.processor.recovery.gap_timeout_us = 30'000'000;
  ho.processor.recovery.max_rerequests = 6000;
  ho.processor.recovery.max_held_messages = 1 << 18;
  ho.processor.recovery.rerequest_interval_us = 5'000;

  SimPublisherOptions po;
  po.sim = Sim();
  // Not faster: the publisher also answers the re-requests, and on a loaded 2-vCPU machine at
  // 100k msg/s more gaps were open at once than a processor holds (64), so some were lost. This
  // test checks recovery, not its speed.
  po.messages_per_second = 25'000;
  po.max_messages = sc.messages;
  po.faults_a = sc.faults;
  po.faults_b = sc.faults;
  po.retransmit_listen = "127.0.0.1:0";

  // The handler needs the server's port and the server the handler's: open the handler with
  // a placeholder endpoint after the publisher is bound.
  ho.retransmit_endpoint = "127.0.0.1:1";  // Replaced below.
  auto probe = FeedHandler::Open(ho);
  ASSERT_TRUE(probe.ok()) << probe.status();
  po.destination = "127.0.0.1:" + std::to_string((*probe)->port_a());
  if (sc.line_b) po.destination_b = "127.0.0.1:" + std::to_string((*probe)->port_b());
  // Start paused? The publisher starts sending at once; the handler must exist first, so bind
  // the real handler to the same ports: reopen after learning the retransmission port.
  const uint16_t port_a = (*probe)->port_a();
  const uint16_t port_b = (*probe)->port_b();
  probe->reset();
  ho.line_a.listen = "127.0.0.1:" + std::to_string(port_a);
  if (sc.line_b) ho.line_b->listen = "127.0.0.1:" + std::to_string(port_b);

  auto pub_or = SimPublisher::Start(po);
  ASSERT_TRUE(pub_or.ok()) << pub_or.status();
  SimPublisher& pub = **pub_or;
  ho.retransmit_endpoint = "127.0.0.1:" + std::to_string(pub.retransmit_port());
  auto h_or = FeedHandler::Open(ho);
  ASSERT_TRUE(h_or.ok()) << h_or.status();
  FeedHandler& h = **h_or;

  CollectingSink sink;
  RunUntilSettled(h, pub, sink);
  pub.Stop();
  const FeedProcessor& feed = h.processor();
  const FeedStats& st = feed.stats();
  const FeedHandlerStats& hs = h.stats();
  ASSERT_FALSE(feed.gap_open());

  // The receiver may have joined a few packets late (the publisher started first): those
  // are recovered by re-request like any other gap.
  CleanRun clean(Sim(), feed.next_sequence());
  ASSERT_EQ(clean.feed.next_sequence(), feed.next_sequence());
  ExpectSameBooks(feed, clean.feed, 8);

  EXPECT_EQ(st.gaps_lost.load(), 0u);
  EXPECT_GT(pub.faults_injected(), 0u);
  size_t stale = 0, exact = 0, wrong = 0;
  for (const FeatureVector& fv : sink.vectors) {
    if (fv.flags & kFeatureFlagStale) {
      ++stale;
      continue;
    }
    auto it = clean.by_seq.find(fv.msg_seq);
    if (it == clean.by_seq.end() || !SameVector(fv, it->second)) {
      ++wrong;
    } else {
      ++exact;
    }
  }
  EXPECT_EQ(wrong, 0u) << "a vector without the stale flag differs from the clean stream";
  // How many vectors fall inside open gaps (stale) depends on how loaded the machine is; the
  // invariant is that none is wrong and that the run was not vacuous.
  EXPECT_GT(exact, 0u);
  EXPECT_EQ(exact + stale, sink.vectors.size());
  if (st.gaps.load() > 0) {
    EXPECT_GT(stale, 0u);
  }
  std::printf(
      "  messages %llu packets A %llu B %llu rtx %llu | wins A %llu B %llu rtx %llu | gaps %llu "
      "recovered %llu lost %llu | rerequests %llu | dups %llu malformed pkts %llu | vectors "
      "%zu stale %zu\n",
      static_cast<unsigned long long>(feed.next_sequence() - 1),
      static_cast<unsigned long long>(hs.packets_a.load()),
      static_cast<unsigned long long>(hs.packets_b.load()),
      static_cast<unsigned long long>(hs.packets_retransmit.load()),
      static_cast<unsigned long long>(hs.wins_a.load()),
      static_cast<unsigned long long>(hs.wins_b.load()),
      static_cast<unsigned long long>(hs.wins_retransmit.load()),
      static_cast<unsigned long long>(st.gaps.load()),
      static_cast<unsigned long long>(st.gaps_recovered.load()),
      static_cast<unsigned long long>(st.gaps_lost.load()),
      static_cast<unsigned long long>(hs.rerequests_sent.load()),
      static_cast<unsigned long long>(st.duplicates.load()),
      static_cast<unsigned long long>(st.malformed_packets.load()), sink.vectors.size(), stale);
}

// The acceptance test: 1% loss, reordering and duplicates on both lines.
TEST(FeedHandlerTest, AbLinesWithOnePercentFaultsRecoverToTheCleanBooks) {
  RunLossyScenario({true, LineFaults{0.01, 0.01, 0.01, 0.01}, 100'000});
}

// One line only: every loss must come back by re-request.
TEST(FeedHandlerTest, SingleLineRecoversEveryGapByRetransmission) {
  RunLossyScenario({false, LineFaults{0.02, 0.02, 0.02, 0.01}, 60'000});
}

TEST(FeedHandlerTest, PcapWrittenBySimulatorReplaysToTheSameVectors) {
  const std::string pcap = TempPath("live.pcap");
  const std::string itch = TempPath("live.itch");
  FeedHandlerOptions ho;
  ho.line_a.listen = "127.0.0.1:0";
  ho.processor = Processor();
  // No recovery here; a reordered packet is always right behind. Never time a gap out, so the
  // live run does not depend on scheduling (the replay runs without a clock).
  ho.processor.recovery.gap_timeout_us = 60'000'000;
  auto h_or = FeedHandler::Open(ho);
  ASSERT_TRUE(h_or.ok()) << h_or.status();
  FeedHandler& h = **h_or;

  SimPublisherOptions po;
  po.sim = Sim();
  po.destination = "127.0.0.1:" + std::to_string(h.port_a());
  po.messages_per_second = 100'000;
  po.max_messages = 40'000;
  po.faults_a = LineFaults{0.0, 0.01, 0.01, 0.01};  // On the wire, so in the capture too.
  po.pcap_path = pcap;
  po.itch_path = itch;
  auto pub = SimPublisher::Start(po);
  ASSERT_TRUE(pub.ok()) << pub.status();
  CollectingSink live;
  RunUntilSettled(h, **pub, live);
  (*pub)->Stop();  // Flushes and closes the files.

  // Same options, same code path, from the capture, as fast as possible.
  ReplayOptions ro;
  ro.format = ReplayFormat::kPcap;
  ro.path = pcap;
  ro.udp_ports = {h.port_a()};
  FeedProcessor replayed(Processor());
  CollectingSink replay_sink;
  auto n = ReplayInto(ro, replayed, replay_sink);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, h.stats().packets_a.load()) << "every datagram received live is in the capture";
  ASSERT_EQ(replay_sink.vectors.size(), live.vectors.size());
  size_t differ = 0;
  for (size_t i = 0; i < live.vectors.size(); ++i) {
    if (!SameVector(replay_sink.vectors[i], live.vectors[i])) ++differ;
  }
  EXPECT_EQ(differ, 0u);
  ExpectSameBooks(replayed, h.processor(), 8);

  // The ITCH file holds the clean message stream once: replaying it gives the clean books.
  ReplayOptions io;
  io.format = ReplayFormat::kItch;
  io.path = itch;
  FeedProcessor from_itch(Processor());
  CollectingSink itch_sink;
  ASSERT_TRUE(ReplayInto(io, from_itch, itch_sink).ok());
  EXPECT_EQ(from_itch.next_sequence(), h.processor().next_sequence());
  ExpectSameBooks(from_itch, h.processor(), 8);
  EXPECT_EQ(from_itch.stats().gaps.load(), 0u);
  std::remove(pcap.c_str());
  std::remove(itch.c_str());
}

TEST(FeedHandlerTest, ReplayErrorsNameTheFile) {
  ReplayOptions ro;
  ro.path = "/nonexistent/x.pcap";
  auto r = ReplaySource::Open(ro);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/x.pcap"), std::string::npos);
  ro.path = "";
  EXPECT_FALSE(ReplaySource::Open(ro).ok());
  FeedHandlerOptions ho;
  ho.line_a.listen = "127.0.0.1:0";
  ho.retransmit_endpoint = "nonsense";
  auto h = FeedHandler::Open(ho);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("retransmit_endpoint"), std::string::npos);
}

}  // namespace
}  // namespace qsig::feeds
