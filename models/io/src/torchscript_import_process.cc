// ImportTorchScript without LibTorch in the process: the variant the server and the qsig command
// link (LibTorch in the server process stops prometheus-cpp's exposer from starting; see
// models/io/CMakeLists.txt). It runs the qsig-torch helper (`qsig-torch import`, the LibTorch
// importer of torchscript_import.cc in its own process), which writes the model in qsig's JSON
// format, and reads that back. Cold path only (model load): it forks and waits.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "internal/import_common.h"
#include "qsig/models/io/import.h"
#include "qsig/models/io/torch_tool.h"

extern char** environ;

namespace qsig::models::io {
namespace {

std::string ReadSmallFile(const std::string& path) {
  auto bytes = internal::ReadFileBytes(path);
  return bytes.ok() ? *bytes : std::string();
}

// A private temporary directory, removed with its files by the destructor.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(base && *base ? base : "/tmp", "/qsig-torch-XXXXXX");
    if (::mkdtemp(templ.data()) != nullptr) dir_ = templ;
  }
  ~TempDir() {
    if (dir_.empty()) return;
    for (const char* f : {"/model.json", "/stderr.txt"}) std::remove((dir_ + f).c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace

absl::StatusOr<ModelSpec> ImportTorchScript(const std::string& path, const ImportOptions& options) {
  const std::string tool = FindTorchTool();
  if (tool.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        path,
        ": loading TorchScript needs the qsig-torch helper (built with LibTorch, installed "
        "beside qsig), and none was found beside this executable, on PATH or in "
        "$QSIG_TORCH_TOOL; export the model to ONNX (torch.onnx.export) instead"));
  }
  auto bytes = internal::ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  TempDir tmp;
  if (tmp.path().empty()) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot create a temporary directory: ", std::strerror(errno)));
  }
  const std::string out = tmp.path() + "/model.json";
  const std::string err = tmp.path() + "/stderr.txt";
  std::vector<std::string> args = {tool, "import", "--model", path, "-o", out};
  if (options.window > 0) {
    args.insert(args.end(), {"--window", std::to_string(options.window)});
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, tool.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot run ", tool, ": ", std::strerror(rc)));
  }
  // A helper that hangs (a pathological file, a wedged LibTorch) must not hang the caller: the
  // server may be loading a model. $QSIG_TORCH_TIMEOUT_S (default 120 s) bounds the wait.
  double timeout_s = 120;
  if (const char* t = std::getenv("QSIG_TORCH_TIMEOUT_S"); t != nullptr && *t != '\0') {
    timeout_s = std::strtod(t, nullptr);
    if (!(timeout_s > 0)) timeout_s = 120;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(
          absl::StrCat(path, ": waiting for ", tool, ": ", std::strerror(errno)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(path, ": ", tool, " did not finish importing within ", timeout_s,
                       " s ($QSIG_TORCH_TIMEOUT_S); killed it"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // The helper prints one "qsig-torch import: <message>" line per error; pass it on.
    std::string message(absl::StripAsciiWhitespace(ReadSmallFile(err)));
    if (message.size() > 2000) message = message.substr(message.size() - 2000);
    absl::string_view m = message;
    absl::ConsumePrefix(&m, "qsig-torch import: ");
    if (m.empty()) {
      return absl::InternalError(
          absl::StrCat(path, ": ", tool,
                       WIFEXITED(status) ? absl::StrCat(" exited with status ", WEXITSTATUS(status))
                                         : absl::StrCat(" died on signal ", WTERMSIG(status))));
    }
    // qsig-torch import exits with 10 + the absl::StatusCode of the importer's error.
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) - 10 : -1;
    if (code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
      return absl::Status(static_cast<absl::StatusCode>(code), m);
    }
    return absl::InvalidArgumentError(std::string(m));
  }
  auto spec = LoadModelJson(out);
  if (!spec.ok()) {
    return absl::InternalError(absl::StrCat(
        path, ": the model qsig-torch wrote is unreadable: ", spec.status().message()));
  }
  // Name, feature names, normalization and the source hash: as the in-process importer sets
  // them, from `options` and the TorchScript file's bytes.
  if (absl::Status st = internal::FinishSpec(path, *bytes, options, *spec); !st.ok()) return st;
  return *std::move(spec);
}

bool TorchScriptSupported() noexcept { return !FindTorchTool().empty(); }

}  // namespace qsig::models::io
