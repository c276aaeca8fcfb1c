// Signal delivery end to end: `qsig serve` as a child process with its built-in simulator, real
// gRPC clients over loopback. SubscribeBatch keeps per-(instrument, model) order and loses
// nothing; a reader beside 64 clients that never read gets every signal; the stream cap, the
// instrument-list cap and bad symbols are refused with the documented codes; streams hold no
// threads.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
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

double Get(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? -1 : it->second;
}

int Threads(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// A channel of its own (its own TCP connection), so that one client's unread data cannot block
// another client's connection-level flow control. It buffers little that it has not read (no
// window growth), like a client that is stuck.
std::shared_ptr<grpc::Channel> StuckClientChannel(int port, int id) {
  grpc::ChannelArguments args;
  args.SetInt("qsig.test.connection", id);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

class DeliveryTest : public ::testing::Test {
 protected:
  void Start(const std::vector<std::string>& sets) {
    grpc_port_ = FreePort();
    metrics_port_ = FreePort();
    const int feed_port = FreePort(SOCK_DGRAM);
    std::vector<std::string> argv = {
        QSIG_BINARY, "serve",
        "--config",  QSIG_SOURCE_DIR "/config/demo.yaml",
        "--set",     "grpc.listen=127.0.0.1:" + std::to_string(grpc_port_),
        "--set",     "admin.listen=127.0.0.1:0",
        "--set",     "metrics.listen=127.0.0.1:" + std::to_string(metrics_port_),
        "--set",     "feed.listen=127.0.0.1:" + std::to_string(feed_port),
        "--set",     "calibration.warmup_samples=500",
        "--set",     "console.status_interval_s=0"};
    for (const auto& s : sets) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    server_ = std::make_unique<Child>(argv, ::testing::TempDir() + "qsig_delivery_test.log");
    ASSERT_TRUE(server_->started());
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::SignalService::NewStub(channel_);
    // Serving once GetLatest answers and some instrument has published.
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      v1::GetLatestResponse resp;
      if (stub_->GetLatest(&ctx, v1::GetLatestRequest(), &resp).ok() && resp.signals_size() > 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "server did not start serving\n" << server_->Log();
  }

  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
    }
  }

  std::map<std::string, double> Scrape() {
    return ParseMetrics(HttpGet(metrics_port_, "/metrics"));
  }

  // Waits (bounded) until the open-streams gauge reads `n`.
  bool WaitForStreams(double n) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      if (Get(Scrape(), "qsig_grpc_subscribers") == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  int grpc_port_ = 0, metrics_port_ = 0;
  std::unique_ptr<Child> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SignalService::Stub> stub_;
};

TEST_F(DeliveryTest, SubscribeBatchKeepsEverySequenceInOrder) {
  Start({"sim.rate=20000", "grpc.subscriber_queue=1048576"});
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub_->SubscribeBatch(&ctx, v1::SubscribeRequest());
  SequenceCheck check;
  std::set<std::string> instruments, models;
  uint64_t messages = 0;
  v1::SignalBatch batch;
  const auto deadline = Clock::now() + std::chrono::seconds(40);
  while (check.signals < 30000 && Clock::now() < deadline && stream->Read(&batch)) {
    ++messages;
    EXPECT_GT(batch.signals_size(), 0);
    for (const auto& s : batch.signals()) {
      check.Add(s);
      instruments.insert(s.instrument());
      models.insert(s.model());
    }
  }
  ctx.TryCancel();
  stream->Finish();
  EXPECT_GE(check.signals, 30000u);
  EXPECT_EQ(check.backwards, 0u);
  EXPECT_EQ(check.gaps, 0u);
  EXPECT_GE(instruments.size(), 4u);
  EXPECT_EQ(models, (std::set<std::string>{"lstm", "mlp"}));
  const auto m = Scrape();
  EXPECT_GE(Get(m, "qsig_grpc_messages_sent_total{rpc=\"SubscribeBatch\"}"),
            static_cast<double>(messages));
  EXPECT_GE(Get(m, "qsig_grpc_signals_sent_total{rpc=\"SubscribeBatch\"}"),
            static_cast<double>(check.signals));
  EXPECT_EQ(Get(m, "qsig_grpc_subscriber_drops_total"), 0);
}

TEST_F(DeliveryTest, AReaderBesideSixtyFourNonReadersGetsEverySignal) {
  Start({"sim.rate=20000"});
  const pid_t pid = server_->pid();
  const int threads_before = Threads(pid);
  // 64 clients that subscribe to everything and never read, each on its own connection.
  struct Stuck {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::SignalService::Stub> stub;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::Signal>> single;
    std::unique_ptr<grpc::ClientReader<v1::SignalBatch>> batch;
  };
  std::vector<std::unique_ptr<Stuck>> stuck;
  for (int i = 0; i < 64; ++i) {
    auto s = std::make_unique<Stuck>();
    s->channel = StuckClientChannel(grpc_port_, i);
    s->stub = v1::SignalService::NewStub(s->channel);
    if (i % 2) {
      s->single = s->stub->Subscribe(&s->ctx, v1::SubscribeRequest());
    } else {
      s->batch = s->stub->SubscribeBatch(&s->ctx, v1::SubscribeRequest());
    }
    stuck.push_back(std::move(s));
  }
  ASSERT_TRUE(WaitForStreams(64)) << server_->Log();
  // Streams hold no threads.
  EXPECT_LT(Threads(pid) - threads_before, 16) << "threads before: " << threads_before;
  // Their queues overflow: they lose their own oldest signals, counted.
  const auto drops_deadline = Clock::now() + std::chrono::seconds(60);
  while (Get(Scrape(), "qsig_grpc_subscriber_drops_total") <= 0 && Clock::now() < drops_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const auto before = Scrape();
  ASSERT_GT(Get(before, "qsig_grpc_subscriber_drops_total"), 0) << server_->Log();

  // Two readers, one per RPC, each on two instruments.
  v1::SubscribeRequest req;
  req.add_instruments("AAPL");
  req.add_instruments("MSFT");
  SequenceCheck batch_check, single_check;
  std::thread single_reader([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub_->Subscribe(&ctx, req);
    v1::Signal s;
    const auto deadline = Clock::now() + std::chrono::seconds(40);
    while (single_check.signals < 10000 && Clock::now() < deadline && stream->Read(&s)) {
      EXPECT_TRUE(s.instrument() == "AAPL" || s.instrument() == "MSFT") << s.instrument();
      single_check.Add(s);
    }
    ctx.TryCancel();
    stream->Finish();
  });
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub_->SubscribeBatch(&ctx, req);
    v1::SignalBatch b;
    const auto deadline = Clock::now() + std::chrono::seconds(40);
    while (batch_check.signals < 10000 && Clock::now() < deadline && stream->Read(&b)) {
      for (const auto& s : b.signals()) {
        EXPECT_TRUE(s.instrument() == "AAPL" || s.instrument() == "MSFT") << s.instrument();
        batch_check.Add(s);
      }
    }
    ctx.TryCancel();
    stream->Finish();
  }
  single_reader.join();
  for (const SequenceCheck* c : {&batch_check, &single_check}) {
    EXPECT_GE(c->signals, 10000u);
    EXPECT_EQ(c->gaps, 0u) << "a reader lost signals";
    EXPECT_EQ(c->backwards, 0u);
    EXPECT_EQ(c->last.size(), 4u);  // 2 instruments x 2 models.
  }
  const auto after = Scrape();
  EXPECT_GT(Get(after, "qsig_grpc_subscriber_drops_total"),
            Get(before, "qsig_grpc_subscriber_drops_total"));
  // The tick threads never lost a signal because of the clients.
  for (const auto& [series, v] : after) {
    if (series.rfind("qsig_queue_drops_total{queue=\"signals\"", 0) == 0) {
      EXPECT_EQ(v, 0) << series;
    }
  }
  for (auto& s : stuck) s->ctx.TryCancel();
  for (auto& s : stuck) {
    if (s->single) s->single->Finish();
    if (s->batch) s->batch->Finish();
  }
  EXPECT_TRUE(WaitForStreams(0));
}

TEST_F(DeliveryTest, CapsAndBadSymbolsAreRefusedWithTheirCodes) {
  Start({"sim.rate=500", "grpc.max_streams=200", "grpc.max_instruments_per_subscription=4"});
  const pid_t pid = server_->pid();
  const int threads_before = Threads(pid);
  struct Open {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::Signal>> reader;
  };
  std::vector<std::unique_ptr<Open>> open;
  v1::SubscribeRequest aapl;
  aapl.add_instruments("AAPL");
  aapl.add_models("mlp");
  for (int i = 0; i < 200; ++i) {
    auto o = std::make_unique<Open>();
    o->reader = stub_->Subscribe(&o->ctx, aapl);
    open.push_back(std::move(o));
  }
  ASSERT_TRUE(WaitForStreams(200)) << server_->Log();
  EXPECT_LT(Threads(pid) - threads_before, 16) << "threads before: " << threads_before;

  auto code_of_subscribe = [&](const v1::SubscribeRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto r = stub_->Subscribe(&ctx, req);
    v1::Signal s;
    while (r->Read(&s)) {
      ctx.TryCancel();  // Accepted: it streams.
    }
    return r->Finish().error_code();
  };
  auto code_of_batch = [&](const v1::SubscribeRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto r = stub_->SubscribeBatch(&ctx, req);
    v1::SignalBatch b;
    while (r->Read(&b)) {
      ctx.TryCancel();
    }
    return r->Finish().error_code();
  };
  EXPECT_EQ(code_of_subscribe(aapl), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code_of_batch(aapl), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Unary calls still work at the cap.
  {
    grpc::ClientContext ctx;
    v1::GetLatestResponse resp;
    EXPECT_TRUE(stub_->GetLatest(&ctx, v1::GetLatestRequest(), &resp).ok());
  }
  // A closed stream frees its place.
  open.back()->ctx.TryCancel();
  open.back()->reader->Finish();
  open.pop_back();
  ASSERT_TRUE(WaitForStreams(199));
  EXPECT_EQ(code_of_subscribe(aapl), grpc::StatusCode::CANCELLED);  // Accepted, then cancelled.
  ASSERT_TRUE(WaitForStreams(199));
  for (auto& o : open) o->ctx.TryCancel();
  for (auto& o : open) o->reader->Finish();
  open.clear();
  ASSERT_TRUE(WaitForStreams(0));

  struct Case {
    std::vector<std::string> instruments, models;
    grpc::StatusCode code;
  } cases[] = {
      {{"AAPL", "MSFT", "NVDA", "AMZN", "GOOG"}, {}, grpc::StatusCode::INVALID_ARGUMENT},  // > 4
      {{"ZZZZ"}, {}, grpc::StatusCode::INVALID_ARGUMENT},                         // Unknown.
      {{"AAPL", "APPL"}, {}, grpc::StatusCode::INVALID_ARGUMENT},                 // One unknown.
      {{""}, {}, grpc::StatusCode::INVALID_ARGUMENT},                             // Empty.
      {{"TOOLONGSYM"}, {}, grpc::StatusCode::INVALID_ARGUMENT},                   // > 8 characters.
      {{"AA PL"}, {}, grpc::StatusCode::INVALID_ARGUMENT},                        // A space.
      {{std::string("AA\0L", 4)}, {}, grpc::StatusCode::INVALID_ARGUMENT},        // A NUL byte.
      {{"AAPL"}, {"nope"}, grpc::StatusCode::NOT_FOUND},                          // Unknown model.
      {{"AAPL", "MSFT", "NVDA", "AMZN"}, {"lstm"}, grpc::StatusCode::CANCELLED},  // Accepted.
  };
  int invalid = 0;
  for (const auto& c : cases) {
    v1::SubscribeRequest req;
    std::string trace;
    for (const auto& i : c.instruments) {
      req.add_instruments(i);
      trace += "'" + i + "' ";
    }
    for (const auto& m : c.models) req.add_models(m);
    SCOPED_TRACE(trace);
    EXPECT_EQ(code_of_subscribe(req), c.code);
    EXPECT_EQ(code_of_batch(req), c.code);
    invalid += c.code == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 0;
  }
  {
    grpc::ClientContext ctx;
    v1::GetLatestRequest req;
    for (const char* i : {"AAPL", "MSFT", "NVDA", "AMZN", "GOOG"}) req.add_instruments(i);
    v1::GetLatestResponse resp;
    EXPECT_EQ(stub_->GetLatest(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  const auto m = Scrape();
  EXPECT_EQ(Get(m, "qsig_grpc_streams_rejected_total{reason=\"max_streams\"}"), 2);
  EXPECT_EQ(Get(m, "qsig_grpc_streams_rejected_total{reason=\"invalid_argument\"}"), invalid);
  EXPECT_EQ(Get(m, "qsig_grpc_streams_rejected_total{reason=\"not_found\"}"), 2);
}

}  // namespace
}  // namespace qsig::testing
