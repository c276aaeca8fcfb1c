// End-to-end latency harness: tick to client, and the gRPC floor beside it, in one run.
//
// Two processes, as in production: a server process runs the qsig server (built-in simulator on
// loopback UDP at --rate) and, beside it, a minimal gRPC server that streams the same
// qsig.v1.Signal message with one blocking Write per message (the floor); the client process
// subscribes to both over loopback. For each (mode, rate) a fresh server process is forked.
//
//   tick-to-signal  kernel receive stamp of the datagram → signal published (measured by the
//                   server for every signal, carried in Signal.tick_to_signal_ns)
//   delivery        publish → client receive (Signal.publish_ts_ns vs the client's wall clock)
//   tick-to-client  their sum, per signal
//   gRPC floor      the minimal server's Write → client receive, same message, same processes,
//                   at the signal rate qsig produced (one Write per message caps it lower)
//
//   build/bench/e2e/qsig_bench_e2e --rate 2000,20000,200000 --mode workers,rtc --seconds 10
//   build/bench/e2e/qsig_bench_e2e --rate 20000 --mode rtc --json
//
// --json prints one JSON object per (rate, mode), one per line, with the keys rate,
// signals_per_s, drops, tick_to_signal_p50_us, tick_to_signal_p99_us, tick_to_signal_p999_us,
// delivery_p50_us, delivery_p99_us, delivery_p999_us, tick_to_client_p50_us,
// tick_to_client_p99_us, grpc_floor_p50_us, grpc_floor_p99_us and mode. `drops` counts signals
// the server numbered but the client never received (sequence gaps per instrument and model).
// Every loop is bounded in time and in count.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "qsig/config/config.h"
#include "qsig/server/server.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace {

constexpr size_t kMaxSamples = 4'000'000;  // Per series: bounds memory at 200k msg/s.

int64_t WallNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double QuantileUs(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) * 1e-3;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// Nanoseconds per clock_gettime() on `clock` (the cost of one stage stamp).
double ClockCostNs(clockid_t clock) {
  constexpr int kReads = 2'000'000;
  timespec ts;
  int64_t sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kReads; ++i) {
    clock_gettime(clock, &ts);
    sink += ts.tv_nsec;
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (sink == 42) std::printf(" ");
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / kReads;
}

// --- The server process ------------------------------------------------------------------

// The floor: qsig.v1.SignalService with only Subscribe, streaming one fixed Signal with one
// blocking Write per message at the rate the client asks for (metadata "x-rate", messages/s),
// for at most "x-seconds" or until the client cancels.
class FloorService final : public qsig::v1::SignalService::Service {
 public:
  grpc::Status Subscribe(grpc::ServerContext* ctx, const qsig::v1::SubscribeRequest*,
                         grpc::ServerWriter<qsig::v1::Signal>* writer) override {
    double rate = 1000, seconds = 1;
    for (const auto& [k, v] : ctx->client_metadata()) {
      if (k == "x-rate") rate = std::stod(std::string(v.data(), v.size()));
      if (k == "x-seconds") seconds = std::stod(std::string(v.data(), v.size()));
    }
    qsig::v1::Signal s;
    s.set_instrument("AAPL");
    s.set_locate(1);
    s.set_model("lstm");
    s.set_value(0.125);
    s.set_exchange_ts_ns(34'200'000'000'000);
    s.set_model_version(2);
    s.set_mid_price(187.25);
    s.set_precision("int8");
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    const uint64_t max = static_cast<uint64_t>(rate * seconds) + 1;
    for (uint64_t i = 0; i < max && !ctx->IsCancelled(); ++i) {
      const auto due = start + std::chrono::duration<double>(static_cast<double>(i) / rate);
      if (due > end) break;
      if (due - std::chrono::steady_clock::now() > std::chrono::microseconds(100)) {
        std::this_thread::sleep_until(due);
      }
      s.set_sequence(i + 1);
      s.set_feed_sequence(i + 1);
      s.set_publish_ts_ns(WallNanos());
      if (!writer->Write(s)) break;
    }
    return grpc::Status::OK;
  }
};

// Runs in the forked child: the qsig server and the floor; answers STATUS and QUIT on `in`.
int ServeProcess(const std::vector<std::string>& overrides, const std::string& config_path,
                 double warmup_s, FILE* in, FILE* out) {
  auto cfg = qsig::config::LoadConfig(config_path, overrides);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  auto server = qsig::server::Server::Create(*cfg);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  if (auto st = (*server)->Start(); !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 1;
  }
  auto& srv = **server;
  FloorService floor;
  int floor_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &floor_port);
  builder.RegisterService(&floor);
  std::unique_ptr<grpc::Server> floor_server = builder.BuildAndStart();
  const auto calib_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!srv.calibrated() && std::chrono::steady_clock::now() < calib_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  // Steady state: the FP32 warm-up before calibration is slower than INT8 and can leave a
  // backlog in the sockets; wait (at most 30 s) until a half-second interval is caught up.
  srv.Status();
  for (int i = 0; i < 60; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (srv.Status().p50_us < 1000) break;
  }
  std::fprintf(out, "READY %s 127.0.0.1:%d %d\n", srv.grpc_address().c_str(), floor_port,
               srv.calibrated() ? 1 : 0);
  std::fflush(out);
  char line[64];
  while (std::fgets(line, sizeof line, in) != nullptr) {
    if (std::string(line).rfind("STATUS", 0) == 0) {
      const qsig::server::StatusSnapshot st = srv.Status();
      std::fprintf(out, "%.0f %.0f %lu %lu %lu %.1f %.1f %.1f\n", st.messages_per_s,
                   st.signals_per_s, static_cast<unsigned long>(st.drops),
                   static_cast<unsigned long>(st.malformed), static_cast<unsigned long>(st.gaps),
                   st.p50_us, st.p99_us, st.p999_us);
      std::fflush(out);
    } else {
      break;  // QUIT or anything else.
    }
  }
  floor_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  srv.Stop();
  return 0;
}

// --- The client process ------------------------------------------------------------------

// Reads one server stream of `stub` for `seconds` (at most `max` signals), calling `on_signal`
// with each signal and its receive wall time. The one place that knows how signals arrive:
// switching the bench to SubscribeBatch changes only this function.
// Reads signals for `seconds` (or `max` of them). `batch`: SubscribeBatch (qsig's coalesced
// delivery, what a latency-sensitive client uses); otherwise Subscribe (one Signal per message,
// what the floor server implements).
uint64_t ReadSignals(qsig::v1::SignalService::Stub& stub, bool batch, double seconds, uint64_t max,
                     const std::multimap<std::string, std::string>& metadata,
                     const std::function<void(const qsig::v1::Signal&, int64_t)>& on_signal) {
  grpc::ClientContext ctx;
  for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::duration<double>(seconds + 10)));
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::thread stopper([&] {
    std::this_thread::sleep_until(end);
    ctx.TryCancel();
  });
  uint64_t n = 0;
  if (batch) {
    auto stream = stub.SubscribeBatch(&ctx, qsig::v1::SubscribeRequest());
    qsig::v1::SignalBatch b;
    while (n < max && stream->Read(&b)) {
      const int64_t now = WallNanos();  // One receive instant for the whole message.
      for (const qsig::v1::Signal& s : b.signals()) {
        if (n++ >= max) break;
        on_signal(s, now);
      }
    }
    ctx.TryCancel();
    stopper.join();
    stream->Finish();
    return n;
  }
  auto stream = stub.Subscribe(&ctx, qsig::v1::SubscribeRequest());
  qsig::v1::Signal s;
  while (n < max && stream->Read(&s)) {
    on_signal(s, WallNanos());
    ++n;
  }
  ctx.TryCancel();
  stopper.join();
  stream->Finish();
  return n;
}

struct Result {
  double rate = 0;
  std::string mode;
  double seconds = 0;
  double signals_per_s = 0;
  uint64_t drops = 0, received = 0, floor_received = 0;
  double t2s[3] = {}, delivery[3] = {}, t2c[2] = {}, floor[2] = {};
  std::string server_status;  // The server's own counters (msg/s, signals/s, queue drops, ...).
  bool calibrated = false;
};

// Starts this binary again as the server process (a fresh process: gRPC does not survive a
// fork), talking over fds 3 (commands in) and 4 (answers out); its stdout goes to stderr.
bool Measure(const std::vector<std::string>& overrides, const std::string& config_path,
             double warmup_s, double seconds, int idle_subscribers, double idle_settle_s,
             Result* r) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) return false;
  std::vector<std::string> args = {"/proc/self/exe", "--server-process", "--config",
                                   config_path,      "--warmup",         std::to_string(warmup_s)};
  for (const std::string& o : overrides) {
    args.push_back("--set");
    args.push_back(o);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    dup2(to_child[0], 3);
    dup2(from_child[1], 4);
    dup2(2, 1);
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) {
      if (fd > 4) close(fd);
    }
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE* to = fdopen(to_child[1], "w");
  FILE* from = fdopen(from_child[0], "r");
  char line[512];
  bool ok = false;
  char grpc_addr[128] = {}, floor_addr[128] = {};
  int calibrated = 0;
  if (std::fgets(line, sizeof line, from) != nullptr &&
      std::sscanf(line, "READY %127s %127s %d", grpc_addr, floor_addr, &calibrated) == 3) {
    r->calibrated = calibrated != 0;
    // qsig: every signal, its tick-to-signal, delivery and sum; sequence gaps per key.
    std::vector<int64_t> t2s, delivery, t2c;
    t2s.reserve(kMaxSamples);
    delivery.reserve(kMaxSamples);
    t2c.reserve(kMaxSamples);
    std::map<std::pair<uint32_t, std::string>, uint64_t> last;
    uint64_t gaps = 0;
    auto channel = grpc::CreateChannel(grpc_addr, grpc::InsecureChannelCredentials());
    auto stub = qsig::v1::SignalService::NewStub(channel);
    // --idle-subscribers: streams that subscribe to everything and never read, each on its own
    // connection (the hostile case: their rings overflow, which must cost nobody else).
    std::vector<std::shared_ptr<grpc::Channel>> idle_channels;
    std::vector<std::unique_ptr<qsig::v1::SignalService::Stub>> idle_stubs;
    std::vector<std::unique_ptr<grpc::ClientContext>> idle_ctx;
    std::vector<std::unique_ptr<grpc::ClientReader<qsig::v1::SignalBatch>>> idle_streams;
    for (int i = 0; i < idle_subscribers; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("qsig.bench.idle", i);  // A distinct argument: a connection of its own.
      idle_channels.push_back(
          grpc::CreateCustomChannel(grpc_addr, grpc::InsecureChannelCredentials(), args));
      idle_stubs.push_back(qsig::v1::SignalService::NewStub(idle_channels.back()));
      idle_ctx.push_back(std::make_unique<grpc::ClientContext>());
      idle_streams.push_back(
          idle_stubs.back()->SubscribeBatch(idle_ctx.back().get(), qsig::v1::SubscribeRequest()));
    }
    // --idle-settle: let the idle streams fill their flow-control windows before measuring
    // (separates the one-time cost of their first megabytes from the steady state).
    if (idle_subscribers > 0 && idle_settle_s > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(idle_settle_s));
    }
    std::fprintf(to, "STATUS\n");  // Starts the server-side interval.
    std::fflush(to);
    (void)std::fgets(line, sizeof line, from);
    const auto t0 = std::chrono::steady_clock::now();
    r->received = ReadSignals(*stub, /*batch=*/true, seconds, kMaxSamples, {},
                              [&](const qsig::v1::Signal& s, int64_t now) {
                                const int64_t d = now - s.publish_ts_ns();
                                t2s.push_back(s.tick_to_signal_ns());
                                delivery.push_back(d);
                                t2c.push_back(s.tick_to_signal_ns() + d);
                                uint64_t& l = last[{s.locate(), s.model()}];
                                if (l != 0 && s.sequence() > l + 1) gaps += s.sequence() - l - 1;
                                l = s.sequence();
                              });
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(to, "STATUS\n");
    std::fflush(to);
    if (std::fgets(line, sizeof line, from) != nullptr) {
      r->server_status = line;
      if (!r->server_status.empty()) r->server_status.pop_back();
    }
    for (auto& c : idle_ctx) c->TryCancel();
    for (auto& st : idle_streams) st->Finish();
    r->seconds = elapsed;
    r->signals_per_s = static_cast<double>(r->received) / elapsed;
    r->drops = gaps;
    r->t2s[0] = QuantileUs(t2s, 0.5);
    r->t2s[1] = QuantileUs(t2s, 0.99);
    r->t2s[2] = QuantileUs(t2s, 0.999);
    r->delivery[0] = QuantileUs(delivery, 0.5);
    r->delivery[1] = QuantileUs(delivery, 0.99);
    r->delivery[2] = QuantileUs(delivery, 0.999);
    r->t2c[0] = QuantileUs(t2c, 0.5);
    r->t2c[1] = QuantileUs(t2c, 0.99);

    // The floor, same processes, while the qsig server keeps running its feed.
    std::vector<int64_t> floor;
    floor.reserve(kMaxSamples);
    auto floor_channel = grpc::CreateChannel(floor_addr, grpc::InsecureChannelCredentials());
    auto floor_stub = qsig::v1::SignalService::NewStub(floor_channel);
    const double floor_rate = std::max(100.0, r->signals_per_s);
    r->floor_received = ReadSignals(
        *floor_stub, /*batch=*/false, seconds, kMaxSamples,
        {{"x-rate", std::to_string(floor_rate)}, {"x-seconds", std::to_string(seconds)}},
        [&](const qsig::v1::Signal& s, int64_t now) { floor.push_back(now - s.publish_ts_ns()); });
    r->floor[0] = QuantileUs(floor, 0.5);
    r->floor[1] = QuantileUs(floor, 0.99);
    ok = r->received > 0;
  }
  std::fprintf(to, "QUIT\n");
  std::fflush(to);
  fclose(to);
  fclose(from);
  int status = 0;
  // Bounded: the child stops its server within seconds; if it hangs, it is killed.
  for (int i = 0; i < 300 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  return ok;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qsig end-to-end latency: tick to client, beside the raw gRPC floor"};
  std::string config_path = QSIG_SOURCE_DIR "/config/demo.yaml";
  std::string rates = "20000", modes = "workers";
  double seconds = 10, warmup_s = 2;
  int workers = 2, shards = 2, spin_us = 0, idle_subscribers = 0;
  double idle_settle_s = 0;
  bool busy_poll = false, json = false, server_process = false;
  std::vector<std::string> extra;
  app.add_option("--config", config_path)->capture_default_str();
  app.add_option("--rate", rates, "Simulator ITCH messages/s; a comma list runs each")
      ->capture_default_str();
  app.add_option("--mode", modes, "workers | rtc (run to completion); a comma list runs each")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Measurement per phase (qsig, then the floor)")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 600.0));
  app.add_option("--warmup", warmup_s, "Seconds after INT8 calibration before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 120.0));
  app.add_option("--workers", workers, "workers mode: worker threads")->capture_default_str();
  app.add_option("--shards", shards, "rtc mode: shard threads")->capture_default_str();
  app.add_flag("--busy-poll", busy_poll, "rtc mode: shards spin on their sockets");
  app.add_option("--spin-us", spin_us, "rtc: pipeline.idle_spin_us; workers: workers.idle_spin_us")
      ->capture_default_str();
  app.add_option("--idle-settle", idle_settle_s,
                 "Seconds between opening the idle subscribers and measuring (0 = measure at once)")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--idle-subscribers", idle_subscribers,
                 "SubscribeBatch streams that never read, open while qsig is measured")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_flag("--json", json, "One JSON object per (rate, mode) on stdout");
  app.add_option("--set", extra, "Extra config overrides (key=value)");
  app.add_flag("--server-process", server_process, "Internal: run as the server process");
  CLI11_PARSE(app, argc, argv);
  if (server_process) {
    FILE* in = fdopen(3, "r");
    FILE* out = fdopen(4, "w");
    if (in == nullptr || out == nullptr) return 2;
    return ServeProcess(extra, config_path, warmup_s, in, out);
  }

  std::vector<double> rate_list;
  for (const std::string& r : Split(rates)) rate_list.push_back(std::stod(r));
  const std::vector<std::string> mode_list = Split(modes);
  for (const std::string& m : mode_list) {
    if (m != "workers" && m != "rtc") {
      std::fprintf(stderr, "--mode: expected workers or rtc, got '%s'\n", m.c_str());
      return 2;
    }
  }
  if (!json) {
    std::printf("qsig end-to-end latency  (CPU: %s, %u hardware threads)\n", CpuModel().c_str(),
                std::thread::hardware_concurrency());
    std::printf("clock_gettime: CLOCK_MONOTONIC %.1f ns, CLOCK_REALTIME %.1f ns per read\n",
                ClockCostNs(CLOCK_MONOTONIC), ClockCostNs(CLOCK_REALTIME));
  }
  int failures = 0;
  for (const double rate : rate_list) {
    for (const std::string& mode : mode_list) {
      std::vector<std::string> o = {"grpc.listen=127.0.0.1:0",
                                    "admin.listen=127.0.0.1:0",
                                    "metrics.listen=127.0.0.1:0",
                                    "feed.listen=127.0.0.1:0",
                                    "console.status_interval_s=0",
                                    "sim.rate=" + std::to_string(rate),
                                    "workers.cores=[]",
                                    "pipeline.cores=[]",
                                    "grpc.subscriber_queue=1000000"};
      if (mode == "rtc") {
        o.push_back("pipeline.mode=run_to_completion");
        o.push_back("pipeline.shards=" + std::to_string(shards));
        o.push_back(std::string("pipeline.busy_poll=") + (busy_poll ? "true" : "false"));
        o.push_back("pipeline.idle_spin_us=" + std::to_string(spin_us));
      } else {
        o.push_back("pipeline.mode=workers");
        o.push_back("workers.count=" + std::to_string(workers));
        o.push_back("workers.idle_spin_us=" + std::to_string(spin_us));
      }
      o.insert(o.end(), extra.begin(), extra.end());
      Result r;
      r.rate = rate;
      r.mode = mode;
      if (!Measure(o, config_path, warmup_s, seconds, idle_subscribers, idle_settle_s, &r)) {
        std::fprintf(stderr, "rate %.0f mode %s: no signals received\n", rate, mode.c_str());
        ++failures;
        continue;
      }
      if (json) {
        std::printf(
            "{\"rate\": %.0f, \"signals_per_s\": %.0f, \"drops\": %lu, "
            "\"tick_to_signal_p50_us\": %.1f, \"tick_to_signal_p99_us\": %.1f, "
            "\"tick_to_signal_p999_us\": %.1f, \"delivery_p50_us\": %.1f, "
            "\"delivery_p99_us\": %.1f, \"delivery_p999_us\": %.1f, "
            "\"tick_to_client_p50_us\": %.1f, \"tick_to_client_p99_us\": %.1f, "
            "\"grpc_floor_p50_us\": %.1f, \"grpc_floor_p99_us\": %.1f, \"mode\": \"%s\"}\n",
            r.rate, r.signals_per_s, static_cast<unsigned long>(r.drops), r.t2s[0], r.t2s[1],
            r.t2s[2], r.delivery[0], r.delivery[1], r.delivery[2], r.t2c[0], r.t2c[1], r.floor[0],
            r.floor[1], r.mode.c_str());
      } else {
        std::printf(
            "\nrate %.0f msg/s, mode %s, %.1f s: %lu signals received (%.0f/s), drops %lu%s\n"
            "  server: msg/s signals/s queue-drops malformed gaps p50 p99 p99.9 = %s\n",
            r.rate, r.mode.c_str(), r.seconds, static_cast<unsigned long>(r.received),
            r.signals_per_s, static_cast<unsigned long>(r.drops),
            r.calibrated ? "" : "  (INT8 calibration not finished: FP32 served)",
            r.server_status.c_str());
        std::printf("  %-42s %9s %9s %9s\n", "", "p50 us", "p99 us", "p99.9 us");
        std::printf("  %-42s %9.1f %9.1f %9.1f\n", "tick-to-signal (kernel receive -> publish)",
                    r.t2s[0], r.t2s[1], r.t2s[2]);
        std::printf("  %-42s %9.1f %9.1f %9.1f\n", "delivery (publish -> client)", r.delivery[0],
                    r.delivery[1], r.delivery[2]);
        std::printf("  %-42s %9.1f %9.1f %9s\n", "tick-to-client", r.t2c[0], r.t2c[1], "");
        std::printf("  %-42s %9.1f %9.1f %9s  (%lu msgs at %.0f/s asked)\n",
                    "raw gRPC floor (Write -> client)", r.floor[0], r.floor[1], "",
                    static_cast<unsigned long>(r.floor_received), std::max(100.0, r.signals_per_s));
      }
      std::fflush(stdout);
    }
  }
  return failures == 0 ? 0 : 1;
}
