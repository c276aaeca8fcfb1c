// ReplaySource: pcap captures and length-prefixed ITCH files into a FeedProcessor.
#include "qsig/feeds/replay.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "internal/capture.h"
#include "internal/endian.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/str.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/counter.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {

namespace mold = internal::mold;
namespace itch = internal::itch;

namespace {
constexpr size_t kBuffer = 65536;
}  // namespace

struct ReplaySource::Impl {
  ReplayOptions options;
  ReplayStats stats;
  std::unique_ptr<internal::PcapReader> pcap;
  std::unique_ptr<internal::ItchFileReader> itch;
  uint64_t itch_sequence = 1;
  std::vector<uint8_t> buffer = std::vector<uint8_t>(kBuffer);
  // A datagram read ahead while waiting for its time.
  int pending = 0;
  int64_t pending_capture_ns = 0;
  bool done = false;
  // Pacing: capture time `first_capture_ns` is played at monotonic `first_play_ns`.
  bool started = false;
  int64_t first_capture_ns = 0;
  int64_t first_play_ns = 0;
  // ITCH: a message read but not yet packed (it did not fit).
  const uint8_t* carry = nullptr;
  int carry_len = 0;

  int NextItch(std::span<uint8_t> out, int64_t* capture_ns) noexcept;
};

int ReplaySource::Impl::NextItch(std::span<uint8_t> out, int64_t* capture_ns) noexcept {
  const int per_packet = std::clamp(options.itch_messages_per_packet, 1, 0xFFFE);
  size_t off = mold::kHeaderSize;
  uint16_t count = 0;
  for (;;) {
    const uint8_t* m = carry;
    int len = carry_len;
    carry = nullptr;
    carry_len = 0;
    if (m == nullptr) {
      len = itch->Next(&m);
      if (len < 0) return count == 0 ? -1 : 0;  // Report the error on the next call.
      if (len == 0) break;
    }
    if (count == per_packet ||
        off + mold::kBlockLengthSize + static_cast<size_t>(len) > out.size()) {
      // Keep it for the next packet. The reader's buffer stays valid until its next Next().
      carry = m;
      carry_len = len;
      break;
    }
    if (count == 0) {
      *capture_ns = len >= static_cast<int>(itch::kHeaderSize)
                        ? static_cast<int64_t>(internal::LoadBe48(m + itch::kTimestampOffset))
                        : 0;
    }
    off += mold::WriteBlock(out.data() + off, m, static_cast<size_t>(len));
    ++count;
    Bump(stats.itch_messages);
  }
  if (count == 0) return 0;
  mold::WriteHeader(out.data(), options.itch_session, itch_sequence, count);
  itch_sequence += count;
  return static_cast<int>(off);
}

absl::StatusOr<std::unique_ptr<ReplaySource>> ReplaySource::Open(const ReplayOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.path.empty()) {
    return absl::InvalidArgumentError("ReplayOptions.path is empty; name a pcap or ITCH file");
  }
  if (options.speed < 0) {
    return absl::InvalidArgumentError(
        internal::Cat("ReplayOptions.speed is ", options.speed, "; use 0 (max) or > 0"));
  }
  if (options.format == ReplayFormat::kPcap) {
    auto r = internal::PcapReader::Open(options.path, options.bpf_filter, options.udp_ports);
    if (!r.ok()) return r.status();
    impl->pcap = std::move(*r);
  } else {
    auto r = internal::ItchFileReader::Open(options.path);
    if (!r.ok()) return r.status();
    impl->itch = std::move(*r);
  }
  return std::unique_ptr<ReplaySource>(new ReplaySource(std::move(impl)));
}

ReplaySource::ReplaySource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReplaySource::~ReplaySource() = default;

int ReplaySource::Next(std::span<uint8_t> buffer, int64_t* capture_ns) noexcept {
  Impl& s = *impl_;
  if (s.done) return 0;
  int n;
  if (s.pcap) {
    n = s.pcap->Next(buffer, capture_ns, nullptr);
    const internal::PcapReader::Counts& c = s.pcap->counts();
    s.stats.frames.store(c.frames, std::memory_order_relaxed);
    s.stats.skipped_frames.store(c.skipped, std::memory_order_relaxed);
    s.stats.truncated_frames.store(c.truncated, std::memory_order_relaxed);
  } else {
    // The carried message points into the reader's buffer: pack it before reading on.
    n = s.NextItch(buffer, capture_ns);
  }
  if (n <= 0) s.done = true;
  return n;
}

int ReplaySource::Poll(int timeout_ms, FeedProcessor& processor, FeatureSink& sink,
                       int max_datagrams) noexcept {
  Impl& s = *impl_;
  int fed = 0;
  const int64_t deadline = MonotonicNanos() + int64_t{std::max(timeout_ms, 0)} * 1'000'000;
  while (fed < max_datagrams) {
    if (s.pending == 0) {
      s.pending = Next(s.buffer, &s.pending_capture_ns);
      if (s.pending <= 0) {
        s.pending = 0;
        processor.AbandonGaps(sink);
        return fed > 0 ? fed : -1;
      }
    }
    if (s.options.speed > 0) {
      if (!s.started) {
        s.started = true;
        s.first_capture_ns = s.pending_capture_ns;
        s.first_play_ns = MonotonicNanos();
      }
      const int64_t due =
          s.first_play_ns +
          static_cast<int64_t>(static_cast<double>(s.pending_capture_ns - s.first_capture_ns) /
                               s.options.speed);
      const int64_t now = MonotonicNanos();
      if (now < due) {
        if (fed > 0) return fed;
        if (now >= deadline) return 0;
        const int64_t wait = std::min(due, deadline) - now;
        std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
        continue;
      }
      processor.Tick(now, sink);  // Recorded speed: time runs as it did, gaps time out.
    }
    // A capture has no kernel receive stamp here: the receive time is the read.
    const int64_t wall = WallNanos();
    processor.OnDatagram(std::span<const uint8_t>(s.buffer.data(), static_cast<size_t>(s.pending)),
                         MonotonicNanos(), wall, sink);
    Bump(s.stats.datagrams);
    s.pending = 0;
    ++fed;
  }
  return fed;
}

bool ReplaySource::done() const noexcept { return impl_->done && impl_->pending == 0; }
const ReplayStats& ReplaySource::stats() const noexcept { return impl_->stats; }

absl::StatusOr<uint64_t> ReplayInto(const ReplayOptions& options, FeedProcessor& processor,
                                    FeatureSink& sink) {
  auto src = ReplaySource::Open(options);
  if (!src.ok()) return src.status();
  uint64_t total = 0;
  for (;;) {
    const int n = (*src)->Poll(100, processor, sink, 1024);
    if (n < 0) break;
    total += static_cast<uint64_t>(n);
  }
  return total;
}

}  // namespace qsig::feeds
