// ImportTorchScript against PyTorch (fixtures: scripts/make_import_fixtures.py, torch.jit.script
// + save with python3-torch 1.13). Skipped when qsig was built without LibTorch.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
namespace {

using ::testing::AllOf;
using testing::DataPath;
using ::testing::HasSubstr;

class TorchScriptImport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TorchScriptSupported()) GTEST_SKIP() << "built without LibTorch (QSIG_WITH_TORCH=OFF)";
  }
};

TEST_F(TorchScriptImport, MatchesPyTorchWithin1e5) {
  for (const char* model :
       {"lstm2_head", "lstm_hn_head", "lstm_head_all_steps", "gru_head", "mlp"}) {
    SCOPED_TRACE(model);
    const testing::Expected e = testing::LoadExpected(model);
    ImportOptions o;
    o.window = e.window;
    auto spec = ImportTorchScript(DataPath(absl::StrCat(model, ".pt")), o);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->input_size, e.input_size);
    EXPECT_EQ(spec->window, e.window);
    EXPECT_LE(testing::MaxAbsError(*spec, e), 1e-5);
  }
}

// scripts/make_torchscript_fixtures.py: every model traced and scripted, as people save them.
constexpr const char* kAsSaved[] = {"mlp",        "mlp_seq",           "lstm_bf",
                                    "lstm_sf_hn", "lstm_stacked",      "lstm_nobias_sf",
                                    "gru_bf",     "gru_stacked_sf_hn", "gru_stacked_bf_hn"};

TEST_F(TorchScriptImport, TracedAndScriptedMatchPyTorchWithin1e5) {
  for (const char* model : kAsSaved) {
    const testing::Expected e = testing::LoadExpected(absl::StrCat("ts_", model));
    for (const char* how : {"traced", "scripted"}) {
      SCOPED_TRACE(absl::StrCat(model, " ", how));
      ImportOptions o;
      o.window = e.window > 1 ? e.window : 0;
      auto spec = ImportTorchScript(DataPath(absl::StrCat("ts_", model, ".", how, ".pt")), o);
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_EQ(spec->input_size, e.input_size);
      EXPECT_EQ(spec->window, e.window);
      EXPECT_LE(testing::MaxAbsError(*spec, e), 1e-5);
    }
  }
}

TEST_F(TorchScriptImport, ReadsRecurrentShapeFromTheGraph) {
  // Tracing drops num_layers / hidden_size: they come from aten::lstm and the weight shapes.
  ImportOptions o;
  o.window = 24;
  auto spec = ImportTorchScript(DataPath("ts_lstm_stacked.traced.pt"), o);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->lstm.size(), 2u);
  EXPECT_EQ(spec->lstm[0].input_size, 17);
  EXPECT_EQ(spec->lstm[0].hidden_size, 48);
  EXPECT_EQ(spec->lstm[1].input_size, 48);
  o.window = 5;
  auto gru = ImportTorchScript(DataPath("ts_gru_stacked_bf_hn.traced.pt"), o);
  ASSERT_TRUE(gru.ok()) << gru.status();
  EXPECT_EQ(gru->gru.size(), 3u);
  EXPECT_EQ(gru->arch, Arch::kGru);
}

TEST_F(TorchScriptImport, RefusesUnsupportedNodesByName) {
  ImportOptions o;
  o.window = 4;
  auto bidir = ImportTorchScript(DataPath("ts_refuse_bidirectional.pt"), o);
  ASSERT_FALSE(bidir.ok());
  EXPECT_THAT(bidir.status().message(),
              AllOf(HasSubstr("node aten::lstm"), HasSubstr("bidirectional")));
  auto proj = ImportTorchScript(DataPath("ts_refuse_proj.pt"), o);
  ASSERT_FALSE(proj.ok());
  EXPECT_THAT(proj.status().message(), AllOf(HasSubstr("module 'rnn'"), HasSubstr("proj_size")));
  auto packed = ImportTorchScript(DataPath("ts_refuse_packed.pt"), o);
  ASSERT_FALSE(packed.ok());
  EXPECT_THAT(packed.status().message(),
              AllOf(HasSubstr("node aten::_pack_padded_sequence"), HasSubstr("packed")));
}

TEST_F(TorchScriptImport, RecurrentModelNeedsTheWindow) {
  auto spec = ImportTorchScript(DataPath("lstm2_head.pt"));
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("pass the window"));
}

TEST_F(TorchScriptImport, RefusesUnsupportedModulesByName) {
  auto ln = ImportTorchScript(DataPath("mlp_layernorm.pt"));
  ASSERT_FALSE(ln.ok());
  EXPECT_THAT(ln.status().message(),
              AllOf(HasSubstr("module '1'"), HasSubstr("LayerNorm"), HasSubstr("not supported"),
                    HasSubstr("supported: nn.LSTM")));
  ImportOptions o;
  o.window = 5;
  auto conv = ImportTorchScript(DataPath("conv1d.pt"), o);
  ASSERT_FALSE(conv.ok());
  EXPECT_THAT(conv.status().message(), AllOf(HasSubstr("module 'conv'"), HasSubstr("Conv1d")));
}

TEST_F(TorchScriptImport, RefusesTruncatedFile) {
  auto spec = ImportTorchScript(DataPath("truncated.pt"));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(spec.status().message(), HasSubstr("not a loadable TorchScript file"));
}

}  // namespace
}  // namespace qsig::models::io
