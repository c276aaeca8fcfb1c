// Fan-out of published signals to gRPC subscribers, off the tick path.
//
// Tick threads push SignalRecords into their own SPSC queue (wait-free, drop and count when
// full) and ring the bus doorbell. The publisher thread drains those queues and, for each
// subscriber whose precomputed filter (a bitmap over locate x model) accepts a record, appends it
// to that subscriber's lock-free ring. A ring never blocks its producer: when full, the oldest
// record is overwritten and counted as that subscriber's drop, so a slow or never-reading client
// loses only its own oldest signals and never slows the tick threads or the other subscribers.
//
// Delivery is pushed, not polled: a subscriber has one writer role (at most one write in
// flight). The publisher takes the role when it queues into an idle subscriber and starts the
// write itself through the subscriber's sink (the gRPC reactor); when the write completes, the
// gRPC callback thread keeps the role while records are queued and starts the next write with
// everything queued meanwhile, so records that pile up during a write go out together.
//
// The subscriber list is an RCU-style snapshot: subscribe and unsubscribe copy it under a mutex
// and publish a new version; the publisher takes the mutex only when the version moved.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "doorbell.h"
#include "signal_record.h"
#include "symbol_table.h"

namespace qsig::server {

// Producer-side interface (unchanged): each tick thread owns one SignalQueue, pushes into it and
// then rings SignalBus::doorbell().
using SignalQueue = boost::lockfree::spsc_queue<SignalRecord>;

// Bounded single-producer ring of SignalRecords for one subscriber. The producer never waits:
// when the ring is full it overwrites the oldest record. The consumer (whichever thread holds the
// subscriber's writer role; one at a time) copies records out and detects, seqlock-style, any
// that were overwritten while it copied; those count as dropped, like the ones it skipped.
// Storage is mapped lazily, so an idle subscriber costs almost no memory.
class SignalRing {
 public:
  explicit SignalRing(size_t min_capacity);
  ~SignalRing();
  SignalRing(const SignalRing&) = delete;
  SignalRing& operator=(const SignalRing&) = delete;

  // Producer only. Wait-free.
  void Push(const SignalRecord& r) noexcept;
  // Consumer only: moves up to `max` of the oldest records into `out`; returns how many.
  size_t Pop(SignalRecord* out, size_t max) noexcept;
  // Consumer only: whether records are queued.
  bool Empty() const noexcept;
  // Any thread: records lost so far (overwritten before they were read).
  uint64_t dropped() const noexcept;
  size_t capacity() const noexcept { return capacity_; }

 private:
  static constexpr size_t kWords = sizeof(SignalRecord) / sizeof(uint64_t);

  size_t capacity_;  // Power of two.
  size_t bytes_;
  uint64_t* words_;  // capacity_ * kWords words, accessed through std::atomic_ref.
  // Producer state. claim_ is bumped before a slot is written and head_ after, so a consumer
  // that copied a slot can tell whether a newer write may have torn it (see Pop).
  alignas(64) std::atomic<uint64_t> claim_{0};
  std::atomic<uint64_t> head_{0};
  // Consumer state; seq_ makes (read_, lost_) readable as a pair by dropped().
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> read_{0};
  std::atomic<uint64_t> lost_{0};
};

class Subscriber;

// Where a subscriber's records go: the gRPC stream (a reactor), or a test double. Both methods
// are called only by the thread that holds the subscriber's writer role (the publisher thread
// or the thread that completed the previous write), never concurrently.
class SubscriberSink {
 public:
  virtual ~SubscriberSink() = default;
  // Takes queued records (Subscriber::Take) and starts one asynchronous write; returns true if a
  // write was started (the sink then calls Subscriber::WriteDone when it completes), false if
  // Take gave nothing.
  virtual bool StartNextWrite(Subscriber& from) noexcept = 0;
  // Ends the stream; called once, after Subscriber::Close or a failed write. The sink may be
  // destroyed as soon as this is called: the caller touches it no more.
  virtual void EndStream() noexcept = 0;
};

// What a subscription asks for. Symbols are packed (SymbolTable::Pack), models are indexes.
struct SubscriptionFilter {
  std::vector<uint64_t> symbols;  // Empty = all instruments.
  std::vector<uint16_t> models;   // Empty = all models.
  int n_models = 1;               // Configured models: records carry model < n_models.
};

class Subscriber {
 public:
  // `n_locates` and filter.n_models size the filter bitmap. The sink outlives every call the
  // subscriber makes into it (see SubscriberSink::EndStream).
  Subscriber(SubscriptionFilter filter, int n_locates, size_t capacity, SubscriberSink* sink);

  // Consumer (writer-role holder, inside SubscriberSink::StartNextWrite).
  size_t Take(SignalRecord* out, size_t max) noexcept { return ring_.Pop(out, max); }
  // The sink's write completed (`ok` false: the stream is broken). Keeps or releases the role.
  void WriteDone(bool ok) noexcept;
  // Ends the stream (client cancelled, server shutting down): at once if no write is in flight,
  // otherwise when it completes. Idempotent; any thread.
  void Close() noexcept;

  uint64_t dropped() const noexcept { return ring_.dropped(); }
  bool closed() const noexcept { return state_.load(std::memory_order_acquire) & kClosed; }

 private:
  friend class SignalBus;
  static constexpr uint32_t kWriting = 1;  // The writer role is held.
  static constexpr uint32_t kClosed = 2;   // No new writes; the role holder finishes.

  // Publisher thread.
  bool Accepts(uint16_t locate, uint16_t model) const noexcept {
    const size_t bit = static_cast<size_t>(locate) * n_models_ + model;
    return (bits_[bit >> 6] >> (bit & 63)) & 1;
  }
  void AllowLocate(uint16_t locate) noexcept;
  bool WantsSymbol(uint64_t word) const noexcept;
  void Push(const SignalRecord& r) noexcept { ring_.Push(r); }
  // Takes the writer role if it is free and the stream is open.
  bool TryAcquire() noexcept;
  // Role holder: writes what is queued, or releases the role, or finishes a closed stream.
  void Pump() noexcept;

  const size_t n_models_;
  const size_t n_locates_;
  const std::vector<uint64_t> symbols_;  // Sorted; empty = all instruments.
  std::vector<uint8_t> model_wanted_;
  std::vector<uint64_t> bits_;  // (locate * n_models + model) -> accepted. Publisher thread.
  bool adopted_ = false;        // Publisher thread: filter resolved against known locates.
  SignalRing ring_;
  SubscriberSink* const sink_;
  std::atomic<uint32_t> state_{0};
};

// Delivery counters kept by the gRPC front end, exported by the metrics exporter.
struct DeliveryCounters {
  enum Rpc { kSubscribe = 0, kSubscribeBatch = 1, kRpcs = 2 };
  std::atomic<uint64_t> messages[kRpcs] = {};  // Stream messages written.
  std::atomic<uint64_t> signals[kRpcs] = {};   // Signals in them.
  std::atomic<uint64_t> rejected_max_streams{0};
  std::atomic<uint64_t> rejected_invalid_argument{0};
  std::atomic<uint64_t> rejected_not_found{0};
};

class SignalBus {
 public:
  SignalBus(const SymbolTable* symbols, std::vector<SignalQueue*> sources);
  ~SignalBus();
  // How long the publisher polls its queues before it sleeps on the doorbell (0 = sleep at
  // once). Call before Start.
  void set_publisher_spin_us(int us) noexcept { publisher_spin_us_ = us; }
  // Every record published is also pushed into `tap` (its single producer is the publisher
  // thread; the oldest are overwritten when nobody reads). Call before Start.
  void set_tap(SignalRing* tap) noexcept { tap_ = tap; }
  void Start();
  // Stops the publisher thread and closes every subscriber.
  void Stop();
  // Producers ring this after pushing into one of the source queues.
  Doorbell& doorbell() noexcept { return doorbell_; }

  // Cold path. The subscriber receives records published after the publisher adopts it.
  std::shared_ptr<Subscriber> Subscribe(SubscriptionFilter filter, size_t capacity,
                                        SubscriberSink* sink);
  void Unsubscribe(const std::shared_ptr<Subscriber>& s);
  // Closes every current subscriber (server shutdown).
  void CloseAll();

  size_t subscribers() const;
  DeliveryCounters& counters() noexcept { return counters_; }
  const DeliveryCounters& counters() const noexcept { return counters_; }
  // Records queued to subscribers (one per matching subscriber).
  uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_relaxed); }
  // Records subscribers lost (their oldest), departed subscribers included.
  uint64_t subscriber_drops() const;

 private:
  struct Snapshot {
    std::vector<std::shared_ptr<Subscriber>> subs;
  };
  void Run();
  void Publish(std::shared_ptr<const Snapshot> next);  // Under mu_.
  void Adopt(const Snapshot& snap);                    // Publisher thread.
  void FirstSight(uint16_t locate, uint64_t word, const Snapshot& snap);

  const SymbolTable* symbols_;
  std::vector<SignalQueue*> sources_;
  int publisher_spin_us_ = 0;
  SignalRing* tap_ = nullptr;
  Doorbell doorbell_;
  std::thread thread_;
  std::atomic<bool> running_{false};

  mutable std::mutex mu_;  // Guards snapshot_ and drops_of_departed_; never held while publishing.
  std::shared_ptr<const Snapshot> snapshot_;
  uint64_t drops_of_departed_ = 0;
  mutable uint64_t drops_reported_ = 0;
  std::atomic<uint64_t> version_{0};

  // Publisher thread only: locates whose symbol it has seen, and symbol -> locates.
  std::vector<uint8_t> seen_;
  std::unordered_map<uint64_t, std::vector<uint16_t>> locates_of_;
  std::atomic<uint64_t> delivered_{0};
  DeliveryCounters counters_;
};

}  // namespace qsig::server
