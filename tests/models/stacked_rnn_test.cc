// Stacked RNNs over a window run layer-major in time blocks (runtime.h, kTimeBlock): the next
// layer's input projections for a block are one GEMM. Checks that this order gives what the
// step-by-step order gives: window mode equals Run bit for bit, and INT8 Run equals streaming
// Step over the first window (time-major) bit for bit; FP32 within rounding of the GEMM's
// summation order. Windows that are not multiples of the time block, 2 and 3 layers, LSTM and GRU.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <tuple>
#include <vector>

#include "qsig/models/model.h"
#include "random_models.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

ModelSpec StackedSpec(Arch arch, int layers, int window, int input, int hidden) {
  testing::Rng rng(static_cast<uint64_t>(layers * 100 + window), 7);
  ModelSpec s;
  s.name = "stacked";
  s.arch = arch;
  s.input_size = input;
  s.window = window;
  const int g = arch == Arch::kLstm ? 4 : 3;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (int l = 0; l < layers; ++l) {
    const int in = l == 0 ? input : hidden;
    const size_t rows = static_cast<size_t>(g) * hidden;
    auto w_ih = testing::UniformVec(rng, rows * in, bound);
    auto w_hh = testing::UniformVec(rng, rows * hidden, bound);
    auto b_ih = testing::UniformVec(rng, rows, bound);
    auto b_hh = testing::UniformVec(rng, rows, bound);
    if (arch == Arch::kLstm) {
      s.lstm.push_back({in, hidden, w_ih, w_hh, b_ih, b_hh});
    } else {
      s.gru.push_back({in, hidden, w_ih, w_hh, b_ih, b_hh});
    }
  }
  s.layers.push_back(testing::RandomLinear(rng, hidden, 1, Activation::kNone));
  testing::SetNormalization(s, reference::Features(5, 400, input));
  return s;
}

class StackedRnn : public ::testing::TestWithParam<std::tuple<Arch, int, int, bool>> {};

TEST_P(StackedRnn, LayerMajorWindowEqualsStepByStep) {
  const auto [arch, layers, window, int8] = GetParam();
  constexpr int kIn = 12, kHidden = 24;
  auto spec = std::make_shared<const ModelSpec>(StackedSpec(arch, layers, window, kIn, kHidden));
  ASSERT_TRUE(ValidateSpec(*spec).ok());
  std::shared_ptr<const Model> m = MakeFp32Model(spec);
  if (int8) {
    const std::vector<float> calib =
        reference::Windows(reference::Features(3, 300, kIn), window, kIn, 3);
    Int8Options o;
    o.max_rmse = 0;  // all-INT8
    auto q = CalibrateInt8Model(spec, calib, o);
    ASSERT_TRUE(q.ok()) << q.status();
    m = std::shared_ptr<const Model>(std::move(*q));
  }
  ASSERT_NE(m, nullptr);
  const std::vector<float> ticks = reference::Features(9, window + 12, kIn);
  std::vector<float> ws(m->workspace_floats());

  // Streaming from a reset state over the first window: the time-major order.
  Session stream(m, Mode::kStreaming);
  float y_stream = 0;
  for (int t = 0; t < window; ++t) {
    y_stream = stream.Push({ticks.data() + static_cast<size_t>(t) * kIn, kIn});
  }
  const float y_run = m->Run({ticks.data(), static_cast<size_t>(window) * kIn}, ws.data());
  ASSERT_TRUE(std::isfinite(y_run));
  if (int8) {
    EXPECT_EQ(y_run, y_stream);
  } else {
    EXPECT_NEAR(y_run, y_stream, 1e-5f * (1 + std::fabs(y_stream)));
  }

  // Window mode (cached projections) equals Run on the same ticks, bit for bit.
  Session win(m, Mode::kWindow);
  for (int t = 0; t < window + 12; ++t) {
    SCOPED_TRACE(t);
    const float y = win.Push({ticks.data() + static_cast<size_t>(t) * kIn, kIn});
    if (t + 1 < window) continue;
    const float* w0 = ticks.data() + static_cast<size_t>(t + 1 - window) * kIn;
    EXPECT_EQ(y, m->Run({w0, static_cast<size_t>(window) * kIn}, ws.data()));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, StackedRnn,
                         ::testing::Combine(::testing::Values(Arch::kLstm, Arch::kGru),
                                            ::testing::Values(2, 3), ::testing::Values(1, 7, 19),
                                            ::testing::Bool()));

}  // namespace
}  // namespace qsig::models
