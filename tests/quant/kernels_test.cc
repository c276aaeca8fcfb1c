// Every ISA table of the kernel layer against the reference (the specification), table by table
// (not only the active one): integer results and int8 layer outputs bit for bit, float results
// within a few ulp, over awkward sizes; and the dispatch rule (ISA names, ChooseIsa, QSIG_MAX_ISA).
#include "qsig/quant/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "avx_vnni_evex_kernels.h"
#include "qsig/quant/isa.h"
#include "random_models.h"

namespace qsig::quant {
namespace {

using Rng = ::qsig::models::testing::Rng;

struct Variant {
  const char* name;
  const Kernels* (*get)();  // nullptr: the host lacks the ISA
};

const Kernels* Avx512Vnni() { return KernelsFor(Isa::kAvx512Vnni); }
const Kernels* AvxVnni() { return KernelsFor(Isa::kAvxVnni); }
const Kernels* Avx2() { return KernelsFor(Isa::kAvx2); }

const Variant kVariants[] = {
    {"Avx512Vnni", &Avx512Vnni},
    {"AvxVnni", &AvxVnni},
    {"AvxVnniViaEvex", &testing::AvxVnniViaEvexKernels},
    {"Avx2", &Avx2},
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class KernelVariant : public ::testing::TestWithParam<Variant> {
 protected:
  const Kernels* Get() const { return GetParam().get(); }
};

#define QSIG_SKIP_IF_ABSENT(k)                                                                  \
  if ((k) == nullptr) {                                                                         \
    GTEST_SKIP() << GetParam().name << ": this CPU (or OS) lacks the ISA, so the table cannot " \
                 << "run here; it is compiled, and the AvxVnniViaEvex variant runs the same "   \
                 << "VNNI code on AVX-512 hosts";                                               \
  }

const std::vector<int> kRows = {1,  2,  3,  5,  7,   8,   15,  16,  17,
                                31, 33, 63, 65, 127, 129, 257, 300, 515};
const std::vector<int> kCols = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129, 512, 515};

// Weights over [-wmax, wmax] with a share of the extremes (+-127: the pairs that would saturate a
// naive vpmaddubsw; +-63, 7-bit weights, and +-64, the largest the AVX2 kernels take unsplit:
// the pairs that come closest to saturating it), activations likewise (0 and 255).
std::vector<int8_t> Weights(Rng& rng, int rows, int cols, bool extreme, int wmax) {
  std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
  for (auto& v : w) {
    const uint64_t u = rng.Next();
    if (extreme || u % 4 == 0) {
      v = static_cast<int8_t>((u >> 8) % 2 ? wmax : -wmax);
    } else {
      v = static_cast<int8_t>(static_cast<int>((u >> 8) % (2 * wmax + 1)) - wmax);
    }
  }
  return w;
}

TEST(PackS8, RecordsMaxAbs) {
  const std::vector<int8_t> w = {3, -63, 0, 12, 63, -5};
  EXPECT_EQ(PackS8(w.data(), 2, 3).max_abs, 63);
  const std::vector<int8_t> w8 = {3, -63, 0, 12, 63, -128};
  EXPECT_EQ(PackS8(w8.data(), 3, 2).max_abs, 128);
}

// wmax 127: 8-bit weights (the AVX2 kernels split the activations); 63: 7-bit weights
// (Int8Options::reduce_range; AVX2 multiplies the activations as they are), and 64, the bound
// of that path (kMaddubsExactMax), in the extreme case only.
TEST_P(KernelVariant, IntegerResultsEqualReference) {
  const Kernels* fast = Get();
  QSIG_SKIP_IF_ABSENT(fast);
  const Kernels& ref = RefKernels();
  Rng rng(42);
  for (int wmax : {127, 63, kMaddubsExactMax}) {
    for (int rows : kRows) {
      for (int cols : kCols) {
        for (bool extreme : {false, true}) {
          SCOPED_TRACE(::testing::Message() << rows << "x" << cols << (extreme ? " extreme" : "")
                                            << " weights in [-" << wmax << ", " << wmax << "]");
          if (extreme && rows * cols > 20000) continue;
          if (!extreme && wmax == kMaddubsExactMax) continue;
          const std::vector<int8_t> w = Weights(rng, rows, cols, extreme, wmax);
          PackedS8 p = PackS8(w.data(), rows, cols);
          if (extreme) {
            ASSERT_EQ(p.max_abs, wmax);
          }
          ASSERT_LE(p.max_abs, wmax);
          // Scales as the quantizer makes them (bf16 values, not powers of two: a product that
          // rounds, so an FMA contraction of float(acc) * scale + add would show).
          for (int r = 0; r < p.rows_pad; ++r) {
            const float s = RoundUpToBf16(static_cast<float>(rng.Uniform(1e-4, 0.1)));
            p.scales[static_cast<size_t>(r)] = FloatToBf16Truncate(s);
          }
          constexpr int kN = 5;
          const size_t ld = static_cast<size_t>(p.cols_pad) + 4;  // strides that are not cols_pad
          std::vector<float> x(static_cast<size_t>(cols) * kN);
          for (auto& v : x) v = static_cast<float>(rng.Uniform(-12.0, 12.0));
          if (cols >= 3) {  // NaN, infinities and exact halves in the first vector
            x[0] = std::numeric_limits<float>::quiet_NaN();
            x[1] = std::numeric_limits<float>::infinity();
            x[2] = -std::numeric_limits<float>::infinity();
          }
          std::vector<float> qa(static_cast<size_t>(cols)), qb(static_cast<size_t>(cols));
          for (int k = 0; k < cols; ++k) {
            qa[static_cast<size_t>(k)] = static_cast<float>(rng.Uniform(1.0, 30.0));
            qb[static_cast<size_t>(k)] = static_cast<float>(static_cast<int>(rng.Next() % 256));
          }
          std::vector<uint8_t> q1(ld * kN, 0xAB), q2(q1.size(), 0xAB);
          std::vector<int16_t> s1(ld * kN, 77), s2(s1.size(), 77);
          for (int i = 0; i < kN; ++i) {
            const float* xi = x.data() + static_cast<size_t>(i) * cols;
            // Vector 0: extreme activations (0 / 255) so products reach 255 * +-127.
            const float a0 = extreme || i == 0 ? 1e4f : 10.5f;
            const bool per_col = i % 2 == 1;
            const float* a = per_col ? qa.data() : nullptr;
            const float* b = per_col ? qb.data() : nullptr;
            ref.quantize_u8(xi, cols, a, b, a0, 128.0f, q1.data() + i * ld, p.cols_pad);
            fast->quantize_u8(xi, cols, a, b, a0, 128.0f, q2.data() + i * ld, p.cols_pad);
            ref.quantize_s16(xi, cols, a, nullptr, a0 * 300.0f, 0.0f, s1.data() + i * ld,
                             p.cols_pad);
            fast->quantize_s16(xi, cols, a, nullptr, a0 * 300.0f, 0.0f, s2.data() + i * ld,
                               p.cols_pad);
          }
          ASSERT_EQ(q1, q2);  // bytes past cols_pad are untouched too
          ASSERT_EQ(s1, s2);

          std::vector<int32_t> a1(static_cast<size_t>(p.rows_pad) * kN, 1), a2(a1.size(), 2);
          for (int i = 0; i < kN; ++i) {
            ref.gemv_u8s8s32(p, q1.data() + i * ld, a1.data() + i * p.rows_pad);
            fast->gemv_u8s8s32(p, q1.data() + i * ld, a2.data() + i * p.rows_pad);
          }
          ASSERT_EQ(a1, a2);

          // Dequantized outputs: float(acc) * scale (+ add), no FMA: bit-exact too. 1..5 vectors,
          // add shared (ldadd 0), per vector, or none.
          const size_t ldy = static_cast<size_t>(p.rows_pad) + 16;
          std::vector<float> add(ldy * kN);
          for (auto& v : add) v = static_cast<float>(rng.Uniform(-3.0, 3.0));
          for (int n = 1; n <= kN; ++n) {
            for (int mode = 0; mode < 3; ++mode) {
              SCOPED_TRACE(::testing::Message() << "n " << n << " add mode " << mode);
              const float* ad = mode == 0 ? nullptr : add.data();
              const size_t ldadd = mode == 2 ? ldy : 0;
              std::vector<float> y1(ldy * kN, -1.0f), y2(y1.size(), -1.0f);
              ref.gemm_u8s8f32(p, n, q1.data(), ld, ad, ldadd, y1.data(), ldy);
              fast->gemm_u8s8f32(p, n, q1.data(), ld, ad, ldadd, y2.data(), ldy);
              ASSERT_EQ(y1, y2);
              if (cols <= kMaxS16Cols) {
                ref.gemm_s16s8f32(p, n, s1.data(), ld, ad, ldadd, y1.data(), ldy);
                fast->gemm_s16s8f32(p, n, s1.data(), ld, ad, ldadd, y2.data(), ldy);
                ASSERT_EQ(y1, y2);
              }
            }
          }
        }
      }
    }
  }
}

// |a - b| <= tol * (1 + |b|), element by element.
void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), tol * (1.0f + std::fabs(want[i])))
        << "at " << i << ": " << got[i] << " vs " << want[i];
  }
}

TEST_P(KernelVariant, FloatResultsNearReference) {
  const Kernels* fast = Get();
  QSIG_SKIP_IF_ABSENT(fast);
  const Kernels& ref = RefKernels();
  Rng rng(7);
  for (int rows : kRows) {
    for (int cols : {1, 2, 3, 7, 16, 17, 63, 129, 515}) {
      SCOPED_TRACE(::testing::Message() << "gemm_f32 " << rows << "x" << cols);
      std::vector<float> w(static_cast<size_t>(rows) * cols);
      for (auto& v : w) v = static_cast<float>(rng.Uniform(-1.0, 1.0));
      const PackedF32 p = PackF32(w.data(), rows, cols);
      constexpr int kN = 3;
      const size_t ldy = static_cast<size_t>(p.rows_pad);
      std::vector<float> x(static_cast<size_t>(cols) * kN), add(ldy * kN);
      for (auto& v : x) v = static_cast<float>(rng.Uniform(-2.0, 2.0));
      for (auto& v : add) v = static_cast<float>(rng.Uniform(-2.0, 2.0));
      for (int n = 1; n <= kN; ++n) {
        std::vector<float> y1(ldy * kN, 0.0f), y2(y1.size(), 0.0f);
        ref.gemm_f32(p, n, x.data(), static_cast<size_t>(cols), add.data(), ldy, y1.data(), ldy);
        fast->gemm_f32(p, n, x.data(), static_cast<size_t>(cols), add.data(), ldy, y2.data(), ldy);
        // Summation order differs (split accumulators): a few ulp of sum |w x| ~ cols.
        ExpectNear(y2, y1, 1e-6f * static_cast<float>(cols));
        if (HasFatalFailure()) return;
      }
    }
  }
  for (int hidden : {1, 3, 7, 8, 15, 16, 17, 63, 64, 129}) {
    SCOPED_TRACE(::testing::Message() << "cells, hidden " << hidden);
    const size_t h = static_cast<size_t>(hidden);
    std::vector<float> g(4 * h), gh(3 * h), c0(h + 16), h0(h + 16);
    for (auto& v : g) v = static_cast<float>(rng.Uniform(-12.0, 12.0));
    for (auto& v : gh) v = static_cast<float>(rng.Uniform(-6.0, 6.0));
    for (auto& v : c0) v = static_cast<float>(rng.Uniform(-3.0, 3.0));
    for (auto& v : h0) v = static_cast<float>(rng.Uniform(-1.0, 1.0));
    g[0] = 100.0f;  // saturated gates
    g[h - 1] = -100.0f;
    for (float c_step : {0.0f, 1.0f / 4096}) {
      std::vector<float> c1 = c0, c2 = c0, h1 = h0, h2 = h0;
      ref.lstm_cell(hidden, g.data(), h1.data(), c1.data(), c_step);
      fast->lstm_cell(hidden, g.data(), h2.data(), c2.data(), c_step);
      ExpectNear(h2, h1, 2e-6f);  // also: nothing past `hidden` written
      // On the s16 grid a few-ulp difference may move c to the neighbouring grid point.
      ExpectNear(c2, c1, c_step > 0.0f ? c_step : 2e-6f);
    }
    std::vector<float> r1 = h0, r2 = h0;
    ref.gru_cell(hidden, g.data(), gh.data(), r1.data());
    fast->gru_cell(hidden, g.data(), gh.data(), r2.data());
    ExpectNear(r2, r1, 2e-6f);
    for (Activation act :
         {Activation::kNone, Activation::kRelu, Activation::kTanh, Activation::kSigmoid}) {
      std::vector<float> y1 = g, y2 = g;
      ref.activate(hidden, act, y1.data());
      fast->activate(hidden, act, y2.data());
      if (act == Activation::kRelu || act == Activation::kNone) {
        EXPECT_EQ(y2, y1);
      } else {
        ExpectNear(y2, y1, 2e-6f);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, KernelVariant, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<Variant>& i) { return i.param.name; });

constexpr uint32_t Mask(std::initializer_list<Isa> isas) {
  uint32_t m = 1u;  // the reference is always there
  for (Isa i : isas) m |= 1u << static_cast<int>(i);
  return m;
}

TEST(KernelDispatch, IsaNamesRoundTripAndIgnoreCase) {
  const char* want[] = {"ref", "avx2", "avxvnni", "avx512vnni"};
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    EXPECT_STREQ(IsaName(isa), want[i]);
    absl::StatusOr<Isa> back = ParseIsa(want[i]);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, isa);
  }
  EXPECT_EQ(*ParseIsa("AVX2"), Isa::kAvx2);
  EXPECT_EQ(*ParseIsa("Avx512Vnni"), Isa::kAvx512Vnni);
  EXPECT_EQ(*ParseIsa("REF"), Isa::kRef);
}

TEST(KernelDispatch, UnknownIsaNamesAreErrors) {
  // The other layer's old spellings are not names any more: one set of names.
  for (const char* bad : {"", "scalar", "native", "avx512_vnni", "avx_vnni", "avx3", "sse4"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<Isa> isa = ParseIsa(bad);
    ASSERT_FALSE(isa.ok());
    EXPECT_EQ(isa.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(isa.status().message().find("avx512vnni"), std::string::npos) << isa.status();
  }
}

TEST(KernelDispatch, ChooseIsaTakesTheMostSpecificSupportedWithinTheCap) {
  const uint32_t all = Mask({Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512Vnni});
  EXPECT_EQ(ChooseIsa(all, Isa::kAvx512Vnni), Isa::kAvx512Vnni);
  EXPECT_EQ(ChooseIsa(all, Isa::kAvxVnni), Isa::kAvxVnni);
  EXPECT_EQ(ChooseIsa(all, Isa::kAvx2), Isa::kAvx2);
  EXPECT_EQ(ChooseIsa(all, Isa::kRef), Isa::kRef);
  // AVX-512 VNNI without AVX-VNNI (Zen 4, Cascade Lake): capped at avxvnni, AVX2 runs.
  const uint32_t zen4 = Mask({Isa::kAvx2, Isa::kAvx512Vnni});
  EXPECT_EQ(ChooseIsa(zen4, Isa::kAvx512Vnni), Isa::kAvx512Vnni);
  EXPECT_EQ(ChooseIsa(zen4, Isa::kAvxVnni), Isa::kAvx2);
  // AVX2 only (this project's Zen 2/3 machines).
  const uint32_t avx2 = Mask({Isa::kAvx2});
  EXPECT_EQ(ChooseIsa(avx2, Isa::kAvx512Vnni), Isa::kAvx2);
  EXPECT_EQ(ChooseIsa(avx2, Isa::kRef), Isa::kRef);
  EXPECT_EQ(ChooseIsa(Mask({}), Isa::kAvx512Vnni), Isa::kRef);
  EXPECT_EQ(ChooseIsa(0u, Isa::kAvx512Vnni), Isa::kRef);
}

TEST(KernelDispatch, TablesMatchTheProbe) {
  EXPECT_TRUE(IsaSupported(Isa::kRef));
  EXPECT_EQ(KernelsFor(Isa::kRef), &RefKernels());
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    SCOPED_TRACE(IsaName(isa));
    const Kernels* k = KernelsFor(isa);
    EXPECT_EQ(k != nullptr, IsaSupported(isa));
    if (k != nullptr) {
      EXPECT_EQ(k->isa, isa);
    }
  }
  EXPECT_TRUE(IsaHasVnni(Isa::kAvxVnni));
  EXPECT_TRUE(IsaHasVnni(Isa::kAvx512Vnni));
  EXPECT_FALSE(IsaHasVnni(Isa::kAvx2));
  EXPECT_FALSE(IsaHasVnni(Isa::kRef));
  EXPECT_TRUE(IsaPrefersReducedRange(Isa::kAvx2));
  EXPECT_FALSE(IsaPrefersReducedRange(Isa::kRef));
  EXPECT_FALSE(IsaPrefersReducedRange(Isa::kAvx512Vnni));
}

// SetMaxIsa caps within the environment's cap; the active table follows.
TEST(KernelDispatch, SetMaxIsaCapsTheActiveTable) {
  const absl::StatusOr<Isa> env = EnvMaxIsa();
  const Isa env_cap = env.ok() ? *env : Isa::kRef;
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa cap = static_cast<Isa>(i);
    SCOPED_TRACE(IsaName(cap));
    const Isa got = SetMaxIsa(cap);
    EXPECT_EQ(got, ChooseIsa(SupportedIsaMask(), std::min(cap, env_cap)));
    EXPECT_EQ(ActiveIsa(), got);
    EXPECT_EQ(&ActiveKernels(), KernelsFor(got));
  }
  SetMaxIsa(Isa::kAvx512Vnni);
}

// The process-wide choice honours QSIG_MAX_ISA (tests/quant/CMakeLists.txt runs this with
// QSIG_MAX_ISA=ref, =avx2, =AVX2 and a bad value in processes of their own: the variable is read
// once per process).
TEST(KernelDispatch, ActiveIsaHonoursQsigMaxIsa) {
  SetMaxIsa(Isa::kAvx512Vnni);
  const char* env = std::getenv("QSIG_MAX_ISA");
  const std::string cap = env != nullptr ? env : "";
  const absl::StatusOr<Isa> env_cap = EnvMaxIsa();
  if (cap.empty()) {
    ASSERT_TRUE(env_cap.ok());
    EXPECT_EQ(*env_cap, Isa::kAvx512Vnni);
    EXPECT_EQ(ActiveIsa(), ChooseIsa(SupportedIsaMask(), Isa::kAvx512Vnni));
    return;
  }
  const absl::StatusOr<Isa> parsed = ParseIsa(cap);
  if (!parsed.ok()) {
    // An unknown value is an error naming the variable and the value; the reference runs.
    ASSERT_FALSE(env_cap.ok());
    EXPECT_EQ(env_cap.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(env_cap.status().message().find("QSIG_MAX_ISA"), std::string::npos);
    EXPECT_NE(env_cap.status().message().find(cap), std::string::npos);
    EXPECT_EQ(ActiveIsa(), Isa::kRef);
    EXPECT_EQ(&ActiveKernels(), &RefKernels());
    return;
  }
  ASSERT_TRUE(env_cap.ok()) << env_cap.status();
  EXPECT_EQ(*env_cap, *parsed);
  EXPECT_EQ(ActiveIsa(), ChooseIsa(SupportedIsaMask(), *parsed));
  if (*parsed == Isa::kRef) {
    EXPECT_EQ(ActiveIsa(), Isa::kRef);
  }
  if (*parsed == Isa::kAvx2) {
    if (!IsaSupported(Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this host";
    EXPECT_EQ(ActiveIsa(), Isa::kAvx2);
  }
}

}  // namespace
}  // namespace qsig::quant
