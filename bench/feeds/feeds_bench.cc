// Feed handler throughput and feature latency.
//
// All run over the same pre-generated simulator stream (1M messages, 8 instruments).
// BM_Itch_DecodeAndBook: MoldUDP64 walk + ITCH decode + book update, no features or clocks.
// BM_Feed_OnDatagram: the full FeedProcessor path: decode, book, features, two clock reads per
// vector, a sink that does nothing. BM_Features_Default: the feature computation alone.
#include <benchmark/benchmark.h>

#include <fstream>
#include <string>
#include <vector>

#include "internal/endian.h"
#include "internal/features.h"
#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/order_book.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {
namespace {

class NullSink : public FeatureSink {
 public:
  void OnFeatures(const FeatureVector& fv) noexcept override { benchmark::DoNotOptimize(&fv); }
};

struct Stream {
  std::vector<std::vector<uint8_t>> packets;
  uint64_t messages = 0;
};

// One fixed stream per session so every run measures the same bytes.
const Stream& SimStream() {
  static const Stream s = [] {
    Stream out;
    SimulatorOptions o;
    o.instruments = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META", "GOOG", "AMD"};
    Simulator sim(o);
    std::vector<uint8_t> buf(2048);
    while (sim.next_sequence() <= 1'000'000) {
      const size_t n = sim.NextPacket(buf);
      out.packets.emplace_back(buf.begin(), buf.begin() + static_cast<long>(n));
    }
    out.messages = sim.next_sequence() - 1;
    return out;
  }();
  return s;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// The decode and book half of FeedProcessor::OnDatagram, without sequencing or features.
void DecodeIntoBooks(const std::vector<uint8_t>& p, internal::OrderBooks& books) {
  namespace itch = internal::itch;
  using internal::LoadBe16;
  using internal::LoadBe32;
  using internal::LoadBe64;
  const size_t count = LoadBe16(p.data() + internal::mold::kCountOffset);
  size_t off = internal::mold::kHeaderSize;
  internal::Side side;
  uint32_t price;
  for (size_t i = 0; i < count; ++i) {
    const size_t len = LoadBe16(p.data() + off);
    const uint8_t* m = p.data() + off + 2;
    off += 2 + len;
    if (itch::kMessageLength[m[0]] != len) continue;
    const uint16_t locate = LoadBe16(m + itch::kLocateOffset);
    switch (m[0]) {
      case 'A':
      case 'F':
        (void)books.Add(locate, LoadBe64(m + itch::kAddRef), static_cast<char>(m[itch::kAddSide]),
                        LoadBe32(m + itch::kAddShares), LoadBe32(m + itch::kAddPrice));
        break;
      case 'E':
      case 'C':
        (void)books.Reduce(locate, LoadBe64(m + itch::kExecRef), LoadBe32(m + itch::kExecShares),
                           &side, &price);
        break;
      case 'X':
        (void)books.Reduce(locate, LoadBe64(m + itch::kCancelRef),
                           LoadBe32(m + itch::kCancelShares), &side, &price);
        break;
      case 'D':
        (void)books.Delete(locate, LoadBe64(m + itch::kDeleteRef));
        break;
      case 'U':
        (void)books.Replace(locate, LoadBe64(m + itch::kReplaceOrigRef),
                            LoadBe64(m + itch::kReplaceNewRef), LoadBe32(m + itch::kReplaceShares),
                            LoadBe32(m + itch::kReplacePrice));
        break;
      default:
        break;
    }
  }
}

void BM_Itch_DecodeAndBook(benchmark::State& state) {
  const Stream& s = SimStream();
  for (auto _ : state) {
    state.PauseTiming();
    auto books = std::make_unique<internal::OrderBooks>(16, 1 << 18, 256);
    state.ResumeTiming();
    for (const auto& p : s.packets) DecodeIntoBooks(p, *books);
    benchmark::DoNotOptimize(books->orders().size());
    state.PauseTiming();
    books.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.messages));
}
BENCHMARK(BM_Itch_DecodeAndBook)->Unit(benchmark::kMillisecond);

void BM_Feed_OnDatagram(benchmark::State& state) {
  const Stream& s = SimStream();
  NullSink sink;
  for (auto _ : state) {
    state.PauseTiming();
    // A fresh processor per pass: the stream starts at sequence 1 with empty books.
    auto feed = std::make_unique<FeedProcessor>(FeedProcessorOptions{16, 1 << 18, 256});
    state.ResumeTiming();
    for (const auto& p : s.packets) feed->OnDatagram(p, 0, sink);
    benchmark::DoNotOptimize(feed->stats().feature_vectors.load());
    state.PauseTiming();
    feed.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.messages));
}
BENCHMARK(BM_Feed_OnDatagram)->Unit(benchmark::kMillisecond);

// The default set through the compiled feature library (what FeedProcessor runs).
void BM_Features_Default(benchmark::State& state) {
  internal::OrderBooks books(1, 1024, 256);
  for (uint32_t i = 0; i < 20; ++i) {
    (void)books.Add(1, 1 + i, 'B', 100 * (1 + i % 3), 1'000'000 - 100 * i);
    (void)books.Add(1, 100 + i, 'S', 100 * (1 + i % 4), 1'000'100 + 100 * i);
  }
  internal::FeatureEngine engine({});
  internal::EngineState es;
  engine.Reset(es);
  engine.OnTrade(es, 300, true, 0);
  float out[kMaxFeatures];
  double mid;
  int64_t ts = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(engine.Compute(es, books.bids(1), books.asks(1), ++ts, out, &mid));
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Features_Default);

// The original hand-written default features, for comparison.
void BM_Features_DefaultHandWritten(benchmark::State& state) {
  internal::OrderBooks books(1, 1024, 256);
  for (uint32_t i = 0; i < 20; ++i) {
    (void)books.Add(1, 1 + i, 'B', 100 * (1 + i % 3), 1'000'000 - 100 * i);
    (void)books.Add(1, 100 + i, 'S', 100 * (1 + i % 4), 1'000'100 + 100 * i);
  }
  internal::FeatureState fs;
  fs.OnTrade(300, true);
  float out[kMaxFeatures];
  double mid;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        internal::ComputeFeatures(books.bids(1), books.asks(1), fs, out, &mid));
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Features_DefaultHandWritten);

// Every kind in the library at once (11 features).
void BM_Features_AllKinds(benchmark::State& state) {
  internal::OrderBooks books(1, 1024, 256);
  for (uint32_t i = 0; i < 20; ++i) {
    (void)books.Add(1, 1 + i, 'B', 100 * (1 + i % 3), 1'000'000 - 100 * i);
    (void)books.Add(1, 100 + i, 'S', 100 * (1 + i % 4), 1'000'100 + 100 * i);
  }
  internal::FeatureEngine engine(*ParseFeatureSpecs(
      "ret(horizon=10), micro_ret(horizon=10), spread_bps, imbalance(levels=5), book_pressure,"
      " trade_flow, microprice_dev_bps, realized_vol(horizon=50), time_since_trade_ms,"
      " arrival_rate, log_depth"));
  internal::EngineState es;
  engine.Reset(es);
  engine.OnTrade(es, 300, true, 0);
  engine.OnAdd(es, 0);
  float out[kMaxFeatures];
  double mid;
  int64_t ts = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(engine.Compute(es, books.bids(1), books.asks(1), ++ts, out, &mid));
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Features_AllKinds);

// The full path with gap recovery on: 1% of packets arrive one packet late (reordered), so
// the processor holds, applies optimistically, winds back and replays.
void BM_Feed_OnDatagramReordered(benchmark::State& state) {
  const Stream& s = SimStream();
  std::vector<size_t> order(s.packets.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = 50; i + 1 < order.size(); i += 100) std::swap(order[i], order[i + 1]);
  NullSink sink;
  for (auto _ : state) {
    state.PauseTiming();
    auto feed = std::make_unique<FeedProcessor>(FeedProcessorOptions{16, 1 << 18, 256});
    state.ResumeTiming();
    for (size_t i : order) feed->OnDatagram(s.packets[i], 0, sink);
    benchmark::DoNotOptimize(feed->stats().reconciliations.load());
    state.PauseTiming();
    feed.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.messages));
}
BENCHMARK(BM_Feed_OnDatagramReordered)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace qsig::feeds

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("cpu_model", qsig::feeds::CpuModel());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
