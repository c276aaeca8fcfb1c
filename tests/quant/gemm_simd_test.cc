// Parity of every ISA variant this host supports with the scalar reference (bit-exact, integer
// and fused-f32 outputs), packing, and the dispatch table and its caps.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gemm_ymm_vnni_evex.h"
#include "qsig/quant/gemm.h"
#include "qsig/quant/gemv.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/packed.h"

namespace qsig::quant {
namespace {

constexpr int kSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129};
constexpr int kBatches[] = {1, 2, 3, 4, 7};

// Restores the uncapped choice however a test ends.
struct IsaCapGuard {
  ~IsaCapGuard() { SetMaxIsa(Isa::kAvx512Vnni); }
};

enum class Weights { kFull, kSevenBit, kExtremes };

std::vector<int8_t> MakeWeights(int rows, int cols, Weights kind, std::mt19937& rng) {
  std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
  std::uniform_int_distribution<int> full(-128, 127), seven(-63, 63), coin(0, 1);
  for (int8_t& v : w) {
    switch (kind) {
      case Weights::kFull:
        v = static_cast<int8_t>(full(rng));
        break;
      case Weights::kSevenBit:
        v = static_cast<int8_t>(seven(rng));
        break;
      case Weights::kExtremes:  // the largest pair sums vpmaddubsw could see
        v = static_cast<int8_t>(coin(rng) ? 127 : -128);
        break;
    }
  }
  return w;
}

TEST(QuantPack, LayoutRowSumsAndPadding) {
  std::mt19937 rng(1);
  for (int rows : {1, 16, 17, 33}) {
    for (int cols : {1, 4, 5, 31}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
      const int ldw = cols + 2;
      std::vector<int8_t> w = MakeWeights(rows, ldw, Weights::kFull, rng);
      std::vector<float> scales(static_cast<size_t>(rows));
      for (int r = 0; r < rows; ++r) scales[r] = 0.5f + r;
      auto p = PackWeightsS8(w.data(), rows, cols, ldw, scales);
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_EQ(p->rows_padded % kPackRows, 0);
      EXPECT_EQ(p->cols_padded % kPackCols, 0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p->data.data()) % 64, 0u);
      int max_abs = 0;
      for (int r = 0; r < p->rows_padded; ++r) {
        int32_t sum = 0;
        for (int c = 0; c < p->cols_padded; ++c) {
          const int expected = r < rows && c < cols ? w[r * ldw + c] : 0;
          ASSERT_EQ(p->at(r, c), expected) << r << "," << c;
          sum += expected;
          max_abs = std::max(max_abs, std::abs(expected));
        }
        EXPECT_EQ(p->row_sums[r], sum);
        EXPECT_EQ(p->scales[r], r < rows ? scales[r] : 1.0f);
      }
      EXPECT_EQ(p->max_abs, max_abs);
    }
  }
}

TEST(QuantPack, RejectsBadShapes) {
  const int8_t w[4] = {};
  EXPECT_FALSE(PackWeightsS8(w, 0, 4, 4).ok());
  EXPECT_FALSE(PackWeightsS8(w, 1, 4, 3).ok());
  EXPECT_FALSE(PackWeightsS8(w, 1, kMaxPackedCols + 1, kMaxPackedCols + 1).ok());
  const float scales[3] = {1, 2, 3};
  EXPECT_FALSE(PackWeightsS8(w, 1, 4, 4, scales).ok());
}

TEST(QuantPack, FromPerChannelKeepsScales) {
  std::vector<float> wf = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f, -4.0f};
  auto q = QuantizePerChannelSymmetricS8(wf, 2, 3);
  ASSERT_TRUE(q.ok()) << q.status();
  auto p = PackWeightsS8(*q);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(p->scales[r], q->scales[r]);
    EXPECT_EQ(p->row_sums[r], q->row_sums[r]);
    for (int c = 0; c < 3; ++c) EXPECT_EQ(p->at(r, c), q->data[r * 3 + c]);
  }
}

TEST(QuantGemm, PackedRefEqualsUnpackedGemvRef) {
  std::mt19937 rng(2);
  const int rows = 33, cols = 65;
  std::vector<int8_t> w = MakeWeights(rows, cols, Weights::kFull, rng);
  std::vector<uint8_t> x(cols);
  for (uint8_t& v : x) v = static_cast<uint8_t>(rng());
  auto p = PackWeightsS8(w.data(), rows, cols, cols);
  ASSERT_TRUE(p.ok());
  std::vector<int32_t> a(rows), b(rows);
  GemvU8S8S32Ref(rows, cols, w.data(), cols, x.data(), a.data());
  GemmU8S8S32Ref(1, x.data(), cols, *p, b.data(), rows);
  EXPECT_EQ(a, b);
}

// Compares one variant against the reference on every kernel type for one shape. Outputs have a
// leading dimension larger than rows, filled with a sentinel that must survive.
void ExpectParity(const GemmKernels& k, const PackedWeightsS8& p, int m, std::mt19937& rng) {
  const int rows = p.rows, cols = p.cols;
  const ptrdiff_t ldx = cols + 3, ldy = rows + 5;
  std::vector<uint8_t> xu(static_cast<size_t>(m) * ldx);
  std::vector<int8_t> xs(xu.size());
  for (size_t i = 0; i < xu.size(); ++i) {
    const uint32_t r = rng();
    // A quarter of the activations at the extremes 0 / 255 and -128 / 127.
    xu[i] = (r & 3) == 0 ? ((r >> 2) & 1 ? 255 : 0) : static_cast<uint8_t>(r >> 8);
    xs[i] = static_cast<int8_t>((r & 3) == 0 ? ((r >> 2) & 1 ? 127 : -128) : (r >> 16) & 0xff);
  }
  std::vector<float> bias(static_cast<size_t>(rows));
  for (float& b : bias) b = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 37.0f;
  const size_t out_size = static_cast<size_t>(m) * ldy;
  constexpr int32_t kSentinel = 0x5a5a5a5a;

  std::vector<int32_t> ref(out_size, kSentinel), got(out_size, kSentinel);
  GemmU8S8S32Ref(m, xu.data(), ldx, p, ref.data(), ldy);
  k.u8s8s32(m, xu.data(), ldx, p, got.data(), ldy);
  ASSERT_EQ(ref, got) << "u8s8s32";
  std::fill(ref.begin(), ref.end(), kSentinel);
  std::fill(got.begin(), got.end(), kSentinel);
  GemmS8S8S32Ref(m, xs.data(), ldx, p, ref.data(), ldy);
  k.s8s8s32(m, xs.data(), ldx, p, got.data(), ldy);
  ASSERT_EQ(ref, got) << "s8s8s32";

  const float fsentinel = -12345.0f;
  for (const float* b : std::vector<const float*>{nullptr, bias.data()}) {
    for (int32_t zp : {0, 3, 128}) {
      SCOPED_TRACE("zero point " + std::to_string(zp) + (b ? " bias" : ""));
      const DequantEpilogue e{0.0173f, zp, b};
      std::vector<float> fref(out_size, fsentinel), fgot(out_size, fsentinel);
      GemmU8S8F32Ref(m, xu.data(), ldx, p, e, fref.data(), ldy);
      k.u8s8f32(m, xu.data(), ldx, p, e, fgot.data(), ldy);
      ASSERT_EQ(0, std::memcmp(fref.data(), fgot.data(), out_size * sizeof(float))) << "u8s8f32";
      std::fill(fref.begin(), fref.end(), fsentinel);
      std::fill(fgot.begin(), fgot.end(), fsentinel);
      GemmS8S8F32Ref(m, xs.data(), ldx, p, e, fref.data(), ldy);
      k.s8s8f32(m, xs.data(), ldx, p, e, fgot.data(), ldy);
      ASSERT_EQ(0, std::memcmp(fref.data(), fgot.data(), out_size * sizeof(float))) << "s8s8f32";
    }
  }
}

class QuantGemmParity : public ::testing::TestWithParam<Isa> {};

TEST_P(QuantGemmParity, BitExactToReferenceOverAwkwardSizes) {
  const Isa isa = GetParam();
  if (!IsaSupported(isa)) GTEST_SKIP() << IsaName(isa) << " is not supported on this host";
  const GemmKernels& k = KernelsFor(isa);
  ASSERT_EQ(k.isa, isa);
  std::mt19937 rng(42);
  for (Weights kind : {Weights::kFull, Weights::kSevenBit, Weights::kExtremes}) {
    for (int rows : kSizes) {
      for (int cols : kSizes) {
        std::vector<int8_t> w = MakeWeights(rows, cols, kind, rng);
        std::vector<float> scales(static_cast<size_t>(rows));
        for (float& s : scales) s = 1e-3f * static_cast<float>(1 + rng() % 1000);
        auto p = PackWeightsS8(w.data(), rows, cols, cols, scales);
        ASSERT_TRUE(p.ok()) << p.status();
        for (int m : kBatches) {
          SCOPED_TRACE(std::string(IsaName(isa)) + " weights " +
                       std::to_string(static_cast<int>(kind)) + " rows " + std::to_string(rows) +
                       " cols " + std::to_string(cols) + " m " + std::to_string(m));
          ExpectParity(k, *p, m, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// The AVX-VNNI code path with the EVEX encoding of the same instruction (gemm_ymm_vnni_evex.cc).
TEST(QuantGemmParityAvxVnniViaEvex, BitExactToReferenceOverAwkwardSizes) {
  if (!IsaSupported(Isa::kAvx512Vnni)) GTEST_SKIP() << "needs AVX512-VNNI + VL";
  const GemmKernels& k = testing::AvxVnniViaEvexKernels();
  std::mt19937 rng(43);
  for (int rows : kSizes) {
    for (int cols : kSizes) {
      std::vector<int8_t> w = MakeWeights(rows, cols, Weights::kFull, rng);
      auto p = PackWeightsS8(w.data(), rows, cols, cols);
      ASSERT_TRUE(p.ok()) << p.status();
      for (int m : kBatches) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols) + " m " +
                     std::to_string(m));
        ExpectParity(k, *p, m, rng);
        if (HasFatalFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, QuantGemmParity,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni,
                                           Isa::kAvx512Vnni),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

TEST(QuantDispatch, NamesRoundTrip) {
  for (int i = 0; i < kNumIsas; ++i) {
    auto parsed = ParseIsa(IsaName(static_cast<Isa>(i)));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(static_cast<int>(*parsed), i);
  }
  EXPECT_FALSE(ParseIsa("avx512").ok());
  EXPECT_FALSE(ParseIsa("native").ok());
}

TEST(QuantDispatch, TableRuleFirstSupportedWithinCapWins) {
  const uint32_t s = 1u << 0, a2 = 1u << 1, av = 1u << 2, a5 = 1u << 3;
  EXPECT_EQ(ChooseIsa(s | a2 | av | a5, Isa::kAvx512Vnni), Isa::kAvx512Vnni);
  EXPECT_EQ(ChooseIsa(s | a2 | a5, Isa::kAvxVnni), Isa::kAvx2);        // a Zen 4: no AVX-VNNI
  EXPECT_EQ(ChooseIsa(s | a2 | av, Isa::kAvx512Vnni), Isa::kAvxVnni);  // an Alder Lake
  EXPECT_EQ(ChooseIsa(s | a2, Isa::kAvx512Vnni), Isa::kAvx2);
  EXPECT_EQ(ChooseIsa(s | a5, Isa::kAvx2), Isa::kScalar);
  EXPECT_EQ(ChooseIsa(s, Isa::kAvx512Vnni), Isa::kScalar);
  EXPECT_EQ(ChooseIsa(s | a2 | av | a5, Isa::kScalar), Isa::kScalar);
}

TEST(QuantDispatch, HostDetectionIsConsistent) {
  const uint32_t mask = SupportedIsaMask();
  EXPECT_TRUE(mask & 1u) << "scalar is always supported";
  EXPECT_EQ(ChooseIsa(mask, Isa::kAvx512Vnni), ActiveIsa());
  std::printf("CPU: %s; supported mask 0x%x; active %s\n", CpuBrand(), mask, ActiveIsaName());
#if defined(__GNUC__)
  // Cross-check with the compiler's own cpuid reading.
  __builtin_cpu_init();
  EXPECT_EQ(IsaSupported(Isa::kAvx2), __builtin_cpu_supports("avx2") != 0);
  if (IsaSupported(Isa::kAvx512Vnni)) {
    EXPECT_TRUE(__builtin_cpu_supports("avx512vnni"));
  }
#endif
}

TEST(QuantDispatch, CapPicksReferenceAndNeverAnUnsupportedIsa) {
  IsaCapGuard guard;
  EXPECT_EQ(SetMaxIsa(Isa::kScalar), Isa::kScalar);
  EXPECT_EQ(ActiveIsa(), Isa::kScalar);
  EXPECT_EQ(ActiveKernels().u8s8s32, &GemmU8S8S32Ref);
  EXPECT_EQ(ActiveKernels().s8s8f32, &GemmS8S8F32Ref);
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa cap = static_cast<Isa>(i);
    SCOPED_TRACE(IsaName(cap));
    const Isa active = SetMaxIsa(cap);
    EXPECT_EQ(active, ActiveIsa());
    EXPECT_LE(active, cap);
    EXPECT_TRUE(IsaSupported(active));
    EXPECT_EQ(&ActiveKernels(), &KernelsFor(active));
    EXPECT_EQ(active, ChooseIsa(SupportedIsaMask(), cap));
  }
}

TEST(QuantDispatch, DispatchedCallsUseTheActiveVariant) {
  IsaCapGuard guard;
  std::mt19937 rng(3);
  const int rows = 65, cols = 33;
  std::vector<int8_t> w = MakeWeights(rows, cols, Weights::kFull, rng);
  auto p = PackWeightsS8(w.data(), rows, cols, cols);
  ASSERT_TRUE(p.ok());
  std::vector<uint8_t> x(cols);
  for (uint8_t& v : x) v = static_cast<uint8_t>(rng());
  std::vector<int32_t> ref(rows), got(rows);
  GemmU8S8S32Ref(1, x.data(), cols, *p, ref.data(), rows);
  for (int i = 0; i < kNumIsas; ++i) {
    SetMaxIsa(static_cast<Isa>(i));
    std::fill(got.begin(), got.end(), 0);
    GemvU8S8S32(*p, x.data(), got.data());
    EXPECT_EQ(ref, got) << ActiveIsaName();
  }
}

// Run by ctest with QSIG_MAX_ISA set (tests/quant/CMakeLists.txt); skipped otherwise.
TEST(QuantDispatch, EnvCapIsHonoured) {
  const char* env = std::getenv("QSIG_MAX_ISA");
  if (env == nullptr) GTEST_SKIP() << "QSIG_MAX_ISA is not set";
  auto cap = ParseIsa(env);
  ASSERT_TRUE(cap.ok()) << cap.status();
  ASSERT_TRUE(EnvMaxIsa().ok());
  EXPECT_EQ(*EnvMaxIsa(), *cap);
  EXPECT_LE(ActiveIsa(), *cap);
  IsaCapGuard guard;
  // The API cap cannot lift the env cap.
  EXPECT_LE(SetMaxIsa(Isa::kAvx512Vnni), *cap);
  EXPECT_EQ(ActiveIsa(), ChooseIsa(SupportedIsaMask(), *cap));
}

}  // namespace
}  // namespace qsig::quant
