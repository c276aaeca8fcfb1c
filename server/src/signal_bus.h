// Fan-out of published signals to gRPC subscribers, off the tick path.
//
// Workers push SignalRecords into their own SPSC queue (wait-free, drop and count when full).
// The publisher thread drains those queues and copies each record into every matching
// subscriber's bounded queue; a subscriber that cannot keep up loses its oldest signals (counted)
// and never slows the workers or the other subscribers.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "doorbell.h"
#include "signal_record.h"
#include "symbol_table.h"

namespace qsig::server {

using SignalQueue = boost::lockfree::spsc_queue<SignalRecord>;

class Subscriber {
 public:
  Subscriber(std::vector<uint64_t> symbols, std::vector<uint16_t> models, size_t capacity)
      : symbols_(std::move(symbols)), models_(std::move(models)), capacity_(capacity) {}

  bool Matches(uint64_t symbol_word, uint16_t model) const noexcept;
  // Publisher thread.
  void Push(const SignalRecord* records, size_t n);
  // gRPC thread: waits up to timeout_ms for records; returns how many were moved into `out`.
  size_t PopBatch(std::vector<SignalRecord>* out, size_t max, int timeout_ms);
  void Close();
  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::vector<uint64_t> symbols_;  // Packed symbols (SymbolTable::Pack); empty = all.
  std::vector<uint16_t> models_;   // Model indexes; empty = all.
  size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SignalRecord> queue_;
  bool closed_ = false;
  std::atomic<uint64_t> dropped_{0};
};

class SignalBus {
 public:
  SignalBus(const SymbolTable* symbols, std::vector<SignalQueue*> sources);
  ~SignalBus();
  void Start();
  void Stop();
  // Producers ring this after pushing into one of the source queues.
  Doorbell& doorbell() noexcept { return doorbell_; }

  std::shared_ptr<Subscriber> Subscribe(std::vector<uint64_t> symbols, std::vector<uint16_t> models,
                                        size_t capacity);
  void Unsubscribe(const std::shared_ptr<Subscriber>& s);

  size_t subscribers() const;
  uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_relaxed); }
  uint64_t subscriber_drops() const;

 private:
  void Run();

  const SymbolTable* symbols_;
  std::vector<SignalQueue*> sources_;
  Doorbell doorbell_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  mutable std::mutex mu_;  // Guards subs_ (subscribe/unsubscribe and the publisher's fan-out).
  std::vector<std::shared_ptr<Subscriber>> subs_;
  uint64_t drops_of_departed_ = 0;
  std::atomic<uint64_t> delivered_{0};
};

}  // namespace qsig::server
