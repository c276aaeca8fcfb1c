// The torch-free ImportTorchScript's hand-over to the qsig-torch process when the helper
// misbehaves: it hangs (killed after $QSIG_TORCH_TIMEOUT_S), dies, or is missing.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/io/import.h"

namespace qsig::models::io {
namespace {

using ::testing::HasSubstr;

std::string Script(const std::string& name, const std::string& body) {
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(base && *base ? base : "/tmp") + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return path;
}

const std::string kModel = QSIG_SOURCE_DIR "/tests/integration/data/demo_lstm.pt";

TEST(TorchToolProcess, AHangingHelperIsKilledAfterTheTimeout) {
  ::setenv("QSIG_TORCH_TOOL", Script("qsig_torch_hangs.sh", "sleep 30").c_str(), 1);
  ::setenv("QSIG_TORCH_TIMEOUT_S", "0.5", 1);
  ImportOptions o;
  o.window = 16;
  auto r = ImportTorchScript(kModel, o);
  ::unsetenv("QSIG_TORCH_TIMEOUT_S");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("did not finish importing within 0.5 s"));
}

TEST(TorchToolProcess, AHelperThatDiesIsReportedWithItsStatus) {
  ::setenv("QSIG_TORCH_TOOL", Script("qsig_torch_dies.sh", "kill -9 $$").c_str(), 1);
  auto r = ImportTorchScript(kModel, ImportOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("died on signal 9"));
  ::setenv("QSIG_TORCH_TOOL",
           Script("qsig_torch_says.sh", "echo 'qsig-torch import: not today' >&2; exit 24").c_str(),
           1);
  r = ImportTorchScript(kModel, ImportOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);  // 24 - 10 = 14: the code it sent
  EXPECT_EQ(r.status().message(), "not today");
}

TEST(TorchToolProcess, AMissingHelperSaysWhatToDo) {
  ::setenv("QSIG_TORCH_TOOL", "/nonexistent/qsig-torch", 1);
  auto r = ImportTorchScript(kModel, ImportOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("cannot run /nonexistent/qsig-torch"));
}

}  // namespace
}  // namespace qsig::models::io
