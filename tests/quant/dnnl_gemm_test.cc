#include "qsig/quant/dnnl_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "qsig/quant/gemm.h"
#include "qsig/quant/packed.h"

namespace qsig::quant {
namespace {

constexpr int kSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129};

struct Case {
  PackedWeightsS8 w;
  std::vector<uint8_t> x;
  std::vector<float> bias;
};

Case MakeCase(std::mt19937& rng, int rows, int cols, int m, ptrdiff_t ldx) {
  std::uniform_int_distribution<int> wd(-128, 127), xd(0, 255);
  std::uniform_real_distribution<float> sd(0.001f, 0.05f), bd(-2.0f, 2.0f);
  std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
  for (int8_t& v : w) v = static_cast<int8_t>(wd(rng));
  std::vector<float> scales(static_cast<size_t>(rows));
  for (float& s : scales) s = sd(rng);
  Case c{*PackWeightsS8(w.data(), rows, cols, cols, scales), {}, {}};
  c.x.resize(static_cast<size_t>(m - 1) * ldx + cols);
  for (uint8_t& v : c.x) v = static_cast<uint8_t>(xd(rng));
  c.bias.resize(static_cast<size_t>(rows));
  for (float& b : c.bias) b = bd(rng);
  return c;
}

// oneDNN accumulates in s32 exactly and applies the same float scale, so the results equal the
// reference up to float rounding (in practice bit for bit).
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const float tol = 1e-5f * std::max(std::fabs(want[i]), 1e-3f);
    ASSERT_NEAR(got[i], want[i], tol) << "at " << i;
  }
}

TEST(QuantDnnlGemm, MatchesReferenceOnAwkwardShapes) {
  std::mt19937 rng(11);
  for (int rows : kSizes) {
    for (int cols : kSizes) {
      for (int m : {1, 3}) {
        SCOPED_TRACE(testing::Message() << rows << " x " << cols << " m=" << m);
        const ptrdiff_t ldx = cols + (m > 1 ? 5 : 0), ldy = rows + (m > 1 ? 2 : 0);
        Case c = MakeCase(rng, rows, cols, m, ldx);
        const bool with_bias = (rows + cols) % 2 == 0;
        const DequantEpilogue e{0.0173f, (rows * cols) % 3 == 0 ? 0 : 131,
                                with_bias ? c.bias.data() : nullptr};
        const size_t ny = static_cast<size_t>(m - 1) * ldy + rows;
        std::vector<float> want(ny, -7.0f), got(ny, -7.0f);
        GemmU8S8F32Ref(m, c.x.data(), ldx, c.w, e, want.data(), ldy);
        auto d = DnnlGemmU8S8F32::Create(c.w, m, e, ldx, ldy);
        ASSERT_TRUE(d.ok()) << d.status();
        ASSERT_TRUE((*d)->Run(c.x.data(), got.data()));
        // Padding between rows of y is left alone.
        ExpectClose(got, want);
      }
    }
  }
}

TEST(QuantDnnlGemm, CreateRejectsBadStrides) {
  std::mt19937 rng(12);
  Case c = MakeCase(rng, 16, 32, 1, 32);
  EXPECT_FALSE(DnnlGemmU8S8F32::Create(c.w, 1, {}, 31, 16).ok());
  EXPECT_FALSE(DnnlGemmU8S8F32::Create(c.w, 0, {}, 32, 16).ok());
}

// Restores QSIG_GEMM_BACKEND after a test that sets it.
class ScopedBackendEnv {
 public:
  explicit ScopedBackendEnv(const char* value) {
    if (const char* old = std::getenv("QSIG_GEMM_BACKEND")) {
      had_ = true;
      old_ = old;
    }
    if (value != nullptr) {
      setenv("QSIG_GEMM_BACKEND", value, 1);
    } else {
      unsetenv("QSIG_GEMM_BACKEND");
    }
  }
  ~ScopedBackendEnv() {
    if (had_) {
      setenv("QSIG_GEMM_BACKEND", old_.c_str(), 1);
    } else {
      unsetenv("QSIG_GEMM_BACKEND");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(QuantGemmBackend, AutoMeasuresAndRunsTheChosenBackend) {
  ScopedBackendEnv env("auto");
  std::mt19937 rng(13);
  for (int m : {1, 8}) {
    SCOPED_TRACE(testing::Message() << "m=" << m);
    Case c = MakeCase(rng, 256, 64, m, 64);
    const DequantEpilogue e{0.02f, 128, c.bias.data()};
    auto a = GemmU8S8F32Auto::Create(c.w, m, e, 64, 256, 60);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_FALSE(a->choice().forced);
    EXPECT_GT(a->choice().qsig_ns, 0.0);
    EXPECT_GT(a->choice().onednn_ns, 0.0);
    const GemmBackend b = a->backend();
    EXPECT_TRUE(b == GemmBackend::kQsig || b == GemmBackend::kOnednn);
    EXPECT_EQ(b, a->choice().backend);
    EXPECT_EQ(
        b, a->choice().onednn_ns < a->choice().qsig_ns ? GemmBackend::kOnednn : GemmBackend::kQsig);
    std::vector<float> want(static_cast<size_t>(m) * 256), got(want.size());
    GemmU8S8F32Ref(m, c.x.data(), 64, c.w, e, want.data(), 256);
    ASSERT_TRUE(a->Run(c.x.data(), got.data()));
    ExpectClose(got, want);
  }
}

TEST(QuantGemmBackend, EnvOverrideIsHonoured) {
  std::mt19937 rng(14);
  Case c = MakeCase(rng, 33, 17, 1, 17);
  const DequantEpilogue e{0.05f, 100, c.bias.data()};
  std::vector<float> want(33), got(33);
  GemmU8S8F32Ref(1, c.x.data(), 17, c.w, e, want.data(), 33);
  for (GemmBackend b : {GemmBackend::kQsig, GemmBackend::kOnednn}) {
    SCOPED_TRACE(GemmBackendName(b));
    ScopedBackendEnv env(GemmBackendName(b));
    auto a = GemmU8S8F32Auto::Create(c.w, 1, e, 17, 33);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->choice().forced);
    EXPECT_EQ(a->backend(), b);
    EXPECT_EQ(a->choice().qsig_ns, 0.0);  // forced: nothing was timed
    ASSERT_TRUE(a->Run(c.x.data(), got.data()));
    ExpectClose(got, want);
  }
  {
    ScopedBackendEnv env("fastest");
    auto a = GemmU8S8F32Auto::Create(c.w, 1, e, 17, 33);
    ASSERT_FALSE(a.ok());
    EXPECT_NE(a.status().message().find("QSIG_GEMM_BACKEND"), std::string::npos);
  }
}

}  // namespace
}  // namespace qsig::quant
