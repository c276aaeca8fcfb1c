// UdpReceiver: one feed line's UDP socket, with kernel receive timestamps. One thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace qsig::feeds {

// A UDP socket (Boost.Asio) for one feed line: unicast, or multicast when `group` is set.
struct UdpReceiverOptions {
  std::string listen = "127.0.0.1:31000";  // host:port to bind.
  std::string group;                       // Multicast group to join ("" = unicast).
  std::string interface_address;           // Local interface address for the join ("" = any).
  int receive_buffer_bytes = 8 << 20;      // SO_RCVBUF request.
  bool busy_poll = false;                  // Spin on a non-blocking socket instead of blocking.
  // Ask the kernel to stamp each datagram on arrival (SO_TIMESTAMPNS). Where the socket cannot,
  // datagrams are stamped in user space after recvmsg() returns (ReceiveTime::kernel false).
  bool kernel_timestamps = true;
};

// When a datagram was received. With a kernel stamp, `wall_ns` is the kernel's CLOCK_REALTIME
// stamp and `mono_ns` the same instant on CLOCK_MONOTONIC, converted once at receive
// (mono_now - (wall_now - kernel_stamp)): the time it waited in the socket is inside every
// latency measured from it. Without one, both are read right after recvmsg() returned.
struct ReceiveTime {
  int64_t mono_ns = 0;
  int64_t wall_ns = 0;
  bool kernel = false;
};

class UdpReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<UdpReceiver>> Open(const UdpReceiverOptions& options);
  ~UdpReceiver();
  // Waits up to timeout_ms for one datagram. Returns its size, 0 on timeout, -1 on error.
  // Sets *recv_ns to MonotonicNanos() right after the datagram arrived.
  int Receive(std::span<uint8_t> buffer, int timeout_ms, int64_t* recv_ns) noexcept;
  int Receive(std::span<uint8_t> buffer, int timeout_ms, ReceiveTime* time) noexcept;
  // One non-blocking attempt: size, 0 if nothing is queued, -1 on error.
  int TryReceive(std::span<uint8_t> buffer, int64_t* recv_ns) noexcept;
  int TryReceive(std::span<uint8_t> buffer, ReceiveTime* time) noexcept;
  // True if the kernel agreed to stamp datagrams (SO_TIMESTAMPNS was set).
  bool kernel_timestamps() const noexcept;
  uint16_t local_port() const noexcept;
  int native_handle() const noexcept;  // For poll() over several lines.

 private:
  struct Impl;
  explicit UdpReceiver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
