// Locate → symbol, written by the feed thread when a symbol is first seen, read by any thread.
// A symbol is at most 8 ASCII bytes, so each entry is one atomic 64-bit word.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace qsig::server {

class SymbolTable {
 public:
  explicit SymbolTable(int max_locate)
      : size_(max_locate + 1), words_(new std::atomic<uint64_t>[size_]) {
    for (int i = 0; i < size_; ++i) words_[i].store(0, std::memory_order_relaxed);
  }

  static uint64_t Pack(std::string_view s) noexcept {
    uint64_t w = 0;
    std::memcpy(&w, s.data(), s.size() < 8 ? s.size() : 8);
    return w;
  }

  // Feed thread only. Cheap when the symbol is already known (one relaxed load).
  void Set(uint16_t locate, std::string_view symbol) noexcept {
    if (locate >= size_ || symbol.empty()) return;
    const uint64_t w = Pack(symbol);
    if (words_[locate].load(std::memory_order_relaxed) != w) {
      words_[locate].store(w, std::memory_order_release);
    }
  }
  bool Known(uint16_t locate) const noexcept {
    return locate < size_ && words_[locate].load(std::memory_order_relaxed) != 0;
  }
  uint64_t Word(uint16_t locate) const noexcept {
    return locate < size_ ? words_[locate].load(std::memory_order_acquire) : 0;
  }
  std::string Get(uint16_t locate) const {
    const uint64_t w = Word(locate);
    if (w == 0) return "LOCATE" + std::to_string(locate);
    char buf[9] = {};
    std::memcpy(buf, &w, 8);
    return std::string(buf);
  }
  int size() const noexcept { return size_; }

 private:
  int size_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace qsig::server
