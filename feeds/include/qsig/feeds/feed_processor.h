// The feed processor: MoldUDP64 datagrams in, ITCH 5.0 decoded, books updated, feature vectors
// out, with gap recovery and corroborated session changes.
//
// FeedProcessor is single-threaded (one feed thread owns it) and runs on the tick path:
// OnDatagram() is noexcept, allocates nothing and takes no lock. Everything is sized at
// construction. Counters are atomics written by the feed thread and read by any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/feeds/features.h"

namespace qsig::feeds {

// Names of the default feature set, in vector order (see feeds/README.md for definitions).
const std::vector<std::string>& DefaultFeatureNames();

// How sequence gaps are held open and recovered (see feeds/README.md, "Gaps and recovery").
// Times are on the clock of the `recv_ns` / `now_ns` arguments (MonotonicNanos() live).
struct GapRecoveryOptions {
  // Messages that may be held beyond the oldest missing one while a gap is open (rounded up to
  // a power of two). 0 = no window: a gap is lost at once and books stay stale until a new
  // session (the behaviour before recovery existed).
  int max_held_messages = 1 << 16;
  // First re-request this long after the gap was seen (the other line or a reordered packet
  // usually fills it sooner), then every `rerequest_interval_us`, at most `max_rerequests`.
  int rerequest_delay_us = 200;
  int rerequest_interval_us = 2'000;
  int max_rerequests = 5;
  int max_request_messages = 4'096;  // Messages asked for in one re-request packet.
  // Tick() gives a gap up this long after it was seen: its messages are lost, the books stay
  // stale until a new session.
  int gap_timeout_us = 20'000;
};

// When a session change or a large sequence jump is trusted (see feeds/README.md, "Corroborated
// session changes"). One datagram with a new session name (sequence 1), or one whose sequence
// lies more than `max_sequence_jump` beyond the highest seen, is held as a candidate and
// nothing moves until it is corroborated: a copy from the other line or from the
// retransmission server (FeedLine), or `confirm_packets` packets of it in all, each arriving
// within `window_us` of the previous one. Then its held packets are applied in order (books
// reset for a new session, the sequence moves for a jump). A candidate left without a packet
// for `window_us` is dropped and its packets are counted (FeedStats::uncorroborated_*).
struct CorroborationOptions {
  int confirm_packets = 3;  // 1 = trust a single packet (no corroboration).
  int window_us = 2'000'000;
  uint64_t max_sequence_jump = uint64_t{1} << 16;  // Larger jumps need corroboration.
};

struct FeedProcessorOptions {
  int max_instruments = 256;  // Locates 1..max_instruments are tracked; others are counted.
  int max_orders = 1 << 20;   // Capacity of the live-order table.
  int max_levels = 256;       // Price levels per side per book.
  GapRecoveryOptions recovery = {};
  CorroborationOptions corroboration = {};
  // Book sanity: a live order priced 0 or above this (Price(4), 4 implied decimals; default
  // $200,000) marks its instrument's vectors kFeatureFlagBookSuspect while it rests.
  uint32_t max_price = 2'000'000'000;
  // Feature set (see qsig/feeds/features.h); empty = DefaultFeatureSpecs(). Validate it with
  // FeatureNames() first: the constructor turns an invalid entry into a constant 0.
  std::vector<FeatureSpec> features = {};
  // Sharding for run-to-completion servers, where each of `shard_count` processors reads the
  // whole stream: this one owns the instruments with locate % shard_count == shard_index.
  // Messages of other instruments are framed and sequenced (gaps, duplicates, sessions work as
  // usual) but touch no book and produce no vector; directory and system messages are applied
  // by every shard. Per-instrument counters (instrument_messages, unknown_order, book_full,
  // invalid_order, feature_vectors) then count owned instruments only.
  int shard_count = 1;
  int shard_index = 0;
  // Sharding across servers (feed.shard), on top of the above: each server reads the whole feed
  // and owns only the instruments it is given, decided when an instrument's stock directory
  // message names its symbol: `server_symbols` when not empty, otherwise
  // ShardOfSymbol(symbol, server_shard_count) == server_shard_index. Until its directory message
  // (and again after a session change, until the new directory) an instrument is not owned here.
  int server_shard_count = 1;
  int server_shard_index = 0;
  std::vector<std::string> server_symbols = {};
};

// The server shard (0..count-1) that owns `symbol` under hash sharding: FNV-1a (64-bit) of the
// symbol with trailing spaces removed, modulo `count`. Stable across processes, machines and
// releases (clients may compute it too: README, "Sharding").
int ShardOfSymbol(std::string_view symbol, int count) noexcept;

// A MoldUDP64 re-request: session(10) sequence(u64) message count(u16), 20 bytes on the wire.
struct RetransmitRequest {
  char session[10] = {};
  uint64_t sequence = 0;
  uint16_t count = 0;
};
inline constexpr size_t kRetransmitRequestSize = 20;
// Encodes `r` into 20 bytes at `out` (network order).
void EncodeRetransmitRequest(const RetransmitRequest& r, uint8_t* out) noexcept;
// Decodes a request datagram; false unless it is exactly 20 bytes.
bool DecodeRetransmitRequest(std::span<const uint8_t> datagram, RetransmitRequest* r) noexcept;

// One aggregated price level as seen from outside (Price(4) integer, 4 implied decimals).
struct PriceLevel {
  uint32_t price = 0;
  uint32_t orders = 0;
  uint64_t shares = 0;
  bool operator==(const PriceLevel&) const = default;
};

// Counters, one writer (the feed thread), relaxed atomics readable from any thread.
struct FeedStats {
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> malformed_packets{0};   // Bad MoldUDP64 header or framing.
  std::atomic<uint64_t> malformed_messages{0};  // Unknown type, wrong length, truncated.
  std::atomic<uint64_t> gaps{0};                // Sequence gaps detected.
  std::atomic<uint64_t> gap_messages{0};        // Messages missing in those gaps.
  std::atomic<uint64_t> duplicates{0};          // Messages with an already-seen sequence.
  std::atomic<uint64_t> unknown_instrument{0};  // Locate out of range.
  std::atomic<uint64_t> unknown_order{0};       // Exec/cancel/delete for an unknown order ref.
  std::atomic<uint64_t> book_full{0};           // Order table or level array full.
  std::atomic<uint64_t> feature_vectors{0};
  // Recovery (see GapRecoveryOptions).
  std::atomic<uint64_t> gaps_recovered{0};      // Gaps whose every message arrived later.
  std::atomic<uint64_t> gaps_lost{0};           // Gaps given up (timeout, window full, jump).
  std::atomic<uint64_t> recovered_messages{0};  // Messages that filled a gap.
  std::atomic<uint64_t> lost_messages{0};       // Messages never received.
  std::atomic<uint64_t> reconciliations{0};     // Books wound back and replayed in order.
  std::atomic<uint64_t> held_messages{0};       // Messages now held behind an open gap (gauge).
  std::atomic<uint64_t> open_gaps{0};           // Gaps now open (gauge).
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> end_of_session{0};
  std::atomic<uint64_t> session_resets{0};  // New session started (books wiped).
  // Bad input by kind (each also counts in malformed_packets / malformed_messages above).
  std::atomic<uint64_t> short_packets{0};      // Datagram shorter than the 20-byte header.
  std::atomic<uint64_t> truncated_packets{0};  // Message blocks overran the datagram.
  std::atomic<uint64_t> foreign_session{0};    // Other/non-printable session mid-stream.
  std::atomic<uint64_t> unknown_message_type{0};
  std::atomic<uint64_t> bad_message_length{0};  // Known type, wrong length (or empty block).
  std::atomic<uint64_t> invalid_order{0};       // Bad side, zero shares, duplicate live ref.
  // Messages that change trading state or trade statistics but not the displayed book.
  std::atomic<uint64_t> system_events{0};
  std::atomic<uint64_t> trading_actions{0};
  std::atomic<uint64_t> cross_trades{0};
  std::atomic<uint64_t> broken_trades{0};
  std::atomic<uint64_t> skipped_messages{0};  // Well-formed types qsig does not use (Y L V ...).
  // Corroboration (see CorroborationOptions): datagrams dropped with a session change or a
  // sequence jump that nothing corroborated, changes accepted once corroborated, and
  // candidates now waiting (gauge).
  std::atomic<uint64_t> uncorroborated_session{0};
  std::atomic<uint64_t> uncorroborated_jump{0};
  std::atomic<uint64_t> corroborated_sessions{0};
  std::atomic<uint64_t> corroborated_jumps{0};
  std::atomic<uint64_t> pending_candidates{0};
  // Book sanity: times an instrument's book became suspect, by reason (a book can have several),
  // and instruments now suspect (gauge). Their vectors carry kFeatureFlagBookSuspect.
  std::atomic<uint64_t> book_crossed{0};        // Best bid >= best ask after an update.
  std::atomic<uint64_t> book_bad_price{0};      // A live order priced 0 or above max_price.
  std::atomic<uint64_t> book_dropped_order{0};  // An order was dropped: table or levels full.
  std::atomic<uint64_t> suspect_books{0};
};

// Where a datagram came from, for corroboration: a session change or sequence jump seen on one
// line is confirmed by the same packet from the other line or the retransmission server.
enum class FeedLine : uint8_t { kUnknown = 0, kA, kB, kRetransmit };

class FeedProcessor {
 public:
  explicit FeedProcessor(const FeedProcessorOptions& options);
  ~FeedProcessor();
  FeedProcessor(const FeedProcessor&) = delete;
  FeedProcessor& operator=(const FeedProcessor&) = delete;

  // Processes one MoldUDP64 datagram received at `recv_ns` (MonotonicNanos()). Malformed input
  // is counted and skipped; nothing is read out of bounds.
  void OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns, FeatureSink& sink) noexcept;
  // The same, naming the line it arrived on (FeedHandler does; kUnknown = corroboration by
  // consecutive packets only).
  void OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns, FeatureSink& sink,
                  FeedLine line) noexcept;
  // The same, with the receive instant also on CLOCK_REALTIME (FeatureVector::recv_wall_ns; 0 =
  // unknown).
  void OnDatagram(std::span<const uint8_t> datagram, int64_t recv_ns, int64_t recv_wall_ns,
                  FeatureSink& sink, FeedLine line = FeedLine::kUnknown) noexcept;

  const FeedStats& stats() const noexcept;
  // Messages processed per locate (index = locate; size max_instruments + 1).
  uint64_t instrument_messages(uint16_t locate) const noexcept;
  // Symbol from the Stock Directory message ("" until one was seen), right-trimmed.
  std::string_view symbol(uint16_t locate) const noexcept;
  // Changes whenever a directory message (or a new session) changes a symbol(): poll it to
  // copy the directory out (any thread may read it; symbol() is the owner's).
  uint64_t directory_version() const noexcept;
  int max_instruments() const noexcept;
  int n_features() const noexcept;
  const std::vector<std::string>& feature_names() const noexcept;
  // Trading state from the last Stock Trading Action ('T' trading, 'H' halted, 'P' paused,
  // 'Q' quotation only; 'T' before any) and the last System Event code (0 before any).
  char trading_state(uint16_t locate) const noexcept;
  char market_state() const noexcept;

  // --- Gap recovery (FeedHandler drives these; direct users may too). Feed thread only. ---
  // Next re-request due at `now_ns` for the oldest open gap that needs one; false if none.
  bool NextRetransmitRequest(int64_t now_ns, RetransmitRequest* request) noexcept;
  // Gives up gaps older than gap_timeout_us at `now_ns` (their books stay stale).
  void Tick(int64_t now_ns, FeatureSink& sink) noexcept;
  // Gives up every open gap now (end of a replay).
  void AbandonGaps(FeatureSink& sink) noexcept;
  bool gap_open() const noexcept;
  // Next sequence number to be applied in order (everything before it is final).
  uint64_t next_sequence() const noexcept;
  // Messages in the last datagram seen for the first time (A/B arbitration: the line that
  // delivered them won).
  uint32_t last_datagram_new_messages() const noexcept;

  // --- Book inspection (cold path: tests, tools, the admin API). Feed thread only. ---
  // Best `out.size()` levels of one side (bid = true), best first; returns how many were filled.
  int BookLevels(uint16_t locate, bool bid, std::span<PriceLevel> out) const noexcept;
  int BookDepth(uint16_t locate, bool bid) const noexcept;
  size_t live_orders() const noexcept;
  // True while this instrument's vectors would carry kFeatureFlagStale.
  bool stale(uint16_t locate) const noexcept;
  // True while this instrument's vectors would carry kFeatureFlagBookSuspect.
  bool book_suspect(uint16_t locate) const noexcept;
  // A session change or sequence jump is waiting for corroboration.
  bool corroboration_pending() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsig::feeds
