// SimPublisher: Simulator packets sent over UDP (Boost.Asio) at a steady rate from one thread.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "internal/mold.h"
#include "internal/net.h"
#include "internal/str.h"
#include "qsig/feeds/feed.h"

namespace qsig::feeds {

namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {
// Below this much time to the next send we spin instead of sleeping: sleep_until overshoots by
// tens of microseconds on a stock kernel.
constexpr auto kSpinWindow = std::chrono::microseconds(50);
constexpr size_t kMaxDatagram = 65507;
}  // namespace

struct SimPublisher::Impl {
  explicit Impl(const SimPublisherOptions& o) : options(o), sim(o.sim) {}

  void Run();

  SimPublisherOptions options;
  Simulator sim;
  asio::io_context io;
  udp::socket socket{io};
  udp::endpoint destination;
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> packets_sent{0};
  std::thread thread;
};

void SimPublisher::Impl::Run() {
  std::vector<uint8_t> buffer(kMaxDatagram);
  const double rate = options.messages_per_second > 0 ? options.messages_per_second : 1e12;
  const auto start = Clock::now();
  uint64_t sent = 0;
  uint64_t packets = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (options.max_messages != 0 && sent >= options.max_messages) {
      finished.store(true, std::memory_order_release);
      return;
    }
    // Pace on cumulative messages, so scheduling jitter does not accumulate into drift.
    const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(sent) / rate));
    if (due - Clock::now() > kSpinWindow) std::this_thread::sleep_until(due - kSpinWindow);
    while (Clock::now() < due) {
      if (stop.load(std::memory_order_relaxed)) return;
    }

    const size_t n = sim.NextPacket(buffer);
    const uint16_t count = internal::LoadBe16(buffer.data() + internal::mold::kCountOffset);
    boost::system::error_code ec;
    socket.send_to(asio::buffer(buffer.data(), n), destination, 0, ec);
    // A full socket buffer or an ICMP error from an absent receiver drops the packet, as the
    // network would; the sequence numbers let the receiver see the gap.
    sent += count;
    ++packets;
    messages_sent.store(sent, std::memory_order_relaxed);
    packets_sent.store(packets, std::memory_order_relaxed);
  }
}

absl::StatusOr<std::unique_ptr<SimPublisher>> SimPublisher::Start(
    const SimPublisherOptions& options) {
  absl::StatusOr<udp::endpoint> dest =
      internal::ParseUdpEndpoint(options.destination, "SimPublisherOptions.destination");
  if (!dest.ok()) return dest.status();

  auto impl = std::make_unique<Impl>(options);
  impl->destination = *dest;
  boost::system::error_code ec;
  auto fail = [&](std::string_view step) {
    return absl::UnavailableError(internal::Cat("sim publisher to ", options.destination, ": ",
                                                step, " failed: ", ec.message()));
  };
  impl->socket.open(dest->protocol(), ec);
  if (ec) return fail("open");
  if (dest->address().is_multicast()) {
    impl->socket.set_option(asio::ip::multicast::hops(options.multicast_ttl), ec);
    if (ec) return fail("multicast TTL");
    impl->socket.set_option(asio::ip::multicast::enable_loopback(true), ec);
    if (ec) return fail("multicast loopback");
    if (!options.interface_address.empty()) {
      absl::StatusOr<asio::ip::address> itf = internal::ParseIpAddress(
          options.interface_address, "SimPublisherOptions.interface_address");
      if (!itf.ok()) return itf.status();
      if (!itf->is_v4()) {
        return absl::InvalidArgumentError(internal::Cat("SimPublisherOptions.interface_address: '",
                                                        options.interface_address,
                                                        "' must be an IPv4 address"));
      }
      impl->socket.set_option(asio::ip::multicast::outbound_interface(itf->to_v4()), ec);
      if (ec) return fail("multicast outbound interface");
    }
  }
  Impl* raw = impl.get();
  try {
    raw->thread = std::thread([raw] { raw->Run(); });
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        internal::Cat("sim publisher to ", options.destination, ": thread start: ", e.what()));
  }
  return std::unique_ptr<SimPublisher>(new SimPublisher(std::move(impl)));
}

SimPublisher::SimPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SimPublisher::~SimPublisher() { Stop(); }

void SimPublisher::Stop() {
  impl_->stop.store(true, std::memory_order_relaxed);
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint64_t SimPublisher::messages_sent() const noexcept {
  return impl_->messages_sent.load(std::memory_order_relaxed);
}
uint64_t SimPublisher::packets_sent() const noexcept {
  return impl_->packets_sent.load(std::memory_order_relaxed);
}
bool SimPublisher::finished() const noexcept {
  return impl_->finished.load(std::memory_order_acquire);
}

}  // namespace qsig::feeds
