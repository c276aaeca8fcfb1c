// Replay of pcap captures and length-prefixed ITCH files into a FeedProcessor.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {

// Replay of recorded market data through the same FeedProcessor path as live UDP.
enum class ReplayFormat {
  kPcap,  // pcap/pcapng capture of MoldUDP64 datagrams (Ethernet, SLL, raw IP; IPv4/IPv6 UDP).
  kItch,  // Length-prefixed ITCH 5.0 (u16 big-endian length before each message), as Nasdaq
          // distributes TotalView-ITCH files. Messages are wrapped into MoldUDP64 packets of
          // session `itch_session`, numbered from 1.
};

struct ReplayOptions {
  ReplayFormat format = ReplayFormat::kPcap;
  std::string path;
  // 0 = as fast as possible; 1 = recorded speed (pcap capture stamps, or ITCH timestamps);
  // 2 = twice as fast, and so on.
  double speed = 0.0;
  // pcap: only UDP datagrams to these destination ports (empty = every UDP datagram), after
  // the optional libpcap filter expression (e.g. "udp and dst host 233.54.12.111").
  std::vector<uint16_t> udp_ports = {};
  std::string bpf_filter = {};
  std::string itch_session = "ITCHFILE01";
  int itch_messages_per_packet = 64;
};

struct ReplayStats {
  std::atomic<uint64_t> datagrams{0};       // Handed to the processor.
  std::atomic<uint64_t> frames{0};          // pcap records read.
  std::atomic<uint64_t> skipped_frames{0};  // Not UDP, fragments, other ports.
  std::atomic<uint64_t> truncated_frames{0};
  std::atomic<uint64_t> itch_messages{0};
};

// Reads a capture and feeds it to a FeedProcessor. One thread owns it.
class ReplaySource {
 public:
  static absl::StatusOr<std::unique_ptr<ReplaySource>> Open(const ReplayOptions& options);
  ~ReplaySource();
  // Next MoldUDP64 datagram into `buffer` (64 KiB is always enough): its size, 0 at the end,
  // -1 on a read error. *capture_ns: capture stamp (pcap) or first ITCH timestamp (ITCH file).
  int Next(std::span<uint8_t> buffer, int64_t* capture_ns) noexcept;
  // Feeds the datagrams that are due (all of them at speed 0, at most `max_datagrams`),
  // waiting up to timeout_ms for the next one at recorded speed. Returns datagrams processed,
  // or -1 once the capture is exhausted (open gaps are then given up) or unreadable.
  int Poll(int timeout_ms, FeedProcessor& processor, FeatureSink& sink,
           int max_datagrams = 64) noexcept;
  bool done() const noexcept;
  const ReplayStats& stats() const noexcept;

 private:
  struct Impl;
  explicit ReplaySource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whole capture into `processor` (paced by options.speed); returns datagrams fed.
absl::StatusOr<uint64_t> ReplayInto(const ReplayOptions& options, FeedProcessor& processor,
                                    FeatureSink& sink);

}  // namespace qsig::feeds
