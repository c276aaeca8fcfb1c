// INT8 accuracy on the issue-3 reference models (LSTM-A, LSTM-B, MLP-C): calibrated on one
// simulated session, evaluated on another, output centred at 0. Budget (issue 3): with entropy
// or percentile calibration, RMSE(INT8 - FP32) <= 1% of RMS(FP32) and sign agreement >= 99%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "internal/runtime.h"
#include "qsig/models/model.h"
#include "qsig/quant/kernels.h"
#include "qsig/quant/quantize.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

using quant::CalibrationMethod;
using reference::Agreement;
using reference::Ref;

struct Data {
  std::shared_ptr<const ModelSpec> spec;
  std::vector<float> calib, eval, fp32_out;
};

const Data& GetData(Ref r) {
  static Data d[4];
  Data& x = d[static_cast<int>(r)];
  if (x.spec) return x;
  x.spec = std::make_shared<const ModelSpec>(reference::TrainedSpec(r));
  const int in = x.spec->input_size, w = x.spec->window;
  // Calibration: ~1000 windows from one session; evaluation: ~2000 from another.
  x.calib = reference::Windows(reference::Features(101, 3000, in), w, in, w > 1 ? 2 : 3);
  x.eval = reference::Windows(reference::Features(202, 4000, in), w, in, w > 1 ? 2 : 2);
  auto fp32 = MakeFp32Model(x.spec);
  x.fp32_out = reference::RunAll(*fp32, x.eval);
  return x;
}

Agreement Measure(Ref r, const Int8Options& o) {
  const Data& d = GetData(r);
  auto q = CalibrateInt8Model(d.spec, d.calib, o);
  EXPECT_TRUE(q.ok()) << q.status();
  if (!q.ok()) return {};
  return reference::Compare(d.fp32_out, reference::RunAll(**q, d.eval));
}

class ReferenceInt8 : public ::testing::TestWithParam<Ref> {};

TEST_P(ReferenceInt8, MethodsTable) {
  const Ref r = GetParam();
  for (CalibrationMethod m : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile,
                              CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    for (bool pf : {false, true}) {
      Int8Options o;
      o.method = m;
      o.per_feature_input = pf;
      const Agreement a = Measure(r, o);
      std::printf("%-7s %-10s per_feature=%d  RMSE %.3f%%  sign %.2f%%  (n=%zu)\n",
                  reference::RefName(r), quant::CalibrationMethodName(m), pf, 100 * a.rmse_over_rms,
                  100 * a.sign_agreement, a.n);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Refs, ReferenceInt8,
                         ::testing::Values(Ref::kLstmA, Ref::kLstmB, Ref::kMlpC, Ref::kGruD));

}  // namespace
}  // namespace qsig::models

namespace qsig::models {
namespace {

TEST_P(ReferenceInt8, SensitivityTable) {
  const Data& d = GetData(GetParam());
  for (CalibrationMethod m : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile}) {
    Int8Options o;
    o.method = m;
    o.per_feature_input = false;
    auto s = AnalyzeSensitivity(d.spec, d.calib, d.eval, o);
    ASSERT_TRUE(s.ok()) << s.status();
    for (const LayerSensitivity& l : *s) {
      std::printf("%-7s %-10s %-9s RMSE %.3f%% sign %.2f%%\n", reference::RefName(GetParam()),
                  quant::CalibrationMethodName(m), l.layer.c_str(), 100 * l.rmse_over_rms,
                  100 * l.sign_agreement);
    }
  }
}

}  // namespace
}  // namespace qsig::models

namespace qsig::models {
namespace {

// The issue-3 budget with the default options (percentile) and with entropy calibration, and
// the INT8 weight bytes (<= 27% of FP32).
TEST_P(ReferenceInt8, MeetsBudgetWithPercentileAndEntropy) {
  const Ref r = GetParam();
  for (CalibrationMethod m : {CalibrationMethod::kPercentile, CalibrationMethod::kEntropy}) {
    SCOPED_TRACE(quant::CalibrationMethodName(m));
    Int8Options o;
    o.method = m;
    if (r == Ref::kMlpC) {
      // The 256-wide ReLU input of MLP-C's middle layer needs s16 activations for 1% (u8: 1.4%).
      o.layers = {Precision::kInt8S16, Precision::kInt8S16, Precision::kFp32};
    }
    const Agreement a = Measure(r, o);
    RecordProperty(std::string(quant::CalibrationMethodName(m)) + "_rmse_pct",
                   std::to_string(100 * a.rmse_over_rms));
    EXPECT_LE(a.rmse_over_rms, 0.01);
    EXPECT_GE(a.sign_agreement, 0.99);
  }
  const Data& d = GetData(r);
  // Weight bytes: <= 27% of FP32 with every layer INT8 (fp32_head off, still within the
  // accuracy budget); the default's FP32 head adds 3 bytes per head weight.
  Int8Options all;
  all.fp32_head = false;
  all.max_rmse = 0;  // all INT8, no accuracy guard
  auto q = CalibrateInt8Model(d.spec, d.calib, all);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_STREQ((*q)->precision(), "int8");
  const size_t fp32_bytes = MakeFp32Model(d.spec)->weight_bytes();
  // (GRU-D is not an issue-3 reference model: a GRU stores b_hh apart from b_ih, 27.5%.)
  if (r != Ref::kGruD) {
    EXPECT_LE((*q)->weight_bytes(), 0.27 * fp32_bytes);
  }
  const Agreement a = reference::Compare(d.fp32_out, reference::RunAll(**q, d.eval));
  if (r != Ref::kMlpC) {
    EXPECT_LE(a.rmse_over_rms, 0.01);
  }
  std::printf("%-7s weight bytes: int8 %zu = %.2f%% of fp32 %zu; all-int8 RMSE %.3f%%\n",
              reference::RefName(r), (*q)->weight_bytes(),
              100.0 * static_cast<double>((*q)->weight_bytes()) / static_cast<double>(fp32_bytes),
              fp32_bytes, 100 * a.rmse_over_rms);
}

TEST_P(ReferenceInt8, SensitivityRanksEveryLayer) {
  const Data& d = GetData(GetParam());
  auto s = AnalyzeSensitivity(d.spec, d.calib, d.eval);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), QuantizableLayers(*d.spec).size());
  for (size_t i = 1; i < s->size(); ++i)
    EXPECT_GE((*s)[i - 1].rmse_over_rms, (*s)[i].rmse_over_rms);
  for (const LayerSensitivity& l : *s) EXPECT_GT(l.rmse_over_rms, 0.0) << l.layer;
}

}  // namespace
}  // namespace qsig::models

namespace qsig::models {
namespace {

// Int8Options::reduce_range (7-bit weights, for CPUs without VNNI): about twice the weight
// rounding error. Measured on the evaluation session (percentile calibration), 8-bit vs 7-bit,
// with the default plan and with every layer INT8 (no FP32 head, no accuracy guard); the bounds
// sit a little above what was measured (models/README.md, "Calibration options").
TEST_P(ReferenceInt8, ReduceRangeStaysWithinBound) {
  const Ref r = GetParam();
  struct Case {
    const char* name;
    bool all_int8;
  };
  for (const Case c : {Case{"default", false}, Case{"all-int8", true}}) {
    SCOPED_TRACE(c.name);
    Int8Options o;
    if (c.all_int8) {
      o.fp32_head = false;
      o.max_rmse = 0;
    }
    const Agreement a8 = Measure(r, o);
    o.reduce_range = true;
    const Agreement a7 = Measure(r, o);
    std::printf("%-7s %-8s 8-bit RMSE %.3f%% sign %.2f%%  reduce_range RMSE %.3f%% sign %.2f%%\n",
                reference::RefName(r), c.name, 100 * a8.rmse_over_rms, 100 * a8.sign_agreement,
                100 * a7.rmse_over_rms, 100 * a7.sign_agreement);
    // Measured (x86-64, this seed): default plan 0.62-1.40% (8-bit 0.36-0.71%); all-INT8
    // 0.84-1.35%, MLP-C 2.61% (8-bit 0.53-0.99%, MLP-C 1.98%).
    const double bound = c.all_int8 && r == Ref::kMlpC ? 0.03 : 0.02;
    EXPECT_LE(a7.rmse_over_rms, bound);
    EXPECT_GE(a7.sign_agreement, 0.985);
  }
}

// A reduce_range model holds 7-bit weights in every INT8 matmul (u8 and s16 activations alike),
// and every kernel table present computes it as the reference does (the integer parts exactly,
// kernels_test.cc; here end to end, where only exp / reciprocal differ by a few ulp).
TEST_P(ReferenceInt8, ReduceRangeWeightsAre7BitOnEveryIsa) {
  const Data& d = GetData(GetParam());
  Int8Options o;
  o.fp32_head = false;
  o.max_rmse = 0;
  o.reduce_range = true;
  auto q = CalibrateInt8Model(d.spec, d.calib, o);
  ASSERT_TRUE(q.ok()) << q.status();
  auto* rt = dynamic_cast<internal::Runtime*>(q->get());
  ASSERT_NE(rt, nullptr);
  int n_int8 = 0;
  auto check = [&n_int8](const internal::MatmulOp& m) {
    if (!m.int8) return;
    ++n_int8;
    EXPECT_LE(m.wq.max_abs, quant::kS8ReduceRangeMax);
    EXPECT_GE(m.wq.max_abs, quant::kS8ReduceRangeMax - 1);  // some weight is near the row max
  };
  for (const internal::RnnLayer& l : rt->rnn()) {
    check(l.ih);
    check(l.hh);
  }
  for (const internal::HeadLayer& h : rt->head()) check(h.w);
  EXPECT_EQ(static_cast<size_t>(n_int8),
            2 * rt->rnn().size() + rt->head().size());  // every matmul INT8

  const std::vector<float> windows(
      d.eval.begin(),
      d.eval.begin() + std::min<size_t>(d.eval.size(), 200 * d.spec->window * d.spec->input_size));
  rt->set_kernels(&quant::RefKernels());
  const std::vector<float> want = reference::RunAll(*rt, windows);
  for (const quant::Kernels* k :
       {quant::KernelsFor(quant::Isa::kAvx512Vnni), quant::KernelsFor(quant::Isa::kAvxVnni),
        quant::KernelsFor(quant::Isa::kAvx2)}) {
    if (k == nullptr) continue;
    SCOPED_TRACE(quant::IsaName(k->isa));
    rt->set_kernels(k);
    const std::vector<float> got = reference::RunAll(*rt, windows);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4 * (1.0 + std::fabs(want[i]))) << "window " << i;
    }
  }
}

}  // namespace
}  // namespace qsig::models
