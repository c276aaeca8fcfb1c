// FeedProcessor: MoldUDP64 sessions and sequencing, ITCH 5.0 dispatch, books, features.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "internal/endian.h"
#include "internal/features.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/order_book.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/feed.h"

namespace qsig::feeds {
namespace {

using internal::BookResult;
using internal::LoadBe16;
using internal::LoadBe32;
using internal::LoadBe48;
using internal::LoadBe64;
namespace itch = internal::itch;
namespace mold = internal::mold;

// Single writer: a relaxed load + store is a plain add, not a locked RMW, and readers on other
// threads still see a torn-free value.
inline void Bump(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct Instrument {
  char symbol[itch::kStockSize] = {};
  uint8_t symbol_len = 0;
  // Sticky until a new session: without recovery a gap may have left this book wrong.
  bool stale = false;
  internal::FeatureState features;
};

}  // namespace

struct FeedProcessor::Impl {
  explicit Impl(const FeedProcessorOptions& o)
      : books(o.max_instruments, o.max_orders, o.max_levels),
        instruments(static_cast<size_t>(books.max_instruments()) + 1),
        instrument_messages(std::make_unique<std::atomic<uint64_t>[]>(instruments.size())) {}

  void OnDatagram(std::span<const uint8_t> d, int64_t recv_ns, FeatureSink& sink) noexcept;
  void ResetSession(const uint8_t* session) noexcept;
  void MarkAllStale() noexcept {
    for (Instrument& in : instruments) in.stale = true;
  }
  void OnMessage(const uint8_t* m, size_t len, uint64_t seq, int64_t recv_ns,
                 FeatureSink& sink) noexcept;
  // Counts a failed book operation; true on success.
  bool Check(BookResult r) noexcept;
  void EmitFeatures(uint16_t locate, const uint8_t* m, uint64_t seq, int64_t recv_ns,
                    FeatureSink& sink) noexcept;

  FeedStats stats;
  internal::OrderBooks books;
  std::vector<Instrument> instruments;
  std::unique_ptr<std::atomic<uint64_t>[]> instrument_messages;
  uint8_t session[mold::kSessionSize] = {};
  bool have_session = false;
  uint64_t expected_seq = 1;
  uint64_t messages_in_packet = 0;
};

static bool PrintableSession(const uint8_t* p) noexcept {
  for (size_t i = 0; i < mold::kSessionSize; ++i) {
    if (p[i] < 0x20 || p[i] > 0x7e) return false;
  }
  return true;
}

void FeedProcessor::Impl::ResetSession(const uint8_t* new_session) noexcept {
  // The first session starts from the freshly built (already empty) state; skip the wipe.
  if (have_session) {
    books.Clear();
    for (Instrument& in : instruments) in = Instrument{};
  }
  std::memcpy(session, new_session, mold::kSessionSize);
  have_session = true;
  expected_seq = 1;  // MoldUDP64 numbers each session's messages from 1.
}

void FeedProcessor::Impl::OnDatagram(std::span<const uint8_t> d, int64_t recv_ns,
                                     FeatureSink& sink) noexcept {
  Bump(stats.packets);
  const uint8_t* p = d.data();
  const size_t size = d.size();
  if (size < mold::kHeaderSize) {
    Bump(stats.malformed_packets);
    return;
  }
  const uint64_t seq = LoadBe64(p + mold::kSequenceOffset);
  if (!have_session || std::memcmp(session, p, mold::kSessionSize) != 0) {
    // A session name is printable ASCII. Mid-stream, only a packet that starts a session
    // (sequence 1) may switch to a new one: a stray or corrupt datagram must not wipe the books.
    if (!PrintableSession(p) || (have_session && seq != 1)) {
      Bump(stats.malformed_packets);
      return;
    }
    ResetSession(p);
  }

  uint16_t count = LoadBe16(p + mold::kCountOffset);
  if (count == mold::kEndOfSession) count = 0;  // No message blocks follow.

  if (seq > expected_seq) {
    Bump(stats.gaps);
    Bump(stats.gap_messages, seq - expected_seq);
    MarkAllStale();
    expected_seq = seq;
  }
  const uint64_t already_seen = expected_seq - seq;  // > 0 only for replays/duplicates.

  messages_in_packet = 0;
  size_t off = mold::kHeaderSize;
  uint64_t i = 0;
  for (; i < count; ++i) {
    if (size - off < mold::kBlockLengthSize) break;
    const size_t len = LoadBe16(p + off);
    off += mold::kBlockLengthSize;
    if (size - off < len) break;
    if (i < already_seen) {
      Bump(stats.duplicates);
    } else {
      OnMessage(p + off, len, seq + i, recv_ns, sink);
    }
    off += len;
  }
  if (i < count) Bump(stats.malformed_packets);  // Blocks overran the datagram.
  // Messages lost in a truncated packet show up as a gap on the next one.
  expected_seq = std::max(expected_seq, seq + i);
  Bump(stats.messages, messages_in_packet);
}

bool FeedProcessor::Impl::Check(BookResult r) noexcept {
  switch (r) {
    case BookResult::kOk:
      return true;
    case BookResult::kUnknownInstrument:
      Bump(stats.unknown_instrument);
      return false;
    case BookResult::kUnknownOrder:
      Bump(stats.unknown_order);
      return false;
    case BookResult::kFull:
      Bump(stats.book_full);
      return false;
    case BookResult::kInvalid:
      Bump(stats.malformed_messages);
      return false;
  }
  return false;
}

void FeedProcessor::Impl::OnMessage(const uint8_t* m, size_t len, uint64_t seq, int64_t recv_ns,
                                    FeatureSink& sink) noexcept {
  if (len == 0 || itch::kMessageLength[m[itch::kTypeOffset]] != len) {
    Bump(stats.malformed_messages);
    return;
  }
  ++messages_in_packet;
  const uint8_t type = m[itch::kTypeOffset];
  const uint16_t locate = LoadBe16(m + itch::kLocateOffset);
  const bool known_locate = books.valid_locate(locate);
  if (known_locate) Bump(instrument_messages[locate]);

  internal::Side side;
  uint32_t price;
  switch (type) {
    case 'R': {
      if (!known_locate) {
        Bump(stats.unknown_instrument);
        return;
      }
      Instrument& in = instruments[locate];
      std::memcpy(in.symbol, m + itch::kDirStock, itch::kStockSize);
      uint8_t n = itch::kStockSize;
      while (n > 0 && in.symbol[n - 1] == ' ') --n;
      in.symbol_len = n;
      return;
    }
    case 'A':
    case 'F':
      if (!Check(books.Add(locate, LoadBe64(m + itch::kAddRef),
                           static_cast<char>(m[itch::kAddSide]), LoadBe32(m + itch::kAddShares),
                           LoadBe32(m + itch::kAddPrice)))) {
        return;
      }
      break;
    case 'E':
    case 'C': {
      const uint32_t shares = LoadBe32(m + itch::kExecShares);
      if (!Check(books.Reduce(locate, LoadBe64(m + itch::kExecRef), shares, &side, &price))) {
        return;
      }
      // Non-printable executions ('C' with printable 'N') are not counted as volume.
      if (type == 'E' || m[itch::kExecPrintable] == 'Y') {
        instruments[locate].features.OnTrade(shares, side == internal::Side::kAsk);
      }
      break;
    }
    case 'X':
      if (!Check(books.Reduce(locate, LoadBe64(m + itch::kCancelRef),
                              LoadBe32(m + itch::kCancelShares), &side, &price))) {
        return;
      }
      break;
    case 'D':
      if (!Check(books.Delete(locate, LoadBe64(m + itch::kDeleteRef)))) return;
      break;
    case 'U':
      if (!Check(books.Replace(
              locate, LoadBe64(m + itch::kReplaceOrigRef), LoadBe64(m + itch::kReplaceNewRef),
              LoadBe32(m + itch::kReplaceShares), LoadBe32(m + itch::kReplacePrice)))) {
        return;
      }
      break;
    case 'P':
      // A non-displayed order was hit: trade flow moves, the displayed book does not.
      if (!known_locate) {
        Bump(stats.unknown_instrument);
        return;
      }
      instruments[locate].features.OnTrade(LoadBe32(m + itch::kTradeShares),
                                           m[itch::kTradeSide] == 'S');
      return;
    default:
      return;  // Well-formed, but carries nothing the books or features use.
  }
  EmitFeatures(locate, m, seq, recv_ns, sink);
}

void FeedProcessor::Impl::EmitFeatures(uint16_t locate, const uint8_t* m, uint64_t seq,
                                       int64_t recv_ns, FeatureSink& sink) noexcept {
  const internal::BookSide& bids = books.bids(locate);
  const internal::BookSide& asks = books.asks(locate);
  if (bids.empty() || asks.empty()) return;
  Instrument& in = instruments[locate];
  FeatureVector fv;
  fv.locate = locate;
  fv.n_features = internal::kNumDefaultFeatures;
  fv.msg_seq = seq;
  fv.exchange_ts_ns = static_cast<int64_t>(LoadBe48(m + itch::kTimestampOffset));
  fv.recv_ns = recv_ns;
  fv.decoded_ns = MonotonicNanos();
  const bool non_finite =
      internal::ComputeFeatures(bids, asks, in.features, fv.values, &fv.mid_price);
  fv.flags = (in.stale ? kFeatureFlagStale : 0u) | (non_finite ? kFeatureFlagNonFinite : 0u);
  fv.features_ns = MonotonicNanos();
  sink.OnFeatures(fv);
  Bump(stats.feature_vectors);
}

FeedProcessor::FeedProcessor(const FeedProcessorOptions& options)
    : impl_(std::make_unique<Impl>(options)) {}
FeedProcessor::~FeedProcessor() = default;

void FeedProcessor::OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns,
                               FeatureSink& sink) noexcept {
  impl_->OnDatagram(datagram, recv_ns, sink);
}

const FeedStats& FeedProcessor::stats() const noexcept { return impl_->stats; }

uint64_t FeedProcessor::instrument_messages(uint16_t locate) const noexcept {
  if (locate >= impl_->instruments.size()) return 0;
  return impl_->instrument_messages[locate].load(std::memory_order_relaxed);
}

std::string_view FeedProcessor::symbol(uint16_t locate) const noexcept {
  if (locate >= impl_->instruments.size()) return {};
  const Instrument& in = impl_->instruments[locate];
  return std::string_view(in.symbol, in.symbol_len);
}

int FeedProcessor::max_instruments() const noexcept { return impl_->books.max_instruments(); }

int FeedProcessor::n_features() const noexcept { return internal::kNumDefaultFeatures; }

}  // namespace qsig::feeds
