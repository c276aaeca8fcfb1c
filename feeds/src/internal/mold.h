// MoldUDP64 downstream packet framing.
//
// header: session(10, ASCII) | sequence number(u64 BE, of the first message) | count(u16 BE)
// then `count` blocks of: length(u16 BE) | message bytes.
// count 0 is a heartbeat, 0xFFFF marks the end of the session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "internal/endian.h"

namespace qsig::feeds::internal::mold {

inline constexpr size_t kSessionSize = 10;
inline constexpr size_t kSequenceOffset = 10;
inline constexpr size_t kCountOffset = 18;
inline constexpr size_t kHeaderSize = 20;
inline constexpr size_t kBlockLengthSize = 2;
inline constexpr uint16_t kHeartbeat = 0;
inline constexpr uint16_t kEndOfSession = 0xFFFF;

// Writes the header; `session` is space-padded or cut to 10 bytes.
inline void WriteHeader(uint8_t* p, std::string_view session, uint64_t sequence,
                        uint16_t count) noexcept {
  for (size_t i = 0; i < kSessionSize; ++i) {
    p[i] = i < session.size() ? static_cast<uint8_t>(session[i]) : ' ';
  }
  StoreBe64(p + kSequenceOffset, sequence);
  StoreBe16(p + kCountOffset, count);
}

// Appends one message block at `p`; returns bytes written.
inline size_t WriteBlock(uint8_t* p, const uint8_t* msg, size_t len) noexcept {
  StoreBe16(p, static_cast<uint16_t>(len));
  if (len != 0) std::memcpy(p + kBlockLengthSize, msg, len);  // msg may be null when empty.
  return kBlockLengthSize + len;
}

}  // namespace qsig::feeds::internal::mold
