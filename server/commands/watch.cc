// `qsig watch`: a gRPC client that subscribes to a server's signals and prints them; with
// --all-shards it asks the server for the topology (GetTopology) and subscribes to every shard.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::commands {
namespace {

struct WatchOptions {
  std::string target = "127.0.0.1:50051";
  std::vector<std::string> instruments;
  std::vector<std::string> models;
  uint64_t count = 0;
  double timeout_s = 10;
  bool all_shards = false;
};

// Prints one signal line; serialized across shard readers.
void PrintSignal(const qsig::v1::Signal& s) {
  std::string flags;
  if (s.flags() & qsig::v1::FLAG_STALE) flags += "stale ";
  if (s.flags() & qsig::v1::FLAG_SHADOW_DIVERGED) flags += "diverged ";
  if (s.flags() & qsig::v1::FLAG_WARMUP) flags += "warmup ";
  if (s.flags() & qsig::v1::FLAG_INVALID) flags += "invalid ";
  if (s.flags() & qsig::v1::FLAG_HALTED) flags += "halted ";
  if (s.flags() & qsig::v1::FLAG_BOOK_SUSPECT) flags += "book_suspect ";
  if (s.flags() & qsig::v1::FLAG_FALLBACK) flags += "fallback ";
  std::printf("%-8s %-6s %12.6f %8lu %10.4f %5lu %9.1f %s\n", s.instrument().c_str(),
              s.model().c_str(), s.value(), static_cast<unsigned long>(s.sequence()), s.mid_price(),
              static_cast<unsigned long>(s.model_version()),
              static_cast<double>(s.tick_to_signal_ns()) * 1e-3, flags.c_str());
  std::fflush(stdout);
}

// --all-shards: one Subscribe per shard address from GetTopology (each with the requested
// instruments that shard owns), printed as they arrive.
int RunWatchAllShards(const WatchOptions& o, qsig::v1::SignalService::Stub& stub) {
  grpc::ClientContext tctx;
  tctx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  qsig::v1::GetTopologyResponse topo;
  if (grpc::Status st = stub.GetTopology(&tctx, qsig::v1::GetTopologyRequest(), &topo); !st.ok()) {
    std::fprintf(stderr, "qsig watch: GetTopology: %s\n", st.error_message().c_str());
    return 1;
  }
  const std::set<std::string> wanted(o.instruments.begin(), o.instruments.end());
  std::mutex print_mu;
  std::atomic<uint64_t> printed{0};
  std::atomic<int> failed{0};
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::thread> readers;
  std::mutex ctx_mu;
  const auto cancel_all = [&] {
    std::lock_guard<std::mutex> l(ctx_mu);
    for (auto& c : contexts) c->TryCancel();
  };
  for (const qsig::v1::Shard& shard : topo.shards()) {
    qsig::v1::SubscribeRequest req;
    for (const auto& m : o.models) req.add_models(m);
    if (!wanted.empty()) {
      for (const auto& sym : shard.instruments()) {
        if (wanted.count(sym)) req.add_instruments(sym);
      }
      if (req.instruments_size() == 0) continue;  // None of this shard's.
    }
    const std::string address = shard.address().empty() ? o.target : shard.address();
    std::fprintf(stderr, "qsig watch: shard %u at %s (%d instruments)\n", shard.index(),
                 address.c_str(), shard.instruments_size());
    grpc::ClientContext* ctx;
    {
      std::lock_guard<std::mutex> l(ctx_mu);
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      ctx = contexts.back().get();
    }
    readers.emplace_back([&, ctx, req, address] {
      auto ch = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
      auto shard_stub = qsig::v1::SignalService::NewStub(ch);
      auto reader = shard_stub->Subscribe(ctx, req);
      qsig::v1::Signal s;
      while (reader->Read(&s)) {
        std::lock_guard<std::mutex> l(print_mu);
        if (o.count && printed.load() >= o.count) break;
        PrintSignal(s);
        if (o.count && printed.fetch_add(1) + 1 >= o.count) {
          cancel_all();
          break;
        }
      }
      ctx->TryCancel();
      const grpc::Status st = reader->Finish();
      if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
        std::lock_guard<std::mutex> l(print_mu);
        std::fprintf(stderr, "qsig watch: %s: %s\n", address.c_str(), st.error_message().c_str());
        failed.fetch_add(1);
        cancel_all();
      }
    });
  }
  for (auto& t : readers) t.join();
  return failed.load() ? 1 : 0;
}

int RunWatch(const WatchOptions& o) {
  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  if (!channel->WaitForConnected(deadline)) {
    std::fprintf(stderr, "qsig watch: cannot connect to %s within %.0f s\n", o.target.c_str(),
                 o.timeout_s);
    return 1;
  }
  auto stub = qsig::v1::SignalService::NewStub(channel);
  std::printf("%-8s %-6s %12s %8s %10s %5s %9s %s\n", "instr", "model", "value", "seq", "mid",
              "ver", "t2s_us", "flags");
  if (o.all_shards) return RunWatchAllShards(o, *stub);
  grpc::ClientContext ctx;
  qsig::v1::SubscribeRequest req;
  for (const auto& i : o.instruments) req.add_instruments(i);
  for (const auto& m : o.models) req.add_models(m);
  auto reader = stub->Subscribe(&ctx, req);
  qsig::v1::Signal s;
  uint64_t n = 0;
  while (reader->Read(&s)) {
    PrintSignal(s);
    if (o.count && ++n >= o.count) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
    std::fprintf(stderr, "qsig watch: %s\n", st.error_message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

Command AddWatchCommand(CLI::App& app) {
  auto wo = std::make_shared<WatchOptions>();
  CLI::App* sub = app.add_subcommand("watch", "Subscribe over gRPC and print signals");
  sub->add_option("--target", wo->target, "gRPC address")->capture_default_str();
  sub->add_option("--instrument", wo->instruments, "Instrument filter (repeatable)");
  sub->add_option("--model", wo->models, "Model filter (repeatable)");
  sub->add_option("--count", wo->count, "Exit after this many signals (0 = run forever)");
  sub->add_option("--timeout", wo->timeout_s, "Give up if the server is not reachable (s)")
      ->capture_default_str();
  sub->add_flag("--all-shards", wo->all_shards,
                "Ask --target for the topology (GetTopology) and subscribe to every shard");
  return {sub, [wo] { return RunWatch(*wo); }};
}

}  // namespace qsig::commands
