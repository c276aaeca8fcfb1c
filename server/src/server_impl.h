// Server::Impl, shared by the server's units: startup and stop (server.cc), model installation
// and the calibration loop (calibration.cc), drift checks (drift_checks.cc), the recalibration
// schedule (schedule.cc) and status (status.cc). Internal to server/.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "calendar_schedule.h"
#include "latency_histogram.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/server/server.h"
#include "server_state.h"

namespace qsig::server {

// What a running Server owns: its state, the embedded simulator, the gRPC front end, the metrics
// exporter and the calibration thread (which also runs the drift checks and the schedule).
struct Server::Impl {
  ServerState state;
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
  // The drift thread's own: per model, outputs published since the last check and
  // CalibrationStore::written at the last check.
  std::vector<std::vector<float>> recent_outputs;
  std::vector<uint64_t> drift_rows_seen;
  std::vector<uint64_t> samples_saved;  // ServerState::PersistSamples's.
  // The recalibration calendar (schedule.cc); built on the first RunSchedule call.
  void RunSchedule();
  bool schedule_ready = false;
  std::optional<CalendarSchedule> schedule;
  absl::Time schedule_last_run = absl::InfinitePast();
};

}  // namespace qsig::server
