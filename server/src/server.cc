#include "qsig/server/server.h"

#include <chrono>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "server_core.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

CalibrationReport Core::Recalibrate(size_t model, size_t max_samples) {
  std::lock_guard<std::mutex> lock(calibration_mu);
  const size_t n = max_samples ? max_samples : static_cast<size_t>(config.calibration.samples);
  const std::vector<float> windows = store->Recent(model, n);
  CalibrationReport r =
      CalibrateAndInstall(*slots[model], windows, Int8OptionsFromConfig(config.calibration),
                          config.calibration.max_relative_rmse);
  (r.installed ? calibrations : calibration_rejections).fetch_add(1);
  if (r.installed) {
    drift[model]->SetBaseline(windows, slots[model]->spec().window, slots[model]->spec().input_size,
                              r.input_clip_lo, r.input_clip_hi);
  }
  return r;
}

absl::StatusOr<Core::ReloadResult> Core::Reload(size_t model, const std::string& path) {
  std::lock_guard<std::mutex> lock(calibration_mu);  // Never interleave with a calibration.
  ModelSlot& slot = *slots[model];
  const std::string file = path.empty() ? config.models[model].path : path;
  models::io::ImportOptions import;
  import.name = slot.name();
  import.feature_names = feature_names;
  import.window = config.models[model].window ? config.models[model].window : slot.spec().window;
  auto loaded = models::io::LoadAnyModel(file, import);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("model '", slot.name(), "': ", loaded.status().message(),
                                     " (the running model keeps serving)"));
  }
  std::shared_ptr<const models::Model> int8;
  models::Int8Description described;
  if (loaded->artifact) {
    auto built = models::io::BuildInt8Model(*loaded->artifact, &described);
    if (!built.ok()) {
      return absl::Status(
          built.status().code(),
          absl::StrCat("model '", slot.name(), "' (", file, "): ", built.status().message(),
                       " (the running model keeps serving)"));
    }
    int8 = std::move(*built);
  }
  auto version = slot.Replace(loaded->spec, int8);
  if (version.ok() && loaded->artifact) {
    const DriftBaseline b = BaselineFromArtifact(*loaded->artifact, described);
    drift[model]->SetBaseline(b.windows, loaded->spec->window, loaded->spec->input_size, b.clip_lo,
                              b.clip_hi);
  }
  if (!version.ok()) {
    return absl::Status(
        version.status().code(),
        absl::StrCat(version.status().message(), " (the running model keeps serving)"));
  }
  ReloadResult r;
  r.version = *version;
  r.format = loaded->format;
  r.precision = int8 ? int8->precision() : "fp32";
  r.sha256 = loaded->spec->sha256;
  spdlog::info("model {}: reloaded from {} ({}), version {}, {}", slot.name(), file, r.format,
               r.version, int8 ? "INT8 from the artifact" : "FP32 until warm-up calibration");
  return r;
}

struct Server::Impl {
  Core core;
  std::unique_ptr<feeds::SimPublisher> sim;
  std::unique_ptr<GrpcFrontend> grpc;
  std::unique_ptr<MetricsExporter> metrics;
  std::thread calibration_thread;
  std::atomic<bool> calibration_running{false};
  // Status deltas.
  std::chrono::steady_clock::time_point last_status = std::chrono::steady_clock::now();
  LatencyHistogram::Snapshot last_tick, last_feed;
  uint64_t last_messages = 0;
  double last_sq_err = 0, last_sq_ref = 0;
  bool started = false;

  void CalibrationLoop();
  void EvaluateDrift(std::vector<std::pair<double, double>>* last_sums);
  void RunSchedule(int64_t* last_day);
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const config::Config& config) {
  auto impl = std::make_unique<Impl>();
  Core& c = impl->core;
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
  std::vector<DriftBaseline> baselines;
  auto slots = LoadModels(config.models, c.feature_names, &baselines);
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
  c.bus = std::make_unique<SignalBus>(c.symbols.get(), outputs);
  c.store = std::make_unique<CalibrationStore>(c.slots, c.max_locate, n_features,
                                               config.calibration.samples);
  for (size_t m = 0; m < c.slots.size(); ++m) {
    const ModelSlot& slot = *c.slots[m];
    c.drift.push_back(std::make_unique<DriftMonitor>(slot.name(), n_features, config.drift));
    if (!baselines[m].windows.empty()) {  // INT8 from an artifact: its calibration is the baseline
      c.drift.back()->SetBaseline(baselines[m].windows, slot.spec().window, n_features,
                                  baselines[m].clip_lo, baselines[m].clip_hi);
    }
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

absl::Status Server::Start() {
  Impl& s = *impl_;
  Core& c = s.core;
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
  auto metrics = StartMetrics(&c);
  if (!metrics.ok()) return metrics.status();
  s.metrics = std::move(*metrics);
  auto grpc = StartGrpc(&c);
  if (!grpc.ok()) return grpc.status();
  s.grpc = std::move(*grpc);

  c.running.store(true);
  if (!c.run_to_completion()) {
    for (auto& w : c.workers) w->Start(&c.running, &c.bus->doorbell());
  }
  c.bus->Start();
  for (auto& f : c.feeds) f->Start(&c.running, &c.bus->doorbell());
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
  s.core.running.store(false);
  for (auto& f : s.core.feeds) f->Join();
  for (auto& w : s.core.workers) w->Join();
  s.core.bus->Stop();
  s.calibration_running.store(false);
  if (s.calibration_thread.joinable()) s.calibration_thread.join();
  s.grpc.reset();
  s.metrics.reset();
}

void Server::Impl::CalibrationLoop() {
  Core& c = core;
  std::vector<const std::atomic<uint64_t>*> epochs;
  for (const auto& w : c.workers) epochs.push_back(&w->epoch());
  feeds::FeatureVector fv;
  auto next_drift = std::chrono::steady_clock::now();
  std::vector<std::pair<double, double>> shadow_sums;
  int64_t last_scheduled_day = -1;
  while (calibration_running.load()) {
    for (auto& w : c.workers) {
      while (w->samples().pop(fv)) c.store->Add(fv);
    }
    // Warm-up: the first INT8 calibration of each model once enough windows have arrived.
    for (size_t m = 0; m < c.slots.size(); ++m) {
      if (c.slots[m]->calibrated()) continue;
      if (c.store->windows(m) < static_cast<size_t>(c.config.calibration.warmup_samples)) continue;
      CalibrationReport r = c.Recalibrate(m, c.config.calibration.warmup_samples);
      if (r.installed) {
        spdlog::info(
            "model {}: {} calibrated on {} warm-up windows ({}{}), version {}, "
            "validation RMSE {:.3g} (FP32 RMS {:.3g}), sign agreement {:.2f}%",
            r.model, r.precision, r.samples, c.config.calibration.method,
            Int8OptionsFromConfig(c.config.calibration).reduce_range ? ", 7-bit weights" : "",
            r.version, r.validation_rmse, r.fp32_rms, 100 * r.sign_agreement);
      } else {
        spdlog::error("model {}: warm-up calibration failed: {}; FP32 keeps serving", r.model,
                      r.message);
      }
    }
    for (auto& slot : c.slots) slot->Reclaim(epochs);

    const auto now = std::chrono::steady_clock::now();
    if (now >= next_drift) {
      next_drift = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(c.config.drift.interval_s));
      EvaluateDrift(&shadow_sums);
    }
    RunSchedule(&last_scheduled_day);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Server::Impl::EvaluateDrift(std::vector<std::pair<double, double>>* last_sums) {
  Core& c = core;
  last_sums->resize(c.slots.size());
  for (size_t m = 0; m < c.slots.size(); ++m) {
    double err = 0, ref = 0;
    for (const auto& w : c.workers) {
      err += w->shadow(m).squared_error_sum.Get();
      ref += w->shadow(m).fp32_squared_sum.Get();
    }
    const double d_err = err - (*last_sums)[m].first, d_ref = ref - (*last_sums)[m].second;
    (*last_sums)[m] = {err, ref};
    if (!c.slots[m]->calibrated()) continue;
    const double rel = d_ref > 0 ? std::sqrt(d_err / d_ref) : -1;
    c.drift[m]->Evaluate(c.store->Recent(m, static_cast<size_t>(c.config.drift.window)),
                         c.slots[m]->spec().window, rel);
  }
}

void Server::Impl::RunSchedule(int64_t* last_day) {
  Core& c = core;
  if (c.config.calibration.schedule.empty()) return;
  const int64_t now_s = feeds::WallNanos() / 1'000'000'000;
  const int64_t day = now_s / 86400;
  const int minute_of_day = static_cast<int>((now_s % 86400) / 60);
  const int hh = std::stoi(c.config.calibration.schedule.substr(0, 2));
  const int mm = std::stoi(c.config.calibration.schedule.substr(3, 2));
  if (*last_day == day || minute_of_day != hh * 60 + mm) return;
  *last_day = day;
  for (size_t m = 0; m < c.slots.size(); ++m) {
    const CalibrationReport r = c.Recalibrate(m, 0);
    if (r.installed) {
      spdlog::info("scheduled recalibration: model {} version {} on {} samples, rel RMSE {:.4f}",
                   r.model, r.version, r.samples,
                   r.fp32_rms > 0 ? r.validation_rmse / r.fp32_rms : 0.0);
    } else {
      spdlog::error("scheduled recalibration: model {} kept its previous version: {}", r.model,
                    r.message);
    }
  }
}

std::string Server::grpc_address() const { return impl_->grpc ? impl_->grpc->address() : ""; }
std::string Server::metrics_address() const {
  return impl_->metrics ? impl_->metrics->address() : "";
}
uint16_t Server::feed_port() const { return impl_->core.feeds[0]->port(); }

bool Server::calibrated() const {
  for (const auto& s : impl_->core.slots) {
    if (!s->calibrated()) return false;
  }
  return true;
}

StatusSnapshot Server::Status() {
  Impl& s = *impl_;
  Core& c = s.core;
  StatusSnapshot st;
  const auto now = std::chrono::steady_clock::now();
  st.seconds = std::chrono::duration<double>(now - s.last_status).count();
  s.last_status = now;
  LatencyHistogram::Snapshot tick;
  double sq_err = 0, sq_ref = 0;
  for (const auto& w : c.workers) {
    tick.Add(w->histograms().tick_to_signal.Take());
    st.drops += w->output_drops();
    for (size_t m = 0; m < c.slots.size(); ++m) {
      sq_err += w->shadow(m).squared_error_sum.Get();
      sq_ref += w->shadow(m).fp32_squared_sum.Get();
    }
  }
  const uint64_t messages = c.StreamMax(&feeds::FeedStats::messages);
  const LatencyHistogram::Snapshot d = tick.Minus(s.last_tick);
  if (st.seconds > 0) {
    st.messages_per_s = static_cast<double>(messages - s.last_messages) / st.seconds;
    st.signals_per_s = static_cast<double>(d.count) / st.seconds;
  }
  st.p50_us = d.QuantileUs(0.5);
  st.p99_us = d.QuantileUs(0.99);
  st.p999_us = d.QuantileUs(0.999);
  LatencyHistogram::Snapshot feed;
  for (const auto& f : c.feeds) feed.Add(f->histograms().receive_to_enqueue.Take());
  const LatencyHistogram::Snapshot fd = feed.Minus(s.last_feed);
  s.last_feed = feed;
  st.feed_p50_us = fd.QuantileUs(0.5);
  st.feed_p99_us = fd.QuantileUs(0.99);
  st.feed_p999_us = fd.QuantileUs(0.999);
  const double de = sq_err - s.last_sq_err, dr = sq_ref - s.last_sq_ref;
  st.shadow_relative_rmse = dr > 0 ? std::sqrt(de / dr) : 0;
  s.last_tick = tick;
  s.last_messages = messages;
  s.last_sq_err = sq_err;
  s.last_sq_ref = sq_ref;
  st.malformed = c.StreamMax(&feeds::FeedStats::malformed_packets) +
                 c.StreamMax(&feeds::FeedStats::malformed_messages);
  st.gaps = c.StreamMax(&feeds::FeedStats::gaps);
  if (!c.run_to_completion()) {
    for (size_t i = 0; i < c.workers.size(); ++i) st.drops += c.feeds[0]->queue_drops(i);
  }
  st.subscribers = c.bus->subscribers();
  for (const auto& slot : c.slots) {
    const auto cur = slot->Acquire();
    absl::StrAppend(&st.models, st.models.empty() ? "" : ", ", slot->name(), " v", cur->version,
                    " ", cur->model ? cur->model->precision() : "fp32 (warm-up)");
  }
  return st;
}

}  // namespace qsig::server
