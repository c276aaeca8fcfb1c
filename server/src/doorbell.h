// Doorbell: lets a consumer sleep when its lock-free queue is empty and be woken by producers
// without a lock and, in the common case, without a syscall.
//
// The consumer announces that it is about to sleep, re-checks its queue, then waits on a futex
// word; a producer, after each push, issues a full fence and reads the announcement: only if
// the consumer is (about to be) asleep does it bump the word and make the wake syscall. The two
// seq_cst fences form the Dekker pattern: either the producer sees `sleeping_` or the consumer
// sees the item, so no wake-up is lost. On isolated cores, spin (workers.idle_spin_us) first.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace qsig::server {

class Doorbell {
 public:
  // Producer side, after a successful push. Wait-free apart from the (rare) wake syscall.
  void Ring() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed)) {
      word_.fetch_add(1, std::memory_order_release);
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, 1, nullptr,
              nullptr, 0);
    }
  }

  // Consumer side: sleeps until rung or `timeout_us` passes, unless `has_work()` is already
  // true after the announcement.
  template <typename HasWork>
  void Wait(HasWork has_work, int64_t timeout_us) noexcept {
    const uint32_t seen = word_.load(std::memory_order_acquire);
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!has_work()) {
      timespec ts{static_cast<time_t>(timeout_us / 1'000'000),
                  static_cast<long>((timeout_us % 1'000'000) * 1000)};
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, seen, &ts,
              nullptr, 0);
    }
    sleeping_.store(false, std::memory_order_relaxed);
  }

 private:
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  alignas(64) std::atomic<uint32_t> word_{0};
  alignas(64) std::atomic<bool> sleeping_{false};
};

}  // namespace qsig::server
