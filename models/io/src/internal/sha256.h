// SHA-256 (FIPS 180-4) for artifact checksums and source-model fingerprints. qsig_models has one
// too, but only in its private src/internal, so this library carries its own (tested against the
// FIPS 180-2 vectors in tests/models_io/sha256_test.cc). Not constant-time; not for secrets.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qsig::models::io::internal {

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
std::string ToHex(const uint8_t* p, size_t n);

}  // namespace qsig::models::io::internal
