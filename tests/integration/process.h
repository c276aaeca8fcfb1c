// Test helpers: free loopback ports, a child process with captured output, an HTTP GET, a check
// of signal sequences.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace qsig::testing {

// A port the kernel just handed out for `type` (SOCK_STREAM or SOCK_DGRAM) on 127.0.0.1.
inline int FreePort(int type = SOCK_STREAM) {
  const int fd = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Checks that each (instrument, model) sequence of a stream continues exactly where it left off
// (`Signal` is qsig.v1.Signal; a template so this header needs no generated code).
struct SequenceCheck {
  std::map<std::pair<std::string, std::string>, uint64_t> last;
  std::set<std::string> instruments;
  uint64_t signals = 0, gaps = 0, backwards = 0;
  template <class Signal>
  void Add(const Signal& s) {
    ++signals;
    instruments.insert(s.instrument());
    auto [it, fresh] = last.try_emplace({s.instrument(), s.model()}, s.sequence());
    if (fresh) return;
    if (s.sequence() <= it->second) {
      ++backwards;
    } else if (s.sequence() != it->second + 1) {
      ++gaps;
    }
    it->second = s.sequence();
  }
};

// Runs a command with stdout and stderr sent to a log file.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path) : log_(log_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and waits; returns the exit code (or 128+signal, -1 on timeout).
  int Terminate(int timeout_ms = 10000) {
    kill(pid_, SIGTERM);
    return Wait(timeout_ms);
  }
  int Wait(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_;
};

// Parses the Prometheus text format into series -> value ("name{labels}" as written).
inline std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return out;
}

// `binary serve` on `config` with gRPC, AdminService and /metrics each on a free loopback port
// (written to *grpc / *admin / *metrics), the console quiet, and `sets` (--set key=value) after
// the defaults; a set naming a key already given replaces it.
inline std::vector<std::string> ServeArgs(const std::string& binary, const std::string& config,
                                          const std::vector<std::string>& sets, int* grpc,
                                          int* admin, int* metrics) {
  *grpc = FreePort();
  *admin = FreePort();
  *metrics = FreePort();
  std::vector<std::string> args = {binary, "serve", "--config", config};
  const auto set = [&args](const std::string& kv) {
    const std::string key = kv.substr(0, kv.find('=') + 1);
    for (size_t i = 5; i < args.size(); i += 2) {
      if (args[i].rfind(key, 0) == 0) {
        args[i] = kv;
        return;
      }
    }
    args.push_back("--set");
    args.push_back(kv);
  };
  set("grpc.listen=127.0.0.1:" + std::to_string(*grpc));
  set("admin.listen=127.0.0.1:" + std::to_string(*admin));
  set("metrics.listen=127.0.0.1:" + std::to_string(*metrics));
  set("console.status_interval_s=0");
  for (const std::string& kv : sets) set(kv);
  return args;
}

// Plain HTTP/1.0 GET on 127.0.0.1:port; returns the body ("" on failure).
// `timeout_ms` > 0 bounds each send and receive (then a stalled server answers "").
inline std::string HttpGet(int port, const std::string& path, int* status_code = nullptr,
                           int timeout_ms = 0) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (timeout_ms > 0) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t sp = resp.find(' ');
  if (status_code && sp != std::string::npos) *status_code = std::atoi(resp.c_str() + sp + 1);
  const size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

inline void SendUdp(int port, const std::vector<uint8_t>& payload) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  close(fd);
}

}  // namespace qsig::testing
