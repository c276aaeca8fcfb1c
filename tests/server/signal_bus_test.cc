// Unit tests of signal delivery: the per-subscriber overwrite ring, the writer role of a
// subscriber, filter resolution and fan-out beside subscribers that never read.
#include "signal_bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "signal_record.h"
#include "symbol_table.h"

namespace qsig::server {
namespace {

SignalRecord Record(uint16_t locate, uint16_t model, uint64_t seq) {
  SignalRecord r;
  r.locate = locate;
  r.model = model;
  r.sequence = seq;
  // Redundant fields let a reader detect a torn copy.
  r.value = static_cast<double>(seq) * 3;
  r.feed_sequence = ~seq;
  r.exchange_ts_ns = static_cast<int64_t>(seq) * 7;
  return r;
}

bool Intact(const SignalRecord& r) {
  return r.value == static_cast<double>(r.sequence) * 3 && r.feed_sequence == ~r.sequence &&
         r.exchange_ts_ns == static_cast<int64_t>(r.sequence) * 7;
}

TEST(SignalRing, OverwritesTheOldestAndCountsThem) {
  SignalRing ring(3);  // Rounded up to 4.
  EXPECT_EQ(ring.capacity(), 4u);
  EXPECT_TRUE(ring.Empty());
  for (uint64_t i = 1; i <= 10; ++i) ring.Push(Record(1, 0, i));
  EXPECT_EQ(ring.dropped(), 6u);  // Counted before anyone reads.
  SignalRecord out[8];
  ASSERT_EQ(ring.Pop(out, 8), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i].sequence, 7u + i);
  EXPECT_EQ(ring.dropped(), 6u);
  EXPECT_TRUE(ring.Empty());
  ring.Push(Record(1, 0, 11));
  ASSERT_EQ(ring.Pop(out, 1), 1u);
  EXPECT_EQ(out[0].sequence, 11u);
  EXPECT_EQ(ring.dropped(), 6u);
}

TEST(SignalRing, ConcurrentReaderGetsIntactRecordsInOrderAndEveryLossIsCounted) {
  SignalRing ring(64);  // Small: the producer laps the reader often.
  constexpr uint64_t kN = 400'000;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (uint64_t i = 1; i <= kN; ++i) ring.Push(Record(1, 0, i));
    done.store(true);
  });
  uint64_t received = 0, last = 0, torn = 0, out_of_order = 0;
  SignalRecord buf[16];
  auto drain = [&] {
    const size_t n = ring.Pop(buf, 16);
    for (size_t i = 0; i < n; ++i) {
      torn += !Intact(buf[i]);
      out_of_order += buf[i].sequence <= last;
      last = buf[i].sequence;
    }
    received += n;
    return n;
  };
  while (!done.load()) drain();
  producer.join();
  while (drain() > 0) {
  }
  EXPECT_EQ(torn, 0u);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(last, kN);  // The newest always survives.
  EXPECT_EQ(received + ring.dropped(), kN);
}

// A sink that keeps what it is given; with `hold_first` its first write never completes unless
// the test completes it: a client that does not read.
class Sink : public SubscriberSink {
 public:
  explicit Sink(bool hold_first = false) : hold_(hold_first) {}
  bool StartNextWrite(Subscriber& from) noexcept override {
    std::lock_guard<std::mutex> lock(mu_);
    ++write_calls_;
    if (hold_) {
      hold_ = false;
      return true;
    }
    SignalRecord buf[256];
    const size_t n = from.Take(buf, 256);
    got_.insert(got_.end(), buf, buf + n);
    return false;
  }
  void EndStream() noexcept override { ended_.fetch_add(1); }
  std::vector<SignalRecord> got() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }
  int write_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return write_calls_;
  }
  int ended() const { return ended_.load(); }

 private:
  std::mutex mu_;
  bool hold_;
  int write_calls_ = 0;
  std::vector<SignalRecord> got_;
  std::atomic<int> ended_{0};
};

void WaitDelivered(const SignalBus& bus, uint64_t n) {
  for (int i = 0; i < 5000 && bus.delivered() < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(Subscriber, CloseWaitsForTheWriteInFlightThenEndsOnce) {
  SymbolTable symbols(4);
  SignalQueue source(64);
  SignalBus bus(&symbols, {&source});
  Sink held(/*hold_first=*/true), idle;
  auto a = bus.Subscribe({{}, {}, 1}, 16, &held);
  auto b = bus.Subscribe({{}, {}, 1}, 16, &idle);
  bus.Start();
  ASSERT_TRUE(source.push(Record(1, 0, 1)));
  bus.doorbell().Ring();
  WaitDelivered(bus, 2);
  ASSERT_EQ(bus.delivered(), 2u);
  ASSERT_EQ(idle.got().size(), 1u);
  b->Close();
  EXPECT_EQ(idle.ended(), 1);  // Nothing in flight: ends at once.
  a->Close();
  EXPECT_EQ(held.ended(), 0);  // Its write is in flight.
  a->WriteDone(true);
  EXPECT_EQ(held.ended(), 1);
  a->Close();
  b->Close();
  // Closed subscribers get nothing more and start no writes.
  ASSERT_TRUE(source.push(Record(1, 0, 2)));
  bus.doorbell().Ring();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(idle.got().size(), 1u);
  EXPECT_EQ(held.write_calls(), 1);
  bus.Stop();
  EXPECT_EQ(held.ended(), 1);
  EXPECT_EQ(idle.ended(), 1);
}

TEST(SignalBus, FiltersResolveSymbolsSeenBeforeAndAfterSubscribing) {
  SymbolTable symbols(8);
  symbols.Set(2, "MSFT");
  SignalQueue source(256);
  SignalBus bus(&symbols, {&source});
  Sink probe;  // Everything: tells when the publisher has processed a record.
  auto s0 = bus.Subscribe({{}, {}, 2}, 64, &probe);
  bus.Start();
  ASSERT_TRUE(source.push(Record(2, 0, 1)));  // MSFT seen before the others subscribe.
  bus.doorbell().Ring();
  WaitDelivered(bus, 1);
  ASSERT_EQ(bus.delivered(), 1u);
  Sink msft, nvda, all_m1;
  auto s1 = bus.Subscribe({{SymbolTable::Pack("MSFT")}, {}, 2}, 64, &msft);
  auto s2 = bus.Subscribe({{SymbolTable::Pack("NVDA")}, {}, 2}, 64, &nvda);
  auto s3 = bus.Subscribe({{}, {1}, 2}, 64, &all_m1);
  // NVDA's locate 3 has no symbol yet: nothing but "all instruments" can match it.
  ASSERT_TRUE(source.push(Record(3, 0, 1)));
  ASSERT_TRUE(source.push(Record(2, 1, 2)));
  bus.doorbell().Ring();
  WaitDelivered(bus, 5);  // probe 2, msft 1, all_m1 1.
  ASSERT_EQ(bus.delivered(), 5u);
  symbols.Set(3, "NVDA");
  ASSERT_TRUE(source.push(Record(3, 0, 2)));
  ASSERT_TRUE(source.push(Record(3, 1, 3)));
  ASSERT_TRUE(source.push(Record(5, 1, 1)));  // Locate 5 never got a symbol.
  bus.doorbell().Ring();
  WaitDelivered(bus, 12);  // probe 3, nvda 2, all_m1 2.
  EXPECT_EQ(bus.delivered(), 12u);
  auto seqs = [](const std::vector<SignalRecord>& v) {
    std::vector<std::pair<uint16_t, uint64_t>> out;
    for (const auto& r : v) out.emplace_back(r.locate, r.sequence);
    return out;
  };
  using V = std::vector<std::pair<uint16_t, uint64_t>>;
  EXPECT_EQ(seqs(msft.got()), (V{{2, 2}}));
  EXPECT_EQ(seqs(nvda.got()), (V{{3, 2}, {3, 3}}));
  EXPECT_EQ(seqs(all_m1.got()), (V{{2, 2}, {3, 3}, {5, 1}}));
  bus.Stop();
}

TEST(SignalBus, AReaderBesideSixtyFourNonReadersGetsEverySignal) {
  SymbolTable symbols(8);
  symbols.Set(1, "AAPL");
  symbols.Set(2, "MSFT");
  SignalQueue source(1024);
  SignalBus bus(&symbols, {&source});
  constexpr size_t kRing = 512;
  std::vector<std::unique_ptr<Sink>> stuck_sinks;
  std::vector<std::shared_ptr<Subscriber>> stuck;
  for (int i = 0; i < 64; ++i) {
    stuck_sinks.push_back(std::make_unique<Sink>(/*hold_first=*/true));
    stuck.push_back(bus.Subscribe({{}, {}, 2}, kRing, stuck_sinks.back().get()));
  }
  Sink reader;
  auto r = bus.Subscribe({{SymbolTable::Pack("MSFT")}, {}, 2}, 1 << 20, &reader);
  bus.Start();
  constexpr uint64_t kN = 100'000;
  for (uint64_t i = 1; i <= kN; ++i) {
    const SignalRecord rec = Record(i % 2 ? 1 : 2, static_cast<uint16_t>(i % 4 < 2), i);
    while (!source.push(rec)) std::this_thread::yield();
    bus.doorbell().Ring();
  }
  // Each of the 65 subscribers gets its records queued (the reader: the MSFT half).
  WaitDelivered(bus, 64 * kN + kN / 2);
  ASSERT_EQ(bus.delivered(), 64 * kN + kN / 2);
  const auto got = reader.got();
  ASSERT_EQ(got.size(), kN / 2);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].sequence, 2 * (i + 1)) << i;
    ASSERT_TRUE(Intact(got[i]));
  }
  EXPECT_EQ(r->dropped(), 0u);
  // The non-readers kept their newest kRing and lost exactly the rest.
  for (const auto& s : stuck) EXPECT_EQ(s->dropped(), kN - kRing);
  EXPECT_EQ(bus.subscriber_drops(), 64 * (kN - kRing));
  for (auto& s : stuck) s->WriteDone(false);  // The clients go away.
  bus.Stop();
}

}  // namespace
}  // namespace qsig::server
