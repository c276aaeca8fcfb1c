// Reading a file a network caller names (ReloadModel): confined to one directory, never
// blocking, never unbounded. Internal to server/.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qsig::server {

// Resolves `requested` (relative to `dir`, or absolute) with every symlink followed and refuses
// it unless the result lies inside `dir` (itself resolved). `dir` empty = no confinement (a path
// from the operator's config). The file is opened O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC
// and checked with fstat before any read: only a regular file of at most `max_bytes` is read
// (and never more than that, even if it grows). Every refusal is the same NOT_FOUND naming
// only `requested`, so a caller learns nothing about which files exist. `*resolved` gets the
// resolved path (for the log).
absl::StatusOr<std::string> ReadConfinedFile(const std::string& dir, const std::string& requested,
                                             uint64_t max_bytes, std::string* resolved);

// Cleans a loader's error for a network caller: `staged` (the private copy's path) becomes
// `shown`, JSON parser excerpts ("last read: '...'") are cut, bytes outside printable ASCII are
// escaped and the message is capped, so no fragment of the file's content is echoed.
std::string SanitizeLoadError(std::string message, const std::string& staged,
                              const std::string& shown);

}  // namespace qsig::server
