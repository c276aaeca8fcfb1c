// FeedHandler: the server's feed (A/B lines or a replay, gap recovery by re-requests, a
// FeedProcessor). One feed thread owns it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/udp_receiver.h"

namespace qsig::feeds {

// The server's feed: one or two UDP lines carrying one MoldUDP64 stream (A/B arbitration: the
// first copy of each sequence number wins, later copies are dropped as duplicates), gap
// recovery by MoldUDP64 re-requests to `retransmit_endpoint`, and a FeedProcessor.
struct FeedHandlerOptions {
  UdpReceiverOptions line_a;                 // Primary line.
  std::optional<UdpReceiverOptions> line_b;  // Redundant line carrying the same stream.
  // "host:port" of the MoldUDP64 retransmission server; re-requests go there and its answers
  // come back to the same socket. "" = no recovery: a gap waits gap_timeout_us for the other
  // line or a reordered packet, then is lost (books stale until a new session).
  std::string retransmit_endpoint;
  int max_datagrams_per_poll = 64;  // Per Poll() call, over all sockets.
  FeedProcessorOptions processor;   // Includes GapRecoveryOptions (window, timeouts).
  // Set: read this capture instead of the lines (feed.source: pcap | itch); the lines and
  // retransmit_endpoint are ignored and Poll() returns -1 once it is exhausted.
  std::optional<ReplayOptions> replay = {};
};

// Per-line counters, one writer (the feed thread), relaxed atomics readable from any thread.
struct FeedHandlerStats {
  std::atomic<uint64_t> packets_a{0};
  std::atomic<uint64_t> packets_b{0};
  std::atomic<uint64_t> packets_retransmit{0};  // Answers from the retransmission server.
  std::atomic<uint64_t> wins_a{0};  // Datagrams that delivered at least one new message.
  std::atomic<uint64_t> wins_b{0};
  std::atomic<uint64_t> wins_retransmit{0};
  std::atomic<uint64_t> rerequests_sent{0};
  std::atomic<uint64_t> rerequested_messages{0};
  std::atomic<uint64_t> rerequest_errors{0};  // send() to the retransmission server failed.
  std::atomic<uint64_t> receive_errors{0};
  // Datagrams stamped by the kernel on arrival, and datagrams stamped in user space after the
  // read (no kernel stamp: the socket option failed, a retransmission socket, or a replay).
  std::atomic<uint64_t> kernel_timestamps{0};
  std::atomic<uint64_t> user_timestamps{0};
};

class FeedHandler {
 public:
  static absl::StatusOr<std::unique_ptr<FeedHandler>> Open(const FeedHandlerOptions& options);
  ~FeedHandler();
  // Waits up to timeout_ms (0 = just look, < 0 = forever) for datagrams on any line, processes
  // what is queued (at most max_datagrams_per_poll), sends due re-requests and gives up
  // expired gaps. Returns datagrams processed, or -1 on a socket error. Feed thread only;
  // noexcept, allocates nothing.
  int Poll(int timeout_ms, FeatureSink& sink) noexcept;
  const FeedProcessor& processor() const noexcept;
  FeedProcessor& processor() noexcept;
  const FeedHandlerStats& stats() const noexcept;
  uint16_t port_a() const noexcept;
  uint16_t port_b() const noexcept;             // 0 without a B line.
  const ReplaySource* replay() const noexcept;  // nullptr unless replaying.
  // True if every line socket has kernel receive timestamps (false for a replay).
  bool kernel_timestamps() const noexcept;

 private:
  struct Impl;
  explicit FeedHandler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
