// The fuzz harness driven by a seeded generator (label `slow`; run it in the -DQSIG_SANITIZE=ON
// build for ASan + UBSan): simulator packets cut, spliced, bit-flipped, replayed out of order,
// with ticks and forced gap abandonment in between, and pure noise.
#include <cstdint>
#include <vector>

#include "fuzz_harness.h"
#include "gtest/gtest.h"
#include "internal/rng.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {
namespace {

void Record(std::vector<uint8_t>& in, uint8_t op, const uint8_t* p, size_t n) {
  in.push_back(op);
  in.push_back(static_cast<uint8_t>(n));
  in.push_back(static_cast<uint8_t>(n >> 8));
  in.insert(in.end(), p, p + n);
}

TEST(FeedFuzzTest, MutatedSimulatorStreamsNeverCrashOrBreakBookInvariants) {
  SimulatorOptions so;
  so.instruments = {"AAA", "BBB", "CCC", "DDD", "EEE"};  // One more than the fuzz options hold.
  so.session = "FUZZSESS01";
  so.max_messages_per_packet = 4;
  std::vector<std::vector<uint8_t>> packets;
  {
    Simulator sim(so);
    std::vector<uint8_t> buf(2048);
    for (int i = 0; i < 3000; ++i) {
      const size_t n = sim.NextPacket(buf);
      packets.emplace_back(buf.begin(), buf.begin() + static_cast<long>(n));
    }
  }
  internal::Rng rng(12345);
  const int iterations = 50000;
  for (int it = 0; it < iterations; ++it) {
    std::vector<uint8_t> in;
    size_t base = rng.Below(packets.size() - 200);
    const int ops = 1 + static_cast<int>(rng.Below(200));
    for (int k = 0; k < ops; ++k) {
      const double u = rng.Uniform();
      std::vector<uint8_t> p = packets[std::min(packets.size() - 1, base + rng.Below(8))];
      ++base;
      if (u < 0.55) {
        // Mutate a real packet.
        const int flips = static_cast<int>(rng.Below(4));
        for (int f = 0; f < flips && !p.empty(); ++f) {
          p[rng.Below(p.size())] ^= static_cast<uint8_t>(1u << rng.Below(8));
        }
        if (rng.Bernoulli(0.2)) p.resize(rng.Below(p.size() + 1));
        if (rng.Bernoulli(0.1))
          p.insert(p.end(), p.begin(), p.begin() + static_cast<long>(p.size() / 2));
        Record(in, static_cast<uint8_t>(rng.Below(5)), p.data(), p.size());
      } else if (u < 0.8) {
        // Valid header around (possibly corrupted) blocks, at a random nearby sequence.
        std::vector<uint8_t> body = {static_cast<uint8_t>(rng.Below(64)), 0};
        body.insert(body.end(), p.begin() + std::min<long>(20, static_cast<long>(p.size())),
                    p.end());
        if (!body.empty() && rng.Bernoulli(0.3))
          body[rng.Below(body.size())] = static_cast<uint8_t>(rng.Next());
        Record(in, 5, body.data(), body.size());
      } else if (u < 0.9) {
        std::vector<uint8_t> noise(rng.Below(80));
        for (uint8_t& b : noise) b = static_cast<uint8_t>(rng.Next());
        Record(in, static_cast<uint8_t>(rng.Below(8)), noise.data(), noise.size());
      } else {
        const uint8_t op = rng.Bernoulli(0.5) ? 6 : 7;
        uint8_t b[2] = {static_cast<uint8_t>(rng.Below(10)), 0};
        Record(in, op, b, rng.Below(3));
      }
    }
    testing::RunFeedFuzzInput(in.data(), in.size());
  }
  SUCCEED() << iterations << " inputs";
}

}  // namespace
}  // namespace qsig::feeds
