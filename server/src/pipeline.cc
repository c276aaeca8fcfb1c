#include "pipeline.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/counter.h"
#include "qsig/server/feed_options.h"
#include "runtime_capability.h"
#include "spdlog/spdlog.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QSIG_CPU_RELAX() _mm_pause()
#else
#define QSIG_CPU_RELAX() ((void)0)
#endif

namespace qsig::server {

using feeds::Bump;

bool PinThisThread(int core, std::string* error) {
  if (core < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) {
    *error = absl::StrCat("cannot pin to core ", core, ": ", std::strerror(rc));
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Worker

Worker::Worker(int id, const config::Config& config,
               const std::vector<std::unique_ptr<ModelSlot>>* slots, int n_features, int max_locate)
    : id_(id),
      core_(config.pipeline.mode == "run_to_completion" || config.workers.cores.empty()
                ? -1
                : config.workers.cores[static_cast<size_t>(id)]),
      idle_spin_us_(config.workers.idle_spin_us),
      shadow_every_(config.shadow.sample_every),
      divergence_threshold_(config.shadow.divergence_threshold),
      slots_(slots),
      n_models_(slots->size()),
      n_features_(n_features),
      max_window_(1) {
  runtime_ = config.runtime;
  size_t max_ws = 0;
  for (const auto& s : *slots_) {
    max_window_ = std::max(max_window_, s->spec().window);
    max_ws = std::max(max_ws, s->workspace_capacity());
  }
  const size_t capacity = static_cast<size_t>(config.workers.queue_capacity);
  input_ = std::make_unique<FeatureQueue>(capacity);
  output_ = std::make_unique<SignalQueue>(capacity);
  samples_ = std::make_unique<FeatureQueue>(capacity);
  const size_t n_loc = static_cast<size_t>(max_locate) + 1;
  history_ = models::WindowHistory(n_loc, max_window_, n_features_);
  sequence_.assign(n_loc * n_models_, 0);
  diverged_.assign(n_loc * n_models_, 0);
  latest_ = std::make_unique<LatestSlot[]>(n_loc * n_models_);
  signals_ = std::make_unique<std::atomic<uint64_t>[]>(n_loc * n_models_);
  for (size_t i = 0; i < n_loc * n_models_; ++i) signals_[i].store(0);
  shadow_ = std::make_unique<ShadowStats[]>(n_models_);
  window_.assign(static_cast<size_t>(max_window_) * n_features_, 0.0f);
  // INT8 and FP32 runtimes keep the same window-mode state layout; leave headroom anyway and
  // fall back to the stateless Run() for a model that needs more.
  for (size_t m = 0; m < n_models_; ++m) {
    const models::Model& fp32 = (*slots_)[m]->fp32();
    mode_.push_back(m < config.models.size() && config.models[m].mode == "streaming"
                        ? models::Mode::kStreaming
                        : models::Mode::kWindow);
    precompute_.push_back(mode_.back() == models::Mode::kWindow &&
                          (m >= config.models.size() || config.models[m].precompute));
    state_stride_ = std::max({state_stride_, fp32.state_floats(models::Mode::kWindow),
                              fp32.state_floats(models::Mode::kStreaming)});
  }
  state_stride_ = (state_stride_ * 2 + 63) / 64 * 64;
  state_.assign(n_loc * n_models_ * state_stride_, 0.0f);
  state_version_.assign(n_loc * n_models_, UINT64_MAX);
  if (std::find(mode_.begin(), mode_.end(), models::Mode::kStreaming) != mode_.end()) {
    shadow_state_.assign(n_loc * n_models_ * state_stride_, 0.0f);
    shadow_state_version_.assign(n_loc * n_models_, UINT64_MAX);
  }
  if (std::find(precompute_.begin(), precompute_.end(), 1) != precompute_.end()) {
    pending_.assign(n_loc * n_models_ + 1, 0);
    pending_flag_.assign(n_loc * n_models_, 0);
  }
  workspace_.assign(max_ws, 0.0f);
  primary_values_.assign(n_models_, 0.0f);
  installed_.assign(n_models_, nullptr);
}

Worker::~Worker() { Join(); }

void Worker::Start(std::atomic<bool>* running, Doorbell* bus_doorbell) {
  bus_doorbell_ = bus_doorbell;
  thread_ = std::thread([this, running] { Run(running); });
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Run(std::atomic<bool>* running) {
  std::string err;
  if (core_ >= 0) {
    if (PinThisThread(core_, &err)) {
      pinned_.store(true);
    } else {
      spdlog::warn("worker {}: {} (continuing unpinned)", id_, err);
    }
  }
  ApplyTickThreadRuntime(runtime_, core_, pinned_.load());
  feeds::FeatureVector fv;
  int64_t idle_since = 0;
  while (running->load(std::memory_order_relaxed)) {
    if (input_->pop(fv)) {
      const int64_t t_dequeue = feeds::MonotonicNanos();
      hist_.queue.Record(t_dequeue - fv.features_ns);
      OnTick(fv, t_dequeue);
      idle_since = 0;
    } else if (precompute_pending()) {
      // Idle time: the queue is empty, so precompute one prefix, then look again.
      PrecomputeNext();
    } else {
      const int64_t now = feeds::MonotonicNanos();
      if (idle_since == 0) idle_since = now;
      if (now - idle_since < static_cast<int64_t>(idle_spin_us_) * 1000) {
        QSIG_CPU_RELAX();
      } else {
        // Sleep until the feed thread rings; wake at least every millisecond so the RCU epoch
        // advances and shutdown is noticed.
        doorbell_.Wait([this] { return input_->read_available() > 0; }, 1000);
      }
    }
    Quiesce();
  }
}

void Worker::AssembleWindow(const Instrument& in, int w) noexcept {
  history_.CopyWindow(in.loc, w, window_);
}

float Worker::Advance(const Instrument& in, const models::Model& model, models::Mode mode,
                      float* state, uint64_t* version, uint64_t want, int w) noexcept {
  if (*version != want) {
    model.ResetState(mode, state);
    for (uint64_t k = in.count() - w; k + 1 < in.count(); ++k) {
      if (mode == models::Mode::kWindow) {
        model.PushTick(in.tick(k), state, workspace_.data());
      } else {
        model.Step(in.tick(k), state, workspace_.data());
      }
    }
    *version = want;
  }
  return mode == models::Mode::kWindow
             ? model.PushTick(in.tick(in.count() - 1), state, workspace_.data())
             : model.Step(in.tick(in.count() - 1), state, workspace_.data());
}

float Worker::RunPrimary(const Instrument& in, size_t m, const Installed& installed) noexcept {
  const int w = installed.spec->window;
  const size_t key = in.loc * n_models_ + m;
  const models::Model* int8 = installed.int8.get();
  const models::Mode mode = mode_[m];
  // Window mode: the INT8 primary with cached projections (FP32 warm-up runs stateless).
  // Streaming mode: whichever model serves, stepping its carried state.
  const models::Model* stateful_model =
      mode == models::Mode::kStreaming ? (int8 ? int8 : installed.fp32.get()) : int8;
  if (stateful_model != nullptr && stateful_model->state_floats(mode) <= state_stride_) {
    float* state = state_.data() + key * state_stride_;
    if (!precompute_[m] || installed.spec->arch == models::Arch::kMlp) {
      return Advance(in, *stateful_model, mode, state, &state_version_[key], installed.version, w);
    }
    // Precomputed sliding window: a hit needs the prefix of this model version.
    const bool hit =
        state_version_[key] == installed.version && stateful_model->WindowPrecomputed(state);
    auto& counter = hit ? precompute_hits_ : precompute_misses_;
    Bump(counter);
    const float value =
        Advance(in, *stateful_model, mode, state, &state_version_[key], installed.version, w);
    if (!pending_flag_[key]) {
      pending_flag_[key] = 1;
      pending_[pending_tail_] = static_cast<uint32_t>(key);
      pending_tail_ = pending_tail_ + 1 == pending_.size() ? 0 : pending_tail_ + 1;
    }
    return value;
  }
  AssembleWindow(in, w);
  const models::Model& primary = int8 ? *int8 : *installed.fp32;
  return primary.Run(std::span<const float>(window_.data(), static_cast<size_t>(w) * n_features_),
                     workspace_.data());
}

void Worker::PrecomputeNext() noexcept {
  if (!precompute_pending()) return;
  const size_t key = pending_[pending_head_];
  pending_head_ = pending_head_ + 1 == pending_.size() ? 0 : pending_head_ + 1;
  pending_flag_[key] = 0;
  const size_t m = key % n_models_;
  // The model serving now: a state of another version is rebuilt on the next tick anyway.
  const Installed* installed = (*slots_)[m]->current();
  const models::Model* model = installed->int8.get();
  if (model == nullptr || state_version_[key] != installed->version ||
      model->state_floats(models::Mode::kWindow) > state_stride_) {
    return;
  }
  float* state = state_.data() + key * state_stride_;
  if (model->PrecomputeWindow(state, workspace_.data()) && !model->WindowPrecomputed(state)) {
    // One time block done: the rest after whatever is waiting (back of the queue).
    pending_flag_[key] = 1;
    pending_[pending_tail_] = static_cast<uint32_t>(key);
    pending_tail_ = pending_tail_ + 1 == pending_.size() ? 0 : pending_tail_ + 1;
  }
}

void Worker::RunShadow(const Instrument& in, size_t m, const Installed& installed,
                       bool sampled) noexcept {
  const int w = installed.spec->window;
  const size_t key = in.loc * n_models_ + m;
  float ref;
  if (mode_[m] == models::Mode::kStreaming) {
    if (installed.fp32->state_floats(models::Mode::kStreaming) > state_stride_) return;
    ref = Advance(in, *installed.fp32, models::Mode::kStreaming,
                  shadow_state_.data() + key * state_stride_, &shadow_state_version_[key],
                  installed.version, w);
    if (!sampled) return;
  } else {
    AssembleWindow(in, w);
    ref = installed.fp32->Run(
        std::span<const float>(window_.data(), static_cast<size_t>(w) * n_features_),
        workspace_.data());
  }
  if (!std::isfinite(ref)) return;
  const double err = static_cast<double>(primary_values_[m]) - ref;
  ShadowStats& s = shadow_[m];
  s.abs_error_sum.Add(std::fabs(err));
  s.squared_error_sum.Add(err * err);
  s.fp32_squared_sum.Add(static_cast<double>(ref) * ref);
  Bump(s.count);
  const bool diverged = std::fabs(err) > divergence_threshold_;
  if (diverged) {
    Bump(s.divergences);
  }
  diverged_[key] = diverged;
}

void Worker::OnTick(const feeds::FeatureVector& fv, int64_t t_start) noexcept {
  if (fv.n_features != n_features_) return;  // Cannot happen: the feed thread checks.
  const size_t loc = fv.locate;
  history_.Push(loc, fv.values);
  const Instrument in{loc, &history_};
  // One snapshot of every model for this tick (see installed_).
  for (size_t m = 0; m < n_models_; ++m) installed_[m] = (*slots_)[m]->current();

  // Clock: one read at the end of each model's inference (its publish instant) and one at the
  // end of its publish (the next model's inference start).
  int64_t t0 = t_start;
  bool queued = false;
  for (size_t m = 0; m < n_models_; ++m) {
    const Installed& installed = *installed_[m];
    if (!history_.Ready(loc, installed.spec->window)) continue;  // No full window yet.
    const size_t key = loc * n_models_ + m;
    float value = RunPrimary(in, m, installed);
    const int64_t t1 = feeds::MonotonicNanos();

    SignalRecord rec;
    rec.locate = fv.locate;
    rec.model = static_cast<uint16_t>(m);
    rec.flags = 0;
    if (fv.flags & feeds::kFeatureFlagStale) rec.flags |= kSignalStale;
    if (!installed.int8) rec.flags |= installed.fallback ? kSignalFallback : kSignalWarmup;
    if (fv.flags & feeds::kFeatureFlagHalted) rec.flags |= kSignalHalted;
    if (fv.flags & feeds::kFeatureFlagBookSuspect) rec.flags |= kSignalBookSuspect;
    if (diverged_[key]) rec.flags |= kSignalShadowDiverged;
    if (!std::isfinite(value) || (fv.flags & feeds::kFeatureFlagNonFinite)) {
      // A NaN never reaches a client as a number.
      if (!std::isfinite(value)) value = 0.0f;
      rec.flags |= kSignalInvalid;
      Bump(invalid_);
    }
    primary_values_[m] = value;
    rec.sequence = ++sequence_[key];
    rec.value = value;
    rec.mid_price = fv.mid_price;
    rec.exchange_ts_ns = fv.exchange_ts_ns;
    rec.model_version = installed.version;
    rec.feed_sequence = fv.msg_seq;
    rec.tick_to_signal_ns = t1 - fv.recv_ns;
    // The wall clock without a second read: the receive instant on both clocks is known.
    rec.publish_wall_ns =
        fv.recv_wall_ns != 0 ? fv.recv_wall_ns + rec.tick_to_signal_ns : feeds::WallNanos();
    latest_[key].Store(rec);
    if (output_->push(rec)) {
      queued = true;
    } else {
      Bump(output_drops_);
    }
    Bump(signals_[key]);
    const int64_t t2 = feeds::MonotonicNanos();
    hist_.inference.Record(t1 - t0);
    hist_.publish.Record(t2 - t1);
    hist_.tick_to_signal.Record(rec.tick_to_signal_ns);
    t0 = t2;
  }

  // Wake the publisher once per tick, after every model's signal is queued: a wake-up costs a
  // futex syscall and, on few cores, lets the woken publisher preempt this thread between two
  // models of the same tick.
  if (queued) bus_doorbell_->Ring();

  // FP32 shadow, after every signal of this tick is out: it never delays the primary.
  // A streaming model's shadow steps every tick (its state must see every tick); the others
  // run only on sampled ticks. Same model snapshot as the primary.
  const bool sampled = shadow_every_ > 0 && (ticks_++ % shadow_every_) == 0;
  for (size_t m = 0; m < n_models_; ++m) {
    const Installed& installed = *installed_[m];
    if (!sampled && mode_[m] != models::Mode::kStreaming) continue;
    if (!installed.int8 || !history_.Ready(loc, installed.spec->window)) continue;
    RunShadow(in, m, installed, sampled);
  }
  if (!samples_->push(fv)) {
    Bump(sample_drops_);
  }
}

// ---------------------------------------------------------------------------------------------
// FeedThread

FeedThread::FeedThread(const config::Config& config, std::vector<feeds::FeatureSpec> feature_specs,
                       std::vector<Worker*> workers, SymbolTable* symbols, int shard, int shards)
    : config_(config),
      feature_specs_(std::move(feature_specs)),
      workers_(std::move(workers)),
      symbols_(symbols),
      shard_(shard),
      shards_(shards),
      inline_(config.pipeline.mode == "run_to_completion"),
      queue_drops_(new std::atomic<uint64_t>[workers_.size()]),
      ring_pending_(workers_.size(), 0) {
  for (size_t i = 0; i < workers_.size(); ++i) queue_drops_[i].store(0);
}

FeedThread::~FeedThread() { Join(); }

absl::Status FeedThread::Open(const std::string& retransmit_endpoint, const std::string& listen_a,
                              const std::string& listen_b) {
  const config::FeedConfig& f = config_.feed;
  feeds::FeedHandlerOptions o;
  o.line_a.listen = listen_a.empty() ? f.listen : listen_a;
  o.line_a.group = f.group;
  o.line_a.interface_address = f.interface_address;
  o.line_a.receive_buffer_bytes = f.receive_buffer_bytes;
  o.line_a.busy_poll = f.busy_poll || (inline_ && config_.pipeline.busy_poll);
  o.line_a.kernel_timestamps = f.kernel_timestamps;
  if (!f.line_b.listen.empty()) {
    feeds::UdpReceiverOptions b = o.line_a;
    b.listen = listen_b.empty() ? f.line_b.listen : listen_b;
    b.group = f.line_b.group;
    b.interface_address = f.line_b.interface_address;
    o.line_b = b;
  }
  o.retransmit_endpoint = retransmit_endpoint;
  // Worker mode: one datagram per Poll(), the workers' doorbells are rung after each datagram
  // (see Run()). Run to completion: a few per Poll() between RCU quiescent points.
  o.max_datagrams_per_poll = inline_ ? 16 : 1;
  o.processor = FeedProcessorOptionsFromConfig(f, feature_specs_);
  o.processor.shard_count = shards_;
  o.processor.shard_index = shard_;
  if (f.source == "pcap" || f.source == "itch") {
    feeds::ReplayOptions r;
    r.format = f.source == "pcap" ? feeds::ReplayFormat::kPcap : feeds::ReplayFormat::kItch;
    r.path = f.replay.path;
    r.speed = f.replay.speed;
    o.replay = r;
  }
  auto handler = feeds::FeedHandler::Open(o);
  if (!handler.ok()) return handler.status();
  handler_ = std::move(*handler);
  if (!handler_->replay() && f.kernel_timestamps && !handler_->kernel_timestamps()) {
    spdlog::warn(
        "feed shard {}: no kernel receive timestamps on this socket; latency is measured "
        "from user time after the read (qsig_feed_kernel_timestamps 0)",
        shard_);
  }
  return absl::OkStatus();
}

uint16_t FeedThread::port() const noexcept { return handler_ ? handler_->port_a() : 0; }
uint16_t FeedThread::port_b() const noexcept { return handler_ ? handler_->port_b() : 0; }

void FeedThread::Start(std::atomic<bool>* running, Doorbell* bus_doorbell) {
  thread_ = std::thread([this, running, bus_doorbell] { Run(running, bus_doorbell); });
}

void FeedThread::Join() {
  if (thread_.joinable()) thread_.join();
}

void FeedThread::Run(std::atomic<bool>* running, Doorbell* bus_doorbell) {
  std::string err;
  const int core = inline_ ? (config_.pipeline.cores.empty()
                                  ? -1
                                  : config_.pipeline.cores[static_cast<size_t>(shard_)])
                           : config_.feed.core;
  bool pinned = false;
  if (core >= 0) {
    pinned = PinThisThread(core, &err);
    if (!pinned) spdlog::warn("feed shard {}: {} (continuing unpinned)", shard_, err);
  }
  ApplyTickThreadRuntime(config_.runtime, core, pinned);
  Worker* own = inline_ ? workers_[0] : nullptr;
  if (own) own->Attach(bus_doorbell, pinned);
  const bool replay = handler_->replay() != nullptr;
  const int64_t spin_ns = static_cast<int64_t>(config_.pipeline.idle_spin_us) * 1000;
  int64_t last_datagram = 0;
  while (running->load(std::memory_order_relaxed)) {
    if (replay_done_.load(std::memory_order_relaxed)) {
      // The capture is exhausted: keep serving what was computed until shutdown.
      if (own) own->Quiesce();
      std::this_thread::sleep_for(std::chrono::milliseconds(own ? 1 : 50));
      continue;
    }
    int timeout_ms = 100;
    if (own) {
      // Run to completion: this thread is also the RCU reader, so it wakes at least every
      // millisecond; with idle_spin_us it looks without sleeping for a while after a datagram.
      timeout_ms = 1;
      if (spin_ns > 0 && feeds::MonotonicNanos() - last_datagram < spin_ns) timeout_ms = 0;
      // Prefixes to precompute: only look, so a datagram that waits is served first.
      if (own->precompute_pending()) timeout_ms = 0;
    }
    const int polled = handler_->Poll(timeout_ms, *this);
    if (directory_ && handler_->processor().directory_version() != directory_seen_) {
      CopyDirectory();  // Rare: only when a directory message changed a symbol.
    }
    if (own) {
      // An empty read: nothing waits in the socket, so there is idle time for one precomputed
      // window (then poll again).
      if (polled == 0 && own->precompute_pending()) own->PrecomputeNext();
      own->Quiesce();
      if (polled > 0 && spin_ns > 0) last_datagram = feeds::MonotonicNanos();
    } else {
      // Wake sleeping workers once per datagram, after all of its messages are decoded: waking
      // one per vector costs a futex syscall each and lets the woken worker preempt this thread
      // in the middle of a datagram (2 vCPUs), delaying the datagram's later messages.
      for (size_t w = 0; w < workers_.size(); ++w) {
        if (ring_pending_[w]) {
          ring_pending_[w] = 0;
          workers_[w]->doorbell().Ring();
        }
      }
    }
    if (polled < 0) {
      if (replay) {
        replay_done_.store(true);
        spdlog::info("feed shard {}: replay of {} finished", shard_, config_.feed.replay.path);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // Socket error: counted.
      }
    }
  }
}

void FeedThread::CopyDirectory() noexcept {
  const feeds::FeedProcessor& p = handler_->processor();
  directory_seen_ = p.directory_version();
  for (int l = 0; l <= config_.feed.max_instruments; ++l) {
    const auto locate = static_cast<uint16_t>(l);
    directory_->Set(locate, p.symbol(locate));
  }
}

void FeedThread::OnFeatures(const feeds::FeatureVector& fv) noexcept {
  hist_.decode.Record(fv.decoded_ns - fv.recv_ns);
  hist_.features.Record(fv.features_ns - fv.decoded_ns);
  if (!symbols_->Known(fv.locate)) {
    symbols_->Set(fv.locate, handler_->processor().symbol(fv.locate));
  }
  if (inline_) {
    // Run to completion: the processor only emits this shard's instruments.
    workers_[0]->OnTick(fv, fv.features_ns);
    return;
  }
  const size_t w = fv.locate % workers_.size();
  if (workers_[w]->input().push(fv)) {
    hist_.receive_to_enqueue.Record(feeds::MonotonicNanos() - fv.recv_ns);
    ring_pending_[w] = 1;
  } else {
    Bump(queue_drops_[w]);
  }
}

}  // namespace qsig::server
