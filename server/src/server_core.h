// State shared by the server's parts (pipeline, calibration, gRPC front end, metrics exporter).
// Internal to server/: gRPC and prometheus-cpp types stay in their own translation units.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "drift_monitor.h"
#include "model_registry.h"
#include "pipeline.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feed.h"
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
  StageHistograms feed_hist;  // decode and features stages (feed thread).
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<FeedThread> feed;
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

// Transitional alias for the files not yet renamed (grpc_services.cc, server.cc).
using Core = ServerState;

// gRPC front end (grpc_services.cc).
class GrpcFrontend {
 public:
  virtual ~GrpcFrontend() = default;
  virtual std::string address() const = 0;
  virtual void Shutdown() = 0;
};
absl::StatusOr<std::unique_ptr<GrpcFrontend>> StartGrpc(ServerState* core);

// Prometheus exposition (metrics_exporter.cc).
class MetricsExporter {
 public:
  virtual ~MetricsExporter() = default;
  virtual std::string address() const = 0;
};
absl::StatusOr<std::unique_ptr<MetricsExporter>> StartMetrics(ServerState* core);

}  // namespace qsig::server
