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

// A scheduled regime switch: from `at_s` seconds of the simulator's own message clock (the ITCH
// timestamps, which start at 09:30:00 and advance ~20 us per step whatever the publishing rate,
// so a test can run faster than real time) the base parameters are multiplied by these factors.
// Each switch describes the whole regime: a factor it does not set is 1 (the base value).
struct SimRegime {
  double at_s = 0;
  double volatility = 1;       // Fair-value noise (and flow-driven moves).
  double spread = 1;           // Distance of new limit orders from the fair value.
  double order_size = 1;       // Shares per order.
  double trade_intensity = 1;  // Rate of marketable orders and non-displayed trades.
};

// Exchange simulator: order flow for several instruments as ITCH 5.0 in MoldUDP64 packets.
struct SimulatorOptions {
  std::vector<std::string> instruments = {"AAPL", "MSFT", "NVDA", "AMZN"};
  uint64_t seed = 42;
  std::string session = "QSIGSIM001";  // 10-byte MoldUDP64 session, space-padded.
  int max_messages_per_packet = 8;
  // Base parameters (1 = the default market); regimes multiply them.
  double volatility = 1;
  double spread = 1;
  double order_size = 1;
  double trade_intensity = 1;
  std::vector<SimRegime> regimes;  // Applied in at_s order.
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
  // Seconds of message clock since the simulator started, and the regimes switched to so far.
  double clock_s() const noexcept;
  size_t regimes_applied() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
