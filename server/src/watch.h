// `qsig watch`: a gRPC client that subscribes and prints signals.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qsig::server {

struct WatchOptions {
  std::string target = "127.0.0.1:50051";
  std::vector<std::string> instruments;
  std::vector<std::string> models;
  uint64_t count = 0;
  double timeout_s = 10;
};

int RunWatch(const WatchOptions& options);

}  // namespace qsig::server
