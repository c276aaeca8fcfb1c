// Precomputed sliding windows (Model::PrecomputeWindow): after a tick, the next window's first
// window() - 1 steps are run ahead of time; the next PushTick then runs one step per layer and
// the head. Its output must equal the full window bit for bit (INT8 and FP32: the prefix runs
// the same schedule as the full window, stopped one step early), for LSTM and GRU with 1-3
// layers; a missing prefix (a burst) falls back to the full window; a reset (what the server
// does on a model swap) invalidates the prefix. One exception: the last step of a stacked FP32
// window projects layer l > 0's input as one vector of a time-block GEMM, the precomputed path
// as a single vector; the ref and 256-bit kernels sum each vector alike for any batch, the
// AVX-512 FP32 kernel does not (n = 1 has its own kernel), so there FP32 with >= 2 layers is
// compared within float rounding (the server's FP32 shadow runs the stateless Run() anyway).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "qsig/models/model.h"
#include "random_models.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

constexpr int kIn = 10, kHidden = 20;

ModelSpec RandomRnnSpec(Arch arch, int layers, int window, uint64_t seed) {
  testing::Rng rng(seed * 1000 + static_cast<uint64_t>(layers * 100 + window), 3);
  ModelSpec s;
  s.name = "precompute";
  s.arch = arch;
  s.input_size = kIn;
  s.window = window;
  const int g = arch == Arch::kLstm ? 4 : 3;
  const double bound = 1.0 / std::sqrt(static_cast<double>(kHidden));
  for (int l = 0; l < layers; ++l) {
    const int in = l == 0 ? kIn : kHidden;
    const size_t rows = static_cast<size_t>(g) * kHidden;
    auto w_ih = testing::UniformVec(rng, rows * in, bound);
    auto w_hh = testing::UniformVec(rng, rows * kHidden, bound);
    auto b_ih = testing::UniformVec(rng, rows, bound);
    auto b_hh = testing::UniformVec(rng, rows, bound);
    if (arch == Arch::kLstm) {
      s.lstm.push_back({in, kHidden, w_ih, w_hh, b_ih, b_hh});
    } else {
      s.gru.push_back({in, kHidden, w_ih, w_hh, b_ih, b_hh});
    }
  }
  s.layers.push_back(testing::RandomLinear(rng, kHidden, 8, Activation::kRelu));
  s.layers.push_back(testing::RandomLinear(rng, 8, 1, Activation::kNone));
  testing::SetNormalization(s, reference::Features(5, 400, kIn));
  return s;
}

std::shared_ptr<const Model> MakeModel(Arch arch, int layers, int window, bool int8,
                                       uint64_t seed) {
  auto spec = std::make_shared<const ModelSpec>(RandomRnnSpec(arch, layers, window, seed));
  EXPECT_TRUE(ValidateSpec(*spec).ok());
  if (!int8) return MakeFp32Model(spec);
  const std::vector<float> calib =
      reference::Windows(reference::Features(3, 300, kIn), window, kIn, 3);
  Int8Options o;
  o.max_rmse = 0;  // all-INT8
  auto q = CalibrateInt8Model(spec, calib, o);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? std::shared_ptr<const Model>(std::move(*q)) : nullptr;
}

// (arch, layers, window, int8)
class Precompute : public ::testing::TestWithParam<std::tuple<Arch, int, int, bool>> {};

// Every tick pushed into two states: `plain` never precomputes (the full window each tick),
// `pre` precomputes after most ticks (bursts: every third tick finds no prefix). Both must give
// the same output bit for bit, and both equal Run() on the window.
TEST_P(Precompute, OneStepFromThePrefixEqualsTheFullWindowBitForBit) {
  const auto [arch, layers, window, int8] = GetParam();
  auto m = MakeModel(arch, layers, window, int8, 1);
  ASSERT_NE(m, nullptr);
  const int n = 3 * window + 25;
  const std::vector<float> ticks = reference::Features(9, n, kIn);
  Session plain(m, Mode::kWindow), pre(m, Mode::kWindow);
  std::vector<float> ws(m->workspace_floats());
  int hits = 0, misses = 0;
  const bool exact = int8 || layers == 1 || std::string(KernelIsa()) != "avx512vnni";
  for (int t = 0; t < n; ++t) {
    SCOPED_TRACE(t);
    const std::span<const float> tick(ticks.data() + static_cast<size_t>(t) * kIn, kIn);
    const bool ready = m->WindowPrecomputed(pre.state());
    const float y_pre = pre.Push(tick);
    const float y_plain = plain.Push(tick);
    if (t + 1 < window) {
      EXPECT_TRUE(std::isnan(y_pre));
      EXPECT_FALSE(ready);
    } else {
      ASSERT_TRUE(std::isfinite(y_plain));
      if (exact) {
        EXPECT_EQ(y_pre, y_plain) << (ready ? "hit" : "miss");
      } else {
        EXPECT_NEAR(y_pre, y_plain, 1e-5f * (1 + std::fabs(y_plain)));
      }
      const float* w0 = ticks.data() + static_cast<size_t>(t + 1 - window) * kIn;
      EXPECT_EQ(y_plain, m->Run({w0, static_cast<size_t>(window) * kIn}, ws.data()));
      (ready ? hits : misses)++;
    }
    // The pushed tick consumed the prefix.
    EXPECT_FALSE(m->WindowPrecomputed(pre.state()));
    if (t % 7 == 5) {
      // Idle time for one time block only: a long window's prefix stays partial, the next tick
      // misses, and the next prefix starts over.
      EXPECT_EQ(m->PrecomputeWindow(pre.state(), ws.data()), t + 2 >= window);
      EXPECT_EQ(m->WindowPrecomputed(pre.state()), t + 2 >= window && window <= 9);
    } else if (t % 3 != 1) {
      // Idle time: a prefix is computed once the next tick will complete a window, one time
      // block (8 steps) per call.
      int calls = 0;
      while (m->PrecomputeWindow(pre.state(), ws.data())) ++calls;
      EXPECT_EQ(calls, t + 2 >= window ? (window - 1 + 7) / 8 + (window == 1 ? 1 : 0) : 0);
      EXPECT_EQ(m->WindowPrecomputed(pre.state()), calls > 0);
    }
  }
  EXPECT_GT(hits, 0);
  EXPECT_GT(misses, 0);
}

// A model swap: the server resets the state of the new version (ResetState) and rebuilds it
// from the history; a prefix computed by the old model is never used by the new one.
TEST_P(Precompute, ResetForASwapDropsThePrefix) {
  const auto [arch, layers, window, int8] = GetParam();
  auto a = MakeModel(arch, layers, window, int8, 1);
  auto b = MakeModel(arch, layers, window, int8, 2);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->state_floats(Mode::kWindow), b->state_floats(Mode::kWindow));
  const int n = 2 * window + 5;
  const std::vector<float> ticks = reference::Features(11, n, kIn);
  std::vector<float> state(a->state_floats(Mode::kWindow)), ws(a->workspace_floats());
  a->ResetState(Mode::kWindow, state.data());
  for (int t = 0; t < n; ++t) {
    a->PushTick({ticks.data() + static_cast<size_t>(t) * kIn, kIn}, state.data(), ws.data());
  }
  ASSERT_TRUE(a->PrecomputeWindow(state.data(), ws.data()));
  // Swap to b: reset, replay the last window - 1 ticks, precompute, then the next tick.
  b->ResetState(Mode::kWindow, state.data());
  EXPECT_FALSE(b->WindowPrecomputed(state.data()));
  for (int t = n - window + 1; t < n; ++t) {
    b->PushTick({ticks.data() + static_cast<size_t>(t) * kIn, kIn}, state.data(), ws.data());
  }
  const std::vector<float> next = reference::Features(12, 1, kIn);
  std::vector<float> win(ticks.end() - static_cast<std::ptrdiff_t>((window - 1) * kIn),
                         ticks.end());
  win.insert(win.end(), next.begin(), next.end());
  const float want = b->Run(win, ws.data());
  ASSERT_TRUE(std::isfinite(want));
  std::vector<float> copy = state;  // the same state without a prefix: a burst
  while (b->PrecomputeWindow(state.data(), ws.data())) {
  }
  EXPECT_TRUE(b->WindowPrecomputed(state.data()));
  const float got = b->PushTick(next, state.data(), ws.data());
  if (int8 || layers == 1 || std::string(KernelIsa()) != "avx512vnni") {
    EXPECT_EQ(got, want);
  } else {
    EXPECT_NEAR(got, want, 1e-5f * (1 + std::fabs(want)));
  }
  EXPECT_EQ(b->PushTick(next, copy.data(), ws.data()), want);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Precompute,
                         ::testing::Combine(::testing::Values(Arch::kLstm, Arch::kGru),
                                            ::testing::Values(1, 2, 3),
                                            ::testing::Values(1, 8, 9, 20), ::testing::Bool()));

// An MLP has nothing to precompute.
TEST(PrecomputeMlp, NothingToDo) {
  auto spec = std::make_shared<const ModelSpec>(reference::TrainedSpec(reference::Ref::kMlpC));
  auto m = MakeFp32Model(spec);
  Session s(std::shared_ptr<const Model>(std::move(m)), Mode::kWindow);
  const std::vector<float> ticks = reference::Features(4, 3, spec->input_size);
  std::vector<float> ws(s.model().workspace_floats());
  for (int t = 0; t < 3; ++t) {
    s.Push({ticks.data() + static_cast<size_t>(t) * spec->input_size,
            static_cast<size_t>(spec->input_size)});
    EXPECT_FALSE(s.model().PrecomputeWindow(s.state(), ws.data()));
    EXPECT_FALSE(s.model().WindowPrecomputed(s.state()));
  }
}

}  // namespace
}  // namespace qsig::models
