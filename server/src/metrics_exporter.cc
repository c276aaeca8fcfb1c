// Prometheus exposition. The tick path only bumps relaxed atomics and lock-free histograms;
// this collector reads them when Prometheus scrapes and builds the metric families then, so no
// prometheus-cpp lock (Family::Add, Histogram::Observe) is ever taken by a worker.
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/feed_handler.h"
#include "qsig/feeds/feed_processor.h"
#include "runtime_capability.h"
#include "server_state.h"

namespace qsig::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void AddValue(MetricFamily* f, std::vector<ClientMetric::Label> labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f->type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  f->metric.push_back(std::move(m));
}

void AddHistogram(MetricFamily* f, std::vector<ClientMetric::Label> labels,
                  const LatencyHistogram::Snapshot& s) {
  ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = s.count;
  m.histogram.sample_sum = s.sum_us * 1e-6;
  uint64_t cumulative = 0;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
    cumulative += s.buckets[i];
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    // Prometheus base unit: seconds; the bounds have microsecond resolution.
    b.upper_bound = i < LatencyHistogram::kBuckets - 1 ? LatencyHistogram::kBoundsUs[i] * 1e-6
                                                       : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  f->metric.push_back(std::move(m));
}

class QsigCollector final : public prometheus::Collectable {
 public:
  explicit QsigCollector(ServerState* state) : state_(state) {}

  std::vector<MetricFamily> Collect() const override {
    const ServerState& c = *state_;
    std::vector<MetricFamily> out;

    // Latency.
    LatencyHistogram::Snapshot tick, queue, inference, publish;
    for (const auto& w : c.workers) {
      tick.Add(w->histograms().tick_to_signal.Take());
      queue.Add(w->histograms().queue.Take());
      inference.Add(w->histograms().inference.Take());
      publish.Add(w->histograms().publish.Take());
    }
    auto t2s = Family("qsig_tick_to_signal_seconds",
                      "Datagram receive (the kernel's stamp where the socket has one, see "
                      "qsig_feed_kernel_timestamps) to signal publish, per signal (microsecond "
                      "buckets).",
                      MetricType::Histogram);
    AddHistogram(&t2s, {}, tick);
    out.push_back(std::move(t2s));
    auto stage = Family("qsig_stage_latency_seconds",
                        "Latency of each tick-path stage (microsecond buckets): decode (receive to "
                        "book updated), features, queue (SPSC handoff; worker mode only), "
                        "inference (INT8 primary), publish (latest table and bus); "
                        "receive_to_enqueue is the feed handler's whole share (datagram received "
                        "to vector enqueued; worker mode only).",
                        MetricType::Histogram);
    LatencyHistogram::Snapshot decode, features, enqueue;
    for (const auto& f : c.feeds) {
      decode.Add(f->histograms().decode.Take());
      features.Add(f->histograms().features.Take());
      enqueue.Add(f->histograms().receive_to_enqueue.Take());
    }
    AddHistogram(&stage, {{"stage", "decode"}}, decode);
    AddHistogram(&stage, {{"stage", "features"}}, features);
    AddHistogram(&stage, {{"stage", "receive_to_enqueue"}}, enqueue);
    AddHistogram(&stage, {{"stage", "queue"}}, queue);
    AddHistogram(&stage, {{"stage", "inference"}}, inference);
    AddHistogram(&stage, {{"stage", "publish"}}, publish);
    out.push_back(std::move(stage));

    // Pipeline.
    auto pipeline = Family("qsig_pipeline_threads",
                           "Tick-path threads that run models, by mode (workers: pinned workers "
                           "behind one feed thread; run_to_completion: feed shards).",
                           MetricType::Gauge);
    AddValue(&pipeline, {{"mode", c.config.pipeline.mode}}, static_cast<double>(c.workers.size()));
    out.push_back(std::move(pipeline));

    // Feed. Stream-level counters: every run-to-completion shard reads the whole stream, so the
    // largest shard's count is reported; per-instrument counters are summed over the shards
    // that own the instruments.
    using FS = feeds::FeedStats;
    using HS = feeds::FeedHandlerStats;
    struct Counter {
      const char* name;
      const char* help;
      uint64_t v;
    };
    const Counter feed_counters[] = {
        {"qsig_feed_packets_total", "MoldUDP64 datagrams received.", c.StreamMax(&FS::packets)},
        {"qsig_feed_malformed_packets_total", "Datagrams with a bad MoldUDP64 header or framing.",
         c.StreamMax(&FS::malformed_packets)},
        {"qsig_feed_malformed_messages_total",
         "ITCH messages skipped: unknown type, wrong length or truncated.",
         c.StreamMax(&FS::malformed_messages)},
        {"qsig_feed_gaps_total", "MoldUDP64 sequence gaps detected.", c.StreamMax(&FS::gaps)},
        {"qsig_feed_gap_messages_total", "Messages missing in sequence gaps.",
         c.StreamMax(&FS::gap_messages)},
        {"qsig_feed_duplicates_total", "Messages skipped as already seen.",
         c.StreamMax(&FS::duplicates)},
        {"qsig_feed_unknown_instrument_total", "Messages for a locate outside the tracked range.",
         c.StreamMax(&FS::unknown_instrument)},
        {"qsig_feed_unknown_order_total", "Executions/cancels for an unknown order reference.",
         c.ShardSum(&FS::unknown_order)},
        {"qsig_feed_book_full_total", "Orders or levels dropped because a book table was full.",
         c.ShardSum(&FS::book_full)},
        {"qsig_feature_vectors_total", "Feature vectors computed.",
         c.ShardSum(&FS::feature_vectors)},
        {"qsig_feed_gaps_recovered_total", "Gaps whose every message arrived later.",
         c.StreamMax(&FS::gaps_recovered)},
        {"qsig_feed_gaps_lost_total", "Gaps given up: their instruments stay stale.",
         c.StreamMax(&FS::gaps_lost)},
        {"qsig_feed_recovered_messages_total", "Messages that filled a gap.",
         c.StreamMax(&FS::recovered_messages)},
        {"qsig_feed_lost_messages_total", "Messages never received.",
         c.StreamMax(&FS::lost_messages)},
        {"qsig_feed_session_resets_total", "New MoldUDP64 sessions (books wiped).",
         c.StreamMax(&FS::session_resets)},
        {"qsig_feed_heartbeats_total", "MoldUDP64 heartbeats.", c.StreamMax(&FS::heartbeats)},
        {"qsig_feed_rerequests_total", "MoldUDP64 re-request packets sent.",
         c.StreamMax(&HS::rerequests_sent)},
        {"qsig_feed_rerequested_messages_total", "Messages asked for in re-requests.",
         c.StreamMax(&HS::rerequested_messages)},
    };
    auto line_packets =
        Family("qsig_feed_line_packets_total", "Datagrams received per line (a, b, retransmit).",
               MetricType::Counter);
    auto line_wins = Family("qsig_feed_line_wins_total",
                            "Datagrams that delivered at least one new message, per line "
                            "(A/B arbitration: first arrival wins).",
                            MetricType::Counter);
    for (auto [line, packets, wins] :
         {std::tuple{"a", &HS::packets_a, &HS::wins_a},
          {"b", &HS::packets_b, &HS::wins_b},
          {"retransmit", &HS::packets_retransmit, &HS::wins_retransmit}}) {
      AddValue(&line_packets, {{"line", line}}, static_cast<double>(c.StreamMax(packets)));
      AddValue(&line_wins, {{"line", line}}, static_cast<double>(c.StreamMax(wins)));
    }
    out.push_back(std::move(line_packets));
    out.push_back(std::move(line_wins));
    auto malformed = Family("qsig_feed_malformed_total", "Bad input by kind (counted, skipped).",
                            MetricType::Counter);
    for (auto [kind, v] : {std::pair{"short_packet", c.StreamMax(&FS::short_packets)},
                           {"truncated_packet", c.StreamMax(&FS::truncated_packets)},
                           {"foreign_session", c.StreamMax(&FS::foreign_session)},
                           {"unknown_message_type", c.StreamMax(&FS::unknown_message_type)},
                           {"bad_message_length", c.StreamMax(&FS::bad_message_length)},
                           {"invalid_order", c.ShardSum(&FS::invalid_order)}}) {
      AddValue(&malformed, {{"kind", kind}}, static_cast<double>(v));
    }
    out.push_back(std::move(malformed));
    auto open_gaps = Family("qsig_feed_open_gaps", "Sequence gaps now open (being recovered).",
                            MetricType::Gauge);
    AddValue(&open_gaps, {}, static_cast<double>(c.StreamMax(&FS::open_gaps)));
    out.push_back(std::move(open_gaps));
    auto held =
        Family("qsig_feed_held_messages",
               "Messages held behind an open gap, to be applied in order.", MetricType::Gauge);
    AddValue(&held, {}, static_cast<double>(c.StreamMax(&FS::held_messages)));
    out.push_back(std::move(held));
    // Clock honesty: which datagrams carry the kernel's receive stamp.
    bool kernel_ts = true;
    for (const auto& f : c.feeds) kernel_ts = kernel_ts && f->handler().kernel_timestamps();
    auto kts = Family("qsig_feed_kernel_timestamps",
                      "1 if every feed socket stamps datagrams with the kernel receive time "
                      "(SO_TIMESTAMPNS), so latency includes socket queueing; 0 = user time after "
                      "the read (option off or refused, or a file replay).",
                      MetricType::Gauge);
    AddValue(&kts, {}, kernel_ts ? 1 : 0);
    out.push_back(std::move(kts));
    auto tss = Family("qsig_feed_timestamps_total",
                      "Datagrams read, by the clock that stamped their receive time: kernel "
                      "(SO_TIMESTAMPNS) or user (fallback after the read: no kernel stamp, "
                      "retransmission socket). Summed over run-to-completion shards' sockets.",
                      MetricType::Counter);
    AddValue(&tss, {{"source", "kernel"}}, static_cast<double>(c.ShardSum(&HS::kernel_timestamps)));
    AddValue(&tss, {{"source", "user"}}, static_cast<double>(c.ShardSum(&HS::user_timestamps)));
    out.push_back(std::move(tss));
    auto uncorroborated = Family("qsig_feed_uncorroborated_total",
                                 "Datagrams dropped with a session change or sequence jump that "
                                 "nothing corroborated (kind = session, sequence_jump).",
                                 MetricType::Counter);
    AddValue(&uncorroborated, {{"kind", "session"}},
             static_cast<double>(c.StreamMax(&FS::uncorroborated_session)));
    AddValue(&uncorroborated, {{"kind", "sequence_jump"}},
             static_cast<double>(c.StreamMax(&FS::uncorroborated_jump)));
    out.push_back(std::move(uncorroborated));
    auto corroborated = Family("qsig_feed_corroborated_total",
                               "Session changes and sequence jumps accepted once corroborated.",
                               MetricType::Counter);
    AddValue(&corroborated, {{"kind", "session"}},
             static_cast<double>(c.StreamMax(&FS::corroborated_sessions)));
    AddValue(&corroborated, {{"kind", "sequence_jump"}},
             static_cast<double>(c.StreamMax(&FS::corroborated_jumps)));
    out.push_back(std::move(corroborated));
    auto pending =
        Family("qsig_feed_corroboration_pending",
               "Session changes or sequence jumps waiting for corroboration.", MetricType::Gauge);
    AddValue(&pending, {}, static_cast<double>(c.StreamMax(&FS::pending_candidates)));
    out.push_back(std::move(pending));
    auto suspect = Family("qsig_feed_book_suspect_total",
                          "Times an instrument's book became suspect (its signals carry "
                          "FLAG_BOOK_SUSPECT), by reason: crossed, bad_price, dropped_order.",
                          MetricType::Counter);
    for (auto [reason, v] : {std::pair{"crossed", &FS::book_crossed},
                             {"bad_price", &FS::book_bad_price},
                             {"dropped_order", &FS::book_dropped_order}}) {
      AddValue(&suspect, {{"reason", reason}}, static_cast<double>(c.ShardSum(v)));
    }
    out.push_back(std::move(suspect));
    auto suspect_books = Family("qsig_feed_suspect_books", "Instruments whose book is now suspect.",
                                MetricType::Gauge);
    AddValue(&suspect_books, {}, static_cast<double>(c.ShardSum(&FS::suspect_books)));
    out.push_back(std::move(suspect_books));
    for (const auto& fc : feed_counters) {
      auto f = Family(fc.name, fc.help, MetricType::Counter);
      AddValue(&f, {}, static_cast<double>(fc.v));
      out.push_back(std::move(f));
    }

    auto msgs = Family("qsig_feed_messages_total", "ITCH messages processed per instrument.",
                       MetricType::Counter);
    auto sigs = Family("qsig_signals_total", "Signals published per instrument and model.",
                       MetricType::Counter);
    for (int loc = 1; loc <= c.max_locate; ++loc) {
      const uint16_t locate = static_cast<uint16_t>(loc);
      const uint64_t n = c.ProcessorFor(locate).instrument_messages(locate);
      if (n == 0 && !c.symbols->Known(locate)) continue;
      const std::string symbol = c.symbols->Get(locate);
      AddValue(&msgs, {{"instrument", symbol}}, static_cast<double>(n));
      for (size_t m = 0; m < c.slots.size(); ++m) {
        AddValue(&sigs, {{"instrument", symbol}, {"model", c.slots[m]->name()}},
                 static_cast<double>(c.WorkerFor(locate).signals(locate, m)));
      }
    }
    out.push_back(std::move(msgs));
    out.push_back(std::move(sigs));

    // Queues.
    auto drops = Family("qsig_queue_drops_total",
                        "Items dropped because a lock-free queue was full: features (feed to "
                        "worker), signals (worker to publisher), samples (worker to calibration).",
                        MetricType::Counter);
    for (size_t i = 0; i < c.workers.size(); ++i) {
      const std::string w = std::to_string(i);
      AddValue(&drops, {{"queue", "features"}, {"worker", w}},
               static_cast<double>(c.run_to_completion() ? 0 : c.feeds[0]->queue_drops(i)));
      AddValue(&drops, {{"queue", "signals"}, {"worker", w}},
               static_cast<double>(c.workers[i]->output_drops()));
      AddValue(&drops, {{"queue", "samples"}, {"worker", w}},
               static_cast<double>(c.workers[i]->sample_drops()));
    }
    out.push_back(std::move(drops));
    auto pinned = Family("qsig_worker_pinned", "1 if the worker thread is pinned to its core.",
                         MetricType::Gauge);
    for (size_t i = 0; i < c.workers.size(); ++i) {
      AddValue(&pinned, {{"worker", std::to_string(i)}}, c.workers[i]->pinned() ? 1 : 0);
    }
    out.push_back(std::move(pinned));
    auto capability =
        Family("qsig_runtime_capability",
               "1 if the deployment grants it to the tick threads: kind = pinning, "
               "mlockall, realtime, isolated_cpus (see the start-up log for why not).",
               MetricType::Gauge);
    for (const RuntimeCapability& cap : RuntimeCapabilities(c.config)) {
      AddValue(&capability, {{"kind", cap.kind}}, cap.in_effect ? 1 : 0);
    }
    out.push_back(std::move(capability));

    // Models and shadow.
    auto version =
        Family("qsig_model_version", "Version of the INT8 model serving (0 = FP32 during warm-up).",
               MetricType::Gauge);
    auto info = Family("qsig_model_info", "Model identity (value 1).", MetricType::Gauge);
    auto bytes = Family("qsig_model_weight_bytes", "Weight bytes per model and precision.",
                        MetricType::Gauge);
    auto abs_err = Family("qsig_shadow_abs_error_total",
                          "Sum of |INT8 - FP32| over shadow comparisons (rate over "
                          "qsig_shadow_comparisons_total = mean absolute error).",
                          MetricType::Counter);
    auto sq_err =
        Family("qsig_shadow_squared_error_total", "Sum of (INT8 - FP32)^2.", MetricType::Counter);
    auto sq_ref =
        Family("qsig_shadow_fp32_squared_total",
               "Sum of FP32^2 over shadow comparisons (for relative RMSE).", MetricType::Counter);
    auto cmp = Family("qsig_shadow_comparisons_total", "FP32 shadow runs compared to INT8.",
                      MetricType::Counter);
    auto div = Family("qsig_shadow_divergences_total",
                      "Shadow comparisons above shadow.divergence_threshold.", MetricType::Counter);
    for (size_t m = 0; m < c.slots.size(); ++m) {
      const ModelSlot& slot = *c.slots[m];
      const std::shared_ptr<const Installed> cur = slot.Acquire();
      const std::vector<ClientMetric::Label> l = {{"model", slot.name()}};
      AddValue(&version, l, static_cast<double>(cur->version));
      AddValue(&info,
               {{"model", slot.name()},
                {"arch", models::ArchName(cur->spec->arch)},
                {"precision", cur->int8 ? cur->int8->precision() : "fp32"},
                {"sha256", cur->spec->sha256}},
               1);
      AddValue(&bytes, {{"model", slot.name()}, {"precision", "fp32"}},
               static_cast<double>(cur->fp32->weight_bytes()));
      if (cur->int8) {
        AddValue(&bytes, {{"model", slot.name()}, {"precision", cur->int8->precision()}},
                 static_cast<double>(cur->int8->weight_bytes()));
      }
      double a = 0, e = 0, r = 0, n = 0, d = 0;
      for (const auto& w : c.workers) {
        const ShadowStats& s = w->shadow(m);
        a += s.abs_error_sum.Get();
        e += s.squared_error_sum.Get();
        r += s.fp32_squared_sum.Get();
        n += static_cast<double>(s.count.load(std::memory_order_relaxed));
        d += static_cast<double>(s.divergences.load(std::memory_order_relaxed));
      }
      AddValue(&abs_err, l, a);
      AddValue(&sq_err, l, e);
      AddValue(&sq_ref, l, r);
      AddValue(&cmp, l, n);
      AddValue(&div, l, d);
    }
    for (auto* f : {&version, &info, &bytes, &abs_err, &sq_err, &sq_ref, &cmp, &div}) {
      out.push_back(std::move(*f));
    }

    auto dscore =
        Family("qsig_drift_score",
               "Drift scores per model: input_drift (largest feature mean shift in "
               "calibration std devs), saturation (fraction of inputs the INT8 model's "
               "input quantization clips), shadow_divergence (INT8-vs-FP32 relative "
               "RMSE), psi / wasserstein (largest feature population stability index / "
               "Wasserstein-1 distance in reference std devs, drift.span_s samples vs the "
               "reference taken after the install), output_psi / output_wasserstein (the "
               "same on the published outputs).",
               MetricType::Gauge);
    auto dthreshold = Family("qsig_drift_threshold",
                             "Threshold each drift score is compared with: configured for "
                             "input_drift, saturation and shadow_divergence; for the distribution "
                             "kinds the drift.alarm_quantile quantile of the block-bootstrap null "
                             "of their reference (0 while the reference is collected).",
                             MetricType::Gauge);
    auto dalarm = Family("qsig_drift_alarm", "1 while a drift alarm is raised.", MetricType::Gauge);
    auto draised = Family("qsig_drift_alarms_total", "Drift alarms raised.", MetricType::Counter);
    for (const auto& d : c.drift) {
      for (int k = 0; k < kDriftKinds; ++k) {
        const DriftKind kind = static_cast<DriftKind>(k);
        const std::vector<ClientMetric::Label> l = {{"model", d->model()},
                                                    {"kind", DriftKindName(kind)}};
        AddValue(&dscore, l, d->score(kind));
        AddValue(&dthreshold, l, d->threshold(kind));
        AddValue(&dalarm, l, d->alarm(kind) ? 1 : 0);
        AddValue(&draised, l, static_cast<double>(d->raised(kind)));
      }
    }
    out.push_back(std::move(dscore));
    out.push_back(std::move(dthreshold));
    out.push_back(std::move(dalarm));
    out.push_back(std::move(draised));

    uint64_t invalid = 0;
    for (const auto& w : c.workers) invalid += w->invalid_outputs();
    auto inv = Family("qsig_invalid_signals_total",
                      "Signals flagged INVALID (non-finite input or output; value sent as 0).",
                      MetricType::Counter);
    AddValue(&inv, {}, static_cast<double>(invalid));
    out.push_back(std::move(inv));
    uint64_t pre_hits = 0, pre_misses = 0;
    for (const auto& w : c.workers) {
      pre_hits += w->precompute_hits();
      pre_misses += w->precompute_misses();
    }
    auto pre = Family("qsig_precompute_total",
                      "Window-mode ticks of recurrent INT8 models (models[i].precompute): hit = "
                      "one step per layer from a prefix precomputed in idle time; miss = the "
                      "full window (a burst left no idle time, a swap, or the first tick).",
                      MetricType::Counter);
    AddValue(&pre, {{"result", "hit"}}, static_cast<double>(pre_hits));
    AddValue(&pre, {{"result", "miss"}}, static_cast<double>(pre_misses));
    out.push_back(std::move(pre));
    auto cal =
        Family("qsig_calibrations_total", "INT8 calibrations by result.", MetricType::Counter);
    AddValue(&cal, {{"result", "installed"}}, static_cast<double>(c.calibrations.load()));
    AddValue(&cal, {{"result", "rejected"}}, static_cast<double>(c.calibration_rejections.load()));
    out.push_back(std::move(cal));
    auto session = Family("qsig_calibration_session_windows",
                          "Windows seen since the model's last calibration, carried over restarts "
                          "with state.dir (a scheduled recalibration calibrates on a uniform "
                          "sample of up to 4096 of them).",
                          MetricType::Gauge);
    for (size_t m = 0; m < c.slots.size(); ++m) {
      AddValue(&session, {{"model", c.slots[m]->name()}},
               static_cast<double>(c.store->session_windows(m)));
    }
    out.push_back(std::move(session));

    // Model history, state directory and FP32 fallback (model_state.cc).
    auto fb = Family("qsig_model_fallback",
                     "1 while the model serves FP32 because INT8 diverged from its shadow "
                     "(shadow.fallback_relative_rmse for shadow.fallback_after_s).",
                     MetricType::Gauge);
    auto fbt =
        Family("qsig_model_fallbacks_total", "Automatic FP32 fallbacks.", MetricType::Counter);
    auto fbr = Family("qsig_model_fallback_relative_rmse",
                      "INT8-vs-FP32 relative RMSE at the last fallback check (-1 = no samples).",
                      MetricType::Gauge);
    for (size_t m = 0; m < c.slots.size(); ++m) {
      const std::vector<ClientMetric::Label> l = {{"model", c.slots[m]->name()}};
      AddValue(&fb, l, c.slots[m]->Acquire()->fallback ? 1 : 0);
      AddValue(&fbt, l, static_cast<double>(c.fallback_track[m].fallbacks.load()));
      AddValue(&fbr, l, c.fallback_track[m].shadow_relative_rmse.load());
    }
    out.push_back(std::move(fb));
    out.push_back(std::move(fbt));
    out.push_back(std::move(fbr));
    auto rb = Family("qsig_model_rollbacks_total", "Rollbacks to an earlier model version.",
                     MetricType::Counter);
    AddValue(&rb, {}, static_cast<double>(c.rollbacks.load()));
    out.push_back(std::move(rb));
    auto sw = Family("qsig_state_writes_total", "Files written to state.dir, by result.",
                     MetricType::Counter);
    AddValue(&sw, {{"result", "ok"}}, static_cast<double>(c.state_store->writes()));
    AddValue(&sw, {{"result", "error"}}, static_cast<double>(c.state_store->write_errors()));
    out.push_back(std::move(sw));

    auto subs = Family("qsig_grpc_subscribers",
                       "Open signal streams (Subscribe and SubscribeBatch).", MetricType::Gauge);
    AddValue(&subs, {}, static_cast<double>(c.bus->subscribers()));
    out.push_back(std::move(subs));
    auto sdrops = Family("qsig_grpc_subscriber_drops_total",
                         "Signals dropped because a subscriber fell behind (its oldest first).",
                         MetricType::Counter);
    AddValue(&sdrops, {}, static_cast<double>(c.bus->subscriber_drops()));
    out.push_back(std::move(sdrops));
    auto delivered = Family("qsig_grpc_signals_queued_total",
                            "Signals queued to signal streams (Subscribe and SubscribeBatch).",
                            MetricType::Counter);
    AddValue(&delivered, {}, static_cast<double>(c.bus->delivered()));
    out.push_back(std::move(delivered));
    const DeliveryCounters& dc = c.bus->counters();
    auto sent = Family("qsig_grpc_signals_sent_total", "Signals written to signal streams, by RPC.",
                       MetricType::Counter);
    auto messages =
        Family("qsig_grpc_messages_sent_total",
               "Stream messages written, by RPC (SubscribeBatch: one per batch of signals).",
               MetricType::Counter);
    for (int rpc = 0; rpc < DeliveryCounters::kRpcs; ++rpc) {
      const std::vector<ClientMetric::Label> l = {
          {"rpc", rpc == DeliveryCounters::kSubscribe ? "Subscribe" : "SubscribeBatch"}};
      AddValue(&sent, l, static_cast<double>(dc.signals[rpc].load(std::memory_order_relaxed)));
      AddValue(&messages, l, static_cast<double>(dc.messages[rpc].load(std::memory_order_relaxed)));
    }
    out.push_back(std::move(sent));
    out.push_back(std::move(messages));
    auto rejected =
        Family("qsig_grpc_streams_rejected_total",
               "Subscribe/SubscribeBatch calls refused, by reason.", MetricType::Counter);
    AddValue(&rejected, {{"reason", "max_streams"}},
             static_cast<double>(dc.rejected_max_streams.load(std::memory_order_relaxed)));
    AddValue(&rejected, {{"reason", "invalid_argument"}},
             static_cast<double>(dc.rejected_invalid_argument.load(std::memory_order_relaxed)));
    AddValue(&rejected, {{"reason", "not_found"}},
             static_cast<double>(dc.rejected_not_found.load(std::memory_order_relaxed)));
    out.push_back(std::move(rejected));

    auto denied = Family("qsig_admin_denied_total",
                         "AdminService calls refused, by reason (no_credentials, bad_token: "
                         "UNAUTHENTICATED; identity: PERMISSION_DENIED).",
                         MetricType::Counter);
    constexpr const char* kReasons[ServerState::kAdminDeniedReasons] = {"no_credentials",
                                                                        "bad_token", "identity"};
    for (int i = 0; i < ServerState::kAdminDeniedReasons; ++i) {
      AddValue(&denied, {{"reason", kReasons[i]}},
               static_cast<double>(c.admin_denied[i].load(std::memory_order_relaxed)));
    }
    out.push_back(std::move(denied));
    auto sdenied = Family("qsig_grpc_unauthenticated_total",
                          "SignalService calls refused for a missing or wrong token "
                          "(grpc.client_token_file).",
                          MetricType::Counter);
    AddValue(&sdenied, {}, static_cast<double>(c.signal_denied.load(std::memory_order_relaxed)));
    out.push_back(std::move(sdenied));
    return out;
  }

 private:
  ServerState* state_;
};

class MetricsExporterImpl final : public MetricsExporter {
 public:
  MetricsExporterImpl(std::unique_ptr<prometheus::Exposer> exposer,
                      std::shared_ptr<QsigCollector> collector, std::string host)
      : exposer_(std::move(exposer)), collector_(std::move(collector)), host_(std::move(host)) {
    exposer_->RegisterCollectable(collector_);
  }
  std::string address() const override {
    const auto ports = exposer_->GetListeningPorts();
    return absl::StrCat(host_, ":", ports.empty() ? 0 : ports.front());
  }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<QsigCollector> collector_;
  std::string host_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsExporter>> StartMetrics(ServerState* state) {
  const config::MetricsConfig& mc = state->config.metrics;
  const std::string& listen = mc.listen;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb: each thread serves one connection at a time and waits at most
    // request_timeout_ms for a request, so a few half-open connections cannot take every
    // thread (the health check and Prometheus still get through); no keep-alive.
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen, "num_threads", std::to_string(mc.threads), "request_timeout_ms",
        std::to_string(mc.request_timeout_ms), "enable_keep_alive", "no"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics.listen: cannot listen on ", listen, ": ", e.what()));
  }
  return std::unique_ptr<MetricsExporter>(
      new MetricsExporterImpl(std::move(exposer), std::make_shared<QsigCollector>(state),
                              listen.substr(0, listen.rfind(':'))));
}

}  // namespace qsig::server
