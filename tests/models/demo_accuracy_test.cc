// INT8 accuracy of the committed demo models (models/demo_*.json) on real `qsig features` data.
// Opt-in: set QSIG_DEMO_FEATURES_CSV to a features CSV (locate,symbol,...,mid,<features>,label);
// otherwise skipped. Calibrates on windows spread over the first 80% of the rows (5000 for the
// MLP, 2000 for the LSTM, as models/README.md describes) and evaluates on 20000 from the rest,
// each window inside one instrument (locate).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "qsig/models/model.h"
#include "reference_models.h"

namespace qsig::models {
namespace {

struct Csv {
  std::vector<int> locate;
  std::vector<float> x;  // rows x 8
};

Csv ReadCsv(const char* path) {
  Csv c;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string f;
    std::vector<std::string> cols;
    while (std::getline(ss, f, ',')) cols.push_back(f);
    if (cols.size() < 14) continue;
    c.locate.push_back(std::atoi(cols[0].c_str()));
    for (int k = 5; k < 13; ++k)
      c.x.push_back(std::strtof(cols[static_cast<size_t>(k)].c_str(), nullptr));
  }
  return c;
}

// n windows of `w` rows ending at evenly spaced rows in [lo, hi), each inside one locate.
std::vector<float> Sample(const Csv& c, int w, size_t lo, size_t hi, size_t n) {
  std::vector<float> out;
  const size_t step = std::max<size_t>(1, (hi - lo) / n);
  for (size_t end = lo + static_cast<size_t>(w); end <= hi && out.size() < n * w * 8; end += step) {
    const size_t start = end - static_cast<size_t>(w);
    if (c.locate[start] != c.locate[end - 1]) continue;
    out.insert(out.end(), c.x.begin() + static_cast<std::ptrdiff_t>(start * 8),
               c.x.begin() + static_cast<std::ptrdiff_t>(end * 8));
  }
  return out;
}

TEST(DemoModelsInt8, AccuracyOnRealFeatures) {
  const char* csv_path = std::getenv("QSIG_DEMO_FEATURES_CSV");
  if (csv_path == nullptr) GTEST_SKIP() << "set QSIG_DEMO_FEATURES_CSV to a qsig features CSV";
  const Csv c = ReadCsv(csv_path);
  ASSERT_GT(c.locate.size(), 100000u);
  const size_t rows = c.locate.size(), split = rows * 8 / 10;
  for (const char* name : {"demo_mlp", "demo_lstm"}) {
    auto spec = LoadModelJson(std::string(QSIG_MODELS_DIR) + "/" + name + ".json");
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto shared = std::make_shared<const ModelSpec>(std::move(*spec));
    const int w = shared->window;
    const std::vector<float> calib = Sample(c, w, 0, split, w == 1 ? 5000 : 2000);
    const std::vector<float> eval = Sample(c, w, split, rows, 20000);
    auto fp32 = MakeFp32Model(shared);
    const std::vector<float> ref = reference::RunAll(*fp32, eval);
    struct Variant {
      const char* label;
      Int8Options o;
    };
    std::vector<Variant> variants(6);
    variants[4].label = "minmax, s16 input, int8 head";
    variants[4].o.method = quant::CalibrationMethod::kMinMax;
    variants[4].o.fp32_head = false;
    variants[5].label = "minmax, u8 input, fp32 head";
    variants[5].o.method = quant::CalibrationMethod::kMinMax;
    variants[5].o.s16_input = false;
    variants[0].label = "minmax, u8 everywhere (first version)";
    variants[0].o.method = quant::CalibrationMethod::kMinMax;
    variants[0].o.s16_input = false;
    variants[0].o.fp32_head = false;
    variants[1].label = "default (percentile, s16 input, fp32 head)";
    variants[2].label = "entropy, s16 input, fp32 head";
    variants[2].o.method = quant::CalibrationMethod::kEntropy;
    variants[3].label = "minmax, s16 input, fp32 head";
    variants[3].o.method = quant::CalibrationMethod::kMinMax;
    if (shared->arch == Arch::kMlp) {
      Variant a, b;
      a.label = "only layers[0] INT8, s16 input";
      a.o.layers = {Precision::kInt8S16, Precision::kFp32, Precision::kFp32};
      b.label = "only layers[0] INT8, u8 input";
      b.o.layers = {Precision::kInt8, Precision::kFp32, Precision::kFp32};
      b.o.s16_input = false;
      variants.push_back(a);
      variants.push_back(b);
      Variant c, d;
      c.label = "only layers[1] INT8 (u8 input)";
      c.o.layers = {Precision::kFp32, Precision::kInt8, Precision::kFp32};
      d.label = "layers[0..1] INT8 s16, head FP32";
      d.o.layers = {Precision::kInt8S16, Precision::kInt8S16, Precision::kFp32};
      variants.push_back(c);
      variants.push_back(d);
    }
    for (const Variant& v : variants) {
      auto q = CalibrateInt8Model(shared, calib, v.o);
      ASSERT_TRUE(q.ok()) << q.status();
      // Centre at the FP32 mean so the sign is informative, as the README's figures do.
      std::vector<float> a = ref, b = reference::RunAll(**q, eval);
      double mean = 0;
      for (float y : a) mean += y;
      mean /= static_cast<double>(a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        a[i] -= static_cast<float>(mean);
        b[i] -= static_cast<float>(mean);
      }
      const reference::Agreement g = reference::Compare(a, b);
      // The same without the 0.1% of samples with the largest |FP32 output| (outliers beyond
      // every calibrated range dominate the plain RMSE).
      std::vector<float> mag;
      for (float y : a) mag.push_back(std::fabs(y));
      std::nth_element(mag.begin(),
                       mag.begin() + static_cast<std::ptrdiff_t>(mag.size() * 999 / 1000),
                       mag.end());
      const float cut = mag[mag.size() * 999 / 1000];
      std::vector<float> ta, tb;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::fabs(a[i]) <= cut) {
          ta.push_back(a[i]);
          tb.push_back(b[i]);
        }
      }
      const reference::Agreement t = reference::Compare(ta, tb);
      std::printf(
          "%-9s %-44s RMSE %.2f%%  sign %.2f%%  | w/o top 0.1%% |y|: RMSE %.2f%%  (n=%zu)\n", name,
          v.label, 100 * g.rmse_over_rms, 100 * g.sign_agreement, 100 * t.rmse_over_rms, g.n);
    }
  }
}

}  // namespace
}  // namespace qsig::models
