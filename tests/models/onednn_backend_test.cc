// The per-shape GEMM backend chooser (quant/onednn_gemm.h, Runtime::ChooseBackends): its
// decisions under forced modes, QSIG_ONEDNN's parsing, and that a runtime running some shapes
// on oneDNN gives the own kernels' outputs bit for bit (window mode, PushTick, StepBatch).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "internal/runtime.h"
#include "qsig/models/model.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/onednn_gemm.h"
#include "random_models.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

using quant::OnednnMode;

constexpr int kIn = 12, kHidden = 24, kWindow = 20;  // blocks of 8, 8 and 4 steps

std::shared_ptr<const ModelSpec> TwoLayerLstm() {
  testing::Rng rng(1414, 7);
  ModelSpec s;
  s.name = "onednn";
  s.arch = Arch::kLstm;
  s.input_size = kIn;
  s.window = kWindow;
  const double bound = 1.0 / std::sqrt(static_cast<double>(kHidden));
  for (int l = 0; l < 2; ++l) {
    const int in = l == 0 ? kIn : kHidden;
    const size_t rows = 4u * kHidden;
    s.lstm.push_back({in, kHidden, testing::UniformVec(rng, rows * in, bound),
                      testing::UniformVec(rng, rows * kHidden, bound),
                      testing::UniformVec(rng, rows, bound),
                      testing::UniformVec(rng, rows, bound)});
  }
  s.layers.push_back(testing::RandomLinear(rng, kHidden, 8, Activation::kRelu));
  s.layers.push_back(testing::RandomLinear(rng, 8, 1, Activation::kNone));
  testing::SetNormalization(s, reference::Features(5, 400, kIn));
  return std::make_shared<const ModelSpec>(std::move(s));
}

// All-INT8 with u8 activations everywhere (no s16, no FP32 head), `reduce_range`: 7-bit weights.
std::unique_ptr<Model> Build(OnednnMode mode, bool reduce_range) {
  quant::SetOnednnModeForTesting(mode);
  auto spec = TwoLayerLstm();
  const std::vector<float> calib =
      reference::Windows(reference::Features(3, 300, kIn), kWindow, kIn, 3);
  Int8Options o;
  o.max_rmse = 0;
  o.s16_input = false;
  o.fp32_head = false;
  o.reduce_range = reduce_range;
  auto m = CalibrateInt8Model(spec, calib, o);
  quant::ClearOnednnModeForTesting();
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// The last layer's input stays s16 (a small head): an op oneDNN cannot run, never measured.
bool IsS16(const KernelChoice& c) { return c.reason.rfind("s16 activations", 0) == 0; }

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

uint64_t OnednnRuns(const Model& m) {
  const auto& rt = dynamic_cast<const internal::Runtime&>(m);
  uint64_t n = 0;
  auto add = [&n](const internal::MatmulOp& op) {
    for (const auto& b : op.onednn) n += b->runs();
  };
  for (const auto& r : rt.rnn()) {
    add(r.ih);
    add(r.hh);
  }
  for (const auto& h : rt.head()) add(h.w);
  return n;
}

TEST(OnednnBackend, OffMeasuresNothingAndKeepsTheOwnKernels) {
  auto m = Build(OnednnMode::kOff, true);
  ASSERT_NE(m, nullptr);
  const KernelReport* r = m->kernel_report();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->onednn_mode, "off");
  // Window: lstm[1].w_ih at n = 8 and the last block's n = 4; StepBatch: 2 x 2 + 2 matmuls.
  ASSERT_EQ(r->shapes.size(), 8u);
  EXPECT_EQ(r->shapes[0].op, "lstm[1].w_ih");
  EXPECT_EQ(r->shapes[0].use, "window");
  EXPECT_EQ(r->shapes[0].n, 8);
  EXPECT_EQ(r->shapes[1].n, 4);
  EXPECT_EQ(r->shapes[2].use, "step_batch");
  EXPECT_EQ(r->shapes[2].n, 16);
  EXPECT_TRUE(IsS16(r->shapes.back())) << r->shapes.back().reason;
  for (const KernelChoice& c : r->shapes) {
    EXPECT_EQ(c.backend, "qsig") << c.op;
    EXPECT_LT(c.own_us, 0) << c.op;
    if (!IsS16(c)) {
      EXPECT_EQ(c.reason, "QSIG_ONEDNN=off");
    }
  }
  EXPECT_EQ(OnednnRuns(*m), 0u);
  const std::string text = FormatKernelReport(*r, "");
  EXPECT_NE(text.find("lstm[1].w_ih"), std::string::npos) << text;
  EXPECT_NE(text.find("n=1 GEMVs"), std::string::npos) << text;
}

// 7-bit weights: oneDNN is exact on every x86 CPU (vpmaddubsw cannot saturate), so the test mode
// puts every measured shape on it; the outputs must not change by a bit.
TEST(OnednnBackend, OnednnShapesGiveTheOwnKernelsBits) {
  auto own = Build(OnednnMode::kOff, true);
  auto dnn = Build(OnednnMode::kPreferIfExact, true);
  ASSERT_NE(own, nullptr);
  ASSERT_NE(dnn, nullptr);
  const KernelReport* r = dnn->kernel_report();
  ASSERT_NE(r, nullptr);
  int on = 0, u8 = 0;
  for (const KernelChoice& c : r->shapes) {
    if (IsS16(c)) continue;
    ++u8;
    EXPECT_TRUE(c.exact) << c.op << " n=" << c.n << ": " << c.reason;
    EXPECT_GE(c.own_us, 0) << c.op;
    EXPECT_GE(c.onednn_us, 0) << c.op;
    on += c.backend == "onednn";
  }
  EXPECT_EQ(on, u8);
  EXPECT_EQ(u8, 7);

  const std::vector<float> ticks = reference::Features(9, 3 * kWindow, kIn);
  std::vector<float> ws_a(own->workspace_floats()), ws_b(dnn->workspace_floats());
  for (int t0 = 0; t0 + kWindow <= 3 * kWindow; t0 += 7) {
    std::span<const float> w(ticks.data() + static_cast<size_t>(t0) * kIn,
                             static_cast<size_t>(kWindow) * kIn);
    const float a = own->Run(w, ws_a.data()), b = dnn->Run(w, ws_b.data());
    EXPECT_TRUE(SameBits(a, b)) << t0 << ": " << a << " vs " << b;
  }
  const uint64_t after_run = OnednnRuns(*dnn);
  EXPECT_GT(after_run, 0u);  // the window's n = 8 and n = 4 projections ran on oneDNN

  // Window mode tick by tick.
  Session sa(std::shared_ptr<const Model>(own.get(), [](const Model*) {}), Mode::kWindow);
  Session sb(std::shared_ptr<const Model>(dnn.get(), [](const Model*) {}), Mode::kWindow);
  for (int t = 0; t < 3 * kWindow; ++t) {
    const std::span<const float> tick(ticks.data() + static_cast<size_t>(t) * kIn, kIn);
    const float a = sa.Push(tick), b = sb.Push(tick);
    EXPECT_TRUE(SameBits(a, b) || (std::isnan(a) && std::isnan(b))) << t;
  }

  // StepBatch over 16 instruments (every matmul at n = 16).
  constexpr int kN = 16;
  std::vector<std::vector<float>> st_a(kN), st_b(kN);
  std::vector<float*> pa(kN), pb(kN);
  for (int i = 0; i < kN; ++i) {
    st_a[i].resize(own->state_floats(Mode::kStreaming));
    st_b[i].resize(dnn->state_floats(Mode::kStreaming));
    own->ResetState(Mode::kStreaming, st_a[i].data());
    dnn->ResetState(Mode::kStreaming, st_b[i].data());
    pa[i] = st_a[i].data();
    pb[i] = st_b[i].data();
  }
  std::vector<float> bws_a(own->batch_workspace_floats(kN)), bws_b(dnn->batch_workspace_floats(kN));
  std::vector<float> batch(static_cast<size_t>(kN) * kIn), out_a(kN), out_b(kN);
  for (int step = 0; step < 3; ++step) {
    for (int i = 0; i < kN; ++i) {
      std::memcpy(batch.data() + static_cast<size_t>(i) * kIn,
                  ticks.data() + static_cast<size_t>(i + step) * kIn, kIn * sizeof(float));
    }
    own->StepBatch(kN, batch.data(), pa.data(), bws_a.data(), out_a.data());
    dnn->StepBatch(kN, batch.data(), pb.data(), bws_b.data(), out_b.data());
    for (int i = 0; i < kN; ++i) EXPECT_TRUE(SameBits(out_a[i], out_b[i])) << step << "," << i;
  }
  EXPECT_GT(OnednnRuns(*dnn), after_run);  // StepBatch ran on oneDNN too
}

// 8-bit weights: chosen exactly when exact; without VNNI oneDNN's vpmaddubsw saturates on the
// all-255 rows, so it is not exact and never chosen, even in the test mode.
TEST(OnednnBackend, EightBitWeightsAreChosenOnlyWhenExact) {
  auto m = Build(OnednnMode::kPreferIfExact, false);
  ASSERT_NE(m, nullptr);
  const KernelReport* r = m->kernel_report();
  ASSERT_NE(r, nullptr);
  const bool vnni = quant::IsaSupported(quant::Isa::kAvx512Vnni);
  const bool no_vnni = !vnni && !quant::IsaSupported(quant::Isa::kAvxVnni);
  for (const KernelChoice& c : r->shapes) {
    if (IsS16(c)) continue;
    EXPECT_EQ(c.backend == "onednn", c.exact) << c.op << ": " << c.reason;
    if (no_vnni) {
      EXPECT_FALSE(c.exact) << c.op << " n=" << c.n;
      EXPECT_NE(c.reason.find("not bit-exact"), std::string::npos) << c.reason;
    }
  }
  // Auto never picks an inexact shape either.
  auto a = Build(OnednnMode::kAuto, false);
  ASSERT_NE(a, nullptr);
  for (const KernelChoice& c : a->kernel_report()->shapes) {
    if (!c.exact) {
      EXPECT_EQ(c.backend, "qsig") << c.op;
    }
  }
}

// Concurrent callers share a shape's few execution contexts; those that find none free run the
// own kernel. Either way every thread gets the single-threaded answer.
TEST(OnednnBackend, ConcurrentCallersGetTheSameBits) {
  auto dnn = Build(OnednnMode::kPreferIfExact, true);
  ASSERT_NE(dnn, nullptr);
  const std::vector<float> ticks = reference::Features(9, 3 * kWindow, kIn);
  constexpr int kWindows = 20;
  std::vector<float> want(kWindows);
  {
    std::vector<float> ws(dnn->workspace_floats());
    for (int w = 0; w < kWindows; ++w) {
      want[w] = dnn->Run(
          {ticks.data() + static_cast<size_t>(w) * kIn, static_cast<size_t>(kWindow) * kIn},
          ws.data());
    }
  }
  constexpr int kThreads = 6;  // more than the 4 contexts
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> ws(dnn->workspace_floats());
      for (int rep = 0; rep < 50; ++rep) {
        for (int w = 0; w < kWindows; ++w) {
          const float y = dnn->Run(
              {ticks.data() + static_cast<size_t>(w) * kIn, static_cast<size_t>(kWindow) * kIn},
              ws.data());
          mismatches[t] += !SameBits(y, want[w]);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(OnednnBackend, UnknownEnvValueIsAnErrorEverywhere) {
  ASSERT_EQ(setenv("QSIG_ONEDNN", "fastest", 1), 0);
  auto mode = quant::ActiveOnednnMode();
  EXPECT_FALSE(mode.ok());
  EXPECT_NE(std::string(mode.status().message()).find("QSIG_ONEDNN"), std::string::npos);
  EXPECT_EQ(MakeFp32Model(TwoLayerLstm()), nullptr);
  auto spec = TwoLayerLstm();
  const std::vector<float> calib =
      reference::Windows(reference::Features(3, 300, kIn), kWindow, kIn, 3);
  EXPECT_FALSE(CalibrateInt8Model(spec, calib, Int8Options{}).ok());
  ASSERT_EQ(setenv("QSIG_ONEDNN", "OFF", 1), 0);
  mode = quant::ActiveOnednnMode();
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ(*mode, OnednnMode::kOff);
  ASSERT_EQ(setenv("QSIG_ONEDNN", "auto", 1), 0);
  EXPECT_EQ(*quant::ActiveOnednnMode(), OnednnMode::kAuto);
  ASSERT_EQ(unsetenv("QSIG_ONEDNN"), 0);
  EXPECT_EQ(*quant::ActiveOnednnMode(), OnednnMode::kAuto);
}

}  // namespace
}  // namespace qsig::models
