// End-to-end latency harness: runs the server in-process with its simulator at a given rate,
// subscribes over real gRPC, and reports tick-to-signal (datagram received to signal published,
// measured in the server for every signal) and gRPC delivery (publish to client receive) as
// p50 / p99 / p99.9.
//
//   build/bench/e2e/qsig_bench_e2e --rate 20000 --seconds 20
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "qsig/config/config.h"
#include "qsig/server/server.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace {

double Quantile(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) * 1e-3;
}

int64_t WallNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qsig end-to-end latency harness"};
  std::string config_path = QSIG_SOURCE_DIR "/config/demo.yaml";
  double rate = 20000, seconds = 20, warmup_s = 3;
  int workers = 2;
  std::vector<std::string> overrides;
  app.add_option("--config", config_path)->capture_default_str();
  app.add_option("--rate", rate, "Simulator ITCH messages per second")->capture_default_str();
  app.add_option("--seconds", seconds, "Measurement duration")->capture_default_str();
  app.add_option("--warmup", warmup_s, "Seconds after INT8 calibration before measuring")
      ->capture_default_str();
  app.add_option("--workers", workers)->capture_default_str();
  app.add_option("--set", overrides, "Extra config overrides");
  CLI11_PARSE(app, argc, argv);

  overrides.insert(overrides.begin(),
                   {"grpc.listen=127.0.0.1:0", "metrics.listen=127.0.0.1:0",
                    "feed.listen=127.0.0.1:0", "console.status_interval_s=0",
                    "sim.rate=" + std::to_string(rate), "workers.count=" + std::to_string(workers),
                    "workers.cores=[]", "grpc.subscriber_queue=1000000"});
  auto cfg = qsig::config::LoadConfig(config_path, overrides);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  auto server = qsig::server::Server::Create(*cfg);
  if (!server.ok() || !(*server)->Start().ok()) {
    std::fprintf(stderr, "cannot start the server\n");
    return 1;
  }
  auto& srv = **server;
  const auto calib_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!srv.calibrated() && std::chrono::steady_clock::now() < calib_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));

  auto channel = grpc::CreateChannel(srv.grpc_address(), grpc::InsecureChannelCredentials());
  auto stub = qsig::v1::SignalService::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->Subscribe(&ctx, qsig::v1::SubscribeRequest());
  std::vector<int64_t> tick, delivery;
  tick.reserve(static_cast<size_t>(rate * seconds * 3));
  delivery.reserve(tick.capacity());
  srv.Status();  // Start the server-side interval.
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::thread stopper([&] {
    std::this_thread::sleep_until(end);
    ctx.TryCancel();
  });
  qsig::v1::Signal s;
  while (stream->Read(&s)) {
    tick.push_back(s.tick_to_signal_ns());
    delivery.push_back(WallNanos() - s.publish_ts_ns());
  }
  stopper.join();
  const grpc::Status finish = stream->Finish();
  if (tick.empty()) {
    std::fprintf(stderr, "subscription to %s ended: %s\n", srv.grpc_address().c_str(),
                 finish.error_message().c_str());
  }
  const qsig::server::StatusSnapshot st = srv.Status();
  srv.Stop();

  std::printf("qsig end-to-end latency  (CPU: %s, %u hardware threads)\n", CpuModel().c_str(),
              std::thread::hardware_concurrency());
  std::printf(
      "rate %.0f msg/s for %.0f s, %d workers: %.0f msg/s processed, %.0f signals/s, "
      "%zu signals received over gRPC, drops %lu, malformed %lu, gaps %lu\n",
      rate, seconds, workers, st.messages_per_s, st.signals_per_s, tick.size(),
      static_cast<unsigned long>(st.drops), static_cast<unsigned long>(st.malformed),
      static_cast<unsigned long>(st.gaps));
  std::printf("%-34s %10s %10s %10s\n", "", "p50 us", "p99 us", "p99.9 us");
  std::printf("%-34s %10.1f %10.1f %10.1f\n", "tick-to-signal (exact, per signal)",
              Quantile(tick, 0.5), Quantile(tick, 0.99), Quantile(tick, 0.999));
  std::printf("%-34s %10.1f %10.1f %10.1f\n", "gRPC delivery (publish to client)",
              Quantile(delivery, 0.5), Quantile(delivery, 0.99), Quantile(delivery, 0.999));
  std::printf("%-34s %10.1f %10.1f %10.1f\n", "tick-to-signal (server histogram)", st.p50_us,
              st.p99_us, st.p999_us);
  std::printf("%-34s %10.1f %10.1f %10.1f\n", "datagram -> vector enqueued (hist.)", st.feed_p50_us,
              st.feed_p99_us, st.feed_p999_us);
  return tick.empty() ? 1 : 0;
}
