// FindTorchTool (torch_tool.h).
#include "qsig/models/io/torch_tool.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace qsig::models::io {
namespace {

bool Executable(const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; }

}  // namespace

std::string FindTorchTool() {
  if (const char* env = std::getenv("QSIG_TORCH_TOOL"); env != nullptr && *env != '\0') {
    return env;
  }
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.find_last_of('/') + 1);
    if (Executable(dir + "qsig-torch")) return dir + "qsig-torch";
  }
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view d : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string p = absl::StrCat(d, "/qsig-torch");
      if (Executable(p)) return p;
    }
  }
  return "";
}

}  // namespace qsig::models::io
