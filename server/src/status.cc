// Server::Status: the console's periodic snapshot (rates, latency quantiles, shadow divergence,
// bad input, drops, subscribers, installed models), as deltas since the previous call.
#include <chrono>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/server/server.h"
#include "server_impl.h"
#include "server_state.h"

namespace qsig::server {

StatusSnapshot Server::Status() {
  Impl& s = *impl_;
  ServerState& c = s.state;
  StatusSnapshot st;
  const auto now = std::chrono::steady_clock::now();
  st.seconds = std::chrono::duration<double>(now - s.last_status).count();
  s.last_status = now;
  LatencyHistogram::Snapshot tick;
  double sq_err = 0, sq_ref = 0;
  for (const auto& w : c.workers) {
    tick.Add(w->histograms().tick_to_signal.Take());
    st.drops += w->output_drops();
    for (size_t m = 0; m < c.slots.size(); ++m) {
      sq_err += w->shadow(m).squared_error_sum.Get();
      sq_ref += w->shadow(m).fp32_squared_sum.Get();
    }
  }
  const uint64_t messages = c.StreamMax(&feeds::FeedStats::messages);
  const LatencyHistogram::Snapshot d = tick.Minus(s.last_tick);
  if (st.seconds > 0) {
    st.messages_per_s = static_cast<double>(messages - s.last_messages) / st.seconds;
    st.signals_per_s = static_cast<double>(d.count) / st.seconds;
  }
  st.p50_us = d.QuantileUs(0.5);
  st.p99_us = d.QuantileUs(0.99);
  st.p999_us = d.QuantileUs(0.999);
  LatencyHistogram::Snapshot feed;
  for (const auto& f : c.feeds) feed.Add(f->histograms().receive_to_enqueue.Take());
  const LatencyHistogram::Snapshot fd = feed.Minus(s.last_feed);
  s.last_feed = feed;
  st.feed_p50_us = fd.QuantileUs(0.5);
  st.feed_p99_us = fd.QuantileUs(0.99);
  st.feed_p999_us = fd.QuantileUs(0.999);
  const double de = sq_err - s.last_sq_err, dr = sq_ref - s.last_sq_ref;
  st.shadow_relative_rmse = dr > 0 ? std::sqrt(de / dr) : 0;
  s.last_tick = tick;
  s.last_messages = messages;
  s.last_sq_err = sq_err;
  s.last_sq_ref = sq_ref;
  st.malformed = c.StreamMax(&feeds::FeedStats::malformed_packets) +
                 c.StreamMax(&feeds::FeedStats::malformed_messages);
  st.gaps = c.StreamMax(&feeds::FeedStats::gaps);
  if (!c.run_to_completion()) {
    for (size_t i = 0; i < c.workers.size(); ++i) st.drops += c.feeds[0]->queue_drops(i);
  }
  st.subscribers = c.bus->subscribers();
  for (const auto& slot : c.slots) {
    const auto cur = slot->Acquire();
    absl::StrAppend(&st.models, st.models.empty() ? "" : ", ", slot->name(), " v", cur->version,
                    " ", cur->int8 ? cur->int8->precision() : "fp32 (warm-up)");
  }
  return st;
}

}  // namespace qsig::server
