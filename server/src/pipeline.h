// The tick path, in one of two shapes (config pipeline.mode):
//  - workers: one feed thread (receive, decode, book, features, route) hands feature vectors to
//    pinned workers (INT8 primary, publish, FP32 shadow) over SPSC queues and doorbells;
//  - run_to_completion: N shard threads each receive the whole feed on a socket of their own,
//    keep the books of the instruments they own (locate % N) and run those instruments' models
//    on the same thread, right after the book update: no hand-off before publish.
// Either way a Worker holds the model state of its instruments and publishes into its own
// SignalQueue (drained by the SignalBus). Nothing here allocates, locks or throws once Start()
// has returned; every stage is timed into single-writer lock-free histograms, from the
// kernel's receive timestamp where the socket has one.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "doorbell.h"
#include "latency_histogram.h"
#include "model_registry.h"
#include "qsig/config/config.h"
#include "qsig/feeds/features.h"
#include "qsig/feeds/feed.h"
#include "qsig/models/window.h"
#include "signal_bus.h"
#include "signal_record.h"
#include "symbol_table.h"

namespace qsig::server {

using FeatureQueue = boost::lockfree::spsc_queue<feeds::FeatureVector>;

// Stage timings: datagram → decode+book → features → queue → inference → publish, plus the
// feed handler's whole share (datagram received → feature vector enqueued for a worker). Each
// instance has one writer thread. Run to completion has no queue stage and no enqueue.
struct StageHistograms {
  LatencyHistogram decode, features, queue, inference, publish, tick_to_signal;
  LatencyHistogram receive_to_enqueue;
};

// A single-writer accumulator readable from other threads (relaxed load/store, no RMW).
class RelaxedSum {
 public:
  void Add(double v) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
  double Get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Per model, written by one worker.
struct ShadowStats {
  RelaxedSum abs_error_sum, squared_error_sum, fp32_squared_sum;
  std::atomic<uint64_t> count{0}, divergences{0};
};

// The model stage for a subset of instruments: history, recurrent state, primary, publish,
// shadow. In worker mode it runs its own thread fed by input(); in run-to-completion mode a
// FeedThread (shard) calls OnTick() inline and marks quiescent points with Quiesce().
class Worker {
 public:
  Worker(int id, const config::Config& config, const std::vector<std::unique_ptr<ModelSlot>>* slots,
         int n_features, int max_locate);
  ~Worker();
  // Worker mode: starts the thread that pops input(). `bus_doorbell` is rung once per tick,
  // after the tick's signals are queued for the publisher.
  void Start(std::atomic<bool>* running, Doorbell* bus_doorbell);
  void Join();
  // Run-to-completion mode: the calling (shard) thread owns this worker from now on.
  void Attach(Doorbell* bus_doorbell, bool pinned) noexcept {
    bus_doorbell_ = bus_doorbell;
    pinned_.store(pinned);
  }
  // One feature vector, on the owning thread. `t_start` is when it reached this stage (the
  // dequeue in worker mode, fv.features_ns inline): the first model's inference starts there.
  void OnTick(const feeds::FeatureVector& fv, int64_t t_start) noexcept;
  // Precomputed sliding windows (models[i].precompute): true if some (instrument, model) that
  // ticked has no precomputed prefix yet. PrecomputeNext() computes one (the oldest pending):
  // call it only when nothing is waiting (idle time), one at a time, re-checking in between, on
  // the owning thread, before the next Quiesce().
  bool precompute_pending() const noexcept { return pending_head_ != pending_tail_; }
  void PrecomputeNext() noexcept;
  // Window-mode ticks of recurrent INT8 models with precompute on: served from a ready prefix
  // (hit) or by the full window (miss: a burst left no idle time, a swap, or the first tick).
  uint64_t precompute_hits() const noexcept {
    return precompute_hits_.load(std::memory_order_relaxed);
  }
  uint64_t precompute_misses() const noexcept {
    return precompute_misses_.load(std::memory_order_relaxed);
  }
  // RCU quiescent point: no Installed* from before this call is used after it.
  void Quiesce() noexcept {
    epoch_.store(epoch_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  FeatureQueue& input() noexcept { return *input_; }
  Doorbell& doorbell() noexcept { return doorbell_; }
  SignalQueue& output() noexcept { return *output_; }
  FeatureQueue& samples() noexcept { return *samples_; }
  const std::atomic<uint64_t>& epoch() const noexcept { return epoch_; }
  const LatestSlot& latest(uint16_t locate, size_t model) const noexcept {
    return latest_[static_cast<size_t>(locate) * n_models_ + model];
  }
  uint64_t signals(uint16_t locate, size_t model) const noexcept {
    return signals_[static_cast<size_t>(locate) * n_models_ + model].load(
        std::memory_order_relaxed);
  }
  const ShadowStats& shadow(size_t model) const noexcept { return shadow_[model]; }
  StageHistograms& histograms() noexcept { return hist_; }
  const StageHistograms& histograms() const noexcept { return hist_; }
  uint64_t output_drops() const noexcept { return output_drops_.load(std::memory_order_relaxed); }
  uint64_t sample_drops() const noexcept { return sample_drops_.load(std::memory_order_relaxed); }
  uint64_t invalid_outputs() const noexcept { return invalid_.load(std::memory_order_relaxed); }
  int id() const noexcept { return id_; }
  bool pinned() const noexcept { return pinned_.load(); }

 private:
  // One instrument's history during a tick.
  struct Instrument {
    size_t loc;
    const models::WindowHistory* history;  // Stream `loc` is this instrument's.
    uint64_t count() const noexcept { return history->count(loc); }  // Ticks, this one included.
    std::span<const float> tick(uint64_t k) const noexcept {         // The k-th tick (from 0).
      return history->Tick(loc, k);
    }
  };
  void Run(std::atomic<bool>* running);
  // Copies the instrument's last w ticks, oldest first, into window_ (for the stateless Run).
  void AssembleWindow(const Instrument& in, int w) noexcept;
  // One tick of `model` on the per-instrument `state` in `mode`; a state that belongs to
  // another model version (a swap, or first use) first restarts from the last w - 1 ticks.
  float Advance(const Instrument& in, const models::Model& model, models::Mode mode, float* state,
                uint64_t* version, uint64_t want, int w) noexcept;
  // The serving model's value for model m on this tick.
  float RunPrimary(const Instrument& in, size_t m, const Installed& installed) noexcept;
  // The FP32 shadow of model m on this tick, compared with primary_values_[m].
  void RunShadow(const Instrument& in, size_t m, const Installed& installed, bool sampled) noexcept;

  int id_;
  int core_;
  int idle_spin_us_;
  int shadow_every_;
  double divergence_threshold_;
  const std::vector<std::unique_ptr<ModelSlot>>* slots_;
  size_t n_models_;
  int n_features_;
  int max_window_;
  std::unique_ptr<FeatureQueue> input_;
  Doorbell doorbell_;
  Doorbell* bus_doorbell_ = nullptr;
  std::unique_ptr<SignalQueue> output_;
  std::unique_ptr<FeatureQueue> samples_;
  // Per instrument: the last max_window_ feature vectors.
  models::WindowHistory history_;
  // Per (instrument, model).
  std::vector<uint64_t> sequence_;
  std::vector<uint8_t> diverged_;
  std::unique_ptr<LatestSlot[]> latest_;
  std::unique_ptr<std::atomic<uint64_t>[]> signals_;
  std::unique_ptr<ShadowStats[]> shadow_;
  // Window-mode state of the INT8 primary per (instrument, model): cached input projections,
  // so a tick adds one projection instead of window() (Model::PushTick). Tagged with the model
  // version it belongs to; after a swap it is rebuilt from the history ring on the
  // instrument's next tick.
  // A model in streaming mode (models[i].mode) keeps its recurrent state (h, c) here instead,
  // carried from tick to tick; after a swap it restarts from the history ring's last window()
  // ticks. Its FP32 shadow keeps its own streaming state (shadow_state_), advanced every tick.
  std::vector<float> state_;
  size_t state_stride_ = 0;
  std::vector<uint64_t> state_version_;
  std::vector<models::Mode> mode_;   // Per model.
  std::vector<uint8_t> precompute_;  // Per model: models[i].precompute (window mode only).
  // Keys (instrument * n_models + model) whose prefix is still to precompute, FIFO; each key at
  // most once (pending_flag_), so a ring of one slot per key never overflows.
  std::vector<uint32_t> pending_;
  std::vector<uint8_t> pending_flag_;
  size_t pending_head_ = 0, pending_tail_ = 0;
  std::atomic<uint64_t> precompute_hits_{0}, precompute_misses_{0};
  std::vector<float> shadow_state_;
  std::vector<uint64_t> shadow_state_version_;
  // Scratch: one window and one model workspace sized for the largest model.
  std::vector<float> window_;
  std::vector<float> workspace_;
  std::vector<float> primary_values_;
  // The model bundle of each model for the tick in progress: one load per tick, so the primary
  // and its shadow always come from the same version even if a swap lands mid-tick.
  std::vector<const Installed*> installed_;
  uint64_t ticks_ = 0;
  StageHistograms hist_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> output_drops_{0}, sample_drops_{0}, invalid_{0};
  std::atomic<bool> pinned_{false};
  std::thread thread_;
  config::RuntimeConfig runtime_;  // Real-time scheduling asked for its thread.
};

// Receives datagrams and runs a FeedProcessor. Worker mode (shards == 1, several workers):
// routes vectors to workers by locate over their queues. Run to completion: shard `shard` of
// `shards`, whose processor keeps only the books of locate % shards == shard, runs its one
// Worker inline on each vector.
class FeedThread : public feeds::FeatureSink {
 public:
  FeedThread(const config::Config& config, std::vector<feeds::FeatureSpec> feature_specs,
             std::vector<Worker*> workers, SymbolTable* symbols, int shard = 0, int shards = 1);
  ~FeedThread() override;
  // Binds the line sockets (ports known after this) or opens the replay file; re-requests for
  // gaps go to `retransmit_endpoint` ("" = none). `listen_a` / `listen_b` override feed.listen
  // and feed.line_b.listen ("" = as configured): each shard has a socket of its own.
  absl::Status Open(const std::string& retransmit_endpoint, const std::string& listen_a = "",
                    const std::string& listen_b = "");
  // `bus_doorbell`: run to completion rings it after each signal (worker mode: the workers do).
  void Start(std::atomic<bool>* running, Doorbell* bus_doorbell = nullptr);
  void Join();
  uint16_t port() const noexcept;    // Line A.
  uint16_t port_b() const noexcept;  // Line B (0 = none).
  const feeds::FeedProcessor& processor() const noexcept { return handler_->processor(); }
  const feeds::FeedHandler& handler() const noexcept { return *handler_; }
  bool replay_done() const noexcept { return replay_done_.load(std::memory_order_relaxed); }
  bool run_to_completion() const noexcept { return inline_; }
  int shard() const noexcept { return shard_; }
  StageHistograms& histograms() noexcept { return hist_; }
  const StageHistograms& histograms() const noexcept { return hist_; }
  uint64_t queue_drops(size_t worker) const noexcept {
    return queue_drops_[worker].load(std::memory_order_relaxed);
  }

  void OnFeatures(const feeds::FeatureVector& fv) noexcept override;

  // Before Start: this thread also copies the feed's stock directory (every symbol, owned or
  // not) into `directory` whenever it changes (GetTopology reads it). One thread per server.
  void SetDirectory(SymbolTable* directory) noexcept { directory_ = directory; }

 private:
  void Run(std::atomic<bool>* running, Doorbell* bus_doorbell);
  void CopyDirectory() noexcept;

  const config::Config& config_;
  std::vector<feeds::FeatureSpec> feature_specs_;
  std::vector<Worker*> workers_;
  SymbolTable* symbols_;
  SymbolTable* directory_ = nullptr;
  uint64_t directory_seen_ = 0;  // processor().directory_version() last copied.
  int shard_, shards_;
  bool inline_;           // Run to completion: workers_[0] runs on this thread.
  StageHistograms hist_;  // decode, features, receive_to_enqueue (this thread only).
  std::unique_ptr<feeds::FeedHandler> handler_;
  std::atomic<bool> replay_done_{false};
  std::unique_ptr<std::atomic<uint64_t>[]> queue_drops_;
  std::vector<uint8_t> ring_pending_;  // Feed thread only: workers to wake after this datagram.
  std::thread thread_;
};

// Pins the calling thread to `core`; returns false (and the reason) if it could not.
bool PinThisThread(int core, std::string* error);

}  // namespace qsig::server
