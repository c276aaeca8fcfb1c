// `qsig watch`: a gRPC client that subscribes to a server's signals and prints them.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
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
};

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
  grpc::ClientContext ctx;
  qsig::v1::SubscribeRequest req;
  for (const auto& i : o.instruments) req.add_instruments(i);
  for (const auto& m : o.models) req.add_models(m);
  auto reader = stub->Subscribe(&ctx, req);
  qsig::v1::Signal s;
  uint64_t n = 0;
  std::printf("%-8s %-6s %12s %8s %10s %5s %9s %s\n", "instr", "model", "value", "seq", "mid",
              "ver", "t2s_us", "flags");
  while (reader->Read(&s)) {
    std::string flags;
    if (s.flags() & qsig::v1::FLAG_STALE) flags += "stale ";
    if (s.flags() & qsig::v1::FLAG_SHADOW_DIVERGED) flags += "diverged ";
    if (s.flags() & qsig::v1::FLAG_WARMUP) flags += "warmup ";
    if (s.flags() & qsig::v1::FLAG_INVALID) flags += "invalid ";
    std::printf("%-8s %-6s %12.6f %8lu %10.4f %5lu %9.1f %s\n", s.instrument().c_str(),
                s.model().c_str(), s.value(), static_cast<unsigned long>(s.sequence()),
                s.mid_price(), static_cast<unsigned long>(s.model_version()),
                static_cast<double>(s.tick_to_signal_ns()) * 1e-3, flags.c_str());
    std::fflush(stdout);
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
  return {sub, [wo] { return RunWatch(*wo); }};
}

}  // namespace qsig::commands
