#include "watch.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>

#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::server {

int RunWatch(const WatchOptions& o) {
  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  if (!channel->WaitForConnected(deadline)) {
    std::fprintf(stderr, "qsig watch: cannot connect to %s within %.0f s\n", o.target.c_str(),
                 o.timeout_s);
    return 1;
  }
  auto stub = v1::SignalService::NewStub(channel);
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  for (const auto& i : o.instruments) req.add_instruments(i);
  for (const auto& m : o.models) req.add_models(m);
  auto reader = stub->Subscribe(&ctx, req);
  v1::Signal s;
  uint64_t n = 0;
  std::printf("%-8s %-6s %12s %8s %10s %5s %9s %s\n", "instr", "model", "value", "seq", "mid",
              "ver", "t2s_us", "flags");
  while (reader->Read(&s)) {
    std::string flags;
    if (s.flags() & v1::FLAG_STALE) flags += "stale ";
    if (s.flags() & v1::FLAG_SHADOW_DIVERGED) flags += "diverged ";
    if (s.flags() & v1::FLAG_WARMUP) flags += "warmup ";
    if (s.flags() & v1::FLAG_INVALID) flags += "invalid ";
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

}  // namespace qsig::server
