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
  // How to reach the SignalService when it is secured (paths; "" = not configured): its TLS
  // certificate and key (mutual TLS: the probe presents them when client_ca is set) and the
  // client token file.
  std::string tls_cert, tls_key, tls_client_ca, client_token_file;
};

// $QSIG_RUN_DIR/serve.run, or /tmp/qsig-<uid>/serve.run.
std::string RunFilePath();
// Written atomically (a temporary file renamed over the old one); false if it could not be.
bool WriteRunFile(const RunFile& f, std::string* error);
// Removed at a clean shutdown, if it is still ours.
void RemoveRunFile(long pid);
std::optional<RunFile> ReadRunFile(std::string* error);

}  // namespace qsig::commands
