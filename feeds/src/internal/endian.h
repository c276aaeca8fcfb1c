// Big-endian loads and stores over raw packet bytes (ITCH and MoldUDP64 are network order).
//
// memcpy + byte swap compiles to a single mov/movbe; no alignment is assumed, nothing allocates.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace qsig::feeds::internal {

static_assert(std::endian::native == std::endian::little, "qsig targets little-endian hosts");

inline uint16_t LoadBe16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap16(v);
}
inline uint32_t LoadBe32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap32(v);
}
inline uint64_t LoadBe64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap64(v);
}
// ITCH timestamps are 6-byte big-endian nanoseconds since midnight.
inline uint64_t LoadBe48(const uint8_t* p) noexcept {
  return (uint64_t{LoadBe16(p)} << 32) | LoadBe32(p + 2);
}

inline void StoreBe16(uint8_t* p, uint16_t v) noexcept {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, sizeof v);
}
inline void StoreBe32(uint8_t* p, uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, sizeof v);
}
inline void StoreBe64(uint8_t* p, uint64_t v) noexcept {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, sizeof v);
}
inline void StoreBe48(uint8_t* p, uint64_t v) noexcept {
  StoreBe16(p, static_cast<uint16_t>(v >> 32));
  StoreBe32(p + 2, static_cast<uint32_t>(v));
}

}  // namespace qsig::feeds::internal
