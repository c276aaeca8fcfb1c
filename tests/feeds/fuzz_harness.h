// One fuzz input -> a FeedProcessor (session layer, gap recovery, ITCH decoder, books, feature
// library). Shared by the libFuzzer target (feeds_fuzz, clang) and the randomized `slow` test.
//
// Input: a list of records [op u8][len u16 little-endian][bytes]. op % 8: 0..4 = a datagram as
// is; 5 = a datagram behind a valid session header (seq = 1 + bytes[0..1], so the sequencing
// and recovery paths are reached without guessing the session); 6 = Tick(len * 1 ms);
// 7 = AbandonGaps / a retransmission request round.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds::testing {

class NullSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector& fv) noexcept override {
    sum += fv.values[0] + static_cast<float>(fv.n_features);  // Touch the vector.
  }
  float sum = 0;
};

inline FeedProcessorOptions FuzzOptions() {
  FeedProcessorOptions o;
  o.max_instruments = 4;
  o.max_orders = 64;
  o.max_levels = 8;
  o.recovery.max_held_messages = 32;
  o.recovery.gap_timeout_us = 5'000;
  o.features = *ParseFeatureSpecs(
      "ret(horizon=3), micro_ret(horizon=2), spread_bps, imbalance(levels=3), book_pressure,"
      " trade_flow, microprice_dev_bps, realized_vol(horizon=4), time_since_trade_ms,"
      " arrival_rate, log_depth");
  return o;
}

inline void RunFeedFuzzInput(const uint8_t* data, size_t size) {
  FeedProcessor feed(FuzzOptions());
  NullSink sink;
  std::vector<uint8_t> packet;
  int64_t now = 0;
  size_t off = 0;
  while (size - off >= 3) {
    const uint8_t op = data[off];
    size_t len = data[off + 1] | (size_t{data[off + 2]} << 8);
    off += 3;
    len = len < size - off ? len : size - off;
    const uint8_t* body = data + off;
    off += len;
    switch (op % 8) {
      case 5: {
        packet.assign(20, 0);
        std::memcpy(packet.data(), "FUZZSESS01", 10);
        const uint64_t seq = 1 + (len >= 2 ? (body[0] | (uint64_t{body[1]} << 8)) % 512 : 0);
        for (int i = 0; i < 8; ++i) packet[10 + i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
        const uint8_t* rest = len >= 2 ? body + 2 : body;
        const size_t rest_len = len >= 2 ? len - 2 : 0;
        packet.insert(packet.end(), rest, rest + rest_len);
        // Count = blocks that fit, unless the input says otherwise.
        uint16_t count = 0;
        for (size_t p = 20; p + 2 <= packet.size();) {
          const size_t bl = (size_t{packet[p]} << 8) | packet[p + 1];
          p += 2 + bl;
          ++count;
        }
        packet[18] = static_cast<uint8_t>(count >> 8);
        packet[19] = static_cast<uint8_t>(count);
        now += 100'000;
        feed.OnDatagram(packet, now, sink);
        break;
      }
      case 6:
        now += static_cast<int64_t>(len) * 1'000'000;
        feed.Tick(now, sink);
        break;
      case 7: {
        RetransmitRequest r;
        while (feed.NextRetransmitRequest(now, &r)) {
        }
        if (len % 2 == 0) feed.AbandonGaps(sink);
        break;
      }
      default:
        now += 100'000;
        feed.OnDatagram(std::span<const uint8_t>(body, len), now, sink);
        break;
    }
  }
  // Invariants that must hold whatever came in.
  std::vector<PriceLevel> levels(16);
  for (uint16_t l = 0; l <= 5; ++l) {
    for (bool bid : {true, false}) {
      const int n = feed.BookLevels(l, bid, levels);
      for (int i = 0; i < n; ++i) {
        if (levels[static_cast<size_t>(i)].orders == 0) __builtin_trap();
        if (i > 0 &&
            (bid ? levels[static_cast<size_t>(i)].price >= levels[static_cast<size_t>(i - 1)].price
                 : levels[static_cast<size_t>(i)].price <=
                       levels[static_cast<size_t>(i - 1)].price)) {
          __builtin_trap();
        }
      }
    }
  }
  if (feed.live_orders() > 64) __builtin_trap();
}

}  // namespace qsig::feeds::testing
