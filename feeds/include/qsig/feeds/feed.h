// The feed handler: MoldUDP64 datagrams in, ITCH 5.0 decoded, books updated, feature vectors out.
//
// FeedProcessor is single-threaded (one feed thread owns it) and runs on the tick path:
// OnDatagram() is noexcept, allocates nothing and takes no lock. Everything is sized at
// construction. Counters are atomics written by the feed thread and read by any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/feeds/feature_vector.h"

namespace qsig::feeds {

// Receives every feature vector the processor produces, on the feed thread.
class FeatureSink {
 public:
  virtual ~FeatureSink() = default;
  virtual void OnFeatures(const FeatureVector& fv) noexcept = 0;
};

// Names of the default feature set, in vector order (see feeds/README.md for definitions).
const std::vector<std::string>& DefaultFeatureNames();

struct FeedProcessorOptions {
  int max_instruments = 256;      // Locates 1..max_instruments are tracked; others are counted.
  int max_orders = 1 << 20;       // Capacity of the live-order table.
  int max_levels = 256;           // Price levels per side per book.
};

// Counters, one writer (the feed thread), relaxed atomics readable from any thread.
struct FeedStats {
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> malformed_packets{0};   // Bad MoldUDP64 header or framing.
  std::atomic<uint64_t> malformed_messages{0};  // Unknown type, wrong length, truncated.
  std::atomic<uint64_t> gaps{0};                // Sequence gaps detected.
  std::atomic<uint64_t> gap_messages{0};        // Messages missing in those gaps.
  std::atomic<uint64_t> duplicates{0};          // Messages with an already-seen sequence.
  std::atomic<uint64_t> unknown_instrument{0};  // Locate out of range.
  std::atomic<uint64_t> unknown_order{0};       // Exec/cancel/delete for an unknown order ref.
  std::atomic<uint64_t> book_full{0};           // Order table or level array full.
  std::atomic<uint64_t> feature_vectors{0};
};

class FeedProcessor {
 public:
  explicit FeedProcessor(const FeedProcessorOptions& options);
  ~FeedProcessor();
  FeedProcessor(const FeedProcessor&) = delete;
  FeedProcessor& operator=(const FeedProcessor&) = delete;

  // Processes one MoldUDP64 datagram received at `recv_ns` (MonotonicNanos()). Malformed input
  // is counted and skipped; nothing is read out of bounds.
  void OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns, FeatureSink& sink) noexcept;

  const FeedStats& stats() const noexcept;
  // Messages processed per locate (index = locate; size max_instruments + 1).
  uint64_t instrument_messages(uint16_t locate) const noexcept;
  // Symbol from the Stock Directory message ("" until one was seen), right-trimmed.
  std::string_view symbol(uint16_t locate) const noexcept;
  int max_instruments() const noexcept;
  int n_features() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A UDP socket (Boost.Asio) for one feed line: unicast, or multicast when `group` is set.
struct UdpReceiverOptions {
  std::string listen = "127.0.0.1:31000";  // host:port to bind.
  std::string group;                       // Multicast group to join ("" = unicast).
  std::string interface_address;           // Local interface address for the join ("" = any).
  int receive_buffer_bytes = 8 << 20;      // SO_RCVBUF request.
  bool busy_poll = false;                  // Spin on a non-blocking socket instead of blocking.
};

class UdpReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<UdpReceiver>> Open(const UdpReceiverOptions& options);
  ~UdpReceiver();
  // Waits up to timeout_ms for one datagram. Returns its size, 0 on timeout, -1 on error.
  // Sets *recv_ns to MonotonicNanos() right after the datagram arrived.
  int Receive(std::span<uint8_t> buffer, int timeout_ms, int64_t* recv_ns) noexcept;
  uint16_t local_port() const noexcept;

 private:
  struct Impl;
  explicit UdpReceiver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct SimPublisherOptions {
  SimulatorOptions sim;
  std::string destination = "127.0.0.1:31000";  // host:port; a multicast address works too.
  std::string interface_address;                // Outgoing interface for multicast.
  int multicast_ttl = 1;
  double messages_per_second = 20000;           // Target rate (messages, not packets).
  uint64_t max_messages = 0;                    // Stop after this many (0 = run until Stop()).
};

// Sends Simulator packets over UDP at a steady rate from its own thread.
class SimPublisher {
 public:
  static absl::StatusOr<std::unique_ptr<SimPublisher>> Start(const SimPublisherOptions& options);
  ~SimPublisher();  // Stops and joins.
  void Stop();
  uint64_t messages_sent() const noexcept;
  uint64_t packets_sent() const noexcept;
  bool finished() const noexcept;  // max_messages reached.

 private:
  struct Impl;
  explicit SimPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs the simulator into a FeedProcessor in-process (no sockets: the exact bytes and the exact
// code path the server uses) and writes every feature vector with a forward-return label to a
// CSV file: header `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names...>,label`, where
// label = 1e4 * (mid after `horizon` more updates of the same instrument / mid - 1), in basis
// points. Rows whose horizon runs past the end are dropped.
struct FeatureFileOptions {
  SimulatorOptions sim;
  FeedProcessorOptions feed;
  uint64_t messages = 1'000'000;
  int horizon = 20;
  std::string output_csv;
};
absl::Status WriteFeatureFile(const FeatureFileOptions& options);

}  // namespace qsig::feeds
