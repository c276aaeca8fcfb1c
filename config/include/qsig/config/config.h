// The server's configuration: one YAML file, validated at start, overridable key by key.
//
// Every key is known: an unknown key, a value of the wrong type or out of range fails with a
// message that names the key path (e.g. `workers.cores[1]: expected an integer`), and `qsig`
// exits with code 2. Overrides (`--set grpc.listen=127.0.0.1:50051`) are applied to the YAML
// tree before validation, so they are checked exactly like the file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::config {

// One UDP line of a MoldUDP64 feed.
struct LineConfig {
  std::string listen;             // Bind address host:port ("" = line disabled, for line_b).
  std::string group;              // Multicast group ("" = unicast).
  std::string interface_address;  // Interface for the multicast join.
};

struct RecoveryConfig {
  int max_held_messages = 1 << 16;  // Messages held behind an open gap (0 = no recovery).
  int rerequest_delay_us = 200;     // First re-request this long after a gap is seen.
  int rerequest_interval_us = 2000;
  int max_rerequests = 5;
  int gap_timeout_us = 20000;  // Then the gap is lost: its instruments stay stale.
};

// When one datagram may change the session or jump the sequence (see README, configuration).
struct CorroborationConfig {
  int confirm_packets = 3;    // Packets of a new session / jumped stream needed (1 = trust one).
  int window_us = 2'000'000;  // Each within this of the previous; a quiet candidate is dropped.
};

// Sharding the feed's instruments over servers (README, "Sharding"): every server reads the
// whole feed and owns the instruments of its shard.
struct ShardConfig {
  int index = 0;  // This server's shard, 0..count-1.
  int count = 1;  // Shards in all; 1 = this server owns every instrument.
  // This shard's instruments by symbol; empty = by hash (feeds::ShardOfSymbol).
  std::vector<std::string> symbols;
  // Every shard's SignalService address in index order (for GetTopology); empty = unknown.
  std::vector<std::string> addresses;
  // A shard-map YAML file (`shards: [{address: host:port, symbols: [...]}, ...]`) instead of
  // count/addresses/symbols: count = its length; symbols listed for one shard means explicit
  // lists for all. Read at startup.
  std::string map_file;
  // Every shard's explicit symbols (from map_file), index order; empty = hash sharding.
  std::vector<std::vector<std::string>> shard_symbols;
};

struct ReplayConfig {
  std::string path;  // Capture file for feed.source pcap or itch.
  double speed = 0;  // 0 = as fast as possible, 1 = recorded speed, 2 = twice as fast...
};

struct FeedConfig {
  // "sim" (built-in simulator), "udp" (external feed), "pcap" or "itch" (replay a file).
  std::string source = "sim";
  std::string listen = "127.0.0.1:0";  // Bind address; port 0 = ephemeral (sim source only).
  std::string group;                   // Multicast group ("" = unicast).
  std::string interface_address;       // Interface for the multicast join.
  int receive_buffer_bytes = 8 << 20;
  bool busy_poll = false;
  // Kernel receive timestamps (SO_TIMESTAMPNS) on the line sockets; off or unavailable = user
  // time after the read (counted in qsig_feed_timestamps_total{source="user"}).
  bool kernel_timestamps = true;
  int max_instruments = 256;
  int max_orders = 1 << 20;
  int core = -1;  // CPU to pin the feed thread to (-1 = none).
  // Feature set, one spec per entry, e.g. "ret(horizon=10)", "imbalance(levels=5) as imb5"
  // (kinds and parameters: feeds/README.md). Empty = the default 8-feature set.
  std::vector<std::string> features;
  LineConfig line_b;       // Redundant B line (A/B arbitration).
  std::string retransmit;  // MoldUDP64 re-request server host:port ("" = none).
  RecoveryConfig recovery;
  ReplayConfig replay;
  CorroborationConfig corroboration;
  ShardConfig shard;
  uint64_t max_sequence_jump = 65536;  // Larger sequence jumps need corroboration.
  double max_price = 200000;           // Dollars: a resting order above this (or at 0) is suspect.
};

// Faults the simulator injects on one line, each a probability per packet.
struct FaultsConfig {
  double drop = 0, reorder = 0, duplicate = 0, malformed = 0;
};

struct SimConfig {
  std::vector<std::string> instruments = {"AAPL", "MSFT", "NVDA", "AMZN",
                                          "GOOG", "META", "TSLA", "JPM"};
  double rate = 20000;  // Messages per second.
  uint64_t seed = 42;
  int messages_per_packet = 8;
  std::string destination = "127.0.0.1:31000";  // `qsig sim` only; serve sends to its own feed.
  uint64_t max_messages = 0;                    // 0 = unlimited.
  std::string destination_b;                    // `qsig sim`: B line destination ("" = none).
  bool line_b = false;     // `serve`: the embedded simulator also feeds feed.line_b.
  bool retransmit = true;  // Run a MoldUDP64 retransmission server (serve: wired to the feed).
  std::string retransmit_listen = "127.0.0.1:0";  // `qsig sim`: where that server binds.
  FaultsConfig faults_a, faults_b;
  double session_restart_rate = 0;  // Per packet.
  std::string record_pcap;          // Also write what is sent to this pcap file ("" = off).
  std::string record_itch;          // ... and/or the message stream as a length-prefixed ITCH file.
  // Market parameters (factors on the default market, 1 = unchanged) and scheduled regime
  // switches (feeds::SimRegime: at_s on the simulator's message clock, factors on these).
  double volatility = 1;
  double spread = 1;
  double order_size = 1;
  double trade_intensity = 1;
  struct Regime {
    double at_s = 0;
    double volatility = 1, spread = 1, order_size = 1, trade_intensity = 1;
  };
  std::vector<Regime> regimes;
};

struct ModelConfig {
  std::string name;
  std::string path;  // .json, .onnx, .pt/.ts (TorchScript) or .qsig; relative to the config.
  int window = 0;    // Timesteps for an imported recurrent model (ONNX/TorchScript carry none).
  // How a recurrent model runs per instrument: "window" (the output over the last `window`
  // ticks, exactly as trained; cached input projections) or "streaming" (one recurrent step per
  // tick, h and c carried from tick to tick: a stateful model, about 17x cheaper per tick).
  std::string mode = "window";
  // Window mode, recurrent models: after publishing, in idle time, compute the next window's
  // first window - 1 steps so the next tick of the instrument runs one step per layer (plus
  // the head) on its critical path; bit-identical output. false: every tick runs the window.
  bool precompute = true;
};

struct WorkersConfig {
  int count = 2;
  std::vector<int> cores;  // One CPU per worker; empty = no pinning.
  int queue_capacity = 65536;
  int idle_spin_us = 0;  // Busy-wait this long before sleeping on the doorbell (futex).
};

// How the tick path is threaded (README "Pipeline modes").
struct PipelineConfig {
  // "workers": one feed thread decodes and hands feature vectors to workers.count pinned
  // workers over SPSC queues. "run_to_completion": `shards` threads each receive the whole feed
  // on a socket of their own, decode it, and run the models of the instruments they own
  // (locate % shards) on the same thread, with no hand-off before publish.
  std::string mode = "workers";
  int shards = 2;
  std::vector<int> cores;  // One CPU per shard; empty = no pinning.
  bool busy_poll = false;  // Shards spin on their sockets instead of blocking in poll().
  int idle_spin_us = 0;    // Shards spin this long after a datagram before blocking.
};

struct ShadowConfig {
  int sample_every = 1;                // Run the FP32 shadow on every Nth tick (0 = off).
  double divergence_threshold = 0.05;  // |INT8 - FP32| above this flags the instrument.
  // Automatic FP32 fallback: INT8-vs-FP32 relative RMSE above fallback_relative_rmse on every
  // drift evaluation for fallback_after_s switches the model's primary to FP32 until a
  // recalibration passes the gate or an operator clears it (0 = never fall back).
  double fallback_relative_rmse = 0.5;
  double fallback_after_s = 10;
};

struct CalibrationConfig {
  int warmup_samples = 2000;        // Windows needed before the first INT8 calibration.
  int samples = 20000;              // Recent windows kept per model for recalibration.
  double max_relative_rmse = 0.25;  // Validation gate: reject a candidate above this.
  // Activation-range method: minmax|ema|percentile|entropy|mse.
  std::string method = "percentile";
  double percentile = 99.99;  // For method percentile.
  // Accuracy guard: keep the most sensitive layers FP32 until INT8-vs-FP32 RMSE on the
  // calibration windows is within this fraction of the FP32 RMS (0 = always all-INT8).
  double layer_guard_rmse = 0.01;
  // 7-bit weights (models::Int8Options::reduce_range): "auto" = on where the INT8 kernels run
  // without VNNI (AVX2: about 1.7x faster there, twice the weight rounding error), "on", "off".
  std::string reduce_range = "auto";
  // Recalibration schedule (issue 12): "HH:MM" local time, optionally followed by an IANA zone
  // ("17:30 America/New_York"); "" = off. Runs on weekdays that are not listed holidays, never
  // inside `session` (the admin Recalibrate RPC is the forced path).
  std::string schedule;
  std::string schedule_tz;    // IANA zone of schedule and session ("" = the one in schedule, UTC).
  std::string holidays_file;  // One YYYY-MM-DD per line (# comments); relative to the config.
  std::vector<std::string> holidays;  // Filled from holidays_file by the loader (YYYY-MM-DD).
  std::string session;                // Trading session "HH:MM-HH:MM" in the same zone ("" = none).
  // A scheduled run missed while the server was down (last run before the due instant) runs at
  // the next start if that is within this many seconds of the due instant (0 = never).
  double missed_grace_s = 0;
  // Recalibrate (RPC and schedule) abuse limits (issue 11): fewer windows than this are refused;
  // an installed recalibration starts a cool-down during which further ones are refused; a
  // candidate whose validation relative RMSE exceeds the incumbent INT8 model's (on the same
  // windows) by more than this factor is rejected.
  int min_samples = 500;
  double cooldown_s = 5;
  double max_worsening = 2;
  // Below this validation relative RMSE a candidate is never refused for worsening: between two
  // good models a 2x ratio is noise in which windows were held out, not a regression.
  double worsening_floor = 0.05;
};

struct DriftConfig {
  double input_z = 3.0;               // Alarm when a feature mean moves this many std devs.
  double saturation_ratio = 0.01;     // Alarm when this fraction of inputs is out of range.
  double shadow_relative_rmse = 0.1;  // Alarm when INT8-vs-FP32 relative RMSE exceeds this.
  int window = 2000;                  // Recent windows each evaluation looks at.
  double interval_s = 1;              // Evaluation period.
  // Distribution drift (PSI and Wasserstein-1): thresholds are quantiles of each statistic's
  // null distribution, estimated at calibration time by block bootstrap of the reference.
  // psi / wasserstein (features and outputs): drift.window rows sampled evenly over the last span_s
  // seconds (consecutive ticks are strongly autocorrelated: 0.1 s of ticks is the current
  // book, not the regime); the reference is the first span_s seconds after a model is installed.
  double span_s = 120;
  // Raise above this quantile of the null (per evaluation; evaluations come every interval_s
  // for hours, so 0.999 would mean an exceedance every ~17 minutes of independent windows) ...
  double alarm_quantile = 0.9999;
  int consecutive = 3;           // ... for this many evaluations in a row;
  double clear_quantile = 0.99;  // clear below this quantile (hysteresis).
  // Effect floors: an alarm needs the statistic above its calibrated quantile AND above this
  // (significance is not relevance: a long window of a slowly wandering market is significantly
  // different from any 2-minute reference by amounts nobody trades on). 0 = quantile only.
  double psi_floor = 0.1;          // The usual "moderate shift" band of PSI (10 bins).
  double wasserstein_floor = 0.1;  // W1 in reference standard deviations.
};

// TLS for the gRPC ports (SignalService and AdminService). Files are re-read when they change.
struct TlsConfig {
  std::string cert_file;       // PEM certificate chain ("" = plaintext).
  std::string key_file;        // PEM private key of cert_file.
  std::string client_ca_file;  // PEM CA bundle: clients must present a certificate it signed.
};

// What survives a restart (state.*): installed artifacts, the model history, drift baselines and
// fallback state, written crash-safely under `dir` ("" = nothing persists).
struct StateConfig {
  std::string dir;
  int history_per_model = 20;  // Versions kept per model (history entries and their artifacts).
  // The calibration sample store (an evenly spaced sample of at most 4096 of each model's
  // calibration windows) is written this often and at shutdown; 0 = never.
  double samples_interval_s = 60;
};

struct GrpcConfig {
  std::string listen = "127.0.0.1:50051";
  TlsConfig tls;
  std::string client_token_file;     // SignalService requires "authorization: Bearer <token>".
  int max_message_bytes = 4 << 20;   // Largest request or response message.
  int max_concurrent_streams = 256;  // HTTP/2 streams per connection.
  // Signals buffered per subscriber before the oldest drop (rounded up to a power of two).
  int subscriber_queue = 65536;
  int max_streams = 1024;  // Open Subscribe + SubscribeBatch streams; more: RESOURCE_EXHAUSTED.
  int max_instruments_per_subscription = 1024;  // Longer lists: INVALID_ARGUMENT.
  int publisher_spin_us = 0;  // Signal publisher polls this long before sleeping (0 = sleep).
};

struct MetricsConfig {
  std::string listen = "127.0.0.1:9464";
  int threads = 8;                // HTTP worker threads (each serves one connection at a time).
  int request_timeout_ms = 2000;  // A connection that sends no complete request is closed.
};

// AdminService (Recalibrate, ReloadModel): its own listener and its credentials.
struct AdminConfig {
  std::string listen = "127.0.0.1:50052";
  // Callers present "authorization: Bearer <token>" with the token this file holds ...
  std::string token_file;
  // ... or, with grpc.tls.client_ca_file, a client certificate whose identity (subject CN or a
  // SAN) is listed here. With neither, admin.listen must be a loopback address.
  std::vector<std::string> allowed_identities;
  // ReloadModel reads only regular files inside this directory (after resolving symlinks).
  // "" = the directory of the first configured model.
  std::string model_dir;
  uint64_t max_model_bytes = 256ull << 20;
};

struct ConsoleConfig {
  double status_interval_s = 5;  // 0 = no status lines.
};

// What the process asks of the machine for its tick threads (qsig_runtime_capability says what
// it got).
struct RuntimeConfig {
  bool lock_memory = false;   // mlockall(MCL_CURRENT | MCL_FUTURE) at start.
  int realtime_priority = 0;  // > 0: tick threads run SCHED_FIFO at this priority (1..99).
};

struct Config {
  std::string path;  // File it was loaded from.
  FeedConfig feed;
  SimConfig sim;
  std::vector<ModelConfig> models;
  WorkersConfig workers;
  PipelineConfig pipeline;
  ShadowConfig shadow;
  CalibrationConfig calibration;
  DriftConfig drift;
  StateConfig state;
  GrpcConfig grpc;
  MetricsConfig metrics;
  ConsoleConfig console;
  RuntimeConfig runtime;
  AdminConfig admin;
};

// True for 127.0.0.0/8, ::1 and localhost: a host only this machine can reach.
bool IsLoopbackHost(const std::string& host);

// `key.path=value` strings from the command line, applied in order.
using Overrides = std::vector<std::string>;

// Loads and validates. An empty path starts from the built-in defaults (no models).
absl::StatusOr<Config> LoadConfig(const std::string& path, const Overrides& overrides);

// Parses YAML text (for tests and embedded defaults); `origin` names it in messages.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                                   const Overrides& overrides);

// Parses "host:port" (IPv4 literal or name, port 0..65535).
absl::StatusOr<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text);

}  // namespace qsig::config
