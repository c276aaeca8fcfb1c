// State shared by the server's parts (pipeline, calibration, gRPC front end, metrics exporter).
// Internal to server/: gRPC and prometheus-cpp types stay in their own translation units.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
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
#include "state_store.h"
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
  // One calibration or model swap at a time. Held only for a calibration (bounded compute on
  // at most calibration.samples windows) or a swap, never across file I/O; waiters give up at
  // a deadline (admin calls) or skip a round (warm-up), so shutdown never waits on a queue.
  std::timed_mutex calibration_mu;
  // Per model, when Recalibrate last installed (calibration.cooldown_s); under calibration_mu.
  std::vector<std::chrono::steady_clock::time_point> last_recalibration;
  std::atomic<uint64_t> calibrations{0}, calibration_rejections{0};
  std::atomic<bool> running{false};

  // Security (issue 11): refused admin calls by reason, refused SignalService calls.
  enum AdminDenied { kDeniedNoCredentials = 0, kDeniedBadToken = 1, kDeniedIdentity = 2 };
  static constexpr int kAdminDeniedReasons = 3;
  std::atomic<uint64_t> admin_denied[kAdminDeniedReasons] = {};
  std::atomic<uint64_t> signal_denied{0};
  // Reads `model` for ReloadModel: model files are copied here (a private directory) after
  // the confined, bounded read, and the loader reads only the copy.
  std::string staging_dir;
  // Per model, the per-feature interval its INT8 runtime's input quantization represents, or,
  // when the input stays FP32 (mixed precision), the range of the calibration windows
  // (Predict sets FLAG_INPUT_CLIPPED outside it); `int8` says which runtime it describes.
  struct ClipRange {
    const void* int8 = nullptr;
    std::vector<float> lo, hi;
  };
  void SetClipRange(size_t model, const void* int8, std::vector<float> lo, std::vector<float> hi,
                    const std::vector<float>& windows);
  std::shared_ptr<const ClipRange> GetClipRange(size_t model) const;
  // The drift baseline of a newly installed model: input_drift / saturation from `windows` (the
  // windows it was calibrated on, oldest first); psi / wasserstein start a new reference.
  void SetDriftBaseline(size_t model, const std::vector<float>& windows,
                        const std::vector<float>& clip_lo, const std::vector<float>& clip_hi,
                        bool settle = false);
  // Stores the drift baseline again (a psi / wasserstein reference was completed); skipped while an
  // install holds calibration_mu (it stores the baseline itself).
  void PersistDriftBaseline(size_t model);
  // Every published record also goes here (SignalBus tap), for output drift; the drift thread
  // drains it (Server::Impl::EvaluateDrift).
  std::unique_ptr<SignalRing> output_tap;
  mutable std::mutex clip_mu;
  std::vector<std::shared_ptr<const ClipRange>> clip_ranges;
  // ---- Model history, state directory and FP32 fallback (model_state.cc) ----
  uint64_t epoch = 0;  // Random at each start; every Signal carries it.
  std::unique_ptr<StateStore> state_store;
  // Per model, written by the calibration thread (fallback checks), read by status/metrics.
  struct FallbackTrack {
    std::atomic<double> shadow_relative_rmse{-1};
    std::atomic<int64_t> diverged_since_ns{0};  // Monotonic; 0 = not diverging.
    std::atomic<uint64_t> fallbacks{0};         // Times the model fell back to FP32.
  };
  std::unique_ptr<FallbackTrack[]> fallback_track;
  std::atomic<uint64_t> rollbacks{0};
  // Loads the state directory and restores each model's last installed version (Create).
  // Before LoadModels: opens state.dir, picks the epoch; *restorable[m] is true when model m's
  // last version can be restored from its artifact (LoadModels then skips the INT8 build).
  absl::Status OpenState(std::vector<bool>* restorable);
  // After LoadModels: restores each model's last version, version counter and baseline.
  void RestoreState(const std::vector<bool>& restorable);
  // The calibration sample store in state.dir: loaded into the (still empty) store at start, so
  // a recalibration right after a restart need not wait for fresh windows; written every
  // state.samples_interval_s and at shutdown (calibration thread). `saved` (per model): the
  // store's written() at the last write (nothing new: no write).
  void RestoreSamples();
  void PersistSamples(std::vector<uint64_t>* saved);
  // Records the version just installed in `model`'s history (and its artifact, baseline and
  // fallback state in state.dir): `calibration` when it came from one; `artifact` is written
  // (or `artifact_bytes`, the file as it was read, if given); `inherit` is the entry whose
  // artifact and lineage the new version shares (fallback, clear, rollback).
  // Call under calibration_mu.
  void RecordInstall(size_t model, const char* reason, const CalibrationReport* calibration,
                     models::io::Artifact* artifact, const std::string* artifact_bytes,
                     const HistoryEntry* inherit = nullptr);
  // Calibration thread: the fallback decision from the latest shadow relative RMSE (<0 unknown).
  void CheckFallback(size_t model, double shadow_relative_rmse);
  // Operator actions (AdminService).
  struct InstallResult {
    uint64_t version = 0;
    std::string precision;
  };
  absl::StatusOr<InstallResult> Rollback(size_t model, uint64_t version);
  absl::StatusOr<InstallResult> ClearFallback(size_t model);
  absl::StatusOr<InstallResult> InjectMiscalibration(size_t model, double input_scale_factor);

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
  // Calibrates one model from the most recent `max_samples` windows (0 = config default) and
  // records an installed version with `reason` (kReason*, model_history.h). Any reason but
  // warm-up is a request (RPC, schedule, fallback recovery): it enforces calibration.min_samples,
  // calibration.cooldown_s and calibration.max_worsening and waits at most a few seconds for
  // another calibration; the warm-up calibration skips the round if one is running
  // (report.message == kBusy).
  static constexpr const char* kBusy = "another calibration or model swap is in progress";
  CalibrationReport Recalibrate(size_t model, size_t max_samples,
                                const char* reason = kReasonAdmin);
  // Loads `path` ("" = the configured one) and swaps it in; on any error the running model
  // keeps serving and the error says why. `path` is confined to admin.model_dir (relative paths
  // are taken from there); a path that is missing, unreadable, not a regular file, too large
  // or outside the directory answers one NOT_FOUND. Messages never quote the file's content.
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
  virtual std::string address() const = 0;        // SignalService (grpc.listen).
  virtual std::string admin_address() const = 0;  // AdminService (admin.listen).
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
