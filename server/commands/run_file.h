// The run file: where a running `qsig serve` says which addresses it actually bound, so that
// `qsig health` (a container's HEALTHCHECK) probes those, whatever the config and --set said.
#pragma once

#include <optional>
#include <string>

namespace qsig::commands {

struct RunFile {
  long pid = 0;
  std::string grpc;     // host:port of the SignalService
  std::string metrics;  // host:port of /metrics
};

// $QSIG_RUN_DIR/serve.run, or /tmp/qsig-<uid>/serve.run.
std::string RunFilePath();
// Written atomically (a temporary file renamed over the old one); false if it could not be.
bool WriteRunFile(const RunFile& f, std::string* error);
// Removed at a clean shutdown, if it is still ours.
void RemoveRunFile(long pid);
std::optional<RunFile> ReadRunFile(std::string* error);

}  // namespace qsig::commands
