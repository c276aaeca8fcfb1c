// The feed handler: MoldUDP64 datagrams in, ITCH 5.0 decoded, books updated, feature vectors out.
//
// FeedProcessor is single-threaded (one feed thread owns it) and runs on the tick path:
// OnDatagram() is noexcept, allocates nothing and takes no lock. Everything is sized at
// construction. Counters are atomics written by the feed thread and read by any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/feeds/features.h"

namespace qsig::feeds {

// Receives every feature vector the processor produces, on the feed thread.
class FeatureSink {
 public:
  virtual ~FeatureSink() = default;
  virtual void OnFeatures(const FeatureVector& fv) noexcept = 0;
};

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
};

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

// Replay of recorded market data through the same FeedProcessor path as live UDP.
enum class ReplayFormat {
  kPcap,  // pcap/pcapng capture of MoldUDP64 datagrams (Ethernet, SLL, raw IP; IPv4/IPv6 UDP).
  kItch,  // Length-prefixed ITCH 5.0 (u16 big-endian length before each message), as Nasdaq
          // distributes TotalView-ITCH files. Messages are wrapped into MoldUDP64 packets of
          // session `itch_session`, numbered from 1.
};

struct ReplayOptions {
  ReplayFormat format = ReplayFormat::kPcap;
  std::string path;
  // 0 = as fast as possible; 1 = recorded speed (pcap capture stamps, or ITCH timestamps);
  // 2 = twice as fast, and so on.
  double speed = 0.0;
  // pcap: only UDP datagrams to these destination ports (empty = every UDP datagram), after
  // the optional libpcap filter expression (e.g. "udp and dst host 233.54.12.111").
  std::vector<uint16_t> udp_ports = {};
  std::string bpf_filter = {};
  std::string itch_session = "ITCHFILE01";
  int itch_messages_per_packet = 64;
};

struct ReplayStats {
  std::atomic<uint64_t> datagrams{0};       // Handed to the processor.
  std::atomic<uint64_t> frames{0};          // pcap records read.
  std::atomic<uint64_t> skipped_frames{0};  // Not UDP, fragments, other ports.
  std::atomic<uint64_t> truncated_frames{0};
  std::atomic<uint64_t> itch_messages{0};
};

// Reads a capture and feeds it to a FeedProcessor. One thread owns it.
class ReplaySource {
 public:
  static absl::StatusOr<std::unique_ptr<ReplaySource>> Open(const ReplayOptions& options);
  ~ReplaySource();
  // Next MoldUDP64 datagram into `buffer` (64 KiB is always enough): its size, 0 at the end,
  // -1 on a read error. *capture_ns: capture stamp (pcap) or first ITCH timestamp (ITCH file).
  int Next(std::span<uint8_t> buffer, int64_t* capture_ns) noexcept;
  // Feeds the datagrams that are due (all of them at speed 0, at most `max_datagrams`),
  // waiting up to timeout_ms for the next one at recorded speed. Returns datagrams processed,
  // or -1 once the capture is exhausted (open gaps are then given up) or unreadable.
  int Poll(int timeout_ms, FeedProcessor& processor, FeatureSink& sink,
           int max_datagrams = 64) noexcept;
  bool done() const noexcept;
  const ReplayStats& stats() const noexcept;

 private:
  struct Impl;
  explicit ReplaySource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whole capture into `processor` (paced by options.speed); returns datagrams fed.
absl::StatusOr<uint64_t> ReplayInto(const ReplayOptions& options, FeedProcessor& processor,
                                    FeatureSink& sink);

// The server's feed: one or two UDP lines carrying one MoldUDP64 stream (A/B arbitration: the
// first copy of each sequence number wins, later copies are dropped as duplicates), gap
// recovery by MoldUDP64 re-requests to `retransmit_endpoint`, and a FeedProcessor.
struct FeedHandlerOptions {
  UdpReceiverOptions line_a;                 // Primary line.
  std::optional<UdpReceiverOptions> line_b;  // Redundant line carrying the same stream.
  // "host:port" of the MoldUDP64 retransmission server; re-requests go there and its answers
  // come back to the same socket. "" = no recovery: a gap waits gap_timeout_us for the other
  // line or a reordered packet, then is lost (books stale until a new session).
  std::string retransmit_endpoint;
  int max_datagrams_per_poll = 64;  // Per Poll() call, over all sockets.
  FeedProcessorOptions processor;   // Includes GapRecoveryOptions (window, timeouts).
  // Set: read this capture instead of the lines (feed.source: pcap | itch); the lines and
  // retransmit_endpoint are ignored and Poll() returns -1 once it is exhausted.
  std::optional<ReplayOptions> replay = {};
};

// Per-line counters, one writer (the feed thread), relaxed atomics readable from any thread.
struct FeedHandlerStats {
  std::atomic<uint64_t> packets_a{0};
  std::atomic<uint64_t> packets_b{0};
  std::atomic<uint64_t> packets_retransmit{0};  // Answers from the retransmission server.
  std::atomic<uint64_t> wins_a{0};  // Datagrams that delivered at least one new message.
  std::atomic<uint64_t> wins_b{0};
  std::atomic<uint64_t> wins_retransmit{0};
  std::atomic<uint64_t> rerequests_sent{0};
  std::atomic<uint64_t> rerequested_messages{0};
  std::atomic<uint64_t> rerequest_errors{0};  // send() to the retransmission server failed.
  std::atomic<uint64_t> receive_errors{0};
  // Datagrams stamped by the kernel on arrival, and datagrams stamped in user space after the
  // read (no kernel stamp: the socket option failed, a retransmission socket, or a replay).
  std::atomic<uint64_t> kernel_timestamps{0};
  std::atomic<uint64_t> user_timestamps{0};
};

class FeedHandler {
 public:
  static absl::StatusOr<std::unique_ptr<FeedHandler>> Open(const FeedHandlerOptions& options);
  ~FeedHandler();
  // Waits up to timeout_ms (0 = just look, < 0 = forever) for datagrams on any line, processes
  // what is queued (at most max_datagrams_per_poll), sends due re-requests and gives up
  // expired gaps. Returns datagrams processed, or -1 on a socket error. Feed thread only;
  // noexcept, allocates nothing.
  int Poll(int timeout_ms, FeatureSink& sink) noexcept;
  const FeedProcessor& processor() const noexcept;
  FeedProcessor& processor() noexcept;
  const FeedHandlerStats& stats() const noexcept;
  uint16_t port_a() const noexcept;
  uint16_t port_b() const noexcept;             // 0 without a B line.
  const ReplaySource* replay() const noexcept;  // nullptr unless replaying.
  // True if every line socket has kernel receive timestamps (false for a replay).
  bool kernel_timestamps() const noexcept;

 private:
  struct Impl;
  explicit FeedHandler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Exchange simulator: order flow for several instruments as ITCH 5.0 in MoldUDP64 packets.
struct SimulatorOptions {
  std::vector<std::string> instruments = {"AAPL", "MSFT", "NVDA", "AMZN"};
  uint64_t seed = 42;
  std::string session = "QSIGSIM001";  // 10-byte MoldUDP64 session, space-padded.
  int max_messages_per_packet = 8;
};

class Simulator {
 public:
  explicit Simulator(const SimulatorOptions& options);
  ~Simulator();
  // Writes the next MoldUDP64 packet (header + messages) into `buffer` and returns its size.
  // The first packets carry Stock Directory messages; directory messages repeat every
  // 10'000 messages so a late-joining receiver learns the symbols.
  size_t NextPacket(std::span<uint8_t> buffer);
  uint64_t next_sequence() const noexcept;
  // Ends the current session and starts the next one (name with its last digits incremented,
  // sequence 1, empty books): the next packet is an End of Session, then the new session's
  // system event, directory and fresh orders follow.
  void RestartSession();
  std::string_view session() const noexcept;  // Current 10-byte session name.

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Faults injected on one line, each a probability per packet, drawn from a generator seeded
// by the simulator seed and the line, so a run is reproducible.
struct LineFaults {
  double drop = 0.0;       // The packet is not sent on this line.
  double reorder = 0.0;    // The packet is held back and sent after the next one.
  double duplicate = 0.0;  // The packet is sent twice.
  double malformed = 0.0;  // A broken datagram is sent before it (short header, truncated copy,
                           // or a foreign session): the receiver must count and skip it.
};

struct SimPublisherOptions {
  SimulatorOptions sim;
  std::string destination = "127.0.0.1:31000";  // host:port; a multicast address works too.
  std::string interface_address;                // Outgoing interface for multicast.
  int multicast_ttl = 1;
  double messages_per_second = 20000;  // Target rate (messages, not packets).
  uint64_t max_messages = 0;           // Stop after this many (0 = run until Stop()).
  std::string destination_b = {};      // B line ("" = A only): the same packets, its own faults.
  // Copies of line A (and of line B) to more receivers, the same bytes at the same moment (a
  // run-to-completion server's shards on unicast: each shard has a socket of its own).
  std::vector<std::string> destination_copies = {};
  std::vector<std::string> destination_b_copies = {};
  LineFaults faults_a = {};
  LineFaults faults_b = {};
  double session_restart_rate = 0.0;  // Per packet: Simulator::RestartSession() (both lines).
  // MoldUDP64 retransmission server: "host:port" to bind ("" = none; port 0 picks one, see
  // retransmit_port()). Answers re-requests from the last `retransmit_history` messages of the
  // current session, from the publisher thread.
  std::string retransmit_listen = {};
  int retransmit_history = 1 << 18;
  // Also write what is sent: every datagram (both lines and retransmissions) to a pcap file
  // (Ethernet/IPv4/UDP, wall-clock stamps), and/or the message stream once, in order, as a
  // length-prefixed ITCH file. "" = off.
  std::string pcap_path = {};
  std::string itch_path = {};
};

// Sends Simulator packets over UDP at a steady rate from its own thread.
class SimPublisher {
 public:
  static absl::StatusOr<std::unique_ptr<SimPublisher>> Start(const SimPublisherOptions& options);
  ~SimPublisher();  // Stops and joins.
  void Stop();
  uint64_t messages_sent() const noexcept;
  uint64_t packets_sent() const noexcept;
  bool finished() const noexcept;                 // max_messages reached.
  uint16_t retransmit_port() const noexcept;      // 0 without a retransmission server.
  uint64_t retransmit_requests() const noexcept;  // Re-requests answered.
  uint64_t retransmitted_messages() const noexcept;
  uint64_t faults_injected() const noexcept;  // Drops + reorders + duplicates + malformed.

 private:
  struct Impl;
  explicit SimPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs a source into a FeedProcessor in-process (no sockets: the exact bytes and the exact code
// path the server uses) and writes every feature vector with a forward-return label, where
// label = 1e4 * (mid after `horizon` more updates of the same instrument / mid - 1), in basis
// points. Rows whose horizon runs past the end are dropped. The source is the simulator, or a
// pcap / ITCH capture when `replay` is set; the feature set is feed.features.
//
// CSV: header `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names...>,label`.
// Binary (little-endian, fixed-size records; see feeds/README.md "Binary feature file"):
//   "QSIGFEAT" u32 version=1 u32 n_features u32 horizon u32 record_size u64 record_count
//   n_features x (u16 length, name bytes)
//   record_count x {u64 msg_seq, i64 exchange_ts_ns, f64 mid, u16 locate, u16 n_features,
//                   u32 flags, f32 values[n_features], f32 label}
//   "SYMS" u32 count, count x (u16 locate, 8 bytes symbol, space-padded)
struct FeatureFileOptions {
  SimulatorOptions sim;
  FeedProcessorOptions feed;
  uint64_t messages = 1'000'000;  // Simulator messages (ignored for a replay).
  int horizon = 20;
  std::string output_csv;          // "" = no CSV.
  std::string output_binary = {};  // "" = no binary file. At least one output is required.
  std::optional<ReplayOptions> replay = {};  // Set: read this capture instead of simulating.
};
absl::Status WriteFeatureFile(const FeatureFileOptions& options);

// A binary feature file read back (tests, tools; Python reads the same layout with numpy).
struct FeatureFileRow {
  FeatureVector fv;  // Stage timestamps are not stored (0).
  float label = 0.0f;
};
struct FeatureFileContents {
  std::vector<std::string> names;
  int horizon = 0;
  std::vector<FeatureFileRow> rows;
  std::vector<std::pair<uint16_t, std::string>> symbols;
};
absl::StatusOr<FeatureFileContents> ReadFeatureFile(const std::string& path);

}  // namespace qsig::feeds
