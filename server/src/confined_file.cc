// ReadConfinedFile and SanitizeLoadError (confined_file.h).
#include "confined_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace qsig::server {
namespace {

// realpath(3) as a string ("" when it fails: missing, unreadable directory, loop...).
std::string RealPath(const std::string& p) {
  std::unique_ptr<char, decltype(&free)> r(realpath(p.c_str(), nullptr), &free);
  return r ? std::string(r.get()) : std::string();
}

}  // namespace

absl::StatusOr<std::string> ReadConfinedFile(const std::string& dir, const std::string& requested,
                                             uint64_t max_bytes, std::string* resolved) {
  const auto refused = [&] {
    return absl::NotFoundError(absl::StrCat(
        "model file '", absl::CHexEscape(requested.substr(0, 256)),
        "': not found, not readable, not a regular file, larger than admin.max_model_bytes or "
        "outside admin.model_dir"));
  };
  if (requested.empty() || requested.find('\0') != std::string::npos) return refused();
  std::string candidate = requested;
  std::string root;
  if (!dir.empty()) {
    root = RealPath(dir);
    if (root.empty()) return refused();
    if (requested.front() != '/') candidate = absl::StrCat(root, "/", requested);
  }
  const std::string real = RealPath(candidate);
  if (real.empty()) return refused();
  if (!root.empty()) {
    const bool inside = real.size() > root.size() + 1 && real.compare(0, root.size(), root) == 0 &&
                        (root == "/" || real[root.size()] == '/');
    if (!inside) return refused();
  }
  // O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; O_NOFOLLOW: a symlink
  // swapped in after realpath is refused rather than followed.
  const int fd = ::open(real.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return refused();
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) > max_bytes) {
    return refused();
  }
  // Regular files do not block; read at most max_bytes + 1 to see a file that grew.
  const uint64_t limit = max_bytes + 1;
  std::string data;
  data.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  for (;;) {
    if (got == data.size()) {
      if (data.size() >= limit) break;
      data.resize(static_cast<size_t>(std::min<uint64_t>(limit, data.size() + 65536)));
    }
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return refused();
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max_bytes) return refused();
  data.resize(got);
  if (resolved) *resolved = real;
  return data;
}

std::string SanitizeLoadError(std::string message, const std::string& staged,
                              const std::string& shown) {
  for (size_t at = 0; !staged.empty() && (at = message.find(staged, at)) != std::string::npos;) {
    message.replace(at, staged.size(), shown);
    at += shown.size();
  }
  // nlohmann::json parse errors end their detail with "; last read: '<bytes of the file>'"
  // (which may hold quotes), then the loader's own hint, if any.
  if (size_t at = message.find("; last read: "); at != std::string::npos) {
    size_t end = message.find("; NaN/Infinity", at);
    if (end == std::string::npos) end = message.size();
    message.replace(at, end - at, "");
  }
  constexpr size_t kMaxChars = 400;
  if (message.size() > kMaxChars) message = absl::StrCat(message.substr(0, kMaxChars), "...");
  std::string out;
  for (unsigned char ch : message) {
    if (ch >= 0x20 && ch < 0x7f) {
      out.push_back(static_cast<char>(ch));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(ch, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace qsig::server
