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
