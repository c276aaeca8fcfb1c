// The exchange simulator: deterministic ITCH 5.0 order flow in MoldUDP64 packets. One thread
// owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qsig::feeds {

// Exchange simulator: order flow for several instruments as ITCH 5.0 in MoldUDP64 packets.
struct SimulatorOptions {
  std::vector<std::string> instruments = {"AAPL", "MSFT", "NVDA", "AMZN"};
  uint64_t seed = 42;
  std::string session = "QSIGSIM001";  // 10-byte MoldUDP64 session, space-padded.
  int max_messages_per_packet = 8;
};

class Simulator {
 public:
  explicit Simulator(const SimulatorOptions& options);
  ~Simulator();
  // Writes the next MoldUDP64 packet (header + messages) into `buffer` and returns its size.
  // The first packets carry Stock Directory messages; directory messages repeat every
  // 10'000 messages so a late-joining receiver learns the symbols.
  size_t NextPacket(std::span<uint8_t> buffer);
  uint64_t next_sequence() const noexcept;
  // Ends the current session and starts the next one (name with its last digits incremented,
  // sequence 1, empty books): the next packet is an End of Session, then the new session's
  // system event, directory and fresh orders follow.
  void RestartSession();
  std::string_view session() const noexcept;  // Current 10-byte session name.

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
