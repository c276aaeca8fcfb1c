// Accuracy of every sigmoid / tanh variant the host supports, measured against double precision,
// and the bounds documented in vmath.h.
#include "qsig/quant/vmath.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "qsig/quant/isa.h"

namespace qsig::quant {
namespace {

struct Variant {
  const char* name;
  Isa needs;
  VMathFn sigmoid;
  VMathFn tanh;
  double tanh_ulp;  // documented bound (vmath.h)
};
constexpr Variant kVariants[] = {
    {"ref", Isa::kScalar, SigmoidF32Ref, TanhF32Ref, 2.5},   // glibc tanhf
    {"avx2", Isa::kAvx2, SigmoidF32Avx2, TanhF32Avx2, 1.0},  // SLEEF u10
    {"avx512", Isa::kAvx512Vnni, SigmoidF32Avx512, TanhF32Avx512, 1.0},
};

std::vector<float> TestPoints() {
  std::vector<float> x;
  const int n = 1 << 22;
  for (int i = 0; i <= n; ++i) x.push_back(-20.0f + 40.0f * static_cast<float>(i) / n);
  for (float v :
       {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 88.0f, -88.0f, 100.0f, -100.0f, 104.0f, -104.0f,
        200.0f, -200.0f, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    x.push_back(v);
  }
  return x;
}

struct Error {
  double ulp = 0;
  double abs = 0;
};

// Max error of f over x against the exact (double) function.
template <typename Exact>
Error Measure(VMathFn f, const std::vector<float>& x, Exact exact) {
  std::vector<float> y(x.size());
  f(x.data(), y.data(), x.size());
  Error e;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = exact(static_cast<double>(x[i]));
    const double got = y[i];
    const float wf = static_cast<float>(want);
    const double ulp =
        static_cast<double>(std::nextafter(std::fabs(wf), std::numeric_limits<float>::infinity())) -
        std::fabs(wf);
    const double err = std::fabs(got - want);
    e.abs = std::max(e.abs, err);
    // ulps only where the result is a normal float: below FLT_MIN (sigmoid(x) for x < -87.3) the
    // spacing is the fixed denormal one and the absolute bound is what matters.
    if (std::fabs(want) >= std::numeric_limits<float>::min()) e.ulp = std::max(e.ulp, err / ulp);
  }
  return e;
}

double ExactSigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double ExactTanh(double x) { return std::tanh(x); }

TEST(QuantVMath, ErrorWithinDocumentedBounds) {
  const std::vector<float> x = TestPoints();
  for (const Variant& v : kVariants) {
    if (!IsaSupported(v.needs)) continue;
    SCOPED_TRACE(v.name);
    const Error es = Measure(v.sigmoid, x, ExactSigmoid);
    const Error et = Measure(v.tanh, x, ExactTanh);
    std::printf("%-6s sigmoid: %.2f ulp, %.2e abs;  tanh: %.2f ulp, %.2e abs\n", v.name, es.ulp,
                es.abs, et.ulp, et.abs);
    EXPECT_LE(es.ulp, 3.0);
    EXPECT_LE(es.abs, 1.0e-7);
    EXPECT_LE(et.ulp, v.tanh_ulp);
    EXPECT_LE(et.abs, 1.1e-7);
  }
}

TEST(QuantVMath, LimitsAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {-inf,   -200.0f, 0.0f,
                                200.0f, inf,     std::numeric_limits<float>::quiet_NaN()};
  for (const Variant& v : kVariants) {
    if (!IsaSupported(v.needs)) continue;
    SCOPED_TRACE(v.name);
    std::vector<float> s(x.size()), t(x.size());
    v.sigmoid(x.data(), s.data(), x.size());
    v.tanh(x.data(), t.data(), x.size());
    EXPECT_EQ(s[0], 0.0f);
    EXPECT_EQ(s[1], 0.0f);
    EXPECT_EQ(s[2], 0.5f);
    EXPECT_EQ(s[3], 1.0f);
    EXPECT_EQ(s[4], 1.0f);
    EXPECT_TRUE(std::isnan(s[5]));
    EXPECT_EQ(t[0], -1.0f);
    EXPECT_EQ(t[1], -1.0f);
    EXPECT_EQ(t[2], 0.0f);
    EXPECT_EQ(t[3], 1.0f);
    EXPECT_EQ(t[4], 1.0f);
    EXPECT_TRUE(std::isnan(t[5]));
  }
}

TEST(QuantVMath, TailsAndInPlaceMatchTheFullArray) {
  std::vector<float> x(40);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -5.0f + 0.25f * static_cast<float>(i);
  for (const Variant& v : kVariants) {
    if (!IsaSupported(v.needs)) continue;
    for (VMathFn f : {v.sigmoid, v.tanh}) {
      std::vector<float> full(x.size());
      f(x.data(), full.data(), x.size());
      for (size_t n = 0; n <= 33; ++n) {
        SCOPED_TRACE(std::string(v.name) + " n " + std::to_string(n));
        std::vector<float> y(x.begin(), x.end());  // in place; entries past n must survive
        f(y.data(), y.data(), n);
        for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], i < n ? full[i] : x[i]) << i;
      }
    }
  }
}

TEST(QuantVMath, DispatchFollowsTheCap) {
  const std::vector<float> x = {-3.0f, -0.5f, 0.25f, 2.0f};
  std::vector<float> a(x.size()), b(x.size());
  SetMaxIsa(Isa::kScalar);
  SigmoidF32(x.data(), a.data(), x.size());
  SigmoidF32Ref(x.data(), b.data(), x.size());
  EXPECT_EQ(a, b);
  TanhF32(x.data(), a.data(), x.size());
  TanhF32Ref(x.data(), b.data(), x.size());
  EXPECT_EQ(a, b);
  SetMaxIsa(Isa::kAvx512Vnni);
}

}  // namespace
}  // namespace qsig::quant
