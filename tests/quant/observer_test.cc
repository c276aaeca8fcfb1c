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

namespace qsig::quant {
namespace {

// A 3 x 4 weight matrix (torch.nn.Linear layout: rows are output channels).
const std::vector<float> kW = {0.5f, -1.0f, 0.25f, 0.0f,   //
                               2.0f, 1.0f,  -0.5f, 1.5f,   //
                               0.0f, 0.0f,  0.0f,  0.0f};  // a dead output row

TEST(PerChannelMinMaxObserver, Axis0GivesOneSymmetricScalePerOutputRow) {
  PerChannelMinMaxObserver obs(3, 0);
  ASSERT_TRUE(obs.Observe(kW, 3, 4));
  EXPECT_EQ(obs.channel(0).min(), -1.0f);
  EXPECT_EQ(obs.channel(0).max(), 0.5f);
  EXPECT_EQ(obs.channel(1).max(), 2.0f);
  auto p = obs.Params(kS8SymMin, kS8Max, /*symmetric=*/true);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 3u);
  // Known answers: max |w| of the row over 127 (PyTorch's per_channel_symmetric on qint8 with
  // quant_min -127), zero point 0.
  EXPECT_FLOAT_EQ((*p)[0].scale, 1.0f / 127.0f);
  EXPECT_FLOAT_EQ((*p)[1].scale, 2.0f / 127.0f);
  EXPECT_EQ((*p)[0].zero_point, 0);
  // The dead row: any scale is exact; it does not fail the matrix.
  EXPECT_EQ((*p)[2].scale, 1.0f);
  EXPECT_EQ((*p)[2].zero_point, 0);
  // Every channel agrees with the per-tensor formula applied to that channel alone.
  for (int c = 0; c < 2; ++c) {
    auto one =
        ChooseQuantParams(obs.channel(c).min(), obs.channel(c).max(), kS8SymMin, kS8Max, true);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ((*p)[c].scale, one->scale);
  }
}

TEST(PerChannelMinMaxObserver, Axis1StreamsFeaturesOverBatches) {
  PerChannelMinMaxObserver obs(2, 1);
  ASSERT_TRUE(obs.Observe(std::vector<float>{1.0f, 100.0f, -3.0f, 50.0f}, 2, 2));
  ASSERT_TRUE(obs.Observe(std::vector<float>{2.0f, 400.0f}, 1, 2));
  EXPECT_EQ(obs.channel(0).min(), -3.0f);
  EXPECT_EQ(obs.channel(0).max(), 2.0f);
  EXPECT_EQ(obs.channel(1).min(), 50.0f);
  EXPECT_EQ(obs.channel(1).max(), 400.0f);
  EXPECT_EQ(obs.channel(1).count(), 3u);
  auto p = obs.Params(kU8Min, kU8Max, /*symmetric=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  // Asymmetric u8 over [min(lo, 0), max(hi, 0)]: feature 0 spans [-3, 2], feature 1 [0, 400].
  EXPECT_FLOAT_EQ((*p)[0].scale, 5.0f / 255.0f);
  EXPECT_EQ((*p)[0].zero_point, 153);  // round(3 / (5/255)) = round(153.0)
  EXPECT_FLOAT_EQ((*p)[1].scale, 400.0f / 255.0f);
  EXPECT_EQ((*p)[1].zero_point, 0);
}

TEST(PerChannelMinMaxObserver, RefusesWrongShapesAndNamesTheBadChannel) {
  PerChannelMinMaxObserver obs(3, 0);
  EXPECT_FALSE(obs.Observe(kW, 4, 3));                                   // 4 rows, 3 channels
  EXPECT_FALSE(obs.Observe(std::span<const float>(kW).first(5), 3, 4));  // size mismatch
  EXPECT_EQ(obs.channel(0).count(), 0u);
  auto empty = obs.Params(kS8SymMin, kS8Max, true);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("channel 0"), std::string::npos);
  std::vector<float> w = kW;
  w[6] = std::numeric_limits<float>::quiet_NaN();  // row 1
  ASSERT_TRUE(obs.Observe(w, 3, 4));
  auto bad = obs.Params(kS8SymMin, kS8Max, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("channel 1"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("non-finite"), std::string::npos);
}

}  // namespace
}  // namespace qsig::quant
