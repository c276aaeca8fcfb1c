#include "state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace qsig::server {
namespace {

constexpr size_t kMaxStateFileBytes = 64u << 20;

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string Parent(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) {
    errno = saved;
    return Errno("fsync", path);
  }
  return absl::OkStatus();
}

std::string TempName(const std::string& path) { return absl::StrCat(path, ".tmp.", ::getpid()); }

constexpr char kSamplesMagic[8] = {'Q', 'S', 'I', 'G', 'S', 'M', 'P', '1'};
constexpr uint32_t kSamplesFormat = 1;
constexpr size_t kSamplesHeader = sizeof kSamplesMagic + 4 * sizeof(uint32_t) + sizeof(uint64_t);
constexpr const char* kSamplesFile = "samples.bin";

uint64_t Fnv1a(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The host is little-endian (x86-64, AArch64 Linux): the values are copied as they are.
template <typename T>
void AppendRaw(std::string* out, const T* v, size_t n) {
  out->append(reinterpret_cast<const char*>(v), n * sizeof(T));
}
template <typename T>
T ReadRaw(std::string_view bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
}

}  // namespace

std::string EncodeSamples(const SampleSnapshot& s) {
  std::string out(kSamplesMagic, sizeof kSamplesMagic);
  const uint32_t head[4] = {kSamplesFormat, static_cast<uint32_t>(s.window),
                            static_cast<uint32_t>(s.n_features), static_cast<uint32_t>(s.count())};
  AppendRaw(&out, head, 4);
  AppendRaw(&out, &s.seen, 1);
  AppendRaw(&out, s.arrival_unix_ns.data(), s.arrival_unix_ns.size());
  AppendRaw(&out, s.windows.data(), s.windows.size());
  const uint64_t h = Fnv1a(out);
  AppendRaw(&out, &h, 1);
  return out;
}

absl::StatusOr<SampleSnapshot> DecodeSamples(std::string_view b, int window, int n_features) {
  const auto bad = [](std::string why) {
    return absl::DataLossError(absl::StrCat("calibration sample file: ", why));
  };
  if (b.size() < kSamplesHeader + sizeof(uint64_t) ||
      std::memcmp(b.data(), kSamplesMagic, sizeof kSamplesMagic) != 0) {
    return bad("not a qsig sample file");
  }
  const uint64_t h = ReadRaw<uint64_t>(b, b.size() - sizeof(uint64_t));
  if (Fnv1a(b.substr(0, b.size() - sizeof(uint64_t))) != h) return bad("hash mismatch");
  const size_t at = sizeof kSamplesMagic;
  const uint32_t format = ReadRaw<uint32_t>(b, at), w = ReadRaw<uint32_t>(b, at + 4),
                 nf = ReadRaw<uint32_t>(b, at + 8), count = ReadRaw<uint32_t>(b, at + 12);
  if (format != kSamplesFormat) return bad(absl::StrCat("format ", format, ", expected 1"));
  if (w != static_cast<uint32_t>(window) || nf != static_cast<uint32_t>(n_features)) {
    return absl::FailedPreconditionError(absl::StrCat("calibration sample file: windows of ", w,
                                                      " x ", nf, ", the model takes ", window,
                                                      " x ", n_features));
  }
  const uint64_t seen = ReadRaw<uint64_t>(b, at + 16);
  if (seen < count) return bad(absl::StrCat("a sample of ", seen, " windows holds ", count));
  if (count > kMaxStoredSampleWindows) {
    return bad(absl::StrCat(count, " windows, at most ", kMaxStoredSampleWindows));
  }
  const size_t floats = static_cast<size_t>(count) * w * nf;
  if (b.size() !=
      kSamplesHeader + count * sizeof(int64_t) + floats * sizeof(float) + sizeof(uint64_t)) {
    return bad("size does not match its header");
  }
  SampleSnapshot s;
  s.window = window;
  s.n_features = n_features;
  s.seen = seen;
  s.arrival_unix_ns.resize(count);
  s.windows.resize(floats);
  std::memcpy(s.arrival_unix_ns.data(), b.data() + kSamplesHeader, count * sizeof(int64_t));
  std::memcpy(s.windows.data(), b.data() + kSamplesHeader + count * sizeof(int64_t),
              floats * sizeof(float));
  for (float v : s.windows) {
    if (!std::isfinite(v)) return bad("non-finite value");
  }
  return s;
}

absl::Status CommitFile(const std::string& tmp, const std::string& path) {
  if (auto st = FsyncPath(tmp, O_RDONLY); !st.ok()) return st;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("cannot rename to", path);
  return FsyncPath(Parent(path), O_RDONLY | O_DIRECTORY);
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = TempName(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const absl::Status st = Errno("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const absl::Status st = Errno("fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status st = Errno("cannot rename to", path);
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncPath(Parent(path), O_RDONLY | O_DIRECTORY);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return Errno("cannot open", path);
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const absl::Status st = Errno("cannot read", path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat(path, ": larger than ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

std::string SafeFileName(const std::string& name) {
  bool plain = !name.empty() && name[0] != '.' && name.size() <= 64;
  for (unsigned char ch : name) {
    if (!(std::isalnum(ch) || ch == '_' || ch == '-' || ch == '.')) plain = false;
  }
  if (plain) return name;
  std::string out = "x";
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char ch : name) {
    out.push_back(kHex[ch >> 4]);
    out.push_back(kHex[ch & 15]);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir,
                                                             const std::vector<std::string>& models,
                                                             int history_per_model) {
  std::unique_ptr<StateStore> s(new StateStore());
  s->dir_ = dir;
  s->history_per_model_ = history_per_model;
  s->names_ = models;
  s->states_.resize(models.size());
  for (size_t m = 0; m < models.size(); ++m) s->states_[m].model = models[m];
  if (dir.empty()) return s;
  for (size_t m = 0; m < models.size(); ++m) {
    const std::string folder = s->ModelDir(m);
    if (auto st = MakeDirs(folder); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("state.dir: ", st.message()));
    }
    // Leftovers of a write a crash interrupted: never renamed, so never part of the state.
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(folder, ec)) {
      if (f.path().filename().string().find(".tmp.") != std::string::npos) {
        std::filesystem::remove(f.path(), ec);
      }
    }
    const std::string path = folder + "/state.json";
    auto text = ReadWholeFile(path, kMaxStateFileBytes);
    if (!text.ok()) {
      if (!absl::IsNotFound(text.status())) {
        s->load_errors_.push_back(std::string(text.status().message()));
      }
      continue;
    }
    auto parsed = ParseModelState(*text, path);
    if (!parsed.ok()) {
      s->load_errors_.push_back(std::string(parsed.status().message()));
      continue;
    }
    if (parsed->model != models[m]) {
      s->load_errors_.push_back(
          absl::StrCat(path, ": holds model '", parsed->model, "', not '", models[m], "'"));
      continue;
    }
    s->states_[m] = std::move(*parsed);
  }
  return s;
}

std::string StateStore::ModelDir(size_t model) const {
  return absl::StrCat(dir_, "/", SafeFileName(names_[model]));
}

ModelState StateStore::Get(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return states_[model];
}

void StateStore::PruneLocked(size_t model) {
  ModelState& s = states_[model];
  const size_t keep = static_cast<size_t>(history_per_model_);
  if (s.history.size() > keep) {
    s.history.erase(s.history.begin(),
                    s.history.begin() + static_cast<std::ptrdiff_t>(s.history.size() - keep));
  }
}

void StateStore::DeleteUnnamedLocked(size_t model) {
  if (dir_.empty()) return;
  std::set<std::string> named;
  for (const HistoryEntry& e : states_[model].history) {
    if (!e.artifact_file.empty()) named.insert(e.artifact_file);
  }
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(ModelDir(model), ec)) {
    const std::string name = f.path().filename().string();
    if (name.ends_with(".qsig") && !named.contains(name)) std::filesystem::remove(f.path(), ec);
  }
}

absl::Status StateStore::WriteLocked(size_t model) {
  if (dir_.empty()) return absl::OkStatus();
  absl::Status st =
      WriteFileAtomic(ModelDir(model) + "/state.json", SerializeModelState(states_[model]));
  (st.ok() ? writes_ : write_errors_).fetch_add(1, std::memory_order_relaxed);
  if (!st.ok()) spdlog::error("state.dir: {}", std::string(st.message()));
  return st;
}

absl::Status StateStore::Put(size_t model, ModelState state) {
  std::lock_guard<std::mutex> lock(mu_);
  states_[model] = std::move(state);
  PruneLocked(model);
  // Write first, then delete artifacts: a crash in between leaves an unnamed file, never a
  // name without its file.
  absl::Status st = WriteLocked(model);
  if (st.ok()) DeleteUnnamedLocked(model);
  return st;
}

absl::Status StateStore::Record(size_t model, HistoryEntry entry) {
  std::lock_guard<std::mutex> lock(mu_);
  ModelState& s = states_[model];
  s.current_version = entry.version;
  s.next_version = std::max(s.next_version, entry.version + 1);
  s.fallback = entry.fallback;
  s.history.push_back(std::move(entry));
  PruneLocked(model);
  absl::Status st = WriteLocked(model);
  if (st.ok()) DeleteUnnamedLocked(model);
  return st;
}

absl::StatusOr<std::string> StateStore::SaveArtifact(size_t model, uint64_t version,
                                                     models::io::Artifact& artifact) {
  if (dir_.empty()) return std::string();
  const std::string name = absl::StrCat("v", version, ".qsig");
  const std::string path = ModelDir(model) + "/" + name;
  const std::string tmp = TempName(path);
  absl::Status st = models::io::WriteArtifact(artifact, tmp);
  if (st.ok()) st = CommitFile(tmp, path);
  (st.ok() ? writes_ : write_errors_).fetch_add(1, std::memory_order_relaxed);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return absl::Status(st.code(), absl::StrCat("state.dir: ", st.message()));
  }
  return name;
}

absl::StatusOr<std::string> StateStore::SaveArtifactBytes(size_t model, uint64_t version,
                                                          std::string_view bytes) {
  if (dir_.empty()) return std::string();
  const std::string name = absl::StrCat("v", version, ".qsig");
  if (absl::Status st = WriteCounted(model, name, bytes); !st.ok()) return st;
  return name;
}

absl::Status StateStore::WriteCounted(size_t model, const std::string& name,
                                      std::string_view bytes) {
  absl::Status st = WriteFileAtomic(ModelDir(model) + "/" + name, bytes);
  (st.ok() ? writes_ : write_errors_).fetch_add(1, std::memory_order_relaxed);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat("state.dir: ", st.message()));
  return st;
}

absl::Status StateStore::SaveSamples(size_t model, const SampleSnapshot& snapshot) {
  if (dir_.empty()) return absl::OkStatus();
  if (snapshot.count() > kMaxStoredSampleWindows) {
    return absl::InvalidArgumentError("too many windows for the sample file");
  }
  return WriteCounted(model, kSamplesFile, EncodeSamples(snapshot));
}

absl::StatusOr<SampleSnapshot> StateStore::LoadSamples(size_t model, int window,
                                                       int n_features) const {
  if (dir_.empty()) return absl::NotFoundError("state.dir unset");
  const size_t max = kSamplesHeader + kMaxStoredSampleWindows * sizeof(int64_t) +
                     kMaxStoredSampleWindows * static_cast<size_t>(std::max(window, 0)) *
                         static_cast<size_t>(std::max(n_features, 0)) * sizeof(float) +
                     sizeof(uint64_t);
  auto bytes = ReadWholeFile(ModelDir(model) + "/" + kSamplesFile, max);
  if (!bytes.ok()) return bytes.status();
  return DecodeSamples(*bytes, window, n_features);
}

absl::StatusOr<models::io::Artifact> StateStore::LoadArtifact(size_t model,
                                                              const std::string& file) const {
  if (dir_.empty() || file.empty()) {
    return absl::FailedPreconditionError("no artifact kept for this version (state.dir unset)");
  }
  return models::io::ReadArtifact(ModelDir(model) + "/" + file);
}

}  // namespace qsig::server
