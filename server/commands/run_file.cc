#include "run_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qsig::commands {

std::string RunFilePath() {
  const char* dir = std::getenv("QSIG_RUN_DIR");
  std::string d = dir && *dir ? dir : "/tmp/qsig-" + std::to_string(::getuid());
  return d + "/serve.run";
}

bool WriteRunFile(const RunFile& f, std::string* error) {
  const std::string path = RunFilePath();
  const std::string dir = path.substr(0, path.rfind('/'));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    *error = dir + ": " + std::strerror(errno);
    return false;
  }
  const std::string tmp = path + "." + std::to_string(f.pid);
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "pid " << f.pid << "\ngrpc " << f.grpc << "\nmetrics " << f.metrics << "\n";
    if (!out.flush()) {
      *error = tmp + ": cannot write";
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = path + ": " + std::strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

void RemoveRunFile(long pid) {
  std::string error;
  auto f = ReadRunFile(&error);
  if (f && f->pid == pid) std::remove(RunFilePath().c_str());
}

std::optional<RunFile> ReadRunFile(std::string* error) {
  const std::string path = RunFilePath();
  std::ifstream in(path);
  if (!in) {
    *error = path + ": no run file (is `qsig serve` running as this user, with this QSIG_RUN_DIR?)";
    return std::nullopt;
  }
  RunFile f;
  std::string key, value;
  int lines = 0;
  while (lines < 16 && in >> key >> value) {  // A few short lines; anything else is ignored.
    ++lines;
    if (key == "pid") f.pid = std::strtol(value.c_str(), nullptr, 10);
    if (key == "grpc") f.grpc = value;
    if (key == "metrics") f.metrics = value;
  }
  if (f.grpc.empty() || f.metrics.empty()) {
    *error = path + ": malformed run file";
    return std::nullopt;
  }
  return f;
}

}  // namespace qsig::commands
