// State shared by the server's parts (pipeline, calibration, gRPC front end, metrics exporter).
// Internal to server/: gRPC and prometheus-cpp types stay in their own translation units.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "drift_monitor.h"
#include "model_registry.h"
#include "pipeline.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feed_handler.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/server/feed_options.h"
#include "signal_bus.h"
#include "symbol_table.h"

namespace qsig::server {

// The running server's state: its config, model slots, threads, signal bus and calibration
// store, shared by the pipeline, the calibration loop, the gRPC services and the metrics
// exporter. ("Core" was its old name; "core" means a CPU in feed.core and workers.cores.)
struct ServerState {
  config::Config config;
  std::vector<feeds::FeatureSpec> feature_specs;
  std::vector<std::string> feature_names;
  int max_locate = 0;
  std::vector<std::unique_ptr<ModelSlot>> slots;
  std::unique_ptr<SymbolTable> symbols;
  // Every symbol of the feed's stock directory, owned by this server or not (GetTopology).
  std::unique_ptr<SymbolTable> directory;
  // Worker mode: workers.count workers fed by one feed thread. Run to completion:
  // pipeline.shards feed threads, shard i running workers[i] inline (locate % shards == i).
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<FeedThread>> feeds;
  std::unique_ptr<SignalBus> bus;
  std::unique_ptr<CalibrationStore> store;
  std::vector<std::unique_ptr<DriftMonitor>> drift;  // One per model.
  std::mutex calibration_mu;                         // One calibration at a time.
  std::atomic<uint64_t> calibrations{0}, calibration_rejections{0};
  std::atomic<bool> running{false};

  int ModelIndex(const std::string& name) const {
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i]->name() == name) return static_cast<int>(i);
    }
    return -1;
  }
  const Worker& WorkerFor(uint16_t locate) const { return *workers[locate % workers.size()]; }
  bool run_to_completion() const { return config.pipeline.mode == "run_to_completion"; }
  // The processor that keeps `locate`'s book (its per-instrument counters).
  const feeds::FeedProcessor& ProcessorFor(uint16_t locate) const {
    return feeds[locate % feeds.size()]->processor();
  }
  // A counter of the stream as received: every shard reads the whole stream, so the largest
  // shard's count (equal on all of them unless one socket lost or got more) is the stream's.
  uint64_t StreamMax(std::atomic<uint64_t> feeds::FeedStats::*field) const {
    uint64_t v = 0;
    for (const auto& f : feeds) v = std::max(v, (f->processor().stats().*field).load());
    return v;
  }
  uint64_t StreamMax(std::atomic<uint64_t> feeds::FeedHandlerStats::*field) const {
    uint64_t v = 0;
    for (const auto& f : feeds) v = std::max(v, (f->handler().stats().*field).load());
    return v;
  }
  // A counter of owned instruments (or of each socket's own reads), summed over shards.
  uint64_t ShardSum(std::atomic<uint64_t> feeds::FeedStats::*field) const {
    uint64_t v = 0;
    for (const auto& f : feeds) v += (f->processor().stats().*field).load();
    return v;
  }
  uint64_t ShardSum(std::atomic<uint64_t> feeds::FeedHandlerStats::*field) const {
    uint64_t v = 0;
    for (const auto& f : feeds) v += (f->handler().stats().*field).load();
    return v;
  }
  // Calibrates one model from the most recent `max_samples` windows (0 = config default).
  CalibrationReport Recalibrate(size_t model, size_t max_samples);
  // Loads `path` ("" = the configured one) and swaps it in; on any error the running model
  // keeps serving and the error says why.
  struct ReloadResult {
    uint64_t version = 0;
    std::string format, precision, sha256;
  };
  absl::StatusOr<ReloadResult> Reload(size_t model, const std::string& path);
};

// gRPC front end (grpc_services.cc).
class GrpcFrontend {
 public:
  virtual ~GrpcFrontend() = default;
  virtual std::string address() const = 0;
  virtual void Shutdown() = 0;
};
absl::StatusOr<std::unique_ptr<GrpcFrontend>> StartGrpc(ServerState* state);

// Prometheus exposition (metrics_exporter.cc).
class MetricsExporter {
 public:
  virtual ~MetricsExporter() = default;
  virtual std::string address() const = 0;
};
absl::StatusOr<std::unique_ptr<MetricsExporter>> StartMetrics(ServerState* state);

}  // namespace qsig::server
