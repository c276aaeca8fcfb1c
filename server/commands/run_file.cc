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
    const auto field = [](const std::string& v) { return v.empty() ? std::string("-") : v; };
    out << "pid " << f.pid << "\ngrpc " << f.grpc << "\nmetrics " << f.metrics << "\ntls_cert "
        << field(f.tls_cert) << "\ntls_key " << field(f.tls_key) << "\ntls_client_ca "
        << field(f.tls_client_ca) << "\nclient_token_file " << field(f.client_token_file) << "\n";
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
    const std::string v = value == "-" ? "" : value;
    if (key == "tls_cert") f.tls_cert = v;
    if (key == "tls_key") f.tls_key = v;
    if (key == "tls_client_ca") f.tls_client_ca = v;
    if (key == "client_token_file") f.client_token_file = v;
  }
  if (f.grpc.empty() || f.metrics.empty()) {
    *error = path + ": malformed run file";
    return std::nullopt;
  }
  return f;
}

}  // namespace qsig::commands
