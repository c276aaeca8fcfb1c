// Window mode (cached projections), streaming and micro-batching, and ISA parity of the kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "qsig/models/model.h"
#include "qsig/quant/kernels.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

using reference::Ref;

std::shared_ptr<const Model> Make(Ref r, bool int8) {
  auto spec = std::make_shared<const ModelSpec>(reference::TrainedSpec(r));
  if (!int8) return MakeFp32Model(spec);
  const std::vector<float> calib = reference::Windows(reference::Features(3, 600, spec->input_size),
                                                      spec->window, spec->input_size, 5);
  auto q = CalibrateInt8Model(spec, calib);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? std::shared_ptr<const Model>(std::move(*q)) : nullptr;
}

class Modes : public ::testing::TestWithParam<std::tuple<Ref, bool>> {};

TEST_P(Modes, PushTickEqualsRunOnTheLastWindowBitForBit) {
  auto m = Make(std::get<0>(GetParam()), std::get<1>(GetParam()));
  ASSERT_NE(m, nullptr);
  const int in = m->input_size(), w = m->window();
  const std::vector<float> ticks = reference::Features(9, w + 40, in);
  Session s(m, Mode::kWindow);
  std::vector<float> ws(m->workspace_floats());
  for (int t = 0; t < w + 40; ++t) {
    SCOPED_TRACE(t);
    const float y = s.Push({ticks.data() + static_cast<size_t>(t) * in, static_cast<size_t>(in)});
    if (t + 1 < w) {
      EXPECT_TRUE(std::isnan(y));
      continue;
    }
    const float* win = ticks.data() + static_cast<size_t>(t + 1 - w) * in;
    EXPECT_EQ(y, m->Run({win, static_cast<size_t>(w) * in}, ws.data()));
  }
  s.Reset();
  EXPECT_TRUE(std::isnan(s.Push({ticks.data(), static_cast<size_t>(in)})) || w == 1);
}

TEST_P(Modes, StepBatchMatchesSteps) {
  auto m = Make(std::get<0>(GetParam()), std::get<1>(GetParam()));
  ASSERT_NE(m, nullptr);
  const int in = m->input_size();
  for (int n : {1, 2, 3, 5, 8, 17}) {
    SCOPED_TRACE(n);
    const size_t sf = m->state_floats(Mode::kStreaming);
    std::vector<std::vector<float>> a(n, std::vector<float>(sf)), b(n, std::vector<float>(sf));
    std::vector<float*> pb;
    for (int i = 0; i < n; ++i) {
      m->ResetState(Mode::kStreaming, a[i].data());
      m->ResetState(Mode::kStreaming, b[i].data());
      pb.push_back(b[i].data());
    }
    const std::vector<float> ticks = reference::Features(17, 20 * n, in);
    std::vector<float> ws1(m->workspace_floats()), wsn(m->batch_workspace_floats(n)), out(n);
    for (int t = 0; t < 20; ++t) {
      const float* tk = ticks.data() + static_cast<size_t>(t) * n * in;
      m->StepBatch(n, tk, pb.data(), wsn.data(), out.data());
      for (int i = 0; i < n; ++i) {
        const float y = m->Step({tk + static_cast<size_t>(i) * in, static_cast<size_t>(in)},
                                a[i].data(), ws1.data());
        ASSERT_TRUE(std::isfinite(y));
        EXPECT_NEAR(out[i], y, 1e-5f * (1 + std::fabs(y))) << "t " << t << " i " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Refs, Modes,
                         ::testing::Combine(::testing::Values(Ref::kLstmA, Ref::kMlpC, Ref::kGruD),
                                            ::testing::Bool()));

// Streaming over a window from a reset state equals the window output (h0 = c0 = 0).
TEST(ModesStreaming, FirstWindowOfStepsEqualsRun) {
  for (bool int8 : {false, true}) {
    auto m = Make(Ref::kLstmA, int8);
    ASSERT_NE(m, nullptr);
    const int in = m->input_size(), w = m->window();
    const std::vector<float> ticks = reference::Features(4, w, in);
    Session s(m, Mode::kStreaming);
    float y = 0;
    for (int t = 0; t < w; ++t)
      y = s.Push({ticks.data() + static_cast<size_t>(t) * in, static_cast<size_t>(in)});
    std::vector<float> ws(m->workspace_floats());
    const float r = m->Run(ticks, ws.data());
    EXPECT_NEAR(y, r, 1e-5f * (1 + std::fabs(r))) << int8;
  }
}

// Every ISA present is bit-exact to the reference on integer results, over awkward sizes.
TEST(KernelParity, IntegerResultsEqualReference) {
  using namespace quant;
  const Kernels* fast = KernelsFor(Isa::kAvx512Vnni);
  if (fast == nullptr) GTEST_SKIP() << "no AVX-512 VNNI on this host";
  const Kernels& ref = RefKernels();
  uint64_t seed = 1;
  auto rnd = [&seed] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
  };
  for (int rows : {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129, 257, 300}) {
    for (int cols : {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129}) {
      SCOPED_TRACE(::testing::Message() << rows << "x" << cols);
      std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
      for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rnd() % 255) - 127);
      PackedS8 p = PackS8(w.data(), rows, cols);
      for (int r = 0; r < p.rows_pad; ++r)
        p.scales[static_cast<size_t>(r)] = FloatToBf16Truncate(0.5f);
      for (int r = 0; r < rows; ++r)
        ASSERT_EQ(PackedAt(p, r, cols - 1), w[static_cast<size_t>(r) * cols + cols - 1]);
      std::vector<float> x(static_cast<size_t>(cols) * 3);
      for (auto& v : x) v = static_cast<float>(static_cast<int>(rnd() % 2001) - 1000) * 0.013f;
      std::vector<uint8_t> q1(static_cast<size_t>(p.cols_pad) * 3), q2(q1.size());
      std::vector<int16_t> s1(q1.size()), s2(q1.size());
      for (int i = 0; i < 3; ++i) {
        const size_t o = static_cast<size_t>(i) * p.cols_pad;
        ref.quantize_u8(x.data() + i * cols, cols, nullptr, nullptr, 7.3f, 128.0f, q1.data() + o,
                        p.cols_pad);
        fast->quantize_u8(x.data() + i * cols, cols, nullptr, nullptr, 7.3f, 128.0f, q2.data() + o,
                          p.cols_pad);
        ref.quantize_s16(x.data() + i * cols, cols, nullptr, nullptr, 2500.0f, 0.0f, s1.data() + o,
                         p.cols_pad);
        fast->quantize_s16(x.data() + i * cols, cols, nullptr, nullptr, 2500.0f, 0.0f,
                           s2.data() + o, p.cols_pad);
      }
      ASSERT_EQ(q1, q2);
      ASSERT_EQ(s1, s2);
      std::vector<int32_t> a1(static_cast<size_t>(p.rows_pad)), a2(a1.size());
      ref.gemv_u8s8s32(p, q1.data(), a1.data());
      fast->gemv_u8s8s32(p, q1.data(), a2.data());
      ASSERT_EQ(a1, a2);
      // Dequantized outputs are exact too (scale 0.5, no FMA): compare as floats, 1..3 vectors.
      for (int n : {1, 2, 3}) {
        std::vector<float> y1(static_cast<size_t>(p.rows_pad) * n), y2(y1.size());
        ref.gemm_u8s8f32(p, n, q1.data(), p.cols_pad, nullptr, 0, y1.data(), p.rows_pad);
        fast->gemm_u8s8f32(p, n, q1.data(), p.cols_pad, nullptr, 0, y2.data(), p.rows_pad);
        ASSERT_EQ(y1, y2);
        ref.gemm_s16s8f32(p, n, s1.data(), p.cols_pad, nullptr, 0, y1.data(), p.rows_pad);
        fast->gemm_s16s8f32(p, n, s1.data(), p.cols_pad, nullptr, 0, y2.data(), p.rows_pad);
        ASSERT_EQ(y1, y2);
      }
    }
  }
}

TEST(KernelParity, QsigMaxIsaCapSelectsReference) {
  // The kernel choice is made once per process; the cap is checked in child processes
  // (tests/models/CMakeLists.txt).
  const char* isa = KernelIsa();
  const char* env = std::getenv("QSIG_MAX_ISA");
  if (env != nullptr && std::string(env) == "ref") {
    EXPECT_STREQ(isa, "ref");
  } else {
    const absl::StatusOr<quant::Isa> cap = quant::EnvMaxIsa();
    EXPECT_STREQ(isa, quant::IsaName(quant::ChooseIsa(quant::SupportedIsaMask(),
                                                      cap.ok() ? *cap : quant::Isa::kRef)));
  }
}

// An unknown QSIG_MAX_ISA is an error for every model build (run with QSIG_MAX_ISA=no-such-isa
// by tests/models/CMakeLists.txt; without it, or with a good value, the builds succeed).
TEST(KernelParity, UnknownQsigMaxIsaFailsModelBuilds) {
  const char* env = std::getenv("QSIG_MAX_ISA");
  const bool bad = env != nullptr && *env != '\0' && !quant::ParseIsa(env).ok();
  auto spec = std::make_shared<const ModelSpec>(reference::TrainedSpec(Ref::kLstmA));
  const std::vector<float> calib = reference::Windows(reference::Features(3, 600, spec->input_size),
                                                      spec->window, spec->input_size, 5);
  const absl::StatusOr<std::unique_ptr<Model>> int8 = CalibrateInt8Model(spec, calib, {});
  const std::unique_ptr<Model> fp32 = MakeFp32Model(spec);
  if (!bad) {
    EXPECT_TRUE(int8.ok()) << int8.status();
    EXPECT_NE(fp32, nullptr);
    return;
  }
  ASSERT_FALSE(int8.ok());
  EXPECT_EQ(int8.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(int8.status().message().find("QSIG_MAX_ISA"), std::string::npos) << int8.status();
  EXPECT_NE(int8.status().message().find(env), std::string::npos) << int8.status();
  EXPECT_EQ(fp32, nullptr);
}

}  // namespace
}  // namespace qsig::models
