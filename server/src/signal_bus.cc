#include "signal_bus.h"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <new>

#include "qsig/feeds/counter.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace qsig::server {

using feeds::Bump;
namespace {

std::vector<uint64_t> SortedUnique(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

// ---- SignalRing ----

SignalRing::SignalRing(size_t min_capacity)
    : capacity_(std::bit_ceil(std::max<size_t>(min_capacity, 2))),
      bytes_(capacity_ * sizeof(SignalRecord)) {
  // Anonymous pages are zero and only become resident when first written, so a subscriber that
  // receives little costs little even with a large grpc.subscriber_queue.
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  words_ = static_cast<uint64_t*>(p);
}

SignalRing::~SignalRing() { munmap(words_, bytes_); }

void SignalRing::Push(const SignalRecord& r) noexcept {
  uint64_t w[kWords];
  std::memcpy(w, &r, sizeof(r));
  const uint64_t h = head_.load(std::memory_order_relaxed);  // Producer-owned.
  // Announce the write before making it (the writer half of a seqlock): a consumer that sees
  // any word of it also sees claim_ >= h + 1 after its acquire fence.
  claim_.store(h + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  uint64_t* slot = words_ + (h & (capacity_ - 1)) * kWords;
  for (size_t i = 0; i < kWords; ++i) {
    std::atomic_ref<uint64_t>(slot[i]).store(w[i], std::memory_order_relaxed);
  }
  head_.store(h + 1, std::memory_order_release);
}

size_t SignalRing::Pop(SignalRecord* out, size_t max) noexcept {
  const uint64_t h = head_.load(std::memory_order_acquire);
  const uint64_t r0 = read_.load(std::memory_order_relaxed);
  uint64_t r = r0;
  uint64_t lost = 0;
  if (h - r > capacity_) {  // Lapped: the oldest are gone; start at the oldest that survives.
    lost = h - capacity_ - r;
    r = h - capacity_;
  }
  const size_t n = static_cast<size_t>(std::min<uint64_t>(max, h - r));
  if (n == 0 && lost == 0) return 0;
  uint64_t w[kWords];
  for (size_t k = 0; k < n; ++k) {
    const uint64_t* slot = words_ + ((r + k) & (capacity_ - 1)) * kWords;
    for (size_t i = 0; i < kWords; ++i) {
      w[i] =
          std::atomic_ref<uint64_t>(const_cast<uint64_t&>(slot[i])).load(std::memory_order_relaxed);
    }
    std::memcpy(&out[k], w, sizeof(SignalRecord));
  }
  // Index i shares its slot with i + capacity, whose write is claimed as i + capacity + 1: every
  // copied index below claim - capacity may be torn. Those were lost too (the oldest first).
  std::atomic_thread_fence(std::memory_order_acquire);
  const uint64_t c = claim_.load(std::memory_order_relaxed);
  size_t skip = 0;
  if (c > capacity_ && c - capacity_ > r) {
    skip = static_cast<size_t>(std::min<uint64_t>(n, c - capacity_ - r));
  }
  if (skip > 0 && skip < n) std::memmove(out, out + skip, (n - skip) * sizeof(SignalRecord));
  // Publish (read_, lost_) as one pair for dropped() (single-writer seqlock).
  const uint64_t s = seq_.load(std::memory_order_relaxed);
  seq_.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  read_.store(r + n, std::memory_order_relaxed);
  Bump(lost_, lost + skip);
  seq_.store(s + 2, std::memory_order_release);
  return n - skip;
}

bool SignalRing::Empty() const noexcept {
  return head_.load(std::memory_order_acquire) == read_.load(std::memory_order_acquire);
}

uint64_t SignalRing::dropped() const noexcept {
  uint64_t r = 0, lost = 0;
  for (;;) {
    const uint64_t s1 = seq_.load(std::memory_order_acquire);
    if (s1 & 1) {
      CpuRelax();
      continue;
    }
    r = read_.load(std::memory_order_relaxed);
    lost = lost_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq_.load(std::memory_order_relaxed) == s1) break;
  }
  // Records the consumer has not reached but the producer already overwrote are lost as well
  // (a subscriber that never reads has no consumer to count them).
  const uint64_t h = head_.load(std::memory_order_acquire);
  return lost + (h - r > capacity_ ? h - r - capacity_ : 0);
}

// ---- Subscriber ----

Subscriber::Subscriber(SubscriptionFilter filter, int n_locates, size_t capacity,
                       SubscriberSink* sink)
    : n_models_(static_cast<size_t>(std::max(1, filter.n_models))),
      n_locates_(static_cast<size_t>(std::max(1, n_locates))),
      symbols_(SortedUnique(std::move(filter.symbols))),
      model_wanted_(n_models_, filter.models.empty() ? 1 : 0),
      bits_((n_locates_ * n_models_ + 63) / 64, 0),
      ring_(capacity),
      sink_(sink) {
  for (uint16_t m : filter.models) {
    if (m < n_models_) model_wanted_[m] = 1;
  }
  if (symbols_.empty()) {
    for (size_t l = 0; l < n_locates_; ++l) AllowLocate(static_cast<uint16_t>(l));
  }
}

void Subscriber::AllowLocate(uint16_t locate) noexcept {
  if (locate >= n_locates_) return;
  for (size_t m = 0; m < n_models_; ++m) {
    if (!model_wanted_[m]) continue;
    const size_t bit = static_cast<size_t>(locate) * n_models_ + m;
    bits_[bit >> 6] |= uint64_t{1} << (bit & 63);
  }
}

bool Subscriber::WantsSymbol(uint64_t word) const noexcept {
  return std::binary_search(symbols_.begin(), symbols_.end(), word);
}

bool Subscriber::TryAcquire() noexcept {
  uint32_t expected = 0;
  if (state_.load(std::memory_order_relaxed) != expected) return false;
  return state_.compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel,
                                        std::memory_order_relaxed);
}

void Subscriber::Pump() noexcept {
  for (;;) {
    if (state_.load(std::memory_order_acquire) & kClosed) {
      sink_->EndStream();  // The role stays taken: nothing touches the sink again.
      return;
    }
    if (sink_->StartNextWrite(*this)) return;  // WriteDone continues.
    // Nothing queued: release the role, unless the stream was closed meanwhile.
    uint32_t expected = kWriting;
    if (!state_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
      sink_->EndStream();
      return;
    }
    // Dekker with the publisher (push; fence; try to acquire): either it saw the role free, or
    // we see its record here and take the role back.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ring_.Empty() || !TryAcquire()) return;
  }
}

void Subscriber::WriteDone(bool ok) noexcept {
  if (!ok) state_.fetch_or(kClosed, std::memory_order_acq_rel);
  Pump();
}

void Subscriber::Close() noexcept {
  uint32_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (s & kClosed) return;
    // With a write in flight the role holder finishes when it completes; otherwise take the role
    // for good and finish now.
    const uint32_t next = (s & kWriting) ? (s | kClosed) : (kClosed | kWriting);
    if (state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      if (!(s & kWriting)) sink_->EndStream();
      return;
    }
  }
}

// ---- SignalBus ----

SignalBus::SignalBus(const SymbolTable* symbols, std::vector<SignalQueue*> sources)
    : symbols_(symbols),
      sources_(std::move(sources)),
      snapshot_(std::make_shared<const Snapshot>()),
      seen_(static_cast<size_t>(symbols->size()), 0) {}

SignalBus::~SignalBus() { Stop(); }

void SignalBus::Start() {
  running_.store(true);
  thread_ = std::thread([this] { Run(); });
  pthread_setname_np(thread_.native_handle(), "qsig-publisher");
}

void SignalBus::Stop() {
  running_.store(false);
  if (thread_.joinable()) thread_.join();
  CloseAll();
}

void SignalBus::CloseAll() {
  std::shared_ptr<const Snapshot> snap;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snap = snapshot_;
  }
  // Not under mu_: a sink's EndStream may end the stream and unsubscribe from another thread.
  for (const auto& s : snap->subs) s->Close();
}

void SignalBus::Publish(std::shared_ptr<const Snapshot> next) {
  snapshot_ = std::move(next);
  version_.fetch_add(1, std::memory_order_release);
  doorbell_.Ring();  // Let an idle publisher adopt it now rather than at its next wake-up.
}

std::shared_ptr<Subscriber> SignalBus::Subscribe(SubscriptionFilter filter, size_t capacity,
                                                 SubscriberSink* sink) {
  auto s = std::make_shared<Subscriber>(std::move(filter), symbols_->size(), capacity, sink);
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<Snapshot>(*snapshot_);
  next->subs.push_back(s);
  Publish(std::move(next));
  return s;
}

void SignalBus::Unsubscribe(const std::shared_ptr<Subscriber>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<Snapshot>();
  next->subs.reserve(snapshot_->subs.size());
  bool found = false;
  for (const auto& x : snapshot_->subs) {
    if (x == s) {
      found = true;
    } else {
      next->subs.push_back(x);
    }
  }
  if (!found) return;
  drops_of_departed_ += s->dropped();
  Publish(std::move(next));
}

size_t SignalBus::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_->subs.size();
}

uint64_t SignalBus::subscriber_drops() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = drops_of_departed_;
  for (const auto& s : snapshot_->subs) total += s->dropped();
  // A counter never goes down, even when a consumer's catch-up races this read (see dropped()).
  drops_reported_ = std::max(drops_reported_, total);
  return drops_reported_;
}

void SignalBus::Adopt(const Snapshot& snap) {
  for (const auto& s : snap.subs) {
    if (s->adopted_) continue;
    for (uint64_t word : s->symbols_) {
      auto it = locates_of_.find(word);
      if (it == locates_of_.end()) continue;
      for (uint16_t l : it->second) s->AllowLocate(l);
    }
    s->adopted_ = true;
  }
}

void SignalBus::FirstSight(uint16_t locate, uint64_t word, const Snapshot& snap) {
  seen_[locate] = 1;
  locates_of_[word].push_back(locate);
  for (const auto& s : snap.subs) {
    if (!s->symbols_.empty() && s->WantsSymbol(word)) s->AllowLocate(locate);
  }
}

void SignalBus::Run() {
  constexpr size_t kBatch = 512;
  std::vector<SignalRecord> batch(kBatch);
  std::vector<Subscriber*> touched;
  std::shared_ptr<const Snapshot> snap;
  uint64_t version = ~uint64_t{0};
  auto has_work = [this] {
    for (SignalQueue* q : sources_) {
      if (q->read_available() > 0) return true;
    }
    return false;
  };
  while (running_.load(std::memory_order_relaxed)) {
    if (version_.load(std::memory_order_acquire) != version) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        snap = snapshot_;
        version = version_.load(std::memory_order_relaxed);
      }
      Adopt(*snap);
    }
    size_t total = 0;
    for (SignalQueue* q : sources_) {
      const size_t n = q->pop(batch.data(), kBatch);
      if (n == 0) continue;
      total += n;
      if (tap_) {
        for (size_t i = 0; i < n; ++i) tap_->Push(batch[i]);
      }
      // A locate is resolved against the subscriptions once, when its symbol is first seen.
      for (size_t i = 0; i < n; ++i) {
        const uint16_t l = batch[i].locate;
        if (l < seen_.size() && !seen_[l]) {
          const uint64_t word = symbols_->Word(l);
          if (word != 0) FirstSight(l, word, *snap);
        }
      }
      for (const auto& sub : snap->subs) {
        Subscriber& s = *sub;
        if (s.closed()) continue;
        size_t k = 0;
        for (size_t i = 0; i < n; ++i) {
          if (s.Accepts(batch[i].locate, batch[i].model)) {
            s.Push(batch[i]);
            ++k;
          }
        }
        if (k > 0) {
          delivered_.fetch_add(k, std::memory_order_relaxed);
          touched.push_back(&s);
        }
      }
    }
    if (!touched.empty()) {
      // Pairs with the fence in Subscriber::Pump: a record pushed above is either seen by the
      // role holder as it releases, or the role is free for us to take here.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      for (Subscriber* s : touched) {
        if (s->TryAcquire()) s->Pump();  // Starts the write on this thread: no hand-off.
      }
      touched.clear();
      continue;
    }
    if (total == 0) {
      if (publisher_spin_us_ > 0) {
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::microseconds(publisher_spin_us_);
        bool work = false;
        while (!(work = has_work()) && std::chrono::steady_clock::now() < until &&
               version_.load(std::memory_order_relaxed) == version) {
          for (int i = 0; i < 16; ++i) CpuRelax();
        }
        if (work) continue;
      }
      doorbell_.Wait(
          [&] { return has_work() || version_.load(std::memory_order_relaxed) != version; },
          10'000);
    }
  }
}

}  // namespace qsig::server
