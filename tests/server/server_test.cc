// Unit tests of the server's tick-path building blocks: the lock-free latency histogram, the
// seqlock latest slot, the futex doorbell, the signal bus and the drift monitor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "doorbell.h"
#include "drift_monitor.h"
#include "latency_histogram.h"
#include "model_registry.h"
#include "signal_bus.h"
#include "signal_record.h"
#include "symbol_table.h"

namespace qsig::server {
namespace {

TEST(LatencyHistogram, BucketsAndQuantiles) {
  LatencyHistogram h;
  EXPECT_EQ(LatencyHistogram::BucketFor(0), 0);
  EXPECT_EQ(LatencyHistogram::BucketFor(500), 0);  // 0.5 us is the first bound (inclusive).
  EXPECT_EQ(LatencyHistogram::BucketFor(501), 1);
  EXPECT_EQ(LatencyHistogram::BucketFor(1'000'000'000), LatencyHistogram::kBuckets - 1);
  for (int i = 0; i < 100; ++i) h.Record(2'500);  // 2.5 us: bucket (2, 3]
  const auto s = h.Take();
  EXPECT_EQ(s.count, 100u);
  EXPECT_DOUBLE_EQ(s.sum_us, 250.0);
  EXPECT_GT(s.QuantileUs(0.5), 2.0);
  EXPECT_LE(s.QuantileUs(0.99), 3.0);
  LatencyHistogram::Snapshot empty;
  EXPECT_EQ(empty.QuantileUs(0.5), 0.0);
  EXPECT_EQ(s.Minus(s).count, 0u);
}

TEST(LatestSlot, ReadersNeverSeeATornRecord) {
  LatestSlot slot;
  SignalRecord r;
  EXPECT_FALSE(slot.Load(&r));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    SignalRecord w;
    for (uint64_t i = 1; !stop.load(); ++i) {
      w.sequence = i;
      w.feed_sequence = i;
      w.model_version = i;
      w.exchange_ts_ns = static_cast<int64_t>(i);
      w.value = static_cast<double>(i);
      slot.Store(w);
    }
  });
  uint64_t last = 0, torn = 0, loads = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < end) {
    if (!slot.Load(&r)) continue;
    ++loads;
    torn += r.feed_sequence != r.sequence || r.model_version != r.sequence ||
            r.exchange_ts_ns != static_cast<int64_t>(r.sequence) ||
            r.value != static_cast<double>(r.sequence) || r.sequence < last;
    last = r.sequence;
  }
  stop = true;
  writer.join();
  EXPECT_GT(loads, 0u);
  EXPECT_EQ(torn, 0u);
}

TEST(Doorbell, NoWakeupIsLost) {
  boost::lockfree::spsc_queue<int> q(1024);
  Doorbell bell;
  constexpr int kItems = 20000;
  std::atomic<int> long_waits{0};
  std::thread consumer([&] {
    int got = 0, v;
    while (got < kItems) {
      if (q.pop(v)) {
        ++got;
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      bell.Wait([&] { return q.read_available() > 0; }, 3'000'000);
      // A lost wake-up would leave the consumer asleep for the whole 3 s timeout.
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) ++long_waits;
    }
  });
  for (int i = 0; i < kItems; ++i) {
    while (!q.push(i)) std::this_thread::yield();
    bell.Ring();
    if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(10));
  }
  consumer.join();
  EXPECT_EQ(long_waits.load(), 0);
}

// A sink that keeps what it is given. With `hold_first`, its first write stays in flight until
// the test completes it (Subscriber::WriteDone): a subscriber that is not reading.
class KeepingSink : public SubscriberSink {
 public:
  explicit KeepingSink(bool hold_first = false) : hold_(hold_first) {}
  bool StartNextWrite(Subscriber& from) noexcept override {
    std::lock_guard<std::mutex> lock(mu_);
    if (hold_) {
      hold_ = false;
      return true;
    }
    SignalRecord buf[64];
    const size_t n = from.Take(buf, 64);
    for (size_t i = 0; i < n; ++i) got_.push_back(buf[i].sequence);
    return false;  // Delivered synchronously: nothing in flight.
  }
  void EndStream() noexcept override { ended_.store(true); }
  std::vector<uint64_t> got() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }
  bool ended() const { return ended_.load(); }

 private:
  std::mutex mu_;
  bool hold_;
  std::vector<uint64_t> got_;
  std::atomic<bool> ended_{false};
};

TEST(SignalBus, FiltersAndSlowSubscribersLoseOnlyTheirOldest) {
  SymbolTable symbols(8);
  symbols.Set(1, "AAPL");
  symbols.Set(2, "MSFT");
  SignalQueue source(1024);
  SignalBus bus(&symbols, {&source});
  KeepingSink all_sink(/*hold_first=*/true), msft_sink;
  auto all = bus.Subscribe({{}, {}, 2}, 4, &all_sink);  // Tiny queue: will overflow.
  auto msft_m1 = bus.Subscribe({{SymbolTable::Pack("MSFT")}, {1}, 2}, 100, &msft_sink);
  bus.Start();
  for (uint64_t i = 1; i <= 10; ++i) {
    SignalRecord r;
    r.locate = i % 2 ? 1 : 2;
    r.model = static_cast<uint16_t>(i % 3 == 0 ? 1 : 0);
    r.sequence = i;
    ASSERT_TRUE(source.push(r));
    bus.doorbell().Ring();
  }
  // 10 records queued for `all`, 1 for `msft_m1`.
  for (int tries = 0; tries < 500 && bus.delivered() < 11; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(bus.delivered(), 11u);
  // MSFT is locate 2 (even i) and model 1 is i % 3 == 0: only i = 6 matches both.
  EXPECT_EQ(msft_sink.got(), (std::vector<uint64_t>{6}));
  EXPECT_TRUE(all_sink.got().empty());  // Its write is still in flight.
  EXPECT_EQ(all->dropped(), 6u);
  all->WriteDone(true);
  const std::vector<uint64_t> got = all_sink.got();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.front(), 7u);  // 1..6 were dropped, oldest first.
  EXPECT_EQ(got.back(), 10u);
  EXPECT_EQ(all->dropped(), 6u);
  EXPECT_EQ(bus.subscriber_drops(), 6u);
  bus.Unsubscribe(all);
  EXPECT_EQ(bus.subscribers(), 1u);
  EXPECT_EQ(bus.subscriber_drops(), 6u);  // Departed subscribers' drops still count.
  bus.Stop();
  EXPECT_TRUE(msft_sink.ended());  // Stop closes the streams.
}

std::vector<float> Windows(int n, int features, double mean, double stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(static_cast<float>(mean), static_cast<float>(stddev));
  std::vector<float> v(static_cast<size_t>(n) * features);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(DriftMonitor, RaisesAndClearsEachKind) {
  config::DriftConfig cfg;
  cfg.input_z = 1.0;
  cfg.saturation_ratio = 0.05;
  cfg.shadow_relative_rmse = 0.1;
  DriftMonitor d("m", 4, cfg);
  d.Evaluate(Windows(100, 4, 0, 1, 1), 1, -1);  // No baseline yet: nothing happens.
  EXPECT_FALSE(d.alarm(DriftKind::kInputDrift));
  // The INT8 model's input represents [-3.5, 3.5] of every feature.
  const std::vector<float> lo(4, -3.5f), hi(4, 3.5f);
  d.SetBaseline(Windows(5000, 4, 0, 1, 2), 1, 4, lo, hi);
  ASSERT_TRUE(d.has_baseline());

  d.Evaluate(Windows(2000, 4, 0, 1, 3), 1, 0.01);
  EXPECT_FALSE(d.alarm(DriftKind::kInputDrift));
  EXPECT_FALSE(d.alarm(DriftKind::kSaturation));
  EXPECT_FALSE(d.alarm(DriftKind::kShadowDivergence));
  EXPECT_LT(d.score(DriftKind::kInputDrift), 0.2);

  // Mean shifted by 2 std devs and a wider spread: drift and saturation.
  d.Evaluate(Windows(2000, 4, 2, 3, 4), 1, 0.5);
  EXPECT_TRUE(d.alarm(DriftKind::kInputDrift));
  EXPECT_NEAR(d.score(DriftKind::kInputDrift), 2.0, 0.3);
  EXPECT_TRUE(d.alarm(DriftKind::kSaturation));
  EXPECT_TRUE(d.alarm(DriftKind::kShadowDivergence));
  EXPECT_EQ(d.raised(DriftKind::kInputDrift), 1u);

  // Back to normal: all clear; raising again counts again.
  d.Evaluate(Windows(2000, 4, 0, 1, 5), 1, 0.01);
  EXPECT_FALSE(d.alarm(DriftKind::kInputDrift));
  EXPECT_FALSE(d.alarm(DriftKind::kSaturation));
  EXPECT_FALSE(d.alarm(DriftKind::kShadowDivergence));
  d.Evaluate(Windows(2000, 4, -3, 1, 6), 1, 0.01);
  EXPECT_EQ(d.raised(DriftKind::kInputDrift), 2u);
}

TEST(DriftMonitor, NothingSaturatesWhereTheInputIsNotQuantized) {
  config::DriftConfig cfg;
  cfg.saturation_ratio = 0.01;
  DriftMonitor d("m", 4, cfg);
  d.SetBaseline(Windows(5000, 4, 0, 1, 2), 1, 4);  // FP32 input: no clip interval
  d.Evaluate(Windows(2000, 4, 0, 30, 4), 1, -1);
  EXPECT_EQ(d.score(DriftKind::kSaturation), 0.0);
  EXPECT_FALSE(d.alarm(DriftKind::kSaturation));
}

TEST(InputClipRange, S16AndU8InRawFeatureUnits) {
  models::ModelSpec s;
  s.input_size = 2;
  s.feature_mean = {10.0f, 0.0f};
  s.feature_std = {2.0f, 0.0f};  // a zero std divides by 1
  std::vector<float> lo, hi;
  models::QuantizedInput fp32;
  EXPECT_FALSE(InputClipRange(s, fp32, &lo, &hi));
  models::QuantizedInput s16;
  s16.int8 = s16.s16 = true;
  s16.scale = {1e-4f};
  s16.zero_point = {0};
  ASSERT_TRUE(InputClipRange(s, s16, &lo, &hi));
  EXPECT_FLOAT_EQ(hi[0], 32767 * 1e-4f * 2.0f);  // x / std on the s16 grid
  EXPECT_FLOAT_EQ(lo[1], -32767 * 1e-4f);
  models::QuantizedInput u8;
  u8.int8 = true;
  u8.scale = {0.02f};
  u8.zero_point = {128};
  ASSERT_TRUE(InputClipRange(s, u8, &lo, &hi));
  EXPECT_FLOAT_EQ(lo[0], 10.0f + 2.0f * -128 * 0.02f);  // mean + std * (0 - zp) * scale
  EXPECT_FLOAT_EQ(hi[0], 10.0f + 2.0f * 127 * 0.02f);
  EXPECT_FLOAT_EQ(hi[1], 127 * 0.02f);
}

}  // namespace
}  // namespace qsig::server
