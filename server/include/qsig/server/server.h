// The qsig server: feed → features → INT8 models with FP32 shadow → gRPC and Prometheus.
//
// Create() loads and checks everything that can fail (models, addresses) before any thread
// starts; Start() binds the sockets and starts the threads; Stop() (or the destructor) joins
// them. Thread-safety: Start/Stop from one thread; the accessors from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "qsig/config/config.h"

namespace qsig::server {

// What the console prints every few seconds; deltas since the previous call.
struct StatusSnapshot {
  double seconds = 0;
  double messages_per_s = 0;
  double signals_per_s = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0;  // Tick-to-signal over the interval.
  // Datagram received → feature vector enqueued (the feed handler's share), same interval.
  double feed_p50_us = 0, feed_p99_us = 0, feed_p999_us = 0;
  double shadow_relative_rmse = 0;              // sqrt(sum err^2 / sum fp32^2) over the interval.
  uint64_t malformed = 0, gaps = 0, drops = 0;  // Totals.
  uint64_t subscribers = 0;
  std::string models;  // "mlp v1 int8, lstm v1 int8".
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(const config::Config& config);
  ~Server();

  absl::Status Start();
  void Stop();

  std::string grpc_address() const;     // host:port actually bound (SignalService).
  std::string admin_address() const;    // host:port actually bound (AdminService).
  std::string metrics_address() const;  // host:port actually bound.
  uint16_t feed_port() const;           // UDP port the feed socket is bound to.

  StatusSnapshot Status();  // Not thread-safe against itself: the console calls it.
  // True once every model has a calibrated INT8 runtime.
  bool calibrated() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::server
