// SHA-256 (FIPS 180-4), used to fingerprint model files and checksum .qsig artifacts. Small and
// dependency-free; not constant-time and not meant for secrets, only for identifying artifacts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qsig::models {

// Incremental hasher. Thread-safety: not thread-safe; one instance per thread.
class Sha256 {
 public:
  Sha256() noexcept;
  void Update(const void* data, size_t n) noexcept;
  void Update(std::string_view s) noexcept { Update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> Final() noexcept;

 private:
  void Block(const uint8_t* p) noexcept;

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
};

// Raw and lower-case hex SHA-256 of `data`.
std::array<uint8_t, 32> Sha256Bytes(std::string_view data);
std::string Sha256Hex(std::string_view data);
// Lower-case hex of `n` bytes.
std::string ToHex(const uint8_t* p, size_t n);

}  // namespace qsig::models
