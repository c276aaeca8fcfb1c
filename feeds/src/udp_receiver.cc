// UdpReceiver: one feed line on a Boost.Asio UDP socket, blocking (poll) or busy-polling.
//
// Datagrams are read with recvmsg() so that the kernel's receive stamp (SO_TIMESTAMPNS, taken
// when the packet entered the network stack) comes back in a control message; a socket that
// refuses the option is stamped in user space and says so (ReceiveTime::kernel).
#include "qsig/feeds/udp_receiver.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "internal/net.h"
#include "internal/str.h"
#include "qsig/feeds/clock.h"

namespace qsig::feeds {

namespace asio = boost::asio;
using asio::ip::udp;

struct UdpReceiver::Impl {
  asio::io_context io;  // Owns nothing on the hot path; the socket needs one to exist.
  udp::socket socket{io};
  bool busy_poll = false;
  bool kernel_timestamps = false;
  uint16_t port = 0;
};

namespace {

// One recvmsg() with room for the timestamp control message. Returns the size, 0 if nothing is
// queued, -1 on error.
int ReadOne(int fd, std::span<uint8_t> buffer, ReceiveTime* time) noexcept {
  iovec iov{buffer.data(), buffer.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0) {
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  }
  // Both clocks once: the user-space stamp, or the conversion of the kernel's.
  const int64_t wall = WallNanos();
  const int64_t mono = MonotonicNanos();
  time->mono_ns = mono;
  time->wall_ns = wall;
  time->kernel = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
      timespec ts;
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      const int64_t kernel = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
      // Time queued in the socket, on one clock; a stamp from the future (a clock step) is 0.
      const int64_t queued = std::max<int64_t>(0, wall - kernel);
      time->wall_ns = wall - queued;
      time->mono_ns = mono - queued;
      time->kernel = true;
      break;
    }
  }
  return static_cast<int>(n);
}

}  // namespace

absl::StatusOr<std::unique_ptr<UdpReceiver>> UdpReceiver::Open(const UdpReceiverOptions& options) {
  absl::StatusOr<udp::endpoint> listen =
      internal::ParseUdpEndpoint(options.listen, "UdpReceiverOptions.listen");
  if (!listen.ok()) return listen.status();

  auto impl = std::make_unique<Impl>();
  impl->busy_poll = options.busy_poll;
  boost::system::error_code ec;
  auto fail = [&](std::string_view step) {
    return absl::UnavailableError(
        internal::Cat("UDP receiver on ", options.listen, options.group.empty() ? "" : " group ",
                      options.group, ": ", step, " failed: ", ec.message()));
  };

  impl->socket.open(listen->protocol(), ec);
  if (ec) return fail("open");
  // Multicast: several sockets (run-to-completion shards, other programs) may join the same
  // group and port, and each receives a copy. Unicast delivers a datagram to one socket only,
  // so a second bind to the same port must fail loudly instead of silently splitting the feed.
  if (!options.group.empty()) {
    impl->socket.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) return fail("SO_REUSEADDR");
  }
  if (options.receive_buffer_bytes > 0) {
    // The kernel caps the request at net.core.rmem_max; that is not an error.
    impl->socket.set_option(asio::socket_base::receive_buffer_size(options.receive_buffer_bytes),
                            ec);
    if (ec) return fail("SO_RCVBUF");
  }
  impl->socket.bind(*listen, ec);
  if (ec) return fail("bind");

  if (!options.group.empty()) {
    absl::StatusOr<asio::ip::address> group =
        internal::ParseIpAddress(options.group, "UdpReceiverOptions.group");
    if (!group.ok()) return group.status();
    if (!group->is_multicast()) {
      return absl::InvalidArgumentError(internal::Cat("UdpReceiverOptions.group: '", options.group,
                                                      "' is not a multicast address"));
    }
    if (group->is_v4() && !options.interface_address.empty()) {
      absl::StatusOr<asio::ip::address> itf = internal::ParseIpAddress(
          options.interface_address, "UdpReceiverOptions.interface_address");
      if (!itf.ok()) return itf.status();
      impl->socket.set_option(asio::ip::multicast::join_group(group->to_v4(), itf->to_v4()), ec);
    } else {
      impl->socket.set_option(asio::ip::multicast::join_group(*group), ec);
    }
    if (ec) return fail("multicast join");
  }

  // Always non-blocking: Receive() waits in poll() so that it can time out and the caller can
  // stop, and busy-poll mode spins on the same call.
  impl->socket.non_blocking(true, ec);
  if (ec) return fail("non-blocking mode");
  const udp::endpoint local = impl->socket.local_endpoint(ec);
  if (ec) return fail("local_endpoint");
  impl->port = local.port();
  if (options.kernel_timestamps) {
    const int on = 1;
    impl->kernel_timestamps =
        ::setsockopt(impl->socket.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) == 0;
  }
  return std::unique_ptr<UdpReceiver>(new UdpReceiver(std::move(impl)));
}

UdpReceiver::UdpReceiver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UdpReceiver::~UdpReceiver() = default;

int UdpReceiver::Receive(std::span<uint8_t> buffer, int timeout_ms, int64_t* recv_ns) noexcept {
  ReceiveTime t;
  const int n = Receive(buffer, timeout_ms, &t);
  if (n > 0) *recv_ns = t.mono_ns;
  return n;
}

int UdpReceiver::Receive(std::span<uint8_t> buffer, int timeout_ms, ReceiveTime* time) noexcept {
  const int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * 1'000'000;
  const int fd = impl_->socket.native_handle();
  for (;;) {
    const int n = ReadOne(fd, buffer, time);
    if (n != 0) return n;
    const int64_t now = MonotonicNanos();
    if (timeout_ms >= 0 && now >= deadline) return 0;
    if (impl_->busy_poll) continue;
    pollfd pfd{fd, POLLIN, 0};
    const int wait_ms =
        timeout_ms < 0 ? -1 : static_cast<int>((deadline - now + 999'999) / 1'000'000);
    const int r = ::poll(&pfd, 1, wait_ms);
    if (r < 0 && errno != EINTR) return -1;
    if (r == 0) return 0;
  }
}

int UdpReceiver::TryReceive(std::span<uint8_t> buffer, int64_t* recv_ns) noexcept {
  ReceiveTime t;
  const int n = TryReceive(buffer, &t);
  if (n > 0) *recv_ns = t.mono_ns;
  return n;
}

int UdpReceiver::TryReceive(std::span<uint8_t> buffer, ReceiveTime* time) noexcept {
  return ReadOne(impl_->socket.native_handle(), buffer, time);
}

bool UdpReceiver::kernel_timestamps() const noexcept { return impl_->kernel_timestamps; }

uint16_t UdpReceiver::local_port() const noexcept { return impl_->port; }

int UdpReceiver::native_handle() const noexcept {
  return const_cast<udp::socket&>(impl_->socket).native_handle();
}

}  // namespace qsig::feeds
