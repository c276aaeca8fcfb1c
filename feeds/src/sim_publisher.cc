// SimPublisher: Simulator packets sent over UDP (Boost.Asio) at a steady rate from one thread,
// on one or two lines with injected faults, with a MoldUDP64 retransmission server and optional
// pcap / ITCH recording.
#include "qsig/feeds/sim_publisher.h"

#include <poll.h>

#include <atomic>
#include <bit>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "internal/capture.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/net.h"
#include "internal/rng.h"
#include "internal/str.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {

namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;
namespace mold = internal::mold;

namespace {
// Below this much time to the next send we spin instead of sleeping: sleep_until overshoots by
// tens of microseconds on a stock kernel.
constexpr auto kSpinWindow = std::chrono::microseconds(50);
constexpr size_t kMaxDatagram = 65507;
// Retransmissions are cut into packets of at most this many bytes (an Ethernet MTU's worth)
// and at most this many packets per request; the client asks again for the rest.
constexpr size_t kRetransmitPacketBytes = 1400;
constexpr int kMaxRetransmitPackets = 64;

struct HistoryEntry {
  uint8_t len = 0;
  uint8_t bytes[internal::itch::kMaxMessageLength];
};

internal::UdpAddress ToAddress(const udp::endpoint& ep) {
  return internal::UdpAddress{ep.address().is_v4() ? ep.address().to_v4().to_uint() : 0u,
                              ep.port()};
}

// One outgoing line: destination, fault generator, and a packet held back for reordering.
struct Line {
  udp::endpoint destination;
  std::vector<udp::endpoint> copies;  // Same bytes, same moment (SimPublisherOptions).
  LineFaults faults;
  internal::Rng rng{0};
  std::vector<uint8_t> held;  // Empty = nothing held.
  std::vector<uint8_t> scratch;
};
}  // namespace

struct SimPublisher::Impl {
  explicit Impl(const SimPublisherOptions& o) : options(o), sim(o.sim), stream_rng(o.sim.seed) {}

  void Run();
  void Record(std::span<const uint8_t> packet);
  void SendLine(Line& line, std::span<const uint8_t> packet);
  void SendRaw(std::span<const uint8_t> bytes, const udp::endpoint& to);
  void SendRaw(std::span<const uint8_t> bytes, const Line& line);
  void ServeRetransmissions();

  SimPublisherOptions options;
  Simulator sim;
  internal::Rng stream_rng;  // Session restarts.
  asio::io_context io;
  udp::socket socket{io};
  udp::socket retransmit_socket{io};
  bool retransmit = false;
  uint16_t retransmit_port = 0;
  std::vector<Line> lines;
  std::vector<HistoryEntry> history;
  std::vector<uint8_t> retransmit_buffer = std::vector<uint8_t>(kRetransmitPacketBytes);
  uint64_t history_mask = 0;
  uint64_t history_first = 1;  // Oldest sequence still held.
  uint64_t history_end = 1;    // One past the newest.
  std::string history_session;
  std::unique_ptr<internal::PcapWriter> pcap;
  std::unique_ptr<internal::ItchFileWriter> itch;
  internal::UdpAddress source_address;
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> packets_sent{0};
  std::atomic<uint64_t> retransmit_requests{0};
  std::atomic<uint64_t> retransmitted_messages{0};
  std::atomic<uint64_t> faults{0};
  std::thread thread;
};

void SimPublisher::Impl::SendRaw(std::span<const uint8_t> bytes, const udp::endpoint& to) {
  boost::system::error_code ec;
  // A full socket buffer or an ICMP error from an absent receiver drops the packet, as the
  // network would; the sequence numbers let the receiver see the gap.
  socket.send_to(asio::buffer(bytes.data(), bytes.size()), to, 0, ec);
  if (pcap) pcap->Write(WallNanos(), source_address, ToAddress(to), bytes);
}

void SimPublisher::Impl::SendRaw(std::span<const uint8_t> bytes, const Line& line) {
  SendRaw(bytes, line.destination);
  for (const udp::endpoint& to : line.copies) {
    boost::system::error_code ec;
    socket.send_to(asio::buffer(bytes.data(), bytes.size()), to, 0, ec);  // Not recorded again.
  }
}

void SimPublisher::Impl::SendLine(Line& line, std::span<const uint8_t> packet) {
  const LineFaults& f = line.faults;
  auto flush_held = [&] {
    if (line.held.empty()) return;
    SendRaw(line.held, line);
    line.held.clear();
  };
  if (f.malformed > 0 && line.rng.Bernoulli(f.malformed)) {
    faults.fetch_add(1, std::memory_order_relaxed);
    line.scratch.assign(packet.begin(), packet.end());
    switch (line.rng.Below(3)) {
      case 0:  // Shorter than a header.
        line.scratch.resize(line.rng.Below(mold::kHeaderSize));
        break;
      case 1:  // Cut inside the last message block.
        if (line.scratch.size() > mold::kHeaderSize + 3)
          line.scratch.resize(line.scratch.size() - 3);
        break;
      default: {  // Another session, mid-stream: must not reset anything.
        std::memcpy(line.scratch.data(), "JUNKJUNK99", mold::kSessionSize);
        const uint64_t seq = internal::LoadBe64(line.scratch.data() + mold::kSequenceOffset);
        internal::StoreBe64(line.scratch.data() + mold::kSequenceOffset, seq + 1000);
        break;
      }
    }
    SendRaw(line.scratch, line);
  }
  if (f.drop > 0 && line.rng.Bernoulli(f.drop)) {
    faults.fetch_add(1, std::memory_order_relaxed);
    flush_held();
    return;
  }
  if (f.reorder > 0 && line.held.empty() && line.rng.Bernoulli(f.reorder)) {
    faults.fetch_add(1, std::memory_order_relaxed);
    line.held.assign(packet.begin(), packet.end());  // Goes out after the next packet.
    return;
  }
  SendRaw(packet, line);
  if (f.duplicate > 0 && line.rng.Bernoulli(f.duplicate)) {
    faults.fetch_add(1, std::memory_order_relaxed);
    SendRaw(packet, line);
  }
  flush_held();
}

void SimPublisher::Impl::Record(std::span<const uint8_t> packet) {
  const std::string_view session(reinterpret_cast<const char*>(packet.data()), mold::kSessionSize);
  if (session != history_session) {
    history_session.assign(session);
    history_first = history_end = 1;
  }
  const uint16_t count = internal::LoadBe16(packet.data() + mold::kCountOffset);
  if (count == mold::kEndOfSession || count == mold::kHeartbeat) return;
  size_t off = mold::kHeaderSize;
  for (uint16_t i = 0; i < count; ++i) {
    const size_t len = internal::LoadBe16(packet.data() + off);
    const uint8_t* m = packet.data() + off + mold::kBlockLengthSize;
    off += mold::kBlockLengthSize + len;
    if (itch) itch->Write(std::span<const uint8_t>(m, len));
    if (!retransmit) continue;
    HistoryEntry& e = history[history_end & history_mask];
    e.len = static_cast<uint8_t>(len);
    std::memcpy(e.bytes, m, len);
    ++history_end;
    if (history_end - history_first > history.size()) ++history_first;
  }
}

void SimPublisher::Impl::ServeRetransmissions() {
  uint8_t request[64];
  std::vector<uint8_t>& out = retransmit_buffer;
  for (;;) {
    udp::endpoint from;
    boost::system::error_code ec;
    const size_t n = retransmit_socket.receive_from(asio::buffer(request), from, 0, ec);
    if (ec) return;  // would_block: nothing more queued.
    RetransmitRequest r;
    if (!DecodeRetransmitRequest(std::span<const uint8_t>(request, n), &r)) continue;
    if (std::string_view(r.session, mold::kSessionSize) != history_session) continue;
    retransmit_requests.fetch_add(1, std::memory_order_relaxed);
    uint64_t seq = std::max(r.sequence, history_first);
    const uint64_t end = std::min(r.sequence + r.count, history_end);
    for (int packets = 0; seq < end && packets < kMaxRetransmitPackets; ++packets) {
      out.resize(kRetransmitPacketBytes);
      size_t off = mold::kHeaderSize;
      const uint64_t first = seq;
      uint16_t count = 0;
      while (seq < end) {
        const HistoryEntry& e = history[seq & history_mask];
        if (off + mold::kBlockLengthSize + e.len > out.size()) break;
        off += mold::WriteBlock(out.data() + off, e.bytes, e.len);
        ++seq;
        ++count;
      }
      mold::WriteHeader(out.data(), history_session, first, count);
      retransmitted_messages.fetch_add(count, std::memory_order_relaxed);
      boost::system::error_code send_ec;
      retransmit_socket.send_to(asio::buffer(out.data(), off), from, 0, send_ec);
      if (pcap) {
        pcap->Write(WallNanos(), internal::UdpAddress{0x7F000001u, retransmit_port},
                    ToAddress(from), std::span<const uint8_t>(out.data(), off));
      }
    }
  }
}

void SimPublisher::Impl::Run() {
  std::vector<uint8_t> buffer(kMaxDatagram);
  const double rate = options.messages_per_second > 0 ? options.messages_per_second : 1e12;
  const auto start = Clock::now();
  uint64_t sent = 0;
  uint64_t packets = 0;
  const int retransmit_fd = retransmit ? retransmit_socket.native_handle() : -1;
  while (!stop.load(std::memory_order_relaxed)) {
    if (options.max_messages != 0 && sent >= options.max_messages) {
      for (Line& line : lines) {
        if (!line.held.empty()) SendRaw(line.held, line);
        line.held.clear();
      }
      finished.store(true, std::memory_order_release);
      // Keep answering re-requests for the tail until stopped.
      while (retransmit && !stop.load(std::memory_order_relaxed)) {
        pollfd pfd{retransmit_fd, POLLIN, 0};
        if (::poll(&pfd, 1, 20) > 0) ServeRetransmissions();
      }
      return;
    }
    // Pace on cumulative messages, so scheduling jitter does not accumulate into drift.
    const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(sent) / rate));
    for (;;) {
      const auto left = due - Clock::now();
      if (left <= kSpinWindow) break;
      if (retransmit) {
        // Wait on the request socket rather than sleeping, so requests are answered promptly.
        pollfd pfd{retransmit_fd, POLLIN, 0};
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left - kSpinWindow);
        if (::poll(&pfd, 1, static_cast<int>(ms.count())) > 0) ServeRetransmissions();
        if (ms.count() == 0) std::this_thread::sleep_until(due - kSpinWindow);
      } else {
        std::this_thread::sleep_until(due - kSpinWindow);
      }
    }
    while (Clock::now() < due) {
      if (stop.load(std::memory_order_relaxed)) return;
    }
    if (retransmit) ServeRetransmissions();

    const size_t n = sim.NextPacket(buffer);
    const std::span<const uint8_t> packet(buffer.data(), n);
    const uint16_t raw = internal::LoadBe16(buffer.data() + mold::kCountOffset);
    const uint16_t count = raw == mold::kEndOfSession ? 0 : raw;
    Record(packet);
    for (Line& line : lines) SendLine(line, packet);
    if (options.session_restart_rate > 0 && stream_rng.Bernoulli(options.session_restart_rate)) {
      sim.RestartSession();
    }
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
  auto add_line = [&](const udp::endpoint& ep, const LineFaults& faults, uint64_t salt,
                      const std::vector<std::string>& copies) -> absl::Status {
    Line line;
    line.destination = ep;
    for (const std::string& c : copies) {
      absl::StatusOr<udp::endpoint> copy =
          internal::ParseUdpEndpoint(c, "SimPublisherOptions.destination_copies");
      if (!copy.ok()) return copy.status();
      line.copies.push_back(*copy);
    }
    line.faults = faults;
    line.rng = internal::Rng(options.sim.seed * 0x9E3779B97F4A7C15ull + salt);
    line.held.reserve(kMaxDatagram);
    line.scratch.reserve(kMaxDatagram);
    impl->lines.push_back(std::move(line));
    return absl::OkStatus();
  };
  if (absl::Status st = add_line(*dest, options.faults_a, 1, options.destination_copies);
      !st.ok()) {
    return st;
  }
  if (!options.destination_b.empty()) {
    absl::StatusOr<udp::endpoint> b =
        internal::ParseUdpEndpoint(options.destination_b, "SimPublisherOptions.destination_b");
    if (!b.ok()) return b.status();
    if (absl::Status st = add_line(*b, options.faults_b, 2, options.destination_b_copies);
        !st.ok()) {
      return st;
    }
  }
  boost::system::error_code ec;
  auto fail = [&](std::string_view step) {
    return absl::UnavailableError(internal::Cat("sim publisher to ", options.destination, ": ",
                                                step, " failed: ", ec.message()));
  };
  impl->socket.open(dest->protocol(), ec);
  if (ec) return fail("open");
  impl->socket.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  if (ec) return fail("SO_SNDBUF");
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
  impl->socket.bind(udp::endpoint(dest->protocol(), 0), ec);
  if (ec) return fail("bind");
  impl->source_address = internal::UdpAddress{0x7F000001u, impl->socket.local_endpoint(ec).port()};

  if (!options.retransmit_listen.empty()) {
    absl::StatusOr<udp::endpoint> listen = internal::ParseUdpEndpoint(
        options.retransmit_listen, "SimPublisherOptions.retransmit_listen");
    if (!listen.ok()) return listen.status();
    udp::socket& rs = impl->retransmit_socket;
    rs.open(listen->protocol(), ec);
    if (!ec) rs.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) rs.bind(*listen, ec);
    if (!ec) rs.non_blocking(true, ec);
    if (ec) return fail(internal::Cat("retransmission server on ", options.retransmit_listen));
    impl->retransmit = true;
    impl->retransmit_port = rs.local_endpoint(ec).port();
    const size_t cap = std::bit_ceil(static_cast<size_t>(std::max(options.retransmit_history, 1)));
    impl->history.resize(cap);
    impl->history_mask = cap - 1;
  }
  if (!options.pcap_path.empty()) {
    auto w = internal::PcapWriter::Open(options.pcap_path);
    if (!w.ok()) return w.status();
    impl->pcap = std::move(*w);
  }
  if (!options.itch_path.empty()) {
    auto w = internal::ItchFileWriter::Open(options.itch_path);
    if (!w.ok()) return w.status();
    impl->itch = std::move(*w);
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
  if (impl_->pcap) (void)impl_->pcap->Close();
  if (impl_->itch) (void)impl_->itch->Close();
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
uint16_t SimPublisher::retransmit_port() const noexcept { return impl_->retransmit_port; }
uint64_t SimPublisher::retransmit_requests() const noexcept {
  return impl_->retransmit_requests.load(std::memory_order_relaxed);
}
uint64_t SimPublisher::retransmitted_messages() const noexcept {
  return impl_->retransmitted_messages.load(std::memory_order_relaxed);
}
uint64_t SimPublisher::faults_injected() const noexcept {
  return impl_->faults.load(std::memory_order_relaxed);
}

}  // namespace qsig::feeds
