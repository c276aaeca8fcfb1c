// RunTrain / RunQat on synthetic feature files with a known signal: training must find it, the
// written model must be what qsig serves, and QAT must report PTQ and QAT side by side.
#include "qsig/models/train/train.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/model.h"
#include "qsig/models/model_json.h"

namespace qsig::models::train {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base && *base ? base : "/tmp") + "/qsig_train_test";
  std::string cmd = "mkdir -p " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir + "/" + name;
}

// `rows` rows over 4 locates, 6 features of very different scales (AR(1) per locate). The label
// is a known function of the features plus noise: for lag 0, of the current row (an MLP can
// learn it); for lag 3, of the row 3 updates back of the same locate (needs a window).
std::string MakeCsv(const std::string& name, int rows, int lag, uint32_t seed) {
  const std::string path = TempPath(name);
  std::ofstream out(path);
  out.precision(9);
  out << "locate,symbol,msg_seq,exchange_ts_ns,mid,ret_1,ret_5,spread,imb_1,qty,flow,label\n";
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const float scale[6] = {1e-3f, 3e-3f, 0.02f, 1.0f, 500.0f, 10.0f};
  std::vector<std::vector<std::vector<float>>> hist(4);
  std::vector<std::vector<float>> state(4, std::vector<float>(6, 0.0f));
  for (int r = 0; r < rows; ++r) {
    const int loc = r % 4;
    auto& s = state[loc];
    for (float& v : s) v = 0.7f * v + 0.7f * nd(rng);
    hist[loc].push_back(s);
    float label = NAN;
    if (static_cast<int>(hist[loc].size()) > lag) {
      const auto& z = hist[loc][hist[loc].size() - 1 - lag];
      label = 2.0f * std::tanh(z[0] - 0.5f * z[3]) + std::max(0.0f, z[4]) + 1.0f * nd(rng);
    }
    out << loc + 1 << ",S" << loc << "," << r + 1 << "," << 34200000000000LL + 1000LL * r
        << ",100.0";
    for (int k = 0; k < 6; ++k) out << "," << s[k] * scale[k];
    if (std::isfinite(label)) {
      out << "," << label << "\n";
    } else {
      out << ",\n";
    }
  }
  return path;
}

TEST(Train, MlpLearnsTheSignalAndWritesWhatQsigServes) {
  const std::string csv = MakeCsv("mlp.csv", 12000, 0, 1);
  TrainOptions o;
  o.data.input_csv = csv;
  o.output_path = TempPath("mlp.json");
  o.report_json = TempPath("mlp.report.json");
  o.arch = "mlp";
  o.epochs = 4;
  std::ostringstream log;
  o.log = &log;
  auto r = RunTrain(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->epochs.size(), 4u);
  EXPECT_THAT(log.str(), HasSubstr("train epoch 4/4"));
  // The signal explains most of the label's variance: a trained model finds it.
  EXPECT_GT(r->val_qsig.ic_pearson, 0.6) << log.str();
  EXPECT_LT(r->epochs.back().train_loss, r->epochs.front().train_loss);
  EXPECT_LT(r->max_abs_diff_torch, 1e-3);

  auto spec = LoadModelJson(o.output_path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->arch, Arch::kMlp);
  EXPECT_EQ(spec->input_size, 6);
  EXPECT_EQ(spec->feature_names[4], "qty");
  EXPECT_EQ(spec->sha256, r->sha256);
  // Normalization learned from the training split: qty's scale is ~500 x its unit std.
  EXPECT_GT(spec->feature_std[4], 100.0f);
  std::ifstream rep(o.report_json);
  std::stringstream ss;
  ss << rep.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("\"epochs_log\""));
}

TEST(Train, LstmUsesItsWindow) {
  const std::string csv = MakeCsv("lstm.csv", 12000, 3, 2);
  TrainOptions o;
  o.data.input_csv = csv;
  o.output_path = TempPath("lstm.json");
  o.arch = "lstm";
  o.window = 6;
  o.hidden = 16;
  o.epochs = 4;
  o.lr = 3e-3;
  std::ostringstream log;
  o.log = &log;
  auto r = RunTrain(o);
  ASSERT_TRUE(r.ok()) << r.status();
  // The label depends on the row 3 updates back: only a model reading the window sees it.
  EXPECT_GT(r->val_qsig.ic_pearson, 0.4) << log.str();
  auto spec = LoadModelJson(o.output_path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->arch, Arch::kLstm);
  EXPECT_EQ(spec->window, 6);
  ASSERT_EQ(spec->lstm.size(), 1u);
  EXPECT_EQ(spec->lstm[0].hidden_size, 16);
}

TEST(Train, RefusesBadOptionsAndData) {
  const std::string csv = MakeCsv("small.csv", 12000, 0, 3);
  TrainOptions o;
  o.data.input_csv = csv;
  o.output_path = TempPath("bad.json");
  std::ostringstream log;
  o.log = &log;
  o.arch = "cnn";
  auto r = RunTrain(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("--arch"));

  o.arch = "mlp";
  o.data.val_fraction = 1.5;
  r = RunTrain(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("--val-fraction"));

  o.data.val_fraction = 0.2;
  o.data.input_csv = TempPath("missing.csv");
  r = RunTrain(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("missing.csv"));

  o.data.input_csv = MakeCsv("tiny.csv", 60, 0, 4);
  r = RunTrain(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("not enough samples"));
}

TEST(Qat, ReportsPtqAndQatSideBySide) {
  const std::string csv = MakeCsv("qat.csv", 12000, 0, 5);
  TrainOptions t;
  t.data.input_csv = csv;
  t.output_path = TempPath("qat_base.json");
  t.epochs = 3;
  std::ostringstream tlog;
  t.log = &tlog;
  ASSERT_TRUE(RunTrain(t).ok());

  QatOptions q;
  q.data.input_csv = csv;
  q.model_path = t.output_path;
  q.output_path = TempPath("qat_tuned.json");
  q.report_json = TempPath("qat.report.json");
  q.epochs = 2;
  q.freeze_observers_after = 1;
  std::ostringstream log;
  q.log = &log;
  auto r = RunQat(q);
  ASSERT_TRUE(r.ok()) << r.status();
  // The MLP 6 -> 32 -> 32 -> 1: s8 weights on both hidden layers, u8 on the second's input,
  // nothing on the model's input (s16 in the runtime) or the FP32 head.
  EXPECT_THAT(r->fake_quantized,
              ::testing::ElementsAre("layers[0].weight s8 per channel",
                                     "layers[1].weight s8 per channel", "layers[1] input u8"));
  EXPECT_THAT(log.str(), HasSubstr("PTQ vs QAT"));
  EXPECT_THAT(log.str(), HasSubstr("QAT INT8"));
  for (const QatColumn* c : {&r->fp32, &r->ptq_int8, &r->qat_fp32, &r->qat_int8}) {
    EXPECT_TRUE(std::isfinite(c->val.ic_pearson));
    EXPECT_GT(c->val.ic_pearson, 0.5);
  }
  // INT8 of either model stays close to its own FP32.
  EXPECT_LT(r->ptq_int8.rmse_over_rms, 0.1);
  EXPECT_LT(r->qat_int8.rmse_over_rms, 0.1);
  EXPECT_GT(r->qat_int8.sign_agreement, 0.9);
  auto tuned = LoadModelJson(q.output_path);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  auto base = LoadModelJson(t.output_path);
  ASSERT_TRUE(base.ok());
  EXPECT_NE(tuned->layers[0].weight, base->layers[0].weight);  // It was fine-tuned.
  // QAT's frozen range of layers[1]'s input travels with the model (JSON input_ranges); the
  // s16 model input and the FP32 head have none.
  ASSERT_EQ(tuned->input_ranges.size(), 3u);
  EXPECT_FALSE(tuned->input_ranges[0].set);
  EXPECT_TRUE(tuned->input_ranges[1].set);
  EXPECT_EQ(tuned->input_ranges[1].min, 0.0f);  // after a ReLU
  EXPECT_GT(tuned->input_ranges[1].max, 0.0f);
  EXPECT_FALSE(tuned->input_ranges[2].set);
  ASSERT_EQ(r->source_ranges.size(), 1u);
  EXPECT_THAT(r->source_ranges[0], HasSubstr("layers[1]"));
  EXPECT_EQ(tuned->feature_mean, base->feature_mean);  // Normalization kept.
}

TEST(Qat, RefusesAModelWhoseFeaturesAreNotInTheFile) {
  const std::string csv = MakeCsv("qat_cols.csv", 2000, 0, 6);
  ModelSpec s;
  s.name = "other";
  s.input_size = 2;
  s.feature_names = {"not_here", "nor_this"};
  s.layers.push_back({2, 1, {0.5f, -0.5f}, {0.0f}, Activation::kNone});
  const std::string model = TempPath("other.json");
  ASSERT_TRUE(WriteModelJson(s, model).ok());
  QatOptions q;
  q.data.input_csv = csv;
  q.model_path = model;
  q.output_path = TempPath("other_qat.json");
  std::ostringstream log;
  q.log = &log;
  auto r = RunQat(q);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("not_here"));
}

TEST(ModelJson, RoundTripsEveryFloatBitForBit) {
  ModelSpec s;
  s.name = "rt";
  s.arch = Arch::kGru;
  s.input_size = 3;
  s.window = 4;
  s.feature_names = {"a", "b", "c"};
  s.feature_mean = {0.1f, -2.5e-7f, 3e5f};
  s.feature_std = {1.0f, 1.0f / 3.0f, 7.0f};
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  s.gru.push_back({3, 5, fill(45), fill(75), fill(15), fill(15)});
  s.layers.push_back({5, 1, fill(5), fill(1), Activation::kTanh});
  s.input_ranges = {SourceRange{}, SourceRange{true, -0.1234567f, 2.5e-3f}};
  const std::string path = TempPath("rt.json");
  auto sha = WriteModelJson(s, path, R"({"note":"test"})");
  ASSERT_TRUE(sha.ok()) << sha.status();
  auto back = LoadModelJson(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gru[0].w_hh, s.gru[0].w_hh);
  EXPECT_EQ(back->feature_mean, s.feature_mean);
  EXPECT_EQ(back->feature_std, s.feature_std);
  EXPECT_EQ(back->layers[0].activation, Activation::kTanh);
  EXPECT_EQ(back->window, 4);
  ASSERT_EQ(back->input_ranges.size(), 2u);
  EXPECT_FALSE(back->input_ranges[0].set);
  EXPECT_TRUE(back->input_ranges[1].set);
  EXPECT_EQ(back->input_ranges[1].min, -0.1234567f);
  EXPECT_EQ(back->input_ranges[1].max, 2.5e-3f);
  // An invalid spec is refused, naming what is wrong.
  s.layers[0].in = 6;
  auto bad = WriteModelJson(s, path);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("layers[0]"));
}

}  // namespace
}  // namespace qsig::models::train
