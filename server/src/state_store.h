// The state directory (config state.dir): what a server installed, written so that a crash at
// any instant leaves either the old or the new version of every file, never half of one.
//
// Layout, one folder per model (its name, or its hex encoding if not a plain file name):
//   <dir>/<model>/state.json   ModelState (model_history.h): version counter, current version,
//                              fallback flag, bounded history, drift baseline
//   <dir>/<model>/v<N>.qsig    the .qsig artifact of version N (kept while the history names it)
//   <dir>/<model>/samples.bin  the calibration sample store (SampleSnapshot: at most
//                              kMaxStoredSampleWindows windows and their arrival times)
//
// Every write goes to a temporary file in the same folder, is fsync'ed, renamed over the
// target, and the folder is fsync'ed (so the rename itself is durable).
// Thread-safety: the free functions are reentrant; StateStore methods lock an internal mutex.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model_history.h"
#include "model_registry.h"
#include "qsig/models/io/artifact.h"

namespace qsig::server {

// Writes `data` to `path` crash-safely (temporary file, fsync, rename, fsync of the folder).
absl::Status WriteFileAtomic(const std::string& path, std::string_view data);
// Makes `tmp` (already written, same folder) durable as `path`: fsync, rename, fsync folder.
absl::Status CommitFile(const std::string& tmp, const std::string& path);
// Reads a whole file of at most `max_bytes`.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes);
// Creates `dir` (and its parents) if missing.
absl::Status MakeDirs(const std::string& dir);
// The calibration sample store's file: "QSIGSMP1", then little-endian u32 format (1), window,
// n_features, count, u64 seen (windows the sample stands for), count x i64 arrival ns, count x
// window x n_features f32, and a u64 FNV-1a hash of everything before it.
inline constexpr size_t kMaxStoredSampleWindows = CalibrationStore::kReservoirWindows;
std::string EncodeSamples(const SampleSnapshot& snapshot);
// Refuses a file of another shape than window x n_features, a count above
// kMaxStoredSampleWindows, a size or hash that does not match, and non-finite values.
absl::StatusOr<SampleSnapshot> DecodeSamples(std::string_view bytes, int window, int n_features);

// A model name as a folder name: itself if made of [A-Za-z0-9_.-] and not starting with '.',
// otherwise "x" + its hex encoding.
std::string SafeFileName(const std::string& name);

class StateStore {
 public:
  // `dir` "" keeps the state in memory only (history and status still work; nothing survives a
  // restart and Rollback has no artifacts). Loads what `dir` holds for each model; a model
  // whose state file is unreadable starts empty (the error is in load_errors()).
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir,
                                                          const std::vector<std::string>& models,
                                                          int history_per_model);

  bool persistent() const noexcept { return !dir_.empty(); }
  const std::string& dir() const noexcept { return dir_; }
  const std::vector<std::string>& load_errors() const noexcept { return load_errors_; }

  // A copy of a model's state.
  ModelState Get(size_t model) const;
  // Replaces a model's state (keeps at most history_per_model entries, deletes artifacts no
  // entry names any more) and writes it.
  absl::Status Put(size_t model, ModelState state);
  // Appends `entry` to the history, sets it current, and writes the state.
  absl::Status Record(size_t model, HistoryEntry entry);

  // Stores an artifact (written with models::io::WriteArtifact) for `version`; returns its file
  // name in the model's folder ("" when not persistent).
  absl::StatusOr<std::string> SaveArtifact(size_t model, uint64_t version,
                                           models::io::Artifact& artifact);
  // Stores a .qsig file's bytes as they are (a reloaded artifact).
  absl::StatusOr<std::string> SaveArtifactBytes(size_t model, uint64_t version,
                                                std::string_view bytes);
  // Reads and verifies (checksum) a stored artifact.
  absl::StatusOr<models::io::Artifact> LoadArtifact(size_t model, const std::string& file) const;

  // The calibration sample store (see EncodeSamples): written crash-safely, read bounded.
  absl::Status SaveSamples(size_t model, const SampleSnapshot& snapshot);
  absl::StatusOr<SampleSnapshot> LoadSamples(size_t model, int window, int n_features) const;

  uint64_t writes() const noexcept { return writes_.load(std::memory_order_relaxed); }
  uint64_t write_errors() const noexcept { return write_errors_.load(std::memory_order_relaxed); }

 private:
  StateStore() = default;
  std::string ModelDir(size_t model) const;
  // Writes `bytes` crash-safely as `name` in the model's folder, counted in writes() or
  // write_errors(); an error says "state.dir: ...".
  absl::Status WriteCounted(size_t model, const std::string& name, std::string_view bytes);
  absl::Status WriteLocked(size_t model);
  void PruneLocked(size_t model);          // Keeps the last history_per_model entries.
  void DeleteUnnamedLocked(size_t model);  // Artifacts no entry names.

  mutable std::mutex mu_;
  std::string dir_;
  int history_per_model_ = 20;
  std::vector<std::string> names_;
  std::vector<ModelState> states_;
  std::vector<std::string> load_errors_;
  std::atomic<uint64_t> writes_{0}, write_errors_{0};
};

}  // namespace qsig::server
