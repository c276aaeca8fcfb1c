// FeedHandler: A/B lines, MoldUDP64 re-requests and a FeedProcessor on the feed thread.
//
// Arbitration needs no state of its own: both lines feed the same FeedProcessor, which applies
// the first copy of each sequence number and counts the rest as duplicates. Retransmissions
// arrive on the socket the requests leave from, and go through the same path.
#include "qsig/feeds/feed_handler.h"

#include <poll.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "internal/net.h"
#include "internal/str.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/counter.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/udp_receiver.h"

namespace qsig::feeds {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {
constexpr size_t kMaxDatagram = 65536;
constexpr FeedLine kLines[] = {FeedLine::kA, FeedLine::kB, FeedLine::kRetransmit};
}  // namespace

struct FeedHandler::Impl {
  explicit Impl(const FeedHandlerOptions& o) : options(o), processor(o.processor) {}

  // Reads what is queued on one socket; returns datagrams or -1 on error.
  int Drain(int index, int budget, FeatureSink& sink) noexcept;
  void Recover(FeatureSink& sink) noexcept;

  FeedHandlerOptions options;
  FeedProcessor processor;
  FeedHandlerStats stats;
  std::unique_ptr<ReplaySource> replay;
  std::unique_ptr<UdpReceiver> line_a;
  std::unique_ptr<UdpReceiver> line_b;
  asio::io_context io;
  udp::socket rerequest_socket{io};
  udp::endpoint retransmit;
  bool recovery = false;
  std::array<pollfd, 3> fds{};
  int n_fds = 0;
  std::array<int, 3> source{};  // fds[i] reads: 0 = A, 1 = B, 2 = retransmissions.
  std::vector<uint8_t> buffer = std::vector<uint8_t>(kMaxDatagram);
};

int FeedHandler::Impl::Drain(int index, int budget, FeatureSink& sink) noexcept {
  int done = 0;
  while (done < budget) {
    ReceiveTime t;
    int n = 0;
    const int which = source[static_cast<size_t>(index)];
    if (which == 0) {
      n = line_a->TryReceive(buffer, &t);
    } else if (which == 1) {
      n = line_b->TryReceive(buffer, &t);
    } else {
      boost::system::error_code ec;
      const size_t got = rerequest_socket.receive(asio::buffer(buffer), 0, ec);
      if (!ec) {
        t.wall_ns = WallNanos();
        t.mono_ns = MonotonicNanos();
        n = static_cast<int>(got);
      } else if (ec == asio::error::would_block || ec == asio::error::try_again ||
                 ec == asio::error::interrupted || ec == asio::error::connection_refused) {
        // connection_refused: an ICMP for an earlier request (no server yet); not fatal.
        n = 0;
      } else {
        n = -1;
      }
    }
    if (n < 0) {
      Bump(stats.receive_errors);
      return -1;
    }
    if (n == 0) break;
    Bump(t.kernel ? stats.kernel_timestamps : stats.user_timestamps);
    processor.OnDatagram(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)), t.mono_ns,
                         t.wall_ns, sink, kLines[which]);
    const bool won = processor.last_datagram_new_messages() > 0;
    if (which == 0) {
      Bump(stats.packets_a);
      if (won) Bump(stats.wins_a);
    } else if (which == 1) {
      Bump(stats.packets_b);
      if (won) Bump(stats.wins_b);
    } else {
      Bump(stats.packets_retransmit);
      if (won) Bump(stats.wins_retransmit);
    }
    ++done;
  }
  return done;
}

void FeedHandler::Impl::Recover(FeatureSink& sink) noexcept {
  if (!processor.gap_open() && !processor.corroboration_pending()) return;
  const int64_t now = MonotonicNanos();
  if (recovery) {
    RetransmitRequest r;
    uint8_t wire[kRetransmitRequestSize];
    while (processor.NextRetransmitRequest(now, &r)) {
      EncodeRetransmitRequest(r, wire);
      boost::system::error_code ec;
      rerequest_socket.send_to(asio::buffer(wire, sizeof wire), retransmit, 0, ec);
      if (ec) {
        Bump(stats.rerequest_errors);
      } else {
        Bump(stats.rerequests_sent);
        Bump(stats.rerequested_messages, r.count);
      }
    }
  }
  processor.Tick(now, sink);
}

absl::StatusOr<std::unique_ptr<FeedHandler>> FeedHandler::Open(const FeedHandlerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (options.replay) {
    absl::StatusOr<std::unique_ptr<ReplaySource>> r = ReplaySource::Open(*options.replay);
    if (!r.ok()) return r.status();
    impl->replay = std::move(*r);
    return std::unique_ptr<FeedHandler>(new FeedHandler(std::move(impl)));
  }
  absl::StatusOr<std::unique_ptr<UdpReceiver>> a = UdpReceiver::Open(options.line_a);
  if (!a.ok()) return a.status();
  impl->line_a = std::move(*a);
  impl->fds[0] = pollfd{impl->line_a->native_handle(), POLLIN, 0};
  impl->source[0] = 0;
  impl->n_fds = 1;
  if (options.line_b) {
    absl::StatusOr<std::unique_ptr<UdpReceiver>> b = UdpReceiver::Open(*options.line_b);
    if (!b.ok()) return b.status();
    impl->line_b = std::move(*b);
    impl->fds[1] = pollfd{impl->line_b->native_handle(), POLLIN, 0};
    impl->source[1] = 1;
    impl->n_fds = 2;
  }
  if (!options.retransmit_endpoint.empty()) {
    absl::StatusOr<udp::endpoint> ep = internal::ParseUdpEndpoint(
        options.retransmit_endpoint, "FeedHandlerOptions.retransmit_endpoint");
    if (!ep.ok()) return ep.status();
    impl->retransmit = *ep;
    boost::system::error_code ec;
    impl->rerequest_socket.open(ep->protocol(), ec);
    if (!ec) {
      impl->rerequest_socket.set_option(asio::socket_base::receive_buffer_size(8 << 20), ec);
    }
    if (!ec) impl->rerequest_socket.non_blocking(true, ec);
    if (ec) {
      return absl::UnavailableError(internal::Cat(
          "re-request socket for ", options.retransmit_endpoint, " failed: ", ec.message()));
    }
    impl->recovery = true;
    const size_t i = static_cast<size_t>(impl->n_fds);
    impl->fds[i] = pollfd{impl->rerequest_socket.native_handle(), POLLIN, 0};
    impl->source[i] = 2;
    ++impl->n_fds;
  }
  return std::unique_ptr<FeedHandler>(new FeedHandler(std::move(impl)));
}

FeedHandler::FeedHandler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FeedHandler::~FeedHandler() = default;

int FeedHandler::Poll(int timeout_ms, FeatureSink& sink) noexcept {
  Impl& s = *impl_;
  if (s.replay) {
    return s.replay->Poll(timeout_ms, s.processor, sink, s.options.max_datagrams_per_poll);
  }
  const bool busy = s.options.line_a.busy_poll;
  const int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * 1'000'000;
  int total = 0;
  for (;;) {
    bool any_ready = busy;
    if (!busy) {
      // While a gap is open, wake up often enough to send re-requests and time gaps out.
      int wait = timeout_ms;
      if (s.processor.gap_open()) {
        const int slice = std::max(1, s.options.processor.recovery.rerequest_delay_us / 1000);
        wait = wait < 0 ? slice : std::min(wait, slice);
      }
      for (int i = 0; i < s.n_fds; ++i) s.fds[static_cast<size_t>(i)].revents = 0;
      const int r = ::poll(s.fds.data(), static_cast<nfds_t>(s.n_fds), wait);
      if (r < 0 && errno != EINTR) return -1;
      any_ready = r > 0;
    }
    if (any_ready) {
      // Retransmissions first (they close gaps, which ends optimistic mode), then each line
      // with its own budget: a backlogged line must not starve the others.
      for (int j = 0; j < s.n_fds; ++j) {
        const int idx = j == 0 ? s.n_fds - 1 : j - 1;  // Order: last fd, then 0, 1, ....
        if (!busy && (s.fds[static_cast<size_t>(idx)].revents & POLLIN) == 0) continue;
        const int n = s.Drain(idx, s.options.max_datagrams_per_poll, sink);
        if (n < 0) return -1;
        total += n;
      }
    }
    s.Recover(sink);
    if (total > 0) return total;
    if (timeout_ms >= 0 && MonotonicNanos() >= deadline) return 0;
  }
}

const FeedProcessor& FeedHandler::processor() const noexcept { return impl_->processor; }
FeedProcessor& FeedHandler::processor() noexcept { return impl_->processor; }
const FeedHandlerStats& FeedHandler::stats() const noexcept { return impl_->stats; }
uint16_t FeedHandler::port_a() const noexcept {
  return impl_->line_a ? impl_->line_a->local_port() : 0;
}
const ReplaySource* FeedHandler::replay() const noexcept { return impl_->replay.get(); }
bool FeedHandler::kernel_timestamps() const noexcept {
  const Impl& s = *impl_;
  return s.line_a != nullptr && s.line_a->kernel_timestamps() &&
         (s.line_b == nullptr || s.line_b->kernel_timestamps());
}
uint16_t FeedHandler::port_b() const noexcept {
  return impl_->line_b ? impl_->line_b->local_port() : 0;
}

}  // namespace qsig::feeds
