// Test helpers for feeds: message and packet builders, a collecting sink, expected L1 features.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "internal/features.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds::testing {

using Bytes = std::vector<uint8_t>;
using Encoder = internal::itch::Encoder;

// Runs an Encoder call into a buffer and returns exactly the message bytes.
template <typename F>
Bytes Msg(F&& encode) {
  uint8_t buf[internal::itch::kMaxMessageLength + 8] = {};
  const size_t n = encode(buf);
  return Bytes(buf, buf + n);
}

// A MoldUDP64 packet; `count` defaults to msgs.size().
inline Bytes Packet(std::string_view session, uint64_t seq, const std::vector<Bytes>& msgs,
                    int count = -1) {
  size_t total = internal::mold::kHeaderSize;
  for (const Bytes& m : msgs) total += internal::mold::kBlockLengthSize + m.size();
  Bytes p(total);
  internal::mold::WriteHeader(p.data(), session, seq,
                              static_cast<uint16_t>(count < 0 ? msgs.size() : count));
  size_t off = internal::mold::kHeaderSize;
  for (const Bytes& m : msgs) off += internal::mold::WriteBlock(p.data() + off, m.data(), m.size());
  return p;
}

class CollectingSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector& fv) noexcept override { vectors.push_back(fv); }
  std::vector<FeatureVector> vectors;
};

inline constexpr std::string_view kSession = "TESTSESS01";

// Feeds packets one by one with consecutive sequence numbers starting at 1.
class Feeder {
 public:
  explicit Feeder(FeedProcessor& feed, std::string_view session = kSession)
      : feed_(feed), session_(session) {}
  void Send(const std::vector<Bytes>& msgs) {
    const Bytes p = Packet(session_, seq_, msgs);
    seq_ += msgs.size();
    feed_.OnDatagram(p, 1234, sink);
  }
  void Send(const Bytes& msg) { Send(std::vector<Bytes>{msg}); }
  CollectingSink sink;

 private:
  FeedProcessor& feed_;
  std::string_view session_;
  uint64_t seq_ = 1;
};

// Price(4) from dollars.
inline uint32_t Px(double dollars) { return static_cast<uint32_t>(dollars * 1e4 + 0.5); }

}  // namespace qsig::feeds::testing
