// SimPublisher: simulator packets over UDP at a steady rate, with fault injection, a B line, a
// retransmission server and recordings, from its own thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {

// Faults injected on one line, each a probability per packet, drawn from a generator seeded
// by the simulator seed and the line, so a run is reproducible.
struct LineFaults {
  double drop = 0.0;       // The packet is not sent on this line.
  double reorder = 0.0;    // The packet is held back and sent after the next one.
  double duplicate = 0.0;  // The packet is sent twice.
  double malformed = 0.0;  // A broken datagram is sent before it (short header, truncated copy,
                           // or a foreign session): the receiver must count and skip it.
};

struct SimPublisherOptions {
  SimulatorOptions sim;
  std::string destination = "127.0.0.1:31000";  // host:port; a multicast address works too.
  std::string interface_address;                // Outgoing interface for multicast.
  int multicast_ttl = 1;
  double messages_per_second = 20000;  // Target rate (messages, not packets).
  uint64_t max_messages = 0;           // Stop after this many (0 = run until Stop()).
  std::string destination_b = {};      // B line ("" = A only): the same packets, its own faults.
  // Copies of line A (and of line B) to more receivers, the same bytes at the same moment (a
  // run-to-completion server's shards on unicast: each shard has a socket of its own).
  std::vector<std::string> destination_copies = {};
  std::vector<std::string> destination_b_copies = {};
  LineFaults faults_a = {};
  LineFaults faults_b = {};
  double session_restart_rate = 0.0;  // Per packet: Simulator::RestartSession() (both lines).
  // MoldUDP64 retransmission server: "host:port" to bind ("" = none; port 0 picks one, see
  // retransmit_port()). Answers re-requests from the last `retransmit_history` messages of the
  // current session, from the publisher thread.
  std::string retransmit_listen = {};
  int retransmit_history = 1 << 18;
  // Also write what is sent: every datagram (both lines and retransmissions) to a pcap file
  // (Ethernet/IPv4/UDP, wall-clock stamps), and/or the message stream once, in order, as a
  // length-prefixed ITCH file. "" = off.
  std::string pcap_path = {};
  std::string itch_path = {};
};

// Sends Simulator packets over UDP at a steady rate from its own thread.
class SimPublisher {
 public:
  static absl::StatusOr<std::unique_ptr<SimPublisher>> Start(const SimPublisherOptions& options);
  ~SimPublisher();  // Stops and joins.
  void Stop();
  uint64_t messages_sent() const noexcept;
  uint64_t packets_sent() const noexcept;
  bool finished() const noexcept;                 // max_messages reached.
  uint16_t retransmit_port() const noexcept;      // 0 without a retransmission server.
  uint64_t retransmit_requests() const noexcept;  // Re-requests answered.
  uint64_t retransmitted_messages() const noexcept;
  uint64_t faults_injected() const noexcept;  // Drops + reorders + duplicates + malformed.

 private:
  struct Impl;
  explicit SimPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
