#include "pipeline.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/clock.h"
#include "spdlog/spdlog.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QSIG_CPU_RELAX() _mm_pause()
#else
#define QSIG_CPU_RELAX() ((void)0)
#endif

namespace qsig::server {

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
      core_(config.workers.cores.empty() ? -1 : config.workers.cores[id]),
      idle_spin_us_(config.workers.idle_spin_us),
      shadow_every_(config.shadow.sample_every),
      divergence_threshold_(config.shadow.divergence_threshold),
      slots_(slots),
      n_models_(slots->size()),
      n_features_(n_features),
      max_window_(1) {
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
  history_.assign(n_loc * max_window_ * n_features_, 0.0f);
  history_count_.assign(n_loc, 0);
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
  workspace_.assign(max_ws, 0.0f);
  primary_values_.assign(n_models_, 0.0f);
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
  feeds::FeatureVector fv;
  int64_t idle_since = 0;
  while (running->load(std::memory_order_relaxed)) {
    if (input_->pop(fv)) {
      OnTick(fv);
      idle_since = 0;
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
    // Quiescent point for RCU reclamation of swapped-out models.
    epoch_.store(epoch_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
}

void Worker::OnTick(const feeds::FeatureVector& fv) noexcept {
  const int64_t t_dequeue = feeds::MonotonicNanos();
  hist_.queue.Record(t_dequeue - fv.features_ns);
  if (fv.n_features != n_features_) return;  // Cannot happen: the feed thread checks.
  const size_t loc = fv.locate;
  float* hist = history_.data() + loc * max_window_ * n_features_;
  uint64_t& count = history_count_[loc];
  std::memcpy(hist + static_cast<size_t>(count % max_window_) * n_features_, fv.values,
              sizeof(float) * n_features_);
  ++count;

  // Copies this instrument's last w ticks, oldest first, into window_ (for the stateless Run).
  const auto AssembleWindow = [&](int w) noexcept {
    for (int t = 0; t < w; ++t) {
      const size_t idx = (count - w + t) % max_window_;
      std::memcpy(window_.data() + static_cast<size_t>(t) * n_features_, hist + idx * n_features_,
                  sizeof(float) * n_features_);
    }
  };

  const auto tick_at = [&](uint64_t k) {  // The k-th tick of this instrument (from 0).
    return std::span<const float>(hist + static_cast<size_t>(k % max_window_) * n_features_,
                                  static_cast<size_t>(n_features_));
  };
  // One tick of `model` on the per-instrument `state` in `mode`; a state that belongs to another
  // model version (a swap, or first use) first restarts from the last w - 1 ticks.
  const auto advance = [&](const models::Model& model, models::Mode mode, float* state,
                           uint64_t* version, uint64_t want, int w) noexcept {
    if (*version != want) {
      model.ResetState(mode, state);
      for (uint64_t k = count - w; k + 1 < count; ++k) {
        if (mode == models::Mode::kWindow) {
          model.PushTick(tick_at(k), state, workspace_.data());
        } else {
          model.Step(tick_at(k), state, workspace_.data());
        }
      }
      *version = want;
    }
    return mode == models::Mode::kWindow
               ? model.PushTick(tick_at(count - 1), state, workspace_.data())
               : model.Step(tick_at(count - 1), state, workspace_.data());
  };

  const bool run_shadow = shadow_every_ > 0 && (ticks_++ % shadow_every_) == 0;
  for (size_t m = 0; m < n_models_; ++m) {
    const ModelSlot& slot = *(*slots_)[m];
    const int w = slot.spec().window;
    if (count < static_cast<uint64_t>(w)) continue;  // Window not full yet: no signal.
    const Installed* installed = slot.current();
    const size_t key = loc * n_models_ + m;
    const models::Model* int8 = installed->model.get();
    const models::Mode mode = mode_[m];
    // Window mode: the INT8 primary with cached projections (FP32 warm-up runs stateless).
    // Streaming mode: whichever model serves, stepping its carried state.
    const models::Model* stateful_model =
        mode == models::Mode::kStreaming ? (int8 ? int8 : installed->fp32.get()) : int8;
    const bool stateful =
        stateful_model != nullptr && stateful_model->state_floats(mode) <= state_stride_;

    const int64_t t0 = feeds::MonotonicNanos();
    float value;
    if (stateful) {
      value = advance(*stateful_model, mode, state_.data() + key * state_stride_,
                      &state_version_[key], installed->version, w);
    } else {
      AssembleWindow(w);
      const models::Model& primary = int8 ? *int8 : *installed->fp32;
      value =
          primary.Run(std::span<const float>(window_.data(), static_cast<size_t>(w) * n_features_),
                      workspace_.data());
    }
    const int64_t t1 = feeds::MonotonicNanos();

    SignalRecord rec;
    rec.locate = fv.locate;
    rec.model = static_cast<uint16_t>(m);
    rec.flags = 0;
    if (fv.flags & feeds::kFeatureFlagStale) rec.flags |= kSignalStale;
    if (!installed->model) rec.flags |= kSignalWarmup;
    if (fv.flags & feeds::kFeatureFlagHalted) rec.flags |= kSignalHalted;
    if (fv.flags & feeds::kFeatureFlagBookSuspect) rec.flags |= kSignalBookSuspect;
    if (diverged_[key]) rec.flags |= kSignalShadowDiverged;
    if (!std::isfinite(value) || (fv.flags & feeds::kFeatureFlagNonFinite)) {
      // A NaN never reaches a client as a number.
      if (!std::isfinite(value)) value = 0.0f;
      rec.flags |= kSignalInvalid;
      invalid_.fetch_add(1, std::memory_order_relaxed);
    }
    primary_values_[m] = value;
    rec.sequence = ++sequence_[key];
    rec.value = value;
    rec.mid_price = fv.mid_price;
    rec.exchange_ts_ns = fv.exchange_ts_ns;
    rec.model_version = installed->version;
    rec.feed_sequence = fv.msg_seq;
    rec.publish_wall_ns = feeds::WallNanos();
    const int64_t t_pub = feeds::MonotonicNanos();
    rec.tick_to_signal_ns = t_pub - fv.recv_ns;
    latest_[key].Store(rec);
    if (output_->push(rec)) {
      bus_doorbell_->Ring();
    } else {
      output_drops_.fetch_add(1, std::memory_order_relaxed);
    }
    signals_[key].store(signals_[key].load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
    hist_.inference.Record(t1 - t0);
    hist_.publish.Record(feeds::MonotonicNanos() - t1);
    hist_.tick_to_signal.Record(rec.tick_to_signal_ns);
  }

  // FP32 shadow, after every signal of this tick is out: it never delays the primary.
  // A streaming model's shadow steps every tick (its state must see every tick); the others
  // run only on sampled ticks.
  for (size_t m = 0; m < n_models_; ++m) {
    const bool streaming = mode_[m] == models::Mode::kStreaming;
    if (!run_shadow && !streaming) continue;
    {
      const ModelSlot& slot = *(*slots_)[m];
      const int w = slot.spec().window;
      const Installed* installed = slot.current();
      if (!installed->model || count < static_cast<uint64_t>(w)) continue;
      const size_t skey = loc * n_models_ + m;
      float ref;
      if (streaming) {
        if (installed->fp32->state_floats(models::Mode::kStreaming) > state_stride_) continue;
        ref = advance(*installed->fp32, models::Mode::kStreaming,
                      shadow_state_.data() + skey * state_stride_, &shadow_state_version_[skey],
                      installed->version, w);
        if (!run_shadow) continue;
      } else {
        AssembleWindow(w);
        ref = installed->fp32->Run(
            std::span<const float>(window_.data(), static_cast<size_t>(w) * n_features_),
            workspace_.data());
      }
      if (!std::isfinite(ref)) continue;
      const double err = static_cast<double>(primary_values_[m]) - ref;
      ShadowStats& s = shadow_[m];
      s.abs_error_sum.Add(std::fabs(err));
      s.squared_error_sum.Add(err * err);
      s.fp32_squared_sum.Add(static_cast<double>(ref) * ref);
      s.count.store(s.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      const bool diverged = std::fabs(err) > divergence_threshold_;
      const size_t key = loc * n_models_ + m;
      if (diverged) {
        s.divergences.store(s.divergences.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
      }
      diverged_[key] = diverged;
    }
  }
  if (!samples_->push(fv)) sample_drops_.fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// FeedThread

FeedThread::FeedThread(const config::Config& config, std::vector<feeds::FeatureSpec> feature_specs,
                       std::vector<Worker*> workers, SymbolTable* symbols, StageHistograms* hist)
    : config_(config),
      feature_specs_(std::move(feature_specs)),
      workers_(std::move(workers)),
      symbols_(symbols),
      hist_(hist),
      queue_drops_(new std::atomic<uint64_t>[workers_.size()]),
      ring_pending_(workers_.size(), 0) {
  for (size_t i = 0; i < workers_.size(); ++i) queue_drops_[i].store(0);
}

FeedThread::~FeedThread() { Join(); }

absl::Status FeedThread::Open(const std::string& retransmit_endpoint) {
  const config::FeedConfig& f = config_.feed;
  feeds::FeedHandlerOptions o;
  o.line_a.listen = f.listen;
  o.line_a.group = f.group;
  o.line_a.interface_address = f.interface_address;
  o.line_a.receive_buffer_bytes = f.receive_buffer_bytes;
  o.line_a.busy_poll = f.busy_poll;
  if (!f.line_b.listen.empty()) {
    feeds::UdpReceiverOptions b = o.line_a;
    b.listen = f.line_b.listen;
    b.group = f.line_b.group;
    b.interface_address = f.line_b.interface_address;
    o.line_b = b;
  }
  o.retransmit_endpoint = retransmit_endpoint;
  // One datagram per Poll(): the workers' doorbells are rung after each datagram (see Run()).
  o.max_datagrams_per_poll = 1;
  o.processor.max_instruments = f.max_instruments;
  o.processor.max_orders = f.max_orders;
  o.processor.recovery.max_held_messages = f.recovery.max_held_messages;
  o.processor.recovery.rerequest_delay_us = f.recovery.rerequest_delay_us;
  o.processor.recovery.rerequest_interval_us = f.recovery.rerequest_interval_us;
  o.processor.recovery.max_rerequests = f.recovery.max_rerequests;
  o.processor.recovery.gap_timeout_us = f.recovery.gap_timeout_us;
  o.processor.corroboration.confirm_packets = f.corroboration.confirm_packets;
  o.processor.corroboration.window_us = f.corroboration.window_us;
  o.processor.corroboration.max_sequence_jump = f.max_sequence_jump;
  o.processor.max_price = static_cast<uint32_t>(std::llround(f.max_price * 1e4));
  o.processor.features = feature_specs_;
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
  return absl::OkStatus();
}

uint16_t FeedThread::port() const noexcept { return handler_ ? handler_->port_a() : 0; }
uint16_t FeedThread::port_b() const noexcept { return handler_ ? handler_->port_b() : 0; }

void FeedThread::Start(std::atomic<bool>* running) {
  thread_ = std::thread([this, running] { Run(running); });
}

void FeedThread::Join() {
  if (thread_.joinable()) thread_.join();
}

void FeedThread::Run(std::atomic<bool>* running) {
  std::string err;
  if (config_.feed.core >= 0 && !PinThisThread(config_.feed.core, &err)) {
    spdlog::warn("feed thread: {} (continuing unpinned)", err);
  }
  const bool replay = handler_->replay() != nullptr;
  while (running->load(std::memory_order_relaxed)) {
    if (replay_done_.load(std::memory_order_relaxed)) {
      // The capture is exhausted: keep serving what was computed until shutdown.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const int polled = handler_->Poll(100, *this);
    // Wake sleeping workers once per datagram, after all of its messages are decoded: waking
    // one per vector costs a futex syscall each and lets the woken worker preempt this thread
    // in the middle of a datagram (2 vCPUs), delaying the datagram's later messages.
    for (size_t w = 0; w < workers_.size(); ++w) {
      if (ring_pending_[w]) {
        ring_pending_[w] = 0;
        workers_[w]->doorbell().Ring();
      }
    }
    if (polled < 0) {
      if (replay) {
        replay_done_.store(true);
        spdlog::info("feed: replay of {} finished", config_.feed.replay.path);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // Socket error: counted.
      }
    }
  }
}

void FeedThread::OnFeatures(const feeds::FeatureVector& fv) noexcept {
  hist_->decode.Record(fv.decoded_ns - fv.recv_ns);
  hist_->features.Record(fv.features_ns - fv.decoded_ns);
  if (!symbols_->Known(fv.locate)) {
    symbols_->Set(fv.locate, handler_->processor().symbol(fv.locate));
  }
  const size_t w = fv.locate % workers_.size();
  if (workers_[w]->input().push(fv)) {
    hist_->receive_to_enqueue.Record(feeds::MonotonicNanos() - fv.recv_ns);
    ring_pending_[w] = 1;
  } else {
    queue_drops_[w].fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace qsig::server
