// Server startup and stop: Create builds the state (models, workers, feed threads, bus, store,
// drift monitors), Start opens the feeds and starts gRPC, metrics, the threads and the embedded
// simulator, Stop joins them. Calibration, drift checks, the schedule and status live in their
// own units (server_impl.h lists them).
#include "qsig/server/server.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/sim_publisher.h"
#include "runtime_capability.h"
#include "server_impl.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const config::Config& config) {
  auto impl = std::make_unique<Impl>();
  ServerState& c = impl->state;
  c.config = config;
  auto specs = ParseFeatureConfig(config);
  if (!specs.ok()) return specs.status();
  c.feature_specs = *specs;
  c.feature_names = *feeds::FeatureNames(c.feature_specs);
  c.max_locate = config.feed.max_instruments;
  if (config.models.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.path, ": models: at least one model is required"));
  }
  std::vector<bool> restorable;  // Models whose last version state.dir restores.
  if (auto st = c.OpenState(&restorable); !st.ok()) return st;
  std::vector<DriftBaseline> baselines;
  auto slots = LoadModels(config.models, c.feature_names, &baselines, &restorable);
  if (!slots.ok()) return slots.status();
  c.slots = std::move(*slots);
  c.symbols = std::make_unique<SymbolTable>(c.max_locate);
  const int n_features = static_cast<int>(c.feature_names.size());
  std::vector<Worker*> raw;
  std::vector<SignalQueue*> outputs;
  const bool rtc = c.run_to_completion();
  const int n_workers = rtc ? config.pipeline.shards : config.workers.count;
  for (int i = 0; i < n_workers; ++i) {
    c.workers.push_back(std::make_unique<Worker>(i, c.config, &c.slots, n_features, c.max_locate));
    raw.push_back(c.workers.back().get());
    outputs.push_back(&c.workers.back()->output());
  }
  if (rtc) {
    // Shard i receives the whole feed and runs workers[i] inline: WorkerFor(locate) stays the
    // owner of the instrument's latest signal and counters.
    for (int i = 0; i < n_workers; ++i) {
      c.feeds.push_back(std::make_unique<FeedThread>(
          c.config, c.feature_specs, std::vector<Worker*>{raw[i]}, c.symbols.get(), i, n_workers));
    }
  } else {
    c.feeds.push_back(
        std::make_unique<FeedThread>(c.config, c.feature_specs, raw, c.symbols.get(), 0, 1));
  }
  c.directory = std::make_unique<SymbolTable>(c.max_locate);
  c.feeds.front()->SetDirectory(c.directory.get());
  c.bus = std::make_unique<SignalBus>(c.symbols.get(), outputs);
  c.output_tap = std::make_unique<SignalRing>(1 << 16);
  c.bus->set_tap(c.output_tap.get());
  c.store = std::make_unique<CalibrationStore>(c.slots, c.max_locate, n_features,
                                               config.calibration.samples);
  for (size_t m = 0; m < c.slots.size(); ++m) {
    const ModelSlot& slot = *c.slots[m];
    c.drift.push_back(
        std::make_unique<DriftMonitor>(slot.name(), n_features, config.drift, c.feature_names));
    if (!baselines[m].windows.empty()) {  // INT8 from an artifact: its calibration is the baseline
      c.SetDriftBaseline(m, baselines[m].windows, baselines[m].clip_lo, baselines[m].clip_hi);
      c.SetClipRange(m, slot.Acquire()->int8.get(), baselines[m].clip_lo, baselines[m].clip_hi,
                     baselines[m].windows);
    }
  }
  c.last_recalibration.assign(c.slots.size(), std::chrono::steady_clock::time_point::min());
  c.RestoreState(restorable);
  c.RestoreSamples();
  // Drift samples only what arrives from now on; the restored windows are history.
  for (size_t m = 0; m < c.slots.size(); ++m) {
    impl->drift_rows_seen.push_back(c.store->written(m));
    impl->samples_saved.push_back(c.store->written(m));
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

absl::Status Server::Start() {
  Impl& s = *impl_;
  ServerState& c = s.state;
  // With the built-in simulator, its retransmission server gets a port picked now so that the
  // feed handler can be told where to send re-requests before the simulator starts.
  std::string retransmit = c.config.feed.retransmit;
  uint16_t sim_retransmit_port = 0;
  if (c.config.feed.source == "sim" && c.config.sim.retransmit) {
    auto port = FreeUdpPort();
    if (!port.ok()) return port.status();
    sim_retransmit_port = *port;
    retransmit = absl::StrCat("127.0.0.1:", sim_retransmit_port);
  }
  if (auto st = c.feeds[0]->Open(retransmit); !st.ok()) return st;
  // More shards (run to completion): each needs the whole stream on a socket of its own. A
  // multicast group delivers a copy to every socket joined on its port, so they share shard 0's
  // port; unicast goes to one socket per port, so shard i listens on the configured port + i
  // (an ephemeral port for port 0) and the sender (the embedded simulator does) sends a copy to
  // each.
  for (size_t i = 1; i < c.feeds.size(); ++i) {
    const auto shard_listen = [&](const std::string& listen, const std::string& group,
                                  uint16_t shard0_port) -> std::string {
      if (listen.empty()) return "";
      const auto hp = config::ParseHostPort(listen);
      if (!group.empty()) return absl::StrCat(hp->first, ":", shard0_port);
      return absl::StrCat(hp->first, ":", hp->second == 0 ? 0 : hp->second + i);
    };
    const config::FeedConfig& f = c.config.feed;
    if (auto st =
            c.feeds[i]->Open(retransmit, shard_listen(f.listen, f.group, c.feeds[0]->port()),
                             shard_listen(f.line_b.listen, f.line_b.group, c.feeds[0]->port_b()));
        !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("pipeline shard ", i, ": ", st.message()));
    }
  }
  // ReloadModel's private copies (see ServerState::Reload).
  {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/qsig-reload-XXXXXX");
    if (::mkdtemp(templ.data()) == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot create a private directory for model reloads (", templ,
                       "): ", std::strerror(errno), "; set TMPDIR to a writable directory"));
    }
    c.staging_dir = templ;
  }
  auto metrics = StartMetrics(&c);
  if (!metrics.ok()) return metrics.status();
  s.metrics = std::move(*metrics);
  auto grpc = StartGrpc(&c);
  if (!grpc.ok()) return grpc.status();
  s.grpc = std::move(*grpc);

  ApplyProcessRuntime(c.config);
  c.running.store(true);
  if (!c.run_to_completion()) {
    for (auto& w : c.workers) w->Start(&c.running, &c.bus->doorbell());
  }
  c.bus->Start();
  for (auto& f : c.feeds) f->Start(&c.running, &c.bus->doorbell());
  // What the machine granted the tick threads, once they have all started (a moment).
  const int tick_threads =
      static_cast<int>(c.feeds.size() + (c.run_to_completion() ? 0 : c.workers.size()));
  const auto settle = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (TickThreadsStarted() < tick_threads && std::chrono::steady_clock::now() < settle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (const RuntimeCapability& cap : RuntimeCapabilities(c.config)) {
    if (cap.in_effect) {
      spdlog::info("runtime {}: in effect ({})", cap.kind, cap.detail);
    } else {
      spdlog::warn("runtime {}: NOT in effect: {}", cap.kind, cap.detail);
    }
  }
  s.calibration_running.store(true);
  s.calibration_thread = std::thread([&s] { s.CalibrationLoop(); });

  if (c.config.feed.source == "sim") {
    feeds::SimPublisherOptions o = SimPublisherOptionsFromConfig(c.config);
    o.destination_b.clear();  // Sent to this server's own feed sockets instead.
    o.retransmit_listen.clear();
    auto hp = config::ParseHostPort(c.config.feed.listen);
    std::string host = hp->first;
    if (host == "0.0.0.0" || host == "*") host = "127.0.0.1";
    o.destination = c.config.feed.group.empty()
                        ? absl::StrCat(host, ":", c.feeds[0]->port())
                        : absl::StrCat(c.config.feed.group, ":", c.feeds[0]->port());
    if (c.config.feed.group.empty()) {
      for (size_t i = 1; i < c.feeds.size(); ++i) {
        o.destination_copies.push_back(absl::StrCat(host, ":", c.feeds[i]->port()));
      }
    }
    o.interface_address = c.config.feed.interface_address;
    if (c.config.sim.line_b) {
      const config::LineConfig& b = c.config.feed.line_b;
      std::string b_host = config::ParseHostPort(b.listen)->first;
      if (b_host == "0.0.0.0" || b_host == "*") b_host = "127.0.0.1";
      o.destination_b = absl::StrCat(b.group.empty() ? b_host : b.group, ":", c.feeds[0]->port_b());
      if (b.group.empty()) {
        for (size_t i = 1; i < c.feeds.size(); ++i) {
          o.destination_b_copies.push_back(absl::StrCat(b_host, ":", c.feeds[i]->port_b()));
        }
      }
    }
    if (sim_retransmit_port) {
      o.retransmit_listen = absl::StrCat("127.0.0.1:", sim_retransmit_port);
    }
    auto sim = feeds::SimPublisher::Start(o);
    if (!sim.ok()) return sim.status();
    s.sim = std::move(*sim);
  }
  s.started = true;
  return absl::OkStatus();
}

void Server::Stop() {
  Impl& s = *impl_;
  if (!s.started) return;
  s.started = false;
  if (s.sim) s.sim->Stop();
  if (s.grpc) s.grpc->Shutdown();
  s.state.running.store(false);
  for (auto& f : s.state.feeds) f->Join();
  for (auto& w : s.state.workers) w->Join();
  s.state.bus->Stop();
  s.calibration_running.store(false);
  if (s.calibration_thread.joinable()) s.calibration_thread.join();
  s.grpc.reset();
  s.metrics.reset();
  if (!s.state.staging_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(s.state.staging_dir, ec);
    s.state.staging_dir.clear();
  }
}

std::string Server::grpc_address() const { return impl_->grpc ? impl_->grpc->address() : ""; }
std::string Server::admin_address() const {
  return impl_->grpc ? impl_->grpc->admin_address() : "";
}
std::string Server::metrics_address() const {
  return impl_->metrics ? impl_->metrics->address() : "";
}
uint16_t Server::feed_port() const { return impl_->state.feeds[0]->port(); }

bool Server::calibrated() const {
  for (const auto& s : impl_->state.slots) {
    if (!s->calibrated()) return false;
  }
  return true;
}

}  // namespace qsig::server
