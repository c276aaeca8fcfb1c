// Real sockets over loopback: SimPublisher -> UdpReceiver -> FeedProcessor.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/feeds/udp_receiver.h"

namespace qsig::feeds {
namespace {

class CountingSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector&) noexcept override { ++n; }
  uint64_t n = 0;
};

// Receives until the publisher is done and the line has been quiet for a while.
uint64_t Drain(UdpReceiver& rx, SimPublisher& pub, FeedProcessor& feed, FeatureSink& sink) {
  std::vector<uint8_t> buf(65536);
  uint64_t packets = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    int64_t recv_ns = 0;
    const int n = rx.Receive(buf, 200, &recv_ns);
    if (n < 0) {
      ADD_FAILURE() << "receive error";
      break;
    }
    if (n == 0) {
      if (pub.finished()) break;
      continue;
    }
    EXPECT_GT(recv_ns, 0);
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), recv_ns, sink);
    ++packets;
  }
  return packets;
}

void RunLoopback(bool busy_poll) {
  UdpReceiverOptions ro;
  ro.listen = "127.0.0.1:0";
  ro.busy_poll = busy_poll;
  auto rx = UdpReceiver::Open(ro);
  ASSERT_TRUE(rx.ok()) << rx.status();
  ASSERT_NE((*rx)->local_port(), 0);

  SimPublisherOptions po;
  po.destination = "127.0.0.1:" + std::to_string((*rx)->local_port());
  po.messages_per_second = 200'000;
  po.max_messages = 20'000;
  auto pub = SimPublisher::Start(po);
  ASSERT_TRUE(pub.ok()) << pub.status();

  FeedProcessorOptions fo;
  fo.max_instruments = 8;
  fo.max_orders = 1 << 16;
  FeedProcessor feed(fo);
  CountingSink sink;
  const uint64_t packets = Drain(**rx, **pub, feed, sink);
  EXPECT_TRUE((*pub)->finished());
  EXPECT_GE((*pub)->messages_sent(), po.max_messages);
  EXPECT_LT((*pub)->messages_sent(), po.max_messages + 8);
  // Loopback may drop under load; nearly everything should arrive, and decode cleanly.
  EXPECT_GE(packets, (*pub)->packets_sent() * 9 / 10);
  EXPECT_EQ(feed.stats().malformed_packets.load(), 0u);
  EXPECT_EQ(feed.stats().malformed_messages.load(), 0u);
  EXPECT_GT(sink.n, 1000u);
  EXPECT_EQ(feed.symbol(1), "AAPL");
  if (feed.stats().gaps.load() == 0) {
    EXPECT_EQ(feed.stats().unknown_order.load(), 0u);
  }
}

TEST(FeedUdpTest, SimPublisherToUdpReceiverOverLoopback) { RunLoopback(false); }

TEST(FeedUdpTest, BusyPollReceiverWorksToo) { RunLoopback(true); }

TEST(FeedUdpTest, ReceiveTimesOutWithoutTraffic) {
  UdpReceiverOptions ro;
  ro.listen = "127.0.0.1:0";
  auto rx = UdpReceiver::Open(ro);
  ASSERT_TRUE(rx.ok()) << rx.status();
  std::vector<uint8_t> buf(2048);
  int64_t recv_ns = -1;
  const int64_t t0 = MonotonicNanos();
  EXPECT_EQ((*rx)->Receive(buf, 50, &recv_ns), 0);
  EXPECT_GE(MonotonicNanos() - t0, 40'000'000);
  EXPECT_EQ((*rx)->Receive(buf, 0, &recv_ns), 0);
  EXPECT_EQ(recv_ns, -1);
}

TEST(FeedUdpTest, OpenErrorsNameTheAddress) {
  UdpReceiverOptions ro;
  ro.listen = "not-an-address";
  auto bad = UdpReceiver::Open(ro);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("not-an-address"), std::string::npos);

  ro.listen = "203.0.113.7:0";  // TEST-NET-3: not a local address, bind fails.
  auto unbindable = UdpReceiver::Open(ro);
  ASSERT_FALSE(unbindable.ok());
  EXPECT_NE(std::string(unbindable.status().message()).find("203.0.113.7:0"), std::string::npos);

  ro.listen = "127.0.0.1:70000";
  EXPECT_FALSE(UdpReceiver::Open(ro).ok());

  ro.listen = "0.0.0.0:0";
  ro.group = "10.0.0.1";  // Not multicast.
  auto not_mcast = UdpReceiver::Open(ro);
  ASSERT_FALSE(not_mcast.ok());
  EXPECT_NE(std::string(not_mcast.status().message()).find("10.0.0.1"), std::string::npos);

  SimPublisherOptions po;
  po.destination = "127.0.0.1";
  auto pub = SimPublisher::Start(po);
  ASSERT_FALSE(pub.ok());
  EXPECT_NE(std::string(pub.status().message()).find("127.0.0.1"), std::string::npos);
}

TEST(FeedUdpTest, MulticastLoopbackWhenAvailable) {
  UdpReceiverOptions ro;
  ro.listen = "0.0.0.0:0";
  ro.group = "239.255.42.99";
  ro.interface_address = "127.0.0.1";
  auto rx = UdpReceiver::Open(ro);
  if (!rx.ok()) GTEST_SKIP() << "multicast join not available here: " << rx.status();

  SimPublisherOptions po;
  po.destination = "239.255.42.99:" + std::to_string((*rx)->local_port());
  po.interface_address = "127.0.0.1";
  po.messages_per_second = 100'000;
  po.max_messages = 2'000;
  auto pub = SimPublisher::Start(po);
  ASSERT_TRUE(pub.ok()) << pub.status();
  FeedProcessor feed(FeedProcessorOptions{8, 1 << 16, 256});
  CountingSink sink;
  const uint64_t packets = Drain(**rx, **pub, feed, sink);
  if (packets == 0) GTEST_SKIP() << "no multicast route over loopback here";
  EXPECT_EQ(feed.stats().malformed_packets.load(), 0u);
  EXPECT_GT(sink.n, 0u);
}

// Kernel receive timestamps: every loopback datagram carries one (SO_TIMESTAMPNS), on both
// clocks and in the past; with the option off the receiver says the time is its own.
TEST(FeedUdpTest, DatagramsCarryKernelReceiveTimestamps) {
  for (bool kernel : {true, false}) {
    SCOPED_TRACE(kernel);
    UdpReceiverOptions ro;
    ro.listen = "127.0.0.1:0";
    ro.kernel_timestamps = kernel;
    auto rx = UdpReceiver::Open(ro);
    ASSERT_TRUE(rx.ok()) << rx.status();
    EXPECT_EQ((*rx)->kernel_timestamps(), kernel);
    SimPublisherOptions po;
    po.destination = "127.0.0.1:" + std::to_string((*rx)->local_port());
    po.messages_per_second = 50'000;
    po.max_messages = 500;
    auto pub = SimPublisher::Start(po);
    ASSERT_TRUE(pub.ok()) << pub.status();
    std::vector<uint8_t> buf(65536);
    int got = 0;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (got < 20 && std::chrono::steady_clock::now() < give_up) {
      ReceiveTime t;
      const int n = (*rx)->Receive(buf, 200, &t);
      ASSERT_GE(n, 0);
      if (n == 0) continue;
      ++got;
      const int64_t mono = MonotonicNanos(), wall = WallNanos();
      EXPECT_EQ(t.kernel, kernel);
      EXPECT_GT(t.mono_ns, 0);
      EXPECT_LE(t.mono_ns, mono);
      EXPECT_LE(t.wall_ns, wall);
      EXPECT_LT(wall - t.wall_ns, 5'000'000'000);  // Really the receive time, not some epoch.
      // The two stamps name the same instant (up to the clock reads between them).
      EXPECT_NEAR(static_cast<double>((wall - t.wall_ns) - (mono - t.mono_ns)), 0.0, 1e6);
    }
    EXPECT_EQ(got, 20);
  }
}

// A run-to-completion server's shards on unicast: the publisher sends each packet to every
// copy destination too, byte for byte.
TEST(FeedUdpTest, SimPublisherCopiesEveryPacketToEachDestination) {
  std::vector<std::unique_ptr<UdpReceiver>> rx;
  for (int i = 0; i < 3; ++i) {
    UdpReceiverOptions ro;
    ro.listen = "127.0.0.1:0";
    auto r = UdpReceiver::Open(ro);
    ASSERT_TRUE(r.ok()) << r.status();
    rx.push_back(std::move(*r));
  }
  SimPublisherOptions po;
  po.destination = "127.0.0.1:" + std::to_string(rx[0]->local_port());
  for (int i = 1; i < 3; ++i) {
    po.destination_copies.push_back("127.0.0.1:" + std::to_string(rx[i]->local_port()));
  }
  po.messages_per_second = 20'000;
  po.max_messages = 400;
  auto pub = SimPublisher::Start(po);
  ASSERT_TRUE(pub.ok()) << pub.status();
  std::vector<std::vector<std::vector<uint8_t>>> got(3);
  std::vector<uint8_t> buf(65536);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < give_up) {
    bool any = false;
    for (int i = 0; i < 3; ++i) {
      int64_t ns = 0;
      const int n = rx[static_cast<size_t>(i)]->Receive(buf, 20, &ns);
      ASSERT_GE(n, 0);
      if (n > 0) {
        any = true;
        got[static_cast<size_t>(i)].emplace_back(buf.begin(), buf.begin() + n);
      }
    }
    if (!any && (*pub)->finished()) break;
  }
  ASSERT_GT(got[0].size(), 10u);
  EXPECT_EQ(got[0].size(), (*pub)->packets_sent());
  EXPECT_EQ(got[1], got[0]);
  EXPECT_EQ(got[2], got[0]);
}

// Run-to-completion shards on multicast: every socket joined to the group on the same port
// receives its own copy of each datagram; a second unicast bind to a taken port fails.
TEST(FeedUdpTest, SocketsSharingAMulticastPortEachGetEveryDatagram) {
  UdpReceiverOptions ro;
  ro.listen = "0.0.0.0:0";
  ro.group = "239.255.42.98";
  ro.interface_address = "127.0.0.1";
  auto first = UdpReceiver::Open(ro);
  if (!first.ok()) GTEST_SKIP() << "multicast join not available here: " << first.status();
  ro.listen = "0.0.0.0:" + std::to_string((*first)->local_port());
  auto second = UdpReceiver::Open(ro);
  ASSERT_TRUE(second.ok()) << second.status();

  SimPublisherOptions po;
  po.destination = "239.255.42.98:" + std::to_string((*first)->local_port());
  po.interface_address = "127.0.0.1";
  po.messages_per_second = 20'000;
  po.max_messages = 400;
  auto pub = SimPublisher::Start(po);
  ASSERT_TRUE(pub.ok()) << pub.status();
  FeedProcessor a(FeedProcessorOptions{8, 1 << 16, 256}), b(FeedProcessorOptions{8, 1 << 16, 256});
  CountingSink sa, sb;
  const uint64_t na = Drain(**first, **pub, a, sa);
  if (na == 0) GTEST_SKIP() << "no multicast route over loopback here";
  const uint64_t nb = Drain(**second, **pub, b, sb);
  EXPECT_EQ(na, (*pub)->packets_sent());
  EXPECT_EQ(nb, na);
  EXPECT_EQ(sb.n, sa.n);

  UdpReceiverOptions uo;
  uo.listen = "127.0.0.1:0";
  auto taken = UdpReceiver::Open(uo);
  ASSERT_TRUE(taken.ok()) << taken.status();
  uo.listen = "127.0.0.1:" + std::to_string((*taken)->local_port());
  EXPECT_FALSE(UdpReceiver::Open(uo).ok()) << "two unicast sockets would split the feed";
}

}  // namespace
}  // namespace qsig::feeds
