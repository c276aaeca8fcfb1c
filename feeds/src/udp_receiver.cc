// UdpReceiver: one feed line on a Boost.Asio UDP socket, blocking (poll) or busy-polling.
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cerrno>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "internal/net.h"
#include "internal/str.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feed.h"

namespace qsig::feeds {

namespace asio = boost::asio;
using asio::ip::udp;

struct UdpReceiver::Impl {
  asio::io_context io;  // Owns nothing on the hot path; the socket needs one to exist.
  udp::socket socket{io};
  bool busy_poll = false;
  uint16_t port = 0;
};

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
  impl->socket.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("SO_REUSEADDR");
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
  return std::unique_ptr<UdpReceiver>(new UdpReceiver(std::move(impl)));
}

UdpReceiver::UdpReceiver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UdpReceiver::~UdpReceiver() = default;

int UdpReceiver::Receive(std::span<uint8_t> buffer, int timeout_ms, int64_t* recv_ns) noexcept {
  const int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * 1'000'000;
  boost::system::error_code ec;
  for (;;) {
    const size_t n = impl_->socket.receive(asio::buffer(buffer.data(), buffer.size()), 0, ec);
    if (!ec) {
      *recv_ns = MonotonicNanos();
      return static_cast<int>(n);
    }
    if (ec != asio::error::would_block && ec != asio::error::try_again &&
        ec != asio::error::interrupted) {
      return -1;
    }
    const int64_t now = MonotonicNanos();
    if (timeout_ms >= 0 && now >= deadline) return 0;
    if (impl_->busy_poll) continue;
    pollfd pfd{impl_->socket.native_handle(), POLLIN, 0};
    const int wait_ms =
        timeout_ms < 0 ? -1 : static_cast<int>((deadline - now + 999'999) / 1'000'000);
    const int r = ::poll(&pfd, 1, wait_ms);
    if (r < 0 && errno != EINTR) return -1;
    if (r == 0) return 0;
  }
}

int UdpReceiver::TryReceive(std::span<uint8_t> buffer, int64_t* recv_ns) noexcept {
  boost::system::error_code ec;
  const size_t n = impl_->socket.receive(asio::buffer(buffer.data(), buffer.size()), 0, ec);
  if (!ec) {
    *recv_ns = MonotonicNanos();
    return static_cast<int>(n);
  }
  if (ec == asio::error::would_block || ec == asio::error::try_again ||
      ec == asio::error::interrupted) {
    return 0;
  }
  return -1;
}

uint16_t UdpReceiver::local_port() const noexcept { return impl_->port; }

int UdpReceiver::native_handle() const noexcept {
  return const_cast<udp::socket&>(impl_->socket).native_handle();
}

}  // namespace qsig::feeds
