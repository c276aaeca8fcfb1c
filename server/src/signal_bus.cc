#include "signal_bus.h"

#include <algorithm>
#include <chrono>

namespace qsig::server {

bool Subscriber::Matches(uint64_t symbol_word, uint16_t model) const noexcept {
  if (!models_.empty() && std::find(models_.begin(), models_.end(), model) == models_.end()) {
    return false;
  }
  return symbols_.empty() ||
         std::find(symbols_.begin(), symbols_.end(), symbol_word) != symbols_.end();
}

void Subscriber::Push(const SignalRecord* records, size_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < n; ++i) {
      if (queue_.size() >= capacity_) {
        queue_.pop_front();
        dropped_.fetch_add(1, std::memory_order_relaxed);
      }
      queue_.push_back(records[i]);
    }
  }
  cv_.notify_one();
}

size_t Subscriber::PopBatch(std::vector<SignalRecord>* out, size_t max, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [&] { return closed_ || !queue_.empty(); });
  const size_t n = std::min(max, queue_.size());
  out->assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

void Subscriber::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

SignalBus::SignalBus(const SymbolTable* symbols, std::vector<SignalQueue*> sources)
    : symbols_(symbols), sources_(std::move(sources)) {}

SignalBus::~SignalBus() { Stop(); }

void SignalBus::Start() {
  running_.store(true);
  thread_ = std::thread([this] { Run(); });
}

void SignalBus::Stop() {
  running_.store(false);
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : subs_) s->Close();
}

std::shared_ptr<Subscriber> SignalBus::Subscribe(std::vector<uint64_t> symbols,
                                                 std::vector<uint16_t> models, size_t capacity) {
  auto s = std::make_shared<Subscriber>(std::move(symbols), std::move(models), capacity);
  std::lock_guard<std::mutex> lock(mu_);
  subs_.push_back(s);
  return s;
}

void SignalBus::Unsubscribe(const std::shared_ptr<Subscriber>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(subs_.begin(), subs_.end(), s);
  if (it != subs_.end()) {
    drops_of_departed_ += (*it)->dropped();
    subs_.erase(it);
  }
}

size_t SignalBus::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subs_.size();
}

uint64_t SignalBus::subscriber_drops() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = drops_of_departed_;
  for (const auto& s : subs_) total += s->dropped();
  return total;
}

void SignalBus::Run() {
  constexpr size_t kBatch = 512;
  std::vector<SignalRecord> batch(kBatch);
  std::vector<SignalRecord> matched;
  matched.reserve(kBatch);
  while (running_.load(std::memory_order_relaxed)) {
    size_t total = 0;
    for (SignalQueue* q : sources_) {
      const size_t n = q->pop(batch.data(), kBatch);
      if (n == 0) continue;
      total += n;
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& sub : subs_) {
        matched.clear();
        for (size_t i = 0; i < n; ++i) {
          if (sub->Matches(symbols_->Word(batch[i].locate), batch[i].model)) {
            matched.push_back(batch[i]);
          }
        }
        if (!matched.empty()) {
          sub->Push(matched.data(), matched.size());
          delivered_.fetch_add(matched.size(), std::memory_order_relaxed);
        }
      }
    }
    if (total == 0) {
      doorbell_.Wait(
          [this] {
            for (SignalQueue* q : sources_) {
              if (q->read_available() > 0) return true;
            }
            return false;
          },
          10'000);
    }
  }
}

}  // namespace qsig::server
