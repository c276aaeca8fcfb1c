#include "qsig/quant/gemv.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace qsig::quant {
namespace {

constexpr int kSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129};

// The definition, in double, independently of the kernel's integer arithmetic.
std::vector<int32_t> NaiveGemv(int rows, int cols, const std::vector<int8_t>& w, ptrdiff_t ldw,
                               const std::vector<uint8_t>& x) {
  std::vector<int32_t> y(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    double acc = 0;
    for (int c = 0; c < cols; ++c) {
      acc += static_cast<double>(w[static_cast<size_t>(r * ldw + c)]) *
             static_cast<double>(x[static_cast<size_t>(c)]);
    }
    y[static_cast<size_t>(r)] = static_cast<int32_t>(acc);
  }
  return y;
}

TEST(QuantGemv, RefMatchesNaiveOnAwkwardSizes) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> wd(-128, 127);
  std::uniform_int_distribution<int> xd(0, 255);
  for (int rows : kSizes) {
    for (int cols : kSizes) {
      SCOPED_TRACE(testing::Message() << rows << " x " << cols);
      for (ptrdiff_t pad : {0, 3}) {
        const ptrdiff_t ldw = cols + pad;
        std::vector<int8_t> w(static_cast<size_t>(rows * ldw));
        std::vector<uint8_t> x(static_cast<size_t>(cols));
        for (auto& v : w) v = static_cast<int8_t>(wd(rng));
        for (auto& v : x) v = static_cast<uint8_t>(xd(rng));
        std::vector<int32_t> y(static_cast<size_t>(rows), -1);
        GemvU8S8S32Ref(rows, cols, w.data(), ldw, x.data(), y.data());
        ASSERT_EQ(y, NaiveGemv(rows, cols, w, ldw, x));
      }
    }
  }
}

TEST(QuantGemv, RefHandlesExtremeValues) {
  for (int cols : kSizes) {
    SCOPED_TRACE(cols);
    const int rows = 3;
    std::vector<int8_t> w(static_cast<size_t>(rows * cols));
    for (int c = 0; c < cols; ++c) {
      w[static_cast<size_t>(c)] = -128;
      w[static_cast<size_t>(cols + c)] = 127;
      w[static_cast<size_t>(2 * cols + c)] = static_cast<int8_t>(c % 2 ? -128 : 127);
    }
    std::vector<uint8_t> x(static_cast<size_t>(cols), 255);
    std::vector<int32_t> y(static_cast<size_t>(rows));
    GemvU8S8S32Ref(rows, cols, w.data(), cols, x.data(), y.data());
    EXPECT_EQ(y[0], -128 * 255 * cols);
    EXPECT_EQ(y[1], 127 * 255 * cols);
    EXPECT_EQ(y, NaiveGemv(rows, cols, w, cols, x));
  }
}

}  // namespace
}  // namespace qsig::quant
