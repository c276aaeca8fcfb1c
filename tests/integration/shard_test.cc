// Instruments sharded over two servers (feed.shard): two `qsig serve` processes on loopback,
// one feed — `qsig sim`, whose datagrams this test copies to both servers' feed ports, as a
// multicast group would — each owning half the instruments by symbol hash. A client that asks
// one server for the topology and subscribes to every shard's address receives every
// instrument's signals exactly once: from its own shard, in sequence, none from the other.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Copies every datagram that arrives on `in_port` to each of `out_ports` (a stand-in for a
// multicast group on loopback), until stopped.
class UdpTee {
 public:
  UdpTee(int in_port, std::vector<int> out_ports) : out_ports_(std::move(out_ports)) {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(in_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int buf = 8 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    thread_ = std::thread([this] { Run(); });
  }
  ~UdpTee() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  bool ok() const { return ok_; }
  uint64_t copied() const { return copied_.load(); }

 private:
  void Run() {
    std::vector<uint8_t> buf(65536);
    const auto give_up = Clock::now() + std::chrono::minutes(3);  // Bounded whatever happens.
    while (!stop_ && Clock::now() < give_up) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) continue;
      for (int port : out_ports_) {
        sockaddr_in d{};
        d.sin_family = AF_INET;
        d.sin_port = htons(static_cast<uint16_t>(port));
        d.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sendto(fd_, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&d),
               sizeof d);
      }
      copied_.fetch_add(1);
    }
  }

  int fd_ = -1;
  bool ok_ = false;
  std::vector<int> out_ports_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> copied_{0};
  std::thread thread_;
};

struct ShardServer {
  int grpc_port = FreePort();
  int admin_port = FreePort();
  int metrics_port = FreePort();
  int feed_port = FreePort(SOCK_DGRAM);
  std::unique_ptr<Child> child;
};

TEST(ShardTest, TwoShardsOneFeedEveryInstrumentExactlyOnce) {
  ShardServer s[2];
  const std::string addresses = "[127.0.0.1:" + std::to_string(s[0].grpc_port) +
                                ", 127.0.0.1:" + std::to_string(s[1].grpc_port) + "]";
  for (int i = 0; i < 2; ++i) {
    const std::string log = ::testing::TempDir() + "qsig_shard_" + std::to_string(i) + ".log";
    s[i].child = std::make_unique<Child>(
        std::vector<std::string>{
            QSIG_BINARY, "serve",
            "--config",  QSIG_SOURCE_DIR "/config/demo.yaml",
            "--set",     "feed.source=udp",
            "--set",     "feed.listen=127.0.0.1:" + std::to_string(s[i].feed_port),
            "--set",     "feed.shard.index=" + std::to_string(i),
            "--set",     "feed.shard.count=2",
            "--set",     "feed.shard.addresses=" + addresses,
            "--set",     "grpc.listen=127.0.0.1:" + std::to_string(s[i].grpc_port),
            "--set",     "admin.listen=127.0.0.1:" + std::to_string(s[i].admin_port),
            "--set",     "metrics.listen=127.0.0.1:" + std::to_string(s[i].metrics_port),
            "--set",     "workers.cores=[]",
            "--set",     "calibration.warmup_samples=300",
            "--set",     "console.status_interval_s=0"},
        log);
    ASSERT_TRUE(s[i].child->started());
  }
  const int tee_port = FreePort(SOCK_DGRAM);
  UdpTee tee(tee_port, {s[0].feed_port, s[1].feed_port});
  ASSERT_TRUE(tee.ok());
  Child sim({QSIG_BINARY, "sim", "--config", QSIG_SOURCE_DIR "/config/demo.yaml", "--set",
             "sim.destination=127.0.0.1:" + std::to_string(tee_port), "--set", "sim.rate=4000",
             "--set", "sim.retransmit=false", "--set", "sim.max_messages=200000"},
            ::testing::TempDir() + "qsig_shard_sim.log");
  ASSERT_TRUE(sim.started());

  // The topology, from shard 0, once its directory holds all eight demo instruments.
  auto ch0 = grpc::CreateChannel("127.0.0.1:" + std::to_string(s[0].grpc_port),
                                 grpc::InsecureChannelCredentials());
  auto stub0 = v1::SignalService::NewStub(ch0);
  v1::GetTopologyResponse topo;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    topo.Clear();
    const grpc::Status st = stub0->GetTopology(&ctx, v1::GetTopologyRequest(), &topo);
    size_t n = 0;
    if (st.ok()) {
      for (const auto& sh : topo.shards()) n += static_cast<size_t>(sh.instruments_size());
    }
    if (n == 8) break;
    ASSERT_LT(Clock::now(), deadline) << st.error_message() << "\n" << s[0].child->Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(topo.shard_count(), 2u);
  EXPECT_EQ(topo.this_shard(), 0u);
  EXPECT_EQ(topo.scheme(), "hash");
  ASSERT_EQ(topo.shards_size(), 2);
  std::set<std::string> owned[2], all;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(topo.shards(i).address(), "127.0.0.1:" + std::to_string(s[i].grpc_port));
    for (const auto& sym : topo.shards(i).instruments()) {
      owned[i].insert(sym);
      EXPECT_TRUE(all.insert(sym).second) << sym << " is in two shards";
    }
    EXPECT_FALSE(owned[i].empty()) << "shard " << i << " owns nothing";
  }
  EXPECT_EQ(all,
            (std::set<std::string>{"AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM"}));

  // Asking a shard for another shard's instrument names the owner.
  {
    auto stub = v1::SignalService::NewStub(ch0);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::SubscribeRequest req;
    req.add_instruments(*owned[1].begin());
    auto reader = stub->SubscribeBatch(&ctx, req);
    v1::SignalBatch b;
    while (reader->Read(&b)) {
    }
    const grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
    EXPECT_NE(st.error_message().find(topo.shards(1).address()), std::string::npos)
        << st.error_message();
  }

  // The client pattern: one SubscribeBatch per shard address from the topology, for 6 s.
  SequenceCheck logs[2];
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&, i] {
      auto ch = grpc::CreateChannel(topo.shards(i).address(), grpc::InsecureChannelCredentials());
      auto stub = v1::SignalService::NewStub(ch);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(6));
      auto reader = stub->SubscribeBatch(&ctx, v1::SubscribeRequest());
      v1::SignalBatch b;
      while (reader->Read(&b)) {
        for (const auto& sig : b.signals()) logs[i].Add(sig);
      }
      reader->Finish();
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_GT(tee.copied(), 0u);
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(::testing::Message() << "shard " << i);
    EXPECT_GT(logs[i].signals, 100u) << s[i].child->Log();
    EXPECT_EQ(logs[i].instruments, owned[i]) << "a shard published exactly its own instruments";
    EXPECT_EQ(logs[i].gaps, 0u);
    EXPECT_EQ(logs[i].backwards, 0u);
    for (const auto& sym : logs[i].instruments) {
      EXPECT_TRUE(seen.insert(sym).second) << sym << " came from both shards";
    }
  }
  EXPECT_EQ(seen, all) << "every instrument's signals arrived";

  // `qsig watch --all-shards` does the same from the command line.
  const std::string watch_log = ::testing::TempDir() + "qsig_shard_watch.log";
  Child watch({QSIG_BINARY, "watch", "--target", topo.shards(0).address(), "--all-shards",
               "--count", "400", "--timeout", "10"},
              watch_log);
  ASSERT_EQ(watch.Wait(30000), 0) << watch.Log();
  std::set<std::string> watched[2];
  std::istringstream lines(watch.Log());
  for (std::string line; std::getline(lines, line);) {
    const std::string sym = line.substr(0, line.find(' '));
    for (int i = 0; i < 2; ++i) {
      if (owned[i].count(sym)) watched[i].insert(sym);
    }
  }
  EXPECT_FALSE(watched[0].empty()) << watch.Log();
  EXPECT_FALSE(watched[1].empty()) << watch.Log();

  sim.Terminate();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(s[i].child->Terminate(), 0) << s[i].child->Log();
}

}  // namespace
}  // namespace qsig::testing
