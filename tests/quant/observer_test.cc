#include "qsig/quant/observer.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace qsig::quant {
namespace {

TEST(QuantObserver, TracksMinMaxOverStreamedValues) {
  MinMaxObserver obs;
  EXPECT_EQ(obs.count(), 0u);
  obs.Observe(std::vector<float>{0.5f, 2.0f, -0.25f});
  obs.Observe(1.0f);
  obs.Observe(std::vector<float>{-3.0f, 1.5f});
  EXPECT_EQ(obs.min(), -3.0f);
  EXPECT_EQ(obs.max(), 2.0f);
  EXPECT_EQ(obs.count(), 6u);
  auto p = obs.Params(kU8Min, kU8Max, false);
  ASSERT_TRUE(p.ok()) << p.status();
  auto expected = ChooseQuantParams(-3.0f, 2.0f, kU8Min, kU8Max, false);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(p->scale, expected->scale);
  EXPECT_EQ(p->zero_point, expected->zero_point);
  obs.Reset();
  EXPECT_EQ(obs.count(), 0u);
}

TEST(QuantObserver, EmptyObserverHasNoParams) {
  MinMaxObserver obs;
  EXPECT_FALSE(obs.Params(kU8Min, kU8Max, false).ok());
}

TEST(QuantObserver, AllZerosIsDegenerate) {
  MinMaxObserver obs;
  obs.Observe(std::vector<float>(10, 0.0f));
  auto p = obs.Params(kU8Min, kU8Max, false);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("degenerate"), std::string::npos) << p.status();
}

TEST(QuantObserver, NonFiniteValuesAreCountedAndRejected) {
  MinMaxObserver obs;
  obs.Observe(1.0f);
  obs.Observe(std::numeric_limits<float>::quiet_NaN());
  obs.Observe(std::numeric_limits<float>::infinity());
  EXPECT_EQ(obs.min(), 1.0f);
  EXPECT_EQ(obs.max(), 1.0f);
  EXPECT_EQ(obs.non_finite(), 2u);
  auto p = obs.Params(kU8Min, kU8Max, false);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("non-finite"), std::string::npos) << p.status();
}

}  // namespace
}  // namespace qsig::quant
