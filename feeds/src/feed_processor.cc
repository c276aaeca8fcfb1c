// FeedProcessor: MoldUDP64 sessions, sequencing and gap recovery, ITCH 5.0 dispatch, books,
// features.
//
// Sequencing (see feeds/README.md, "Gaps and recovery"). `next_` is the next sequence number to
// apply in order; everything before it is final. While no gap is open a message with sequence
// `next_` is applied straight away (the fast path: no copy). When a message arrives beyond a
// gap, a hole [next_, seq) opens and from then on every new message is copied into a window
// indexed by sequence and applied at once *optimistically*: the books and feature state move
// on, each book mutation is logged for undo, and every vector carries kFeatureFlagStale. When
// the oldest hole is filled (the other line, a reordered packet, or a retransmission), the
// books are wound back to the last exact state and the held messages are replayed quietly in
// sequence order, so that the books equal those built from a clean stream. A hole that cannot
// be filled (timeout, window full) is given up: its messages count as lost and every book
// stays stale until a new session.
//
// Corroboration (see CorroborationOptions). A datagram that would wipe the books (a new session
// name) or move the expected sequence far ahead (more than max_sequence_jump) is not acted on:
// it opens a candidate, a few slots sized at construction that hold the candidate's datagrams.
// Ordinary processing goes on meanwhile. The candidate is adopted when the other line or the
// retransmission server delivers a packet of it, or when confirm_packets advancing packets of it
// arrived, each within window_us of the previous; its datagrams are then applied in order, as
// if they had just arrived. A candidate that goes quiet for window_us is dropped and its
// datagrams are counted as uncorroborated. So one forged datagram costs a slot for a while and
// nothing else.
//
// Book sanity: after each book change the instrument's book is checked in O(1) (crossed, a
// resting price of 0 or above max_price at either end of a side, orders dropped on a full
// table). While any holds, its vectors carry kFeatureFlagBookSuspect.
#include "qsig/feeds/feed_processor.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "internal/endian.h"
#include "internal/features.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/order_book.h"
#include "qsig/feeds/clock.h"
#include "qsig/feeds/counter.h"
#include "qsig/feeds/feature_sink.h"

namespace qsig::feeds {
namespace {

using internal::BookResult;
using internal::LoadBe16;
using internal::LoadBe32;
using internal::LoadBe48;
using internal::LoadBe64;
namespace itch = internal::itch;
namespace mold = internal::mold;

inline void Set(std::atomic<uint64_t>& gauge, uint64_t v) noexcept {
  gauge.store(v, std::memory_order_relaxed);
}

// A sequence jump this large is not a gap but a corrupt header: recovery could never fill it.
constexpr uint64_t kMaxSequenceJump = uint64_t{1} << 40;
constexpr size_t kMaxHoles = 64;
// Candidates held at once: a forged datagram takes one slot, so a genuine change still finds
// one free unless several forgeries arrive within one window.
constexpr size_t kMaxCandidates = 4;
// Bytes of datagrams a candidate holds (for confirm_packets packets of up to a jumbo frame);
// what does not fit is not held and shows up as a gap once the candidate is adopted.
constexpr size_t kCandidateBytesPerPacket = 9216;

// Book sanity bits (Instrument::suspect).
constexpr uint8_t kSuspectCrossed = 1;
constexpr uint8_t kSuspectPrice = 2;
constexpr uint8_t kSuspectDropped = 4;

struct Instrument {
  char symbol[itch::kStockSize] = {};
  uint8_t symbol_len = 0;
  // Sticky until a new session: a gap was given up and this book may be wrong.
  bool stale = false;
  // Feature state saved at the first optimistic change since the books were last exact.
  bool saved = false;
  char trading_state = 'T';
  uint8_t suspect = 0;  // kSuspect* bits from the last book change.
  // Orders dropped because a table was full and not yet deleted or replaced away.
  uint32_t dropped_orders = 0;
  internal::EngineState features;
};

// A session change or sequence jump waiting for corroboration (see the file comment).
struct Candidate {
  enum Kind : uint8_t { kNone = 0, kSession, kJump };
  Kind kind = kNone;
  FeedLine line = FeedLine::kUnknown;  // Line of the first datagram.
  uint8_t session[10] = {};
  uint64_t probe = 0;  // A sequence number the candidate claims exists (re-requested).
  uint64_t high = 0;   // One past the highest sequence it announced.
  int64_t last_ns = 0;
  int confirmations = 0;  // Advancing datagrams.
  int requests = 0;
  uint64_t packets = 0;       // Every datagram attributed to it (counted if it is dropped).
  size_t used = 0;            // Bytes of `held`.
  std::vector<uint8_t> held;  // Datagrams: u32 size | i64 recv_ns | bytes, in arrival order.
};

// A run of missing sequence numbers [first, end).
struct Hole {
  uint64_t first = 0;
  uint64_t end = 0;
  int64_t opened_ns = 0;
  int64_t next_request_ns = 0;
  int requests = 0;
  bool split = false;  // The tail of a split hole: its gap is counted once, by the head.
};

// A held message. ITCH messages are at most 50 bytes; longer blocks are malformed anyway and
// only their length is kept.
struct Slot {
  enum State : uint8_t { kEmpty = 0, kPresent, kLost };
  uint16_t len = 0;
  State state = kEmpty;
  uint8_t bytes[61];
};
static_assert(sizeof(Slot) == 64);
static_assert(sizeof(Slot::bytes) >= itch::kMaxMessageLength);

}  // namespace

struct FeedProcessor::Impl {
  explicit Impl(const FeedProcessorOptions& o)
      : options(o),
        engine(o.features),
        books(o.max_instruments, o.max_orders, o.max_levels),
        instruments(static_cast<size_t>(books.max_instruments()) + 1),
        instrument_messages(std::make_unique<std::atomic<uint64_t>[]>(instruments.size())) {
    for (Instrument& in : instruments) engine.Reset(in.features);
    if (o.recovery.max_held_messages > 0) {
      const size_t w = std::bit_ceil(static_cast<size_t>(o.recovery.max_held_messages));
      window.assign(w, Slot{});
      window_mask = w - 1;
      // One entry per held message at most (each message changes the books once); replays of
      // held messages after a partial commit reuse the same bound.
      undo_log.reserve(w + 16);
      saved_features.resize(instruments.size());
      touched.reserve(instruments.size());
    }
    holes.reserve(kMaxHoles);
    const size_t bytes = kCandidateBytesPerPacket *
                         static_cast<size_t>(std::max(o.corroboration.confirm_packets, 1));
    for (Candidate& c : candidates) c.held.resize(bytes);
    server_symbols = o.server_symbols;
    for (std::string& sym : server_symbols) {
      while (!sym.empty() && sym.back() == ' ') sym.pop_back();
    }
    std::sort(server_symbols.begin(), server_symbols.end());
    owned.resize(instruments.size());
    ResetOwnership();
  }

  // --- Sequencing ---
  // `trusted`: a held candidate's datagram being applied after corroboration.
  void OnDatagram(std::span<const uint8_t> d, int64_t recv_ns, FeedLine line, bool trusted,
                  FeatureSink& sink) noexcept;
  void ResetSession(const uint8_t* session) noexcept;

  // --- Corroboration ---
  bool corroborating() const noexcept { return options.corroboration.confirm_packets > 1; }
  // Holds a datagram that changes the session or jumps the sequence; adopts its candidate
  // once corroborated.
  void OnUntrusted(Candidate::Kind kind, std::span<const uint8_t> d, uint64_t seq, uint16_t count,
                   int64_t recv_ns, FeedLine line, FeatureSink& sink) noexcept;
  Candidate* FindCandidate(Candidate::Kind kind, const uint8_t* session, uint64_t seq,
                           uint16_t count) noexcept;
  void Hold(Candidate& c, std::span<const uint8_t> d, int64_t recv_ns) noexcept;
  void Adopt(Candidate& c, FeatureSink& sink) noexcept;
  void DropCandidate(Candidate& c) noexcept;
  void ExpireCandidates(int64_t now_ns) noexcept;
  void UpdateCandidateState() noexcept;

  // --- Book sanity ---
  // Re-checks one book after a change; `loud` counts newly suspect reasons.
  void CheckBook(uint16_t locate, bool loud) noexcept;
  void OnSequenced(uint64_t seq, const uint8_t* m, size_t len, int64_t recv_ns,
                   FeatureSink& sink) noexcept;
  // A heartbeat or end of session announcing that the next message will be `next_seq`.
  void AdvanceTo(uint64_t next_seq, int64_t recv_ns, FeatureSink& sink) noexcept;
  // Makes room in the window for `seq`, giving up old holes if needed; false if `seq` is
  // beyond any recovery and the stream jumped to it.
  void MakeRoom(uint64_t seq, FeatureSink& sink) noexcept;
  void OpenHole(uint64_t first, uint64_t end, int64_t recv_ns, FeatureSink& sink) noexcept;
  void FillHole(uint64_t seq) noexcept;
  void LoseHole(size_t index) noexcept;
  // Commits the complete prefix before the oldest hole (see the file comment).
  void Settle(FeatureSink& sink) noexcept;
  void ClearWindow() noexcept;
  bool window_mode() const noexcept { return !holes.empty(); }
  void MarkAllStale() noexcept {
    for (Instrument& in : instruments) in.stale = true;
  }
  void UpdateGauges() noexcept {
    Set(stats.open_gaps, holes.size());
    Set(stats.held_messages, held);
  }

  // --- Messages ---
  // Applies one message. `loud`: first sight (counters, vectors); quiet replays change state
  // only. While a gap is open, book changes are logged for undo.
  void Apply(const uint8_t* m, size_t len, uint64_t seq, int64_t recv_ns, bool loud,
             FeatureSink& sink) noexcept;
  void OnMessage(const uint8_t* m, size_t len, uint64_t seq, int64_t recv_ns, bool loud,
                 FeatureSink& sink) noexcept;
  // Counts a failed book operation; true on success.
  bool Check(BookResult r, bool loud) noexcept;
  // An order of this instrument was dropped on a full table (+1), or an unknown order left
  // (-1: most likely a dropped one). First sight only: a quiet replay repeats the same outcome.
  void OrderDropped(uint16_t locate, int delta, bool loud) noexcept {
    if (!loud || !books.valid_locate(locate)) return;
    Instrument& in = instruments[locate];
    if (delta > 0) {
      ++in.dropped_orders;
    } else if (in.dropped_orders == 0) {
      return;
    } else {
      --in.dropped_orders;
    }
    CheckBook(locate, loud);
  }
  internal::EngineState& Features(uint16_t locate) noexcept;
  void EmitFeatures(uint16_t locate, const uint8_t* m, uint64_t seq, int64_t recv_ns,
                    FeatureSink& sink) noexcept;
  void StartLogging() noexcept {
    books.set_undo_log(&undo_log, &undo_overflow);
    logging = true;
  }
  void StopLogging() noexcept {
    books.set_undo_log(nullptr, nullptr);
    logging = false;
  }
  // Winds books and feature state back to the last exact state.
  void Rewind() noexcept;

  FeedProcessorOptions options;
  FeedStats stats;
  internal::FeatureEngine engine;
  internal::OrderBooks books;
  std::vector<Instrument> instruments;
  std::unique_ptr<std::atomic<uint64_t>[]> instrument_messages;
  uint8_t session[mold::kSessionSize] = {};
  bool have_session = false;
  uint64_t next = 1;  // Next sequence to apply in order.
  uint64_t high = 1;  // One past the highest sequence seen.
  uint64_t messages_in_packet = 0;
  uint32_t new_in_packet = 0;
  int64_t recv_wall_ns = 0;  // Of the datagram being processed (0 = unknown).
  // Sharding (FeedProcessorOptions::shard_count): only owned instruments' books are kept.
  int shard_count = options.shard_count < 1 ? 1 : options.shard_count;
  int shard_index = options.shard_index;
  // Across servers (FeedProcessorOptions::server_shard_count / server_symbols): ownership is
  // decided by the directory message; sorted for binary search.
  bool server_sharded = options.server_shard_count > 1 || !options.server_symbols.empty();
  std::vector<std::string> server_symbols;
  // Per locate: 1 = this processor keeps its book and emits its vectors.
  std::vector<uint8_t> owned;
  std::atomic<uint64_t> directory_version{0};  // Bumped when a directory message changes a symbol.

  bool OwnedByLocate(size_t locate) const noexcept {
    return shard_count == 1 ||
           static_cast<int>(locate % static_cast<size_t>(shard_count)) == shard_index;
  }
  void ResetOwnership() noexcept {
    for (size_t l = 0; l < owned.size(); ++l) owned[l] = !server_sharded && OwnedByLocate(l);
  }
  bool ServerOwns(std::string_view symbol) const noexcept {
    if (!server_symbols.empty()) {
      return std::binary_search(server_symbols.begin(), server_symbols.end(), symbol);
    }
    return ShardOfSymbol(symbol, options.server_shard_count) == options.server_shard_index;
  }

  // Gap state, all sized at construction.
  std::vector<Slot> window;
  size_t window_mask = 0;
  uint64_t held = 0;
  std::vector<Hole> holes;  // Ascending, disjoint, within [next, high).
  std::vector<internal::UndoEntry> undo_log;
  bool undo_overflow = false;
  bool logging = false;  // Optimistic: changes are logged and feature state saved first.
  std::vector<internal::EngineState> saved_features;
  char market_state = 0;
  std::vector<uint16_t> touched;  // Locates whose feature state is saved.

  // Corroboration state.
  std::array<Candidate, kMaxCandidates> candidates;
  size_t n_candidates = 0;
  int64_t candidates_expire_ns = 0;  // Earliest last_ns + window among candidates.
  uint64_t suspect_count = 0;        // Instruments with suspect != 0.
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
    StopLogging();
    ClearWindow();
    holes.clear();
    undo_log.clear();
    undo_overflow = false;
    touched.clear();
    books.Clear();
    for (Instrument& in : instruments) {
      in = Instrument{};
      engine.Reset(in.features);
    }
    market_state = 0;
    ResetOwnership();  // A new session has its own directory.
    suspect_count = 0;
    Set(stats.suspect_books, 0);
    Bump(stats.session_resets);
    UpdateGauges();
  }
  std::memcpy(session, new_session, mold::kSessionSize);
  have_session = true;
  next = high = 1;  // MoldUDP64 numbers each session's messages from 1.
}

void FeedProcessor::Impl::OnDatagram(std::span<const uint8_t> d, int64_t recv_ns, FeedLine line,
                                     bool trusted, FeatureSink& sink) noexcept {
  new_in_packet = 0;
  const uint8_t* p = d.data();
  const size_t size = d.size();
  if (size < mold::kHeaderSize) {
    Bump(stats.malformed_packets);
    Bump(stats.short_packets);
    return;
  }
  if (n_candidates != 0 && !trusted && recv_ns >= candidates_expire_ns) {
    ExpireCandidates(recv_ns);
  }
  const uint64_t seq = LoadBe64(p + mold::kSequenceOffset);
  const uint16_t raw_count = LoadBe16(p + mold::kCountOffset);
  if (!have_session || std::memcmp(session, p, mold::kSessionSize) != 0) {
    // A session name is printable ASCII. Mid-stream, only a packet that starts a session
    // (sequence 1) may switch to a new one, and only once corroborated: a stray or forged
    // datagram must not wipe the books.
    if (!PrintableSession(p)) {
      Bump(stats.malformed_packets);
      Bump(stats.foreign_session);
      return;
    }
    if (have_session && !trusted && corroborating()) {
      OnUntrusted(Candidate::kSession, d, seq, raw_count, recv_ns, line, sink);
      return;
    }
    if (have_session && seq != 1) {
      Bump(stats.malformed_packets);
      Bump(stats.foreign_session);
      return;
    }
    ResetSession(p);
  }
  if (seq == 0 || seq - std::min(seq, next) > kMaxSequenceJump) {
    Bump(stats.malformed_packets);  // Sequence numbers start at 1 and never leap by 2^40.
    return;
  }
  if (!trusted && seq > high && seq - high > options.corroboration.max_sequence_jump &&
      corroborating()) {
    OnUntrusted(Candidate::kJump, d, seq, raw_count, recv_ns, line, sink);
    return;
  }

  if (raw_count == mold::kHeartbeat || raw_count == mold::kEndOfSession) {
    Bump(raw_count == mold::kHeartbeat ? stats.heartbeats : stats.end_of_session);
    // The header carries the next sequence number: anything before it that we lack is a gap.
    AdvanceTo(seq, recv_ns, sink);
    return;
  }

  messages_in_packet = 0;
  size_t off = mold::kHeaderSize;
  uint64_t i = 0;
  for (; i < raw_count; ++i) {
    if (size - off < mold::kBlockLengthSize) break;
    const size_t len = LoadBe16(p + off);
    off += mold::kBlockLengthSize;
    if (size - off < len) break;
    OnSequenced(seq + i, p + off, len, recv_ns, sink);
    off += len;
  }
  if (i < raw_count) {
    Bump(stats.malformed_packets);  // Blocks overran the datagram.
    Bump(stats.truncated_packets);
    // Messages lost in a truncated packet show up as a gap on the next one.
  }
  Bump(stats.messages, messages_in_packet);
}

Candidate* FeedProcessor::Impl::FindCandidate(Candidate::Kind kind, const uint8_t* name,
                                              uint64_t seq, uint16_t count) noexcept {
  const bool data = count != mold::kHeartbeat && count != mold::kEndOfSession;
  const uint64_t end = data ? seq + count : seq + 1;
  for (Candidate& c : candidates) {
    if (c.kind != kind) continue;
    if (kind == Candidate::kSession) {
      if (std::memcmp(c.session, name, mold::kSessionSize) == 0) return &c;
    } else if (end > c.probe && seq <= c.high + options.corroboration.max_sequence_jump) {
      return &c;  // Reaches into the jumped-to stream.
    }
  }
  return nullptr;
}

void FeedProcessor::Impl::OnUntrusted(Candidate::Kind kind, std::span<const uint8_t> d,
                                      uint64_t seq, uint16_t count, int64_t recv_ns, FeedLine line,
                                      FeatureSink& sink) noexcept {
  const bool data = count != mold::kHeartbeat && count != mold::kEndOfSession;
  Candidate* c = FindCandidate(kind, d.data(), seq, count);
  if (c == nullptr) {
    if (kind == Candidate::kSession && seq != 1) {
      // Not the start of a session, and not part of one being corroborated.
      Bump(stats.malformed_packets);
      Bump(stats.foreign_session);
      return;
    }
    c = nullptr;
    for (Candidate& free : candidates) {
      if (free.kind == Candidate::kNone) {
        c = &free;
        break;
      }
    }
    if (c == nullptr) {
      // All taken: the least confirmed goes (the quietest of those), so one-packet forgeries
      // evict each other rather than a change that is already advancing.
      c = &candidates[0];
      for (Candidate& x : candidates) {
        if (x.confirmations < c->confirmations ||
            (x.confirmations == c->confirmations && x.last_ns < c->last_ns)) {
          c = &x;
        }
      }
      DropCandidate(*c);
    }
    c->kind = kind;
    c->line = line;
    std::memcpy(c->session, d.data(), mold::kSessionSize);
    // A message the candidate implies exists: the retransmission server can confirm it.
    c->probe = kind == Candidate::kSession ? 1 : (data ? seq : seq - 1);
    c->high = seq;
    c->confirmations = 0;
    c->requests = 0;
    c->packets = 0;
    c->used = 0;
    ++n_candidates;
  }
  ++c->packets;
  c->last_ns = recv_ns;
  // The same stream seen from another source: the other line or the retransmission server.
  const bool other_source = line != FeedLine::kUnknown && line != c->line;
  if (seq >= c->high) {  // Moves the candidate's stream on (a repeated copy does not).
    Hold(*c, d, recv_ns);
    c->high = std::max(c->high, data ? seq + count : seq);
    ++c->confirmations;
  }
  if (other_source || c->confirmations >= options.corroboration.confirm_packets) {
    Adopt(*c, sink);
  } else {
    UpdateCandidateState();
  }
}

void FeedProcessor::Impl::Hold(Candidate& c, std::span<const uint8_t> d, int64_t recv_ns) noexcept {
  constexpr size_t kHead = sizeof(uint32_t) + sizeof(int64_t);
  if (c.held.size() - c.used < kHead + d.size()) return;  // Not held: a gap once adopted.
  uint8_t* out = c.held.data() + c.used;
  const uint32_t n = static_cast<uint32_t>(d.size());
  std::memcpy(out, &n, sizeof n);
  std::memcpy(out + sizeof n, &recv_ns, sizeof recv_ns);
  std::memcpy(out + kHead, d.data(), d.size());
  c.used += kHead + d.size();
}

void FeedProcessor::Impl::Adopt(Candidate& c, FeatureSink& sink) noexcept {
  // Every other candidate was measured against the state this one replaces.
  for (Candidate& x : candidates) {
    if (&x != &c && x.kind != Candidate::kNone) DropCandidate(x);
  }
  if (c.kind == Candidate::kSession) {
    Bump(stats.corroborated_sessions);
    ResetSession(c.session);
  } else {
    Bump(stats.corroborated_jumps);
  }
  c.kind = Candidate::kNone;
  --n_candidates;
  UpdateCandidateState();
  // Its datagrams go through the ordinary path now, in arrival order. Trusted replays never
  // open a candidate, so `c.held` stays as it is meanwhile.
  constexpr size_t kHead = sizeof(uint32_t) + sizeof(int64_t);
  for (size_t off = 0; off < c.used;) {
    uint32_t n;
    int64_t recv_ns;
    std::memcpy(&n, c.held.data() + off, sizeof n);
    std::memcpy(&recv_ns, c.held.data() + off + sizeof n, sizeof recv_ns);
    OnDatagram(std::span<const uint8_t>(c.held.data() + off + kHead, n), recv_ns,
               FeedLine::kUnknown, /*trusted=*/true, sink);
    off += kHead + n;
  }
  c.used = 0;
}

void FeedProcessor::Impl::DropCandidate(Candidate& c) noexcept {
  Bump(c.kind == Candidate::kSession ? stats.uncorroborated_session : stats.uncorroborated_jump,
       c.packets);
  c.kind = Candidate::kNone;
  c.used = 0;
  --n_candidates;
}

void FeedProcessor::Impl::ExpireCandidates(int64_t now_ns) noexcept {
  const int64_t window = int64_t{options.corroboration.window_us} * 1000;
  for (Candidate& c : candidates) {
    if (c.kind != Candidate::kNone && now_ns - c.last_ns >= window) DropCandidate(c);
  }
  UpdateCandidateState();
}

void FeedProcessor::Impl::UpdateCandidateState() noexcept {
  const int64_t window = int64_t{options.corroboration.window_us} * 1000;
  int64_t earliest = std::numeric_limits<int64_t>::max();
  for (const Candidate& c : candidates) {
    if (c.kind != Candidate::kNone) earliest = std::min(earliest, c.last_ns + window);
  }
  candidates_expire_ns = earliest;
  Set(stats.pending_candidates, n_candidates);
}

void FeedProcessor::Impl::CheckBook(uint16_t locate, bool loud) noexcept {
  Instrument& in = instruments[locate];
  const internal::BookSide& bids = books.bids(locate);
  const internal::BookSide& asks = books.asks(locate);
  uint8_t bits = 0;
  if (!bids.empty() && !asks.empty() && bids.price(0) >= asks.price(0)) bits |= kSuspectCrossed;
  // Levels are sorted, so a price of 0 or above the bound sits at one end of its side.
  const uint32_t max = options.max_price;
  if ((!bids.empty() && (bids.price(bids.depth() - 1) == 0 || bids.price(0) > max)) ||
      (!asks.empty() && (asks.price(0) == 0 || asks.price(asks.depth() - 1) > max))) {
    bits |= kSuspectPrice;
  }
  if (in.dropped_orders != 0) bits |= kSuspectDropped;
  const uint8_t added = bits & static_cast<uint8_t>(~in.suspect);
  if (loud && added != 0) {
    if (added & kSuspectCrossed) Bump(stats.book_crossed);
    if (added & kSuspectPrice) Bump(stats.book_bad_price);
    if (added & kSuspectDropped) Bump(stats.book_dropped_order);
  }
  if ((bits != 0) != (in.suspect != 0)) {
    suspect_count = bits != 0 ? suspect_count + 1 : suspect_count - 1;
    Set(stats.suspect_books, suspect_count);
  }
  in.suspect = bits;
}

void FeedProcessor::Impl::OnSequenced(uint64_t seq, const uint8_t* m, size_t len, int64_t recv_ns,
                                      FeatureSink& sink) noexcept {
  if (seq < next) {
    Bump(stats.duplicates);
    return;
  }
  if (!window_mode() && seq == next) {  // Fast path: in order, nothing held.
    ++new_in_packet;
    Apply(m, len, seq, recv_ns, true, sink);
    next = high = seq + 1;
    return;
  }
  if (window.empty()) {
    // No window: a gap is lost at once and the stream moves on (books stale).
    Bump(stats.gaps);
    Bump(stats.gap_messages, seq - next);
    Bump(stats.gaps_lost);
    Bump(stats.lost_messages, seq - next);
    MarkAllStale();
    ++new_in_packet;
    Apply(m, len, seq, recv_ns, true, sink);
    next = high = seq + 1;
    return;
  }
  if (seq - next >= window.size()) {
    MakeRoom(seq, sink);
    if (!window_mode() && seq == next) {
      ++new_in_packet;
      Apply(m, len, seq, recv_ns, true, sink);
      next = high = seq + 1;
      return;
    }
  }
  Slot& slot = window[seq & window_mask];
  const bool late = seq < high;
  if (late) {
    if (slot.state != Slot::kEmpty) {
      Bump(stats.duplicates);
      return;
    }
  } else {
    if (seq > high) OpenHole(high, seq, recv_ns, sink);
    high = seq + 1;
  }
  ++new_in_packet;
  slot.state = Slot::kPresent;
  slot.len = static_cast<uint16_t>(len);
  if (len <= sizeof(slot.bytes)) std::memcpy(slot.bytes, m, len);
  ++held;
  StartLogging();
  // Applied (and its vector flagged stale) while its hole is still open: the books are
  // optimistic until Settle() has replayed them in order.
  Apply(m, len, seq, recv_ns, true, sink);
  if (late) {
    FillHole(seq);
    Bump(stats.recovered_messages);
  }
  Settle(sink);
  UpdateGauges();
}

void FeedProcessor::Impl::AdvanceTo(uint64_t next_seq, int64_t recv_ns,
                                    FeatureSink& sink) noexcept {
  if (next_seq <= high) return;
  if (window.empty()) {
    Bump(stats.gaps);
    Bump(stats.gap_messages, next_seq - next);
    Bump(stats.gaps_lost);
    Bump(stats.lost_messages, next_seq - next);
    MarkAllStale();
    next = high = next_seq;
    return;
  }
  if (next_seq - next >= window.size()) MakeRoom(next_seq, sink);
  if (next_seq <= high) return;
  OpenHole(high, next_seq, recv_ns, sink);
  high = next_seq;
  UpdateGauges();
}

void FeedProcessor::Impl::MakeRoom(uint64_t seq, FeatureSink& sink) noexcept {
  while (window_mode() && seq - next >= window.size()) {
    LoseHole(0);
    Settle(sink);
  }
  if (seq - next < window.size()) return;
  // Nothing is held and `seq` is still out of reach: the messages up to it are lost.
  if (seq > high) {
    Bump(stats.gaps);
    Bump(stats.gap_messages, seq - high);
    Bump(stats.gaps_lost);
    Bump(stats.lost_messages, seq - high);
    MarkAllStale();
  }
  next = high = seq;
}

void FeedProcessor::Impl::OpenHole(uint64_t first, uint64_t end, int64_t recv_ns,
                                   FeatureSink& sink) noexcept {
  Bump(stats.gaps);
  Bump(stats.gap_messages, end - first);
  if (holes.size() == kMaxHoles) {
    LoseHole(0);
    Settle(sink);
  }
  const int64_t delay = int64_t{options.recovery.rerequest_delay_us} * 1000;
  holes.push_back(Hole{first, end, recv_ns, recv_ns + delay, 0});
}

void FeedProcessor::Impl::FillHole(uint64_t seq) noexcept {
  for (size_t i = 0; i < holes.size(); ++i) {
    Hole& h = holes[i];
    if (seq < h.first || seq >= h.end) continue;
    if (h.end - h.first == 1) {
      if (!h.split) Bump(stats.gaps_recovered);
      holes.erase(holes.begin() + static_cast<ptrdiff_t>(i));
    } else if (seq == h.first) {
      ++h.first;
    } else if (seq == h.end - 1) {
      --h.end;
    } else if (holes.size() < kMaxHoles) {
      Hole tail = h;
      tail.first = seq + 1;
      tail.split = true;
      h.end = seq;
      holes.insert(holes.begin() + static_cast<ptrdiff_t>(i) + 1, tail);
    } else {
      // No room to split: keep the hole whole; `seq` is held and skipped when it is lost.
    }
    return;
  }
}

void FeedProcessor::Impl::LoseHole(size_t index) noexcept {
  const Hole h = holes[index];
  holes.erase(holes.begin() + static_cast<ptrdiff_t>(index));
  uint64_t lost = 0;
  for (uint64_t s = h.first; s < h.end; ++s) {
    Slot& slot = window[s & window_mask];
    if (slot.state == Slot::kEmpty) {
      slot.state = Slot::kLost;
      ++lost;
    }
  }
  Bump(stats.gaps_lost);
  Bump(stats.lost_messages, lost);
  MarkAllStale();
}

void FeedProcessor::Impl::ClearWindow() noexcept {
  if (high - next >= window.size()) {
    std::fill(window.begin(), window.end(), Slot{});
  } else {
    for (uint64_t s = next; s < high; ++s) window[s & window_mask].state = Slot::kEmpty;
  }
  held = 0;
}

void FeedProcessor::Impl::Rewind() noexcept {
  StopLogging();
  books.Undo(undo_log);
  for (uint16_t locate : touched) {
    instruments[locate].features = saved_features[locate];
    instruments[locate].saved = false;
  }
  touched.clear();
}

void FeedProcessor::Impl::Settle(FeatureSink& sink) noexcept {
  if (undo_overflow) {
    // The log could not hold every change, so the books cannot be wound back: keep them as
    // they are, give every gap up and mark the books stale.
    while (!holes.empty()) LoseHole(0);
    StopLogging();
    undo_overflow = false;
    undo_log.clear();
    for (uint16_t locate : touched) instruments[locate].saved = false;
    touched.clear();
    ClearWindow();
    next = high;
    return;
  }
  const uint64_t stop = holes.empty() ? high : holes.front().first;
  if (stop == next) return;  // The oldest message is still missing.
  Bump(stats.reconciliations);
  Rewind();
  for (uint64_t s = next; s < stop; ++s) {
    Slot& slot = window[s & window_mask];
    if (slot.state == Slot::kPresent) {
      Apply(slot.bytes, slot.len, s, 0, false, sink);
      --held;
    }
    slot.state = Slot::kEmpty;
  }
  next = stop;
  if (holes.empty()) {
    held = 0;
    return;
  }
  // Messages after the next hole go back on, optimistically, in sequence order.
  StartLogging();
  for (uint64_t s = next; s < high; ++s) {
    const Slot& slot = window[s & window_mask];
    if (slot.state == Slot::kPresent) Apply(slot.bytes, slot.len, s, 0, false, sink);
  }
}

bool FeedProcessor::Impl::Check(BookResult r, bool loud) noexcept {
  if (r == BookResult::kOk) return true;
  if (!loud) return false;
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
      Bump(stats.invalid_order);
      return false;
  }
  return false;
}

internal::EngineState& FeedProcessor::Impl::Features(uint16_t locate) noexcept {
  Instrument& in = instruments[locate];
  if (logging && !in.saved) {
    saved_features[locate] = in.features;
    in.saved = true;
    touched.push_back(locate);
  }
  return in.features;
}

void FeedProcessor::Impl::Apply(const uint8_t* m, size_t len, uint64_t seq, int64_t recv_ns,
                                bool loud, FeatureSink& sink) noexcept {
  if (len == 0 || itch::kMessageLength[m[itch::kTypeOffset]] != len) {
    if (loud) {
      Bump(stats.malformed_messages);
      if (len != 0 && itch::kMessageLength[m[itch::kTypeOffset]] == 0) {
        Bump(stats.unknown_message_type);
      } else {
        Bump(stats.bad_message_length);
      }
    }
    return;
  }
  OnMessage(m, len, seq, recv_ns, loud, sink);
}

void FeedProcessor::Impl::OnMessage(const uint8_t* m, size_t /*len*/, uint64_t seq, int64_t recv_ns,
                                    bool loud, FeatureSink& sink) noexcept {
  if (loud) ++messages_in_packet;
  const uint8_t type = m[itch::kTypeOffset];
  const uint16_t locate = LoadBe16(m + itch::kLocateOffset);
  const bool known_locate = books.valid_locate(locate);
  // Another shard's instrument: framing and sequencing are done, its book is not ours.
  const bool is_owned = known_locate ? owned[locate] != 0 : OwnedByLocate(locate);
  if (known_locate && !is_owned && type != 'S' && type != 'R') return;
  if (known_locate && loud && is_owned) Bump(instrument_messages[locate]);

  internal::Side side;
  uint32_t price;
  const int64_t ts = static_cast<int64_t>(LoadBe48(m + itch::kTimestampOffset));
  switch (type) {
    case 'S':
      if (loud) Bump(stats.system_events);
      market_state = static_cast<char>(m[itch::kSystemEventCode]);
      return;
    case 'R': {
      if (!known_locate) {
        if (loud) Bump(stats.unknown_instrument);
        return;
      }
      Instrument& in = instruments[locate];
      uint8_t n = itch::kStockSize;
      while (n > 0 && m[itch::kDirStock + n - 1] == ' ') --n;
      if (n != in.symbol_len || std::memcmp(in.symbol, m + itch::kDirStock, n) != 0) {
        std::memcpy(in.symbol, m + itch::kDirStock, itch::kStockSize);
        in.symbol_len = n;
        Bump(directory_version);
      }
      if (server_sharded) {
        owned[locate] = OwnedByLocate(locate) && ServerOwns(std::string_view(in.symbol, n));
      }
      return;
    }
    case 'H':
      if (!known_locate) {
        if (loud) Bump(stats.unknown_instrument);
        return;
      }
      if (loud) Bump(stats.trading_actions);
      instruments[locate].trading_state = static_cast<char>(m[itch::kActionState]);
      return;
    case 'A':
    case 'F': {
      const BookResult r =
          books.Add(locate, LoadBe64(m + itch::kAddRef), static_cast<char>(m[itch::kAddSide]),
                    LoadBe32(m + itch::kAddShares), LoadBe32(m + itch::kAddPrice));
      if (r == BookResult::kFull) OrderDropped(locate, +1, loud);
      if (!Check(r, loud)) return;
      engine.OnAdd(Features(locate), ts);
      break;
    }
    case 'E':
    case 'C': {
      const uint32_t shares = LoadBe32(m + itch::kExecShares);
      if (!Check(books.Reduce(locate, LoadBe64(m + itch::kExecRef), shares, &side, &price), loud)) {
        return;
      }
      // Non-printable executions ('C' with printable 'N') are not counted as volume.
      if (type == 'E' || m[itch::kExecPrintable] == 'Y') {
        engine.OnTrade(Features(locate), shares, side == internal::Side::kAsk, ts);
      }
      break;
    }
    case 'X':
      if (!Check(books.Reduce(locate, LoadBe64(m + itch::kCancelRef),
                              LoadBe32(m + itch::kCancelShares), &side, &price),
                 loud)) {
        return;
      }
      break;
    case 'D': {
      const BookResult r = books.Delete(locate, LoadBe64(m + itch::kDeleteRef));
      // Most likely an order dropped on a full table leaving: one fewer missing.
      if (r == BookResult::kUnknownOrder) OrderDropped(locate, -1, loud);
      if (!Check(r, loud)) return;
      break;
    }
    case 'U': {
      const BookResult r = books.Replace(
          locate, LoadBe64(m + itch::kReplaceOrigRef), LoadBe64(m + itch::kReplaceNewRef),
          LoadBe32(m + itch::kReplaceShares), LoadBe32(m + itch::kReplacePrice));
      if (r == BookResult::kUnknownOrder) OrderDropped(locate, -1, loud);
      if (r == BookResult::kFull) OrderDropped(locate, +1, loud);  // The new order is missing.
      if (!Check(r, loud)) return;
      break;
    }
    case 'P':
      // A non-displayed order was hit: trade flow moves, the displayed book does not.
      if (!known_locate) {
        if (loud) Bump(stats.unknown_instrument);
        return;
      }
      engine.OnTrade(Features(locate), LoadBe32(m + itch::kTradeShares), m[itch::kTradeSide] == 'S',
                     ts);
      return;
    case 'Q':
      // An auction print: a trade (time since trade) but not directional flow.
      if (!known_locate) {
        if (loud) Bump(stats.unknown_instrument);
        return;
      }
      if (loud) Bump(stats.cross_trades);
      engine.OnTradeNoFlow(Features(locate), ts);
      return;
    case 'B':
      // A broken execution cannot be taken back out of the EWMAs; it is counted.
      if (loud) Bump(stats.broken_trades);
      return;
    default:
      if (loud) Bump(stats.skipped_messages);
      return;  // Well-formed, but carries nothing the books or features use.
  }
  CheckBook(locate, loud);
  if (loud) {
    EmitFeatures(locate, m, seq, recv_ns, sink);
  } else {
    // A quiet replay still advances the feature history exactly as the clean stream would.
    const internal::BookSide& bids = books.bids(locate);
    const internal::BookSide& asks = books.asks(locate);
    if (bids.empty() || asks.empty()) return;
    float values[kMaxFeatures];
    double mid;
    (void)engine.Compute(Features(locate), bids, asks, ts, values, &mid);
  }
}

void FeedProcessor::Impl::EmitFeatures(uint16_t locate, const uint8_t* m, uint64_t seq,
                                       int64_t recv_ns, FeatureSink& sink) noexcept {
  const internal::BookSide& bids = books.bids(locate);
  const internal::BookSide& asks = books.asks(locate);
  if (bids.empty() || asks.empty()) return;
  Instrument& in = instruments[locate];
  FeatureVector fv;
  fv.locate = locate;
  fv.n_features = static_cast<uint16_t>(engine.size());
  fv.msg_seq = seq;
  fv.exchange_ts_ns = static_cast<int64_t>(LoadBe48(m + itch::kTimestampOffset));
  fv.recv_ns = recv_ns;
  fv.recv_wall_ns = recv_wall_ns;
  fv.decoded_ns = MonotonicNanos();
  const bool non_finite =
      engine.Compute(Features(locate), bids, asks, fv.exchange_ts_ns, fv.values, &fv.mid_price);
  const bool stale = in.stale || window_mode();
  fv.flags = (stale ? kFeatureFlagStale : 0u) | (non_finite ? kFeatureFlagNonFinite : 0u) |
             (in.trading_state != 'T' ? kFeatureFlagHalted : 0u) |
             (in.suspect != 0 ? kFeatureFlagBookSuspect : 0u);
  fv.features_ns = MonotonicNanos();
  sink.OnFeatures(fv);
  Bump(stats.feature_vectors);
}

FeedProcessor::FeedProcessor(const FeedProcessorOptions& options)
    : impl_(std::make_unique<Impl>(options)) {}
FeedProcessor::~FeedProcessor() = default;

void FeedProcessor::OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns,
                               FeatureSink& sink) noexcept {
  OnDatagram(datagram, recv_ns, 0, sink, FeedLine::kUnknown);
}

void FeedProcessor::OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns,
                               FeatureSink& sink, FeedLine line) noexcept {
  OnDatagram(datagram, recv_ns, 0, sink, line);
}

void FeedProcessor::OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns,
                               int64_t recv_wall_ns, FeatureSink& sink, FeedLine line) noexcept {
  Bump(impl_->stats.packets);
  impl_->recv_wall_ns = recv_wall_ns;
  impl_->OnDatagram(datagram, recv_ns, line, /*trusted=*/false, sink);
  impl_->recv_wall_ns = 0;
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

int FeedProcessor::n_features() const noexcept { return impl_->engine.size(); }

const std::vector<std::string>& FeedProcessor::feature_names() const noexcept {
  return impl_->engine.names();
}

char FeedProcessor::trading_state(uint16_t locate) const noexcept {
  if (locate >= impl_->instruments.size()) return 'T';
  return impl_->instruments[locate].trading_state;
}

char FeedProcessor::market_state() const noexcept { return impl_->market_state; }

bool FeedProcessor::NextRetransmitRequest(int64_t now_ns, RetransmitRequest* request) noexcept {
  Impl& s = *impl_;
  const GapRecoveryOptions& r = s.options.recovery;
  for (Hole& h : s.holes) {
    if (h.requests >= r.max_rerequests || now_ns < h.next_request_ns) continue;
    std::memcpy(request->session, s.session, mold::kSessionSize);
    request->sequence = h.first;
    request->count = static_cast<uint16_t>(std::min<uint64_t>(
        {h.end - h.first, static_cast<uint64_t>(std::max(r.max_request_messages, 1)), 0xFFFE}));
    ++h.requests;
    h.next_request_ns = now_ns + int64_t{r.rerequest_interval_us} * 1000;
    return true;
  }
  // One request per corroboration candidate: the retransmission server's answer (a packet
  // of the new session, or of the jumped-to stream) corroborates it.
  for (Candidate& c : s.candidates) {
    if (c.kind == Candidate::kNone || c.requests > 0 || c.probe == 0) continue;
    std::memcpy(request->session, c.kind == Candidate::kSession ? c.session : s.session,
                mold::kSessionSize);
    request->sequence = c.probe;
    request->count = 1;
    ++c.requests;
    return true;
  }
  return false;
}

void FeedProcessor::Tick(int64_t now_ns, FeatureSink& sink) noexcept {
  Impl& s = *impl_;
  if (s.n_candidates != 0 && now_ns >= s.candidates_expire_ns) s.ExpireCandidates(now_ns);
  const int64_t timeout = int64_t{s.options.recovery.gap_timeout_us} * 1000;
  bool lost = false;
  for (size_t i = 0; i < s.holes.size();) {
    if (now_ns - s.holes[i].opened_ns >= timeout) {
      s.LoseHole(i);
      lost = true;
    } else {
      ++i;
    }
  }
  if (lost) {
    s.Settle(sink);
    s.UpdateGauges();
  }
}

void FeedProcessor::AbandonGaps(FeatureSink& sink) noexcept {
  Impl& s = *impl_;
  if (s.holes.empty()) return;
  while (!s.holes.empty()) s.LoseHole(0);
  s.Settle(sink);
  s.UpdateGauges();
}

uint64_t FeedProcessor::directory_version() const noexcept {
  return impl_->directory_version.load(std::memory_order_relaxed);
}

bool FeedProcessor::gap_open() const noexcept { return impl_->window_mode(); }
uint64_t FeedProcessor::next_sequence() const noexcept { return impl_->next; }
uint32_t FeedProcessor::last_datagram_new_messages() const noexcept { return impl_->new_in_packet; }

int FeedProcessor::BookLevels(uint16_t locate, bool bid, std::span<PriceLevel> out) const noexcept {
  if (!impl_->books.valid_locate(locate)) return 0;
  const internal::BookSide& side = bid ? impl_->books.bids(locate) : impl_->books.asks(locate);
  const int n = std::min<int>(side.depth(), static_cast<int>(out.size()));
  for (int i = 0; i < n; ++i) out[i] = PriceLevel{side.price(i), side.orders(i), side.shares(i)};
  return n;
}

int FeedProcessor::BookDepth(uint16_t locate, bool bid) const noexcept {
  if (!impl_->books.valid_locate(locate)) return 0;
  return (bid ? impl_->books.bids(locate) : impl_->books.asks(locate)).depth();
}

size_t FeedProcessor::live_orders() const noexcept { return impl_->books.orders().size(); }

bool FeedProcessor::stale(uint16_t locate) const noexcept {
  if (locate >= impl_->instruments.size()) return false;
  return impl_->instruments[locate].stale || impl_->window_mode();
}

bool FeedProcessor::book_suspect(uint16_t locate) const noexcept {
  if (locate >= impl_->instruments.size()) return false;
  return impl_->instruments[locate].suspect != 0;
}

bool FeedProcessor::corroboration_pending() const noexcept { return impl_->n_candidates != 0; }

void EncodeRetransmitRequest(const RetransmitRequest& r, uint8_t* out) noexcept {
  std::memcpy(out, r.session, mold::kSessionSize);
  internal::StoreBe64(out + mold::kSequenceOffset, r.sequence);
  internal::StoreBe16(out + mold::kCountOffset, r.count);
}

bool DecodeRetransmitRequest(std::span<const uint8_t> d, RetransmitRequest* r) noexcept {
  if (d.size() != kRetransmitRequestSize) return false;
  std::memcpy(r->session, d.data(), mold::kSessionSize);
  r->sequence = LoadBe64(d.data() + mold::kSequenceOffset);
  r->count = LoadBe16(d.data() + mold::kCountOffset);
  return true;
}

int ShardOfSymbol(std::string_view symbol, int count) noexcept {
  while (!symbol.empty() && symbol.back() == ' ') symbol.remove_suffix(1);
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64-bit.
  for (const char ch : symbol) {
    h ^= static_cast<uint8_t>(ch);
    h *= 0x100000001b3ull;
  }
  return count <= 1 ? 0 : static_cast<int>(h % static_cast<uint64_t>(count));
}

}  // namespace qsig::feeds
