// Precomputed sliding windows in the Worker (models[i].precompute): the signal of every tick
// equals the model's Run() on the instrument's last window bit for bit, whether the tick found
// a precomputed prefix (hit), found none (miss: a burst), or came right after a model swap (the
// prefix belongs to the old version and is never used); hits and misses are counted.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "doorbell.h"
#include "model_registry.h"
#include "pipeline.h"
#include "qsig/config/config.h"
#include "qsig/models/model.h"
#include "random_models.h"
#include "server_state.h"
#include "state_store.h"

namespace qsig::server {
namespace {

constexpr int kIn = 6, kHidden = 16, kWindow = 8;

std::shared_ptr<const models::ModelSpec> Spec(models::Arch arch, int layers) {
  models::testing::Rng rng(static_cast<uint64_t>(layers) + (arch == models::Arch::kGru ? 10 : 0));
  auto s = std::make_shared<models::ModelSpec>();
  s->name = "pre";
  s->arch = arch;
  s->input_size = kIn;
  s->window = kWindow;
  const int g = arch == models::Arch::kLstm ? 4 : 3;
  const double bound = 1.0 / std::sqrt(static_cast<double>(kHidden));
  for (int l = 0; l < layers; ++l) {
    const int in = l == 0 ? kIn : kHidden;
    const size_t rows = static_cast<size_t>(g) * kHidden;
    auto w_ih = models::testing::UniformVec(rng, rows * in, bound);
    auto w_hh = models::testing::UniformVec(rng, rows * kHidden, bound);
    auto b_ih = models::testing::UniformVec(rng, rows, bound);
    auto b_hh = models::testing::UniformVec(rng, rows, bound);
    if (arch == models::Arch::kLstm) {
      s->lstm.push_back({in, kHidden, w_ih, w_hh, b_ih, b_hh});
    } else {
      s->gru.push_back({in, kHidden, w_ih, w_hh, b_ih, b_hh});
    }
  }
  s->layers.push_back(models::testing::RandomLinear(rng, kHidden, 1, models::Activation::kNone));
  return s;
}

std::vector<float> Ticks(uint64_t seed, int n) {
  models::testing::Rng rng(seed, 5);
  return models::testing::UniformVec(rng, static_cast<size_t>(n) * kIn, 1.0);
}

// An INT8 model of `spec` calibrated on random windows (`seed` varies the calibration, so two
// seeds give two different versions of the same shape).
std::shared_ptr<const models::Model> Int8(std::shared_ptr<const models::ModelSpec> spec,
                                          uint64_t seed) {
  models::Int8Options o;
  o.max_rmse = 0;
  const std::vector<float> calib = Ticks(seed, 40 * kWindow);
  auto q = models::CalibrateInt8Model(spec, calib, o);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? std::shared_ptr<const models::Model>(std::move(*q)) : nullptr;
}

feeds::FeatureVector Vector(uint16_t locate, const float* values, uint64_t seq) {
  feeds::FeatureVector fv;
  fv.locate = locate;
  fv.n_features = kIn;
  fv.msg_seq = seq;
  for (int k = 0; k < kIn; ++k) fv.values[k] = values[k];
  return fv;
}

// What the model serves for this instrument's last window, from the history the test kept.
float Expected(const models::Model& m, const std::vector<float>& history) {
  std::vector<float> ws(m.workspace_floats());
  return m.Run(
      {history.data() + history.size() - kWindow * kIn, static_cast<size_t>(kWindow) * kIn},
      ws.data());
}

class WorkerPrecompute : public ::testing::TestWithParam<std::tuple<models::Arch, int>> {};

// The shard's (run to completion) view: ticks on the calling thread, idle time when the caller
// says so. Two instruments interleaved; bursts; a swap in the middle.
TEST_P(WorkerPrecompute, HitsMissesAndSwapsAreBitIdenticalToTheFullWindow) {
  const auto [arch, layers] = GetParam();
  auto spec = Spec(arch, layers);
  auto a = Int8(spec, 1), b = Int8(spec, 2);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<std::unique_ptr<ModelSlot>> slots;
  slots.push_back(std::make_unique<ModelSlot>("pre", spec));
  slots[0]->Install(a);
  config::Config config;
  config.shadow.sample_every = 0;
  Worker worker(0, config, &slots, kIn, 8);
  Doorbell bus;
  worker.Attach(&bus, false);

  const int n = 80;
  const std::vector<float> ticks = Ticks(9, 2 * n);
  std::map<int, std::vector<float>> history;
  const models::Model* serving = a.get();
  uint64_t outputs = 0, seq = 0;
  for (int t = 0; t < n; ++t) {
    SCOPED_TRACE(t);
    if (t == 41) {
      // A swap after a precompute of the old version: the next ticks must not use it.
      while (worker.precompute_pending()) worker.PrecomputeNext();
      slots[0]->Install(b);
      serving = b.get();
    }
    for (uint16_t loc : {3, 4}) {
      const float* v = ticks.data() + static_cast<size_t>(2 * t + (loc - 3)) * kIn;
      history[loc].insert(history[loc].end(), v, v + kIn);
      const uint64_t misses = worker.precompute_misses();
      worker.OnTick(Vector(loc, v, ++seq), 0);
      SignalRecord rec;
      if (t + 1 < kWindow) {
        EXPECT_FALSE(worker.output().pop(rec));
        continue;
      }
      ASSERT_TRUE(worker.output().pop(rec));
      ++outputs;
      EXPECT_EQ(rec.locate, loc);
      EXPECT_EQ(rec.value, Expected(*serving, history[loc]));
      if (t == 41) {
        EXPECT_EQ(worker.precompute_misses(), misses + 1) << "swap";
      }
      if (t >= kWindow && t % 5 != 0 && t != 41) {
        EXPECT_EQ(worker.precompute_misses(), misses) << "prefix was ready";
      }
    }
    // Idle time after most ticks; every fifth tick is a burst (the next one finds no prefix).
    if (t % 5 != 4) {
      while (worker.precompute_pending()) worker.PrecomputeNext();
    }
    worker.Quiesce();
  }
  EXPECT_EQ(worker.precompute_hits() + worker.precompute_misses(), outputs);
  EXPECT_GT(worker.precompute_hits(), outputs / 2);
  EXPECT_GT(worker.precompute_misses(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Shapes, WorkerPrecompute,
                         ::testing::Combine(::testing::Values(models::Arch::kLstm,
                                                              models::Arch::kGru),
                                            ::testing::Values(1, 2, 3)));

// models[i].precompute: false: every tick runs the full window and nothing is counted.
TEST(WorkerPrecomputeOff, FullWindowEveryTick) {
  auto spec = Spec(models::Arch::kLstm, 2);
  auto a = Int8(spec, 1);
  ASSERT_NE(a, nullptr);
  std::vector<std::unique_ptr<ModelSlot>> slots;
  slots.push_back(std::make_unique<ModelSlot>("pre", spec));
  slots[0]->Install(a);
  config::Config config;
  config.models.push_back({});
  config.models[0].precompute = false;
  Worker worker(0, config, &slots, kIn, 8);
  Doorbell bus;
  worker.Attach(&bus, false);
  const std::vector<float> ticks = Ticks(9, 30);
  std::vector<float> history;
  for (int t = 0; t < 30; ++t) {
    const float* v = ticks.data() + static_cast<size_t>(t) * kIn;
    history.insert(history.end(), v, v + kIn);
    worker.OnTick(Vector(1, v, static_cast<uint64_t>(t + 1)), 0);
    EXPECT_FALSE(worker.precompute_pending());
    SignalRecord rec;
    if (t + 1 >= kWindow) {
      ASSERT_TRUE(worker.output().pop(rec));
      EXPECT_EQ(rec.value, Expected(*a, history));
    }
  }
  EXPECT_EQ(worker.precompute_hits() + worker.precompute_misses(), 0u);
}

// Worker mode: the worker thread precomputes when its input queue is empty. Ticks one at a
// time with pauses (idle time: hits) and then a burst (misses); every signal is exact.
TEST(WorkerPrecomputeThread, IdleQueueMeansHits) {
  auto spec = Spec(models::Arch::kLstm, 2);
  auto a = Int8(spec, 1);
  ASSERT_NE(a, nullptr);
  std::vector<std::unique_ptr<ModelSlot>> slots;
  slots.push_back(std::make_unique<ModelSlot>("pre", spec));
  slots[0]->Install(a);
  config::Config config;
  config.shadow.sample_every = 0;
  Worker worker(0, config, &slots, kIn, 8);
  Doorbell bus;
  std::atomic<bool> running{true};
  worker.Start(&running, &bus);
  const int n = 60;
  const std::vector<float> ticks = Ticks(13, n);
  std::vector<float> history;
  std::vector<float> expected;
  for (int t = 0; t < n; ++t) {
    const float* v = ticks.data() + static_cast<size_t>(t) * kIn;
    history.insert(history.end(), v, v + kIn);
    if (t + 1 >= kWindow) expected.push_back(Expected(*a, history));
  }
  std::vector<float> got;
  auto drain = [&] {
    SignalRecord rec;
    while (worker.output().pop(rec)) got.push_back(rec.value);
  };
  for (int t = 0; t < n; ++t) {
    const float* v = ticks.data() + static_cast<size_t>(t) * kIn;
    ASSERT_TRUE(worker.input().push(Vector(1, v, static_cast<uint64_t>(t + 1))));
    worker.doorbell().Ring();
    if (t < 30) {  // paced: wait for the signal, then leave the worker some idle time
      const size_t want = t + 1 >= kWindow ? static_cast<size_t>(t + 2 - kWindow) : 0;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (got.size() < want && std::chrono::steady_clock::now() < deadline) drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }  // then a burst: the rest pushed back to back
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.size() < expected.size() && std::chrono::steady_clock::now() < deadline) drain();
  running.store(false);
  worker.doorbell().Ring();
  worker.Join();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected[i]) << i;
  EXPECT_EQ(worker.precompute_hits() + worker.precompute_misses(), expected.size());
  EXPECT_GT(worker.precompute_hits(), 0u);
}

// The calibration store's reservoir: a uniform sample of every window since the last reset
// (the ring keeps only the newest), oldest first; a restored reservoir carries its count on.
TEST(CalibrationStore, ReservoirIsAUniformSampleOfTheSessionAndSurvivesARestore) {
  auto spec = Spec(models::Arch::kLstm, 1);
  std::vector<std::unique_ptr<ModelSlot>> slots;
  slots.push_back(std::make_unique<ModelSlot>("pre", spec));
  constexpr int kTicks = 40000;
  const size_t stride = static_cast<size_t>(kWindow) * kIn;
  CalibrationStore store(slots, 4, kIn, 100);
  float x[kIn] = {};
  for (int i = 0; i < kTicks; ++i) {
    x[0] = static_cast<float>(i);
    feeds::FeatureVector fv = Vector(1, x, static_cast<uint64_t>(i));
    fv.recv_wall_ns = 1'000'000 + i;
    store.Add(fv);
  }
  const uint64_t windows = kTicks - (kWindow - 1);  // The first complete window at tick 7.
  EXPECT_EQ(store.written(0), windows);
  EXPECT_EQ(store.windows(0), 100u);  // The ring: the newest 100.
  const SampleSnapshot r = store.Reservoir(0);
  ASSERT_EQ(r.count(), CalibrationStore::kReservoirWindows);
  EXPECT_EQ(r.seen, windows);
  EXPECT_EQ(r.window, kWindow);
  double mean = 0;
  size_t early = 0;
  for (size_t i = 0; i < r.count(); ++i) {
    const float tick = r.windows[i * stride + stride - kIn];  // The window's newest tick.
    ASSERT_EQ(r.arrival_unix_ns[i], 1'000'000 + static_cast<int64_t>(tick)) << i;
    if (i > 0) {
      ASSERT_LT(r.arrival_unix_ns[i - 1], r.arrival_unix_ns[i]);  // Oldest first.
    }
    mean += tick;
    early += tick < kTicks / 4;
  }
  mean /= static_cast<double>(r.count());
  // Uniform over [7, 40000): mean ~20000 (sd of the mean ~180), a quarter before tick 10000.
  EXPECT_NEAR(mean, kTicks / 2.0, 800);
  EXPECT_NEAR(static_cast<double>(early) / static_cast<double>(r.count()), 0.25, 0.04);

  // Restored into a fresh store: the reservoir as it was, the ring seeded with its newest windows.
  CalibrationStore fresh(slots, 4, kIn, 100);
  EXPECT_EQ(fresh.Import(0, r), CalibrationStore::kReservoirWindows);
  const SampleSnapshot back = fresh.Reservoir(0);
  EXPECT_EQ(back.seen, r.seen);
  EXPECT_EQ(back.windows, r.windows);
  EXPECT_EQ(fresh.written(0), 100u);
  const CalibrationStore::WindowSample recent = fresh.Recent(0, 0);
  const std::vector<float>& ring = recent.windows;
  ASSERT_EQ(ring.size(), 100 * stride);
  EXPECT_TRUE(std::equal(ring.begin(), ring.end(), r.windows.end() - 100 * stride));
  EXPECT_EQ(recent.first_ns, r.arrival_unix_ns[r.count() - 100]);
  EXPECT_EQ(recent.last_ns, r.arrival_unix_ns.back());
  EXPECT_EQ(fresh.Import(0, r), 0u);  // Only into an empty store.
  for (int i = 0; i < 10; ++i) fresh.Add(Vector(2, x, 1));
  EXPECT_EQ(fresh.Reservoir(0).seen, r.seen + 3);  // Three complete windows of locate 2.
  // Another shape is refused.
  CalibrationStore other(slots, 4, kIn, 100);
  SampleSnapshot wrong = r;
  wrong.window = kWindow + 1;
  EXPECT_EQ(other.Import(0, wrong), 0u);
  // A calibration starts the next session.
  store.ResetReservoir(0);
  EXPECT_EQ(store.Reservoir(0).count(), 0u);
  EXPECT_EQ(store.Reservoir(0).seen, 0u);
}

// A scheduled recalibration calibrates on the session (the reservoir since the last calibration),
// the others on the newest windows; an installed calibration starts the next session.
TEST(ScheduledRecalibration, CalibratesOnTheSessionNotOnItsLastWindows) {
  auto spec = Spec(models::Arch::kLstm, 1);
  ServerState c;
  c.config.calibration.min_samples = 100;
  c.config.calibration.cooldown_s = 0;
  for (int f = 0; f < kIn; ++f) c.feature_names.push_back("f" + std::to_string(f));
  c.slots.push_back(std::make_unique<ModelSlot>("pre", spec));
  c.slots[0]->Install(Int8(spec, 1));
  c.store = std::make_unique<CalibrationStore>(c.slots, 4, kIn, 200);  // A ring of 200.
  c.drift.push_back(std::make_unique<DriftMonitor>("pre", kIn, c.config.drift, c.feature_names));
  auto opened = StateStore::Open("", {"pre"}, 5);
  ASSERT_TRUE(opened.ok()) << opened.status();
  c.state_store = std::move(*opened);
  c.fallback_track = std::make_unique<ServerState::FallbackTrack[]>(1);
  const std::vector<float> ticks = Ticks(9, 20000);
  int64_t t = 1'000'000'000;
  const auto feed = [&](int from, int n) {
    for (int i = from; i < from + n; ++i) {
      feeds::FeatureVector fv = Vector(1, ticks.data() + static_cast<size_t>(i % 20000) * kIn, i);
      fv.recv_wall_ns = t++;
      c.store->Add(fv);
    }
  };
  feed(0, 10000);
  const int64_t first_window_ns = 1'000'000'000 + kWindow - 1;
  CalibrationReport r = c.Recalibrate(0, 0, kReasonSchedule);
  ASSERT_TRUE(r.installed) << r.message;
  EXPECT_GE(r.samples, 1000u);  // min(calibration.samples, the reservoir), not the ring's 200.
  EXPECT_LT(r.samples_first_unix_ns, first_window_ns + 1000);  // From the session's start...
  EXPECT_GT(r.samples_last_unix_ns, t - 1000);                 // ... to its end.
  EXPECT_EQ(c.store->session_windows(0), 0u);                  // A new session.
  ModelState st = c.state_store->Get(0);
  ASSERT_FALSE(st.history.empty());
  EXPECT_EQ(st.history.back().reason, kReasonSchedule);
  EXPECT_EQ(st.history.back().samples_first_unix_ns, r.samples_first_unix_ns);

  feed(10000, 5000);
  const int64_t ring_start = t - 200;
  r = c.Recalibrate(0, 0, kReasonAdmin);
  ASSERT_TRUE(r.installed) << r.message;
  EXPECT_EQ(r.samples, 200u);  // The newest windows: the ring.
  EXPECT_GE(r.samples_first_unix_ns, ring_start);
  EXPECT_EQ(c.store->session_windows(0), 0u);
}

}  // namespace
}  // namespace qsig::server
